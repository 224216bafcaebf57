// The adamkern C++ API: fused, in-place optimizer updates over raw buffers. No Python needed.
//
//   adamkern::AdamOptions options;            // torch.optim.Adam defaults
//   options.lr = 1e-3;
//   adamkern::adam(param, grad, exp_avg, exp_avg_sq, nullptr, n, options, /*step=*/1);
//
// Every optimizer has an options struct (torch's names and defaults where torch has the
// optimizer, optax's where it does not) and a multi-tensor entry point `<name>_step` that runs
// one parallel region over all tensors of the call. Each tensor is a Tensor<T>: the param, its
// grad, and the optimizer's state buffers in the order its options struct documents.
//
// Every entry point validates all of its arguments before it writes anything and throws
// std::invalid_argument (naming the argument and the tensor index) on bad input.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adamkern {

inline constexpr int kMaxStateBuffers = 4;

// One tensor of a multi-tensor call: `size` contiguous elements in each buffer. State buffers
// an optimizer does not use with the given options may be nullptr.
template <class T>
struct Tensor {
  T* param = nullptr;
  T* grad = nullptr;
  T* state[kMaxStateBuffers] = {};
  std::int64_t size = 0;
};

// AMP-style extras, both optional (nullptr = absent), with torch's semantics:
// grads are divided by *grad_scale in place; a nonzero *found_inf skips the whole update.
struct AmpArgs {
  const float* grad_scale = nullptr;
  const float* found_inf = nullptr;
};

// `step` below is always the step count after increment (1 on the first update), as torch's
// state['step'].

// torch.optim.Adam / AdamW. State: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad only).
// epsilon_hat: Keras' form, p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
  bool amsgrad = false;
  bool maximize = false;
  bool epsilon_hat = false;
};

// torch.optim.Adamax. State: exp_avg, exp_inf.
struct AdamaxOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool maximize = false;
};

// torch.optim.NAdam. State: exp_avg, exp_avg_sq (and the scalar mu_product, see nadam_step).
struct NadamOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum_decay = 4e-3;
  bool decoupled_weight_decay = false;
  bool maximize = false;
};

// torch.optim.RAdam. State: exp_avg, exp_avg_sq.
struct RadamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  bool maximize = false;
};

// torch.optim.RMSprop. State: square_avg, momentum_buffer (momentum > 0), grad_avg (centered).
// eps_inside_sqrt: Keras' form, sqrt(square_avg + eps) instead of sqrt(square_avg) + eps.
struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
  bool eps_inside_sqrt = false;
};

// torch.optim.Adagrad. State: state_sum (torch initialises it to initial_accumulator_value).
struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double eps = 1e-10;
  bool maximize = false;
  bool eps_inside_sqrt = false;
};

// torch.optim.Adadelta. State: square_avg, acc_delta.
struct AdadeltaOptions {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0.0;
  bool maximize = false;
};

// torch.optim.SGD. State: momentum_buffer (momentum != 0).
struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool maximize = false;
};

// optax.lion. State: exp_avg.
struct LionOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double weight_decay = 1e-3;
  bool maximize = false;
};

// optax.adabelief. State: exp_avg, exp_avg_var.
struct AdabeliefOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-16;
  double eps_root = 1e-16;
  double weight_decay = 0.0;
  bool maximize = false;
};

// optax.lamb. State: exp_avg, exp_avg_sq.
struct LambOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-6;
  double eps_root = 0.0;
  double weight_decay = 0.0;
  bool maximize = false;
};

// optax.adan. State: exp_avg, exp_avg_diff, exp_avg_sq, prev_grad.
struct AdanOptions {
  double lr = 1e-3;
  double beta1 = 0.98;
  double beta2 = 0.92;
  double beta3 = 0.99;
  double eps = 1e-8;
  double eps_root = 0.0;
  double weight_decay = 0.0;
  bool maximize = false;
};

// optax.yogi. State: exp_avg, exp_avg_sq (optax initialises both to 1e-6).
struct YogiOptions {
  double lr = 1e-2;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-3;
  double eps_root = 0.0;
  double weight_decay = 0.0;
  bool maximize = false;
};

// Throws std::invalid_argument if a hyperparameter is out of range.
void validate_adam_options(const AdamOptions& options, double step);

template <class T>
void adam_step(const Tensor<T>* tensors, std::size_t count, const AdamOptions& options,
               double step, AmpArgs amp = {});
template <class T>
void adamax_step(const Tensor<T>* tensors, std::size_t count, const AdamaxOptions& options,
                 double step, AmpArgs amp = {});
// mu_product: torch's state, the product of the momentum coefficients mu_1 ... mu_step, this
// step's included (the caller multiplies it by nadam_mu(options, step) before the call; torch
// keeps it as a float32 tensor, so round it as your state is kept).
template <class T>
void nadam_step(const Tensor<T>* tensors, std::size_t count, const NadamOptions& options,
                double step, double mu_product, AmpArgs amp = {});
double nadam_mu(const NadamOptions& options, double step);
template <class T>
void radam_step(const Tensor<T>* tensors, std::size_t count, const RadamOptions& options,
                double step, AmpArgs amp = {});
