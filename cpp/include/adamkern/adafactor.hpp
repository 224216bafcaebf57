// Adafactor: a shape-aware step with per-tensor reductions (math/adafactor.hpp has the math).
//
//   #include "adamkern/adafactor.hpp"
//   adamkern::AdafactorTensor<float> t;          // a [64, 128, 256] param
//   t.param = p; t.grad = g; t.factored = true;
//   t.batch = 64; t.rows = 128; t.cols = 256;
//   t.row_var = row_var;                         // batch x rows values ([..., R, 1] in torch)
//   t.col_var = col_var;                         // batch x cols values ([..., 1, C] in torch)
//   t.step = 1.0;                                // this tensor's step, after the increment
//   adamkern::adafactor_step(&t, 1, adamkern::AdafactorOptions{});
//
// A tensor with two or more dimensions is viewed as batch x rows x cols (its last two
// dimensions, batched over the leading ones) and keeps O(rows + cols) state; a vector (n
// elements: batch = rows = 1, cols = n) keeps `variance`, n values. Each tensor takes three
// passes over its elements: (1) the sums of squares of the params, and of the grads per row and
// per column (a vector: its variance's update); (2) the sum of squares of the update; (3) the
// update of the params. Float32 moves 24 bytes per element (8 + 4 + 12), float64 48.
//
// Determinism: every sum is accumulated in double over fixed pieces (rows, fixed row chunks of
// each batch, fixed element chunks) added in a fixed order, so the result is the same bits for
// any thread count and any ISA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>

namespace adamkern {

// torch.optim.Adafactor's hyperparameters and defaults; eps1 unset: the machine epsilon of the
// params' dtype (torch's eps=(None, 1e-3)).
struct AdafactorOptions {
  double lr = 1e-2;
  double beta2_decay = -0.8;
  std::optional<double> eps1;
  double eps2 = 1e-3;
  double d = 1.0;
  double weight_decay = 0.0;
  bool maximize = false;
};

template <class T>
struct AdafactorTensor {
  T* param = nullptr;
  const T* grad = nullptr;
  bool factored = false;  // the param has two or more dimensions
  std::int64_t batch = 1, rows = 1, cols = 0;
  T* row_var = nullptr;   // factored: batch x rows
  T* col_var = nullptr;   // factored: batch x cols
  T* variance = nullptr;  // a vector: cols values
  double step = 1.0;      // this tensor's step count after the increment (torch's state['step'])
};

// eps1 as a step of T-valued params uses it: the option, or T's machine epsilon when unset.
template <class T>
double adafactor_eps1(const AdafactorOptions& options) {
  return options.eps1.value_or(static_cast<double>(std::numeric_limits<T>::epsilon()));
}

// Throws std::invalid_argument naming the option: lr < 0, beta2_decay > 0, eps1 < 0, eps2 < 0,
// d < 1, weight_decay < 0 (torch.optim.Adafactor's checks), or a non-finite value.
void check_adafactor_options(const AdafactorOptions& options);

// One step of every tensor, in place. Everything is checked before anything is written (the
// options, each step >= 1, the sizes, the buffers present for the layout and none overlapping);
// throws std::invalid_argument. A tensor with no elements is left as it is.
template <class T>
void adafactor_step(const AdafactorTensor<T>* tensors, std::size_t count,
                    const AdafactorOptions& options);

extern template void adafactor_step<float>(const AdafactorTensor<float>*, std::size_t,
                                           const AdafactorOptions&);
extern template void adafactor_step<double>(const AdafactorTensor<double>*, std::size_t,
                                            const AdafactorOptions&);

}  // namespace adamkern
