// Row-wise Adagrad: one accumulator per row of an embedding table instead of one per element,
// as FBGEMM's EXACT_ROWWISE_ADAGRAD. For each touched row r with (coalesced) gradient g:
//   g_j   = -g_j (maximize);  g_j = fma(weight_decay, p_j, g_j) (L2, when weight_decay != 0)
//   mean  = (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) / cols,
//           s_k = sum over j with j % 8 == k, in increasing j, of g_j * g_j (rounded, then added)
//   state = state + mean
//   step  = (-lr) / (sqrt(state) + eps)
//   p_j   = p_j + g_j * step
// Source, and the order of operations above: FBGEMM's rowwise_sparse_adagrad_ref
// (pytorch/FBGEMM src/RefImplementations.cc), which transcribes the AVX2 code its JIT emits
// (src/SparseAdagrad.cc: eight float lanes of vmulps/vaddps, two vhaddps and a scalar add, a
// divss by the row length, then vmulps/vaddps for the update). fbgemm_gpu's CPU
// split-embedding backward runs that kernel (GenerateSparseAdaGrad(D, rowwise=true), called
// with -learning_rate) for float32 tables; lr and eps are rounded to float there, as here.
// FBGEMM has no maximize (added here as the rest of the family has it) and no float64; a
// float64 table runs the same order of operations in double.
#pragma once

#include <cstdint>

#include "adamkern/config.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// FBGEMM's row-wise Adagrad (SplitTableBatchedEmbeddingBagsCodegen's defaults: learning_rate
// 0.01, eps 1e-8, weight_decay 0). State: one accumulator per row, 0 before the first step.
struct RowwiseAdagradOptions {
  double lr = 1e-2;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct RowwiseAdagradCoefficients {
  T neg_lr;
  T eps;
  T weight_decay;  // FBGEMM's fma(weight_decay, w, g): the kDecay forms below
  Switch<T> maximize;
};

struct RowwiseAdagrad {
  using Options = RowwiseAdagradOptions;
  static constexpr const char* kName = "rowwise_adagrad";
  static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>, kEps<Options>,
                                                       kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  // One value per row (the table's dtype), not one per element.
  static constexpr StateBuffer kState[] = {{"sum", "state_sums", kUnsigned}};
  // The lanes of the sum of squares (FBGEMM's AVX2 register: eight floats).
  static constexpr std::int64_t kLanes = 8;

  template <class T>
  using Coefficients = RowwiseAdagradCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const Options& o) {
    return {static_cast<T>(-o.lr), static_cast<T>(o.eps), static_cast<T>(o.weight_decay),
            make_switch<T>(o.maximize)};
  }

  // The gradient element the update uses; kDecay: weight_decay != 0 (a compile-time form, so
  // the loops without decay carry no fma: these loops are not compiled per ISA, and a
  // baseline build calls the library's fma).
  template <bool kDecay, class T>
  static ADAMKERN_HD T gradient(T grad, T param, const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    if constexpr (kDecay) {
      return fused_mul_add(c.weight_decay, param, g);
    } else {
      return g;
    }
  }

  // Adds g_j * g_j of row elements [0, cols) to lane j % kLanes of `lanes`.
  template <bool kDecay, class T>
  static ADAMKERN_HD void add_squares(const T* param, const T* grad, std::int64_t cols,
                                      const Coefficients<T>& c, T (&lanes)[kLanes]) {
    std::int64_t j = 0;
    for (; j + kLanes <= cols; j += kLanes) {
      for (std::int64_t k = 0; k < kLanes; ++k) {
        const T g = gradient<kDecay>(grad[j + k], param[j + k], c);
        lanes[k] = lanes[k] + g * g;
      }
    }
    for (std::int64_t k = 0; j + k < cols; ++k) {
      const T g = gradient<kDecay>(grad[j + k], param[j + k], c);
      lanes[k] = lanes[k] + g * g;
    }
  }

  // The row's mean square from its lanes, in FBGEMM's reduction order.
  template <class T>
  static ADAMKERN_HD T mean_square(const T (&lanes)[kLanes], std::int64_t cols) {
    const T total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
                    ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    return total / static_cast<T>(cols);
  }

  // Accumulates the row's mean square and returns the row's (negative) step size.
  template <class T>
  static ADAMKERN_HD T accumulate(T& state_sum, T mean, const Coefficients<T>& c) {
    state_sum = state_sum + mean;
    return c.neg_lr / (square_root(state_sum) + c.eps);
  }

  template <bool kDecay, class T>
  static ADAMKERN_HD void update(T& param, T grad, T step, const Coefficients<T>& c) {
    param = param + gradient<kDecay>(grad, param, c) * step;
  }
};

}  // namespace adamkern::math
