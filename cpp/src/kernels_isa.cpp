// The element loops, compiled once per ISA (CMake passes ADAMKERN_ISA_NS and the ISA's flags).
// The loops are written plainly and vectorized by the compiler; the math is in math/*.hpp.
#include <cstdint>

#include "isa_table.hpp"

#ifndef ADAMKERN_ISA_NS
#error "kernels_isa.cpp is compiled once per ISA with -DADAMKERN_ISA_NS=isa_<name>"
#endif
#ifndef ADAMKERN_ISA_FLAGS
#define ADAMKERN_ISA_FLAGS ""
#endif

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

using math::WeightDecay;

template <class T, WeightDecay kDecay, bool kAmsgrad, bool kUnscaleGrad, bool kRemainderForm>
void adam_range(const AdamTensor<T>& tensor, std::int64_t begin, std::int64_t end,
                const math::AdamCoefficients<T>& coefficients) {
  T* __restrict param = tensor.param;
  T* __restrict grad = tensor.grad;
  T* __restrict exp_avg = tensor.exp_avg;
  T* __restrict exp_avg_sq = tensor.exp_avg_sq;
  T* __restrict max_exp_avg_sq = tensor.max_exp_avg_sq;
  const math::AdamCoefficients<T> c = coefficients;  // a local copy keeps it in registers
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    T max_sq{};
    if constexpr (kAmsgrad) max_sq = max_exp_avg_sq[i];
    math::adam_update<T, kDecay, kAmsgrad, kUnscaleGrad, kRemainderForm>(
        param[i], grad[i], exp_avg[i], exp_avg_sq[i], max_sq, c);
    if constexpr (kAmsgrad) max_exp_avg_sq[i] = max_sq;
  }
}

template <class T>
void roofline_range(const AdamTensor<T>& tensor, std::int64_t begin, std::int64_t end) {
  T* __restrict param = tensor.param;
  T* __restrict grad = tensor.grad;
  T* __restrict exp_avg = tensor.exp_avg;
  T* __restrict exp_avg_sq = tensor.exp_avg_sq;
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    // Reads four streams, writes three, one add: the traffic of Adam without its math.
    const T p = param[i];
    param[i] = exp_avg[i];
    exp_avg[i] = exp_avg_sq[i];
    exp_avg_sq[i] = p + grad[i];
  }
}

template <class T, WeightDecay kDecay, bool kAmsgrad, bool kUnscaleGrad>
constexpr void fill_forms(AdamLoops<T>& loops) {
  auto& slot = loops.update[static_cast<int>(kDecay)][kAmsgrad][kUnscaleGrad];
  slot[0] = &adam_range<T, kDecay, kAmsgrad, kUnscaleGrad, false>;
  slot[1] = &adam_range<T, kDecay, kAmsgrad, kUnscaleGrad, true>;
}

template <class T, WeightDecay kDecay>
constexpr void fill_decay(AdamLoops<T>& loops) {
  fill_forms<T, kDecay, false, false>(loops);
  fill_forms<T, kDecay, false, true>(loops);
  fill_forms<T, kDecay, true, false>(loops);
  fill_forms<T, kDecay, true, true>(loops);
}

template <class T>
AdamLoops<T> make_loops() {
  AdamLoops<T> loops{};
  fill_decay<T, WeightDecay::none>(loops);
  fill_decay<T, WeightDecay::l2>(loops);
  fill_decay<T, WeightDecay::decoupled>(loops);
  loops.roofline = &roofline_range<T>;
  return loops;
}

}  // namespace

const KernelTable& kernel_table() {
  static const KernelTable table{make_loops<float>(), make_loops<double>(), ADAMKERN_ISA_FLAGS};
  return table;
}

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
