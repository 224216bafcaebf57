// The adamkern C++ API: fused, in-place optimizer updates over raw buffers. No Python needed.
//
//   adamkern::AdamOptions options;            // torch.optim.Adam defaults
//   options.lr = 1e-3;
//   adamkern::adam(param, grad, exp_avg, exp_avg_sq, nullptr, n, options, /*step=*/1);
//
// Every entry point validates all of its arguments before it writes anything and throws
// std::invalid_argument (naming the argument and the tensor index) on bad input.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adamkern {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
  bool amsgrad = false;
  bool maximize = false;
};

// One tensor of a multi-tensor call: five streams of `size` contiguous elements.
// `max_exp_avg_sq` is used (and required) only with amsgrad.
template <class T>
struct AdamTensor {
  T* param = nullptr;
  T* grad = nullptr;
  T* exp_avg = nullptr;
  T* exp_avg_sq = nullptr;
  T* max_exp_avg_sq = nullptr;
  std::int64_t size = 0;
};

// AMP-style extras, both optional (nullptr = absent), with torch's semantics:
// grads are divided by *grad_scale in place; a nonzero *found_inf skips the whole update.
struct AmpArgs {
  const float* grad_scale = nullptr;
  const float* found_inf = nullptr;
};

// Throws std::invalid_argument if a hyperparameter is out of range.
// `step` is the step count after increment (1 on the first update), as torch's state['step'].
void validate_adam_options(const AdamOptions& options, double step);

// Multi-tensor update: one parallel region over all tensors of the call.
template <class T>
void adam_step(const AdamTensor<T>* tensors, std::size_t count, const AdamOptions& options,
               double step, AmpArgs amp = {});

template <class T>
struct same_type {
  using type = T;
};

// Single tensor over raw pointers and a length (max_exp_avg_sq may be nullptr without amsgrad).
template <class T>
void adam(T* param, T* grad, T* exp_avg, T* exp_avg_sq,
          typename same_type<T>::type* max_exp_avg_sq, std::int64_t size,
          const AdamOptions& options, double step, AmpArgs amp = {});

// The memory roofline of an Adam step: the same seven streams (read param, grad, exp_avg,
// exp_avg_sq; write param, exp_avg, exp_avg_sq) through the same threading and alignment,
// with no math. Benchmarks time it beside the real update. It overwrites the buffers.
template <class T>
void roofline_step(const AdamTensor<T>* tensors, std::size_t count);

extern template void adam_step<float>(const AdamTensor<float>*, std::size_t, const AdamOptions&,
                                      double, AmpArgs);
extern template void adam_step<double>(const AdamTensor<double>*, std::size_t,
                                       const AdamOptions&, double, AmpArgs);
extern template void adam<float>(float*, float*, float*, float*, float*, std::int64_t,
                                 const AdamOptions&, double, AmpArgs);
extern template void adam<double>(double*, double*, double*, double*, double*, std::int64_t,
                                  const AdamOptions&, double, AmpArgs);
extern template void roofline_step<float>(const AdamTensor<float>*, std::size_t);
extern template void roofline_step<double>(const AdamTensor<double>*, std::size_t);

}  // namespace adamkern