template <class T>
void rmsprop_step(const Tensor<T>* tensors, std::size_t count, const RmspropOptions& options,
                  AmpArgs amp = {});
template <class T>
void adagrad_step(const Tensor<T>* tensors, std::size_t count, const AdagradOptions& options,
                  double step, AmpArgs amp = {});
template <class T>
void adadelta_step(const Tensor<T>* tensors, std::size_t count, const AdadeltaOptions& options,
                   AmpArgs amp = {});
// is_first_step: the momentum buffer is set to the gradient instead of being decayed (torch
// creates it from the first gradient).
template <class T>
void sgd_step(const Tensor<T>* tensors, std::size_t count, const SgdOptions& options,
              bool is_first_step, AmpArgs amp = {});
template <class T>
void lion_step(const Tensor<T>* tensors, std::size_t count, const LionOptions& options,
               AmpArgs amp = {});
template <class T>
void adabelief_step(const Tensor<T>* tensors, std::size_t count, const AdabeliefOptions& options,
                    double step, AmpArgs amp = {});
template <class T>
void lamb_step(const Tensor<T>* tensors, std::size_t count, const LambOptions& options,
               double step, AmpArgs amp = {});
template <class T>
void adan_step(const Tensor<T>* tensors, std::size_t count, const AdanOptions& options,
               double step, AmpArgs amp = {});
template <class T>
void yogi_step(const Tensor<T>* tensors, std::size_t count, const YogiOptions& options,
               double step, AmpArgs amp = {});

template <class T>
struct same_type {
  using type = T;
};

// Adam on one tensor over raw pointers and a length (max_exp_avg_sq may be nullptr without
// amsgrad).
template <class T>
void adam(T* param, T* grad, T* exp_avg, T* exp_avg_sq,
          typename same_type<T>::type* max_exp_avg_sq, std::int64_t size,
          const AdamOptions& options, double step, AmpArgs amp = {});

// Statistics of a list of gradients in one parallel read pass: the global L2 norm (squares
// summed in double in fixed chunks, so the same bits for any thread count and ISA) and whether
// every element is finite (no inf, no NaN). For gradient clipping and AMP loss scaling.
struct GradStats {
  double norm;
  bool finite;
};
template <class T>
GradStats grad_stats(const T* const* arrays, const std::int64_t* sizes, std::size_t count);

// The memory roofline of an Adam step: the same seven streams (read param, grad, exp_avg,
// exp_avg_sq; write param, exp_avg, exp_avg_sq) through the same threading and alignment,
// with no math. Benchmarks time it beside the real update. It overwrites the buffers.
template <class T>
void roofline_step(const Tensor<T>* tensors, std::size_t count);

#define ADAMKERN_DECLARE_FOR(T)                                                              \
  extern template void adam_step<T>(const Tensor<T>*, std::size_t, const AdamOptions&,      \
                                    double, AmpArgs);                                        \
  extern template void adamax_step<T>(const Tensor<T>*, std::size_t, const AdamaxOptions&,  \
                                      double, AmpArgs);                                      \
  extern template void nadam_step<T>(const Tensor<T>*, std::size_t, const NadamOptions&,    \
                                     double, double, AmpArgs);                               \
  extern template void radam_step<T>(const Tensor<T>*, std::size_t, const RadamOptions&,    \
                                     double, AmpArgs);                                       \
  extern template void rmsprop_step<T>(const Tensor<T>*, std::size_t, const RmspropOptions&, \
                                       AmpArgs);                                             \
  extern template void adagrad_step<T>(const Tensor<T>*, std::size_t, const AdagradOptions&, \
                                       double, AmpArgs);                                     \
  extern template void adadelta_step<T>(const Tensor<T>*, std::size_t,                     \
                                        const AdadeltaOptions&, AmpArgs);                    \
  extern template void sgd_step<T>(const Tensor<T>*, std::size_t, const SgdOptions&, bool,  \
                                   AmpArgs);                                                 \
  extern template void lion_step<T>(const Tensor<T>*, std::size_t, const LionOptions&,      \
                                    AmpArgs);                                                \
  extern template void adabelief_step<T>(const Tensor<T>*, std::size_t,                     \
                                         const AdabeliefOptions&, double, AmpArgs);          \
  extern template void lamb_step<T>(const Tensor<T>*, std::size_t, const LambOptions&,      \
                                    double, AmpArgs);                                        \
  extern template void adan_step<T>(const Tensor<T>*, std::size_t, const AdanOptions&,      \
                                    double, AmpArgs);                                        \
  extern template void yogi_step<T>(const Tensor<T>*, std::size_t, const YogiOptions&,      \
                                    double, AmpArgs);                                        \
  extern template void adam<T>(T*, T*, T*, T*, T*, std::int64_t, const AdamOptions&, double, \
                               AmpArgs);                                                     \
  extern template void roofline_step<T>(const Tensor<T>*, std::size_t);                     \
  extern template GradStats grad_stats<T>(const T* const*, const std::int64_t*, std::size_t);
ADAMKERN_DECLARE_FOR(float)
ADAMKERN_DECLARE_FOR(double)
#undef ADAMKERN_DECLARE_FOR

}  // namespace adamkern
