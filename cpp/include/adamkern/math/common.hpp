// Building blocks shared by the per-optimizer math headers, and the shape of an optimizer's
// kernel description.
//
// Each math/<optimizer>.hpp defines one struct that the CPU loops (every ISA) and the CUDA
// kernels instantiate; its per-element `update` is the only place the optimizer's math exists:
//
//   struct Example {
//     template <class T> using Coefficients = ...;   // per-call scalars, computed once in double
//     static constexpr int kVariants = ...;           // compile-time variants (state layouts)
//     static constexpr bool kTorchRemainder = false;  // see math/adam.hpp
//     static constexpr unsigned reads(int variant);   // bit k: state buffer k is read
//     static constexpr unsigned writes(int variant);  // bit k: state buffer k is written
//     template <class T, int kVariant, bool kRemainder>
//     static void update(T& param, T grad, T& state0, T& state1, T& state2, T& state3,
//                        const Coefficients<T>& c);
//   };
//
// `grad` arrives already unscaled (AMP) and is never written; state0..3 are the values of the
// state buffers at this element: the loop loads those this variant reads and stores back those
// it writes (named scalars: an array or struct local to the loop body keeps GCC from
// vectorizing it). Options that do
// not change which buffers are touched are run-time branches on loop-invariant coefficients.
#pragma once

#include "adamkern/config.hpp"

namespace adamkern::math {

// torch.lerp(start, end, w): start + w*(end-start) for |w| < 0.5, else end - (end-start)*(1-w),
// each written as one fma (as torch's vectorized lerp).
template <class T>
struct Lerp {
  T coefficient;    // w, or w - 1
  bool from_start;  // which end the fma starts from

  ADAMKERN_HD T operator()(T start, T end) const {
    return fused_mul_add(coefficient, end - start, from_start ? start : end);
  }
};

template <class T>
ADAMKERN_HD Lerp<T> make_lerp(double weight) {
  const T w = static_cast<T>(weight);
  const bool small = (w < T(0) ? -w : w) < T(0.5);
  return Lerp<T>{small ? w : w - T(1), small};
}

// (1 - decay) * x + decay * moment, in that order, without an fma: optax's tree_update_moment.
template <class T>
ADAMKERN_HD T moving_average(T moment, T x, T decay, T one_minus_decay) {
  return one_minus_decay * x + decay * moment;
}

// optax's tail of every chain: add_decayed_weights, then scale_by_learning_rate, then
// apply_updates: p + (-lr) * (u + wd * p). The decay term is skipped when wd is 0, as optax does
// not add it at all then.
template <class T>
ADAMKERN_HD T apply_decayed_update(T param, T direction, T weight_decay, T neg_lr) {
  if (weight_decay != T(0)) direction = direction + weight_decay * param;
  return param + neg_lr * direction;
}

// jnp.sign / torch.sign: -1, 0 or 1, NaN for NaN.
template <class T>
ADAMKERN_HD T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);
}

ADAMKERN_HD float absolute(float x) { return fabsf(x); }
ADAMKERN_HD double absolute(double x) { return fabs(x); }

}  // namespace adamkern::math
