// Building blocks shared by the per-optimizer math headers, and the shape of an optimizer's
// kernel description.
//
// Each math/<optimizer>.hpp defines one struct that the CPU loops (every ISA) and the CUDA
// kernels instantiate; its per-element `update` is the only place the optimizer's math exists:
//
//   struct Example {
//     template <class T> using Coefficients = ...;   // per-call scalars, computed once in double
//     template <class T> using DividedCoefficients = ...;  // optional: see divide below
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

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "adamkern/config.hpp"

namespace adamkern::math {

// A run-time option inside the element loop, as a bit mask rather than a bool: GCC does not
// vectorize a loop that selects on a loop-invariant bool (unless it unswitches the loop, which
// it stops doing after a few options), while a bitwise select vectorizes everywhere and is
// exact (no arithmetic blend, so inf and NaN pass through untouched).
template <class T>
struct Switch {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  Bits bits;  // all ones: on
};

template <class T>
ADAMKERN_HD Switch<T> make_switch(bool on) {
  return Switch<T>{on ? ~typename Switch<T>::Bits{0} : typename Switch<T>::Bits{0}};
}

// if_on where the switch is on, else if_off.
template <class T>
ADAMKERN_HD T choose(Switch<T> s, T if_on, T if_off) {
  typename Switch<T>::Bits a, b;
  std::memcpy(&a, &if_on, sizeof a);
  std::memcpy(&b, &if_off, sizeof b);
  const typename Switch<T>::Bits bits = (a & s.bits) | (b & ~s.bits);
  T out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

// torch's L2 weight decay, g + wd * p as one fma (grad.add(param, alpha=wd) as compiled), and
// no term at all when wd is 0 (torch skips it then).
template <class T>
struct L2Decay {
  T weight_decay;
  Switch<T> on;

  ADAMKERN_HD T operator()(T grad, T param) const {
    return choose(on, fused_mul_add(param, weight_decay, grad), grad);
  }
};

template <class T>
ADAMKERN_HD L2Decay<T> make_l2_decay(double weight_decay) {
  return L2Decay<T>{static_cast<T>(weight_decay), make_switch<T>(weight_decay != 0.0)};
}

// weight_decay with the option decoupled_weight_decay: torch's L2 (above), or decoupled from the
// gradient (Loshchilov & Hutter, ICLR 2019), applied to the param before its update as Keras
// and optimi write it, p -= lr * wd * p, here rounded once: p = fma(p, -lr*wd, p), as torch's
// param.add_(param, alpha=-lr*wd) (torch's AdamW multiplies by 1 - lr*wd instead: adam.hpp).
// lr is the step's learning rate (Adagrad's decayed one).
template <class T>
struct WeightDecayTerms {
  L2Decay<T> l2;
  T neg_lr_weight_decay;
  Switch<T> decouples;

  ADAMKERN_HD T decoupled(T param) const {
    return choose(decouples, fused_mul_add(param, neg_lr_weight_decay, param), param);
  }
};

template <class T>
ADAMKERN_HD WeightDecayTerms<T> make_weight_decay(double lr, double weight_decay, bool decoupled) {
  return WeightDecayTerms<T>{make_l2_decay<T>(decoupled ? 0.0 : weight_decay),
                             static_cast<T>(-lr * weight_decay),
                             make_switch<T>(decoupled && weight_decay != 0.0)};
}

// torch.lerp(start, end, w): start + w*(end-start) for |w| < 0.5, else end - (end-start)*(1-w),
// each written as one fma (as torch's vectorized lerp).
template <class T>
struct Lerp {
  T coefficient;         // w, or w - 1
  Switch<T> from_start;  // which end the fma starts from

  ADAMKERN_HD T operator()(T start, T end) const {
    return fused_mul_add(coefficient, end - start, choose(from_start, start, end));
  }
};

template <class T>
ADAMKERN_HD Lerp<T> make_lerp(double weight) {
  const T w = static_cast<T>(weight);
  const bool small = (w < T(0) ? -w : w) < T(0.5);
  return Lerp<T>{small ? w : w - T(1), make_switch<T>(small)};
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
struct DecayedUpdate {
  T weight_decay;
  Switch<T> decays;  // weight_decay != 0
  T neg_lr;

  ADAMKERN_HD T direction(T update, T param) const {
    return choose(decays, update + weight_decay * param, update);
  }
  ADAMKERN_HD T operator()(T param, T update) const {
    return param + neg_lr * direction(update, param);
  }
};

template <class T>
ADAMKERN_HD DecayedUpdate<T> make_decayed_update(double lr, double weight_decay) {
  return DecayedUpdate<T>{static_cast<T>(weight_decay), make_switch<T>(weight_decay != 0.0),
                          static_cast<T>(-lr)};
}

// The gradient the update sees: negated when maximizing.
template <class T>
ADAMKERN_HD T oriented(T grad, Switch<T> maximize) {
  return choose(maximize, -grad, grad);
}

// jnp.sign / torch.sign: -1, 0 or 1, NaN for NaN.
template <class T>
ADAMKERN_HD T sign_of(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x);
}

ADAMKERN_HD float absolute(float x) { return fabsf(x); }
ADAMKERN_HD double absolute(double x) { return fabs(x); }

// x / divisor correctly rounded (the bits of the division), for a divisor fixed per call, by a
// multiply and two fmas where the ISA has fmas: in the float32 and float64 loops the host's
// divider, which also does the update's other division and its square root, was the bound in
// cache. With y = RN(1/d), q = RN(x*y) is faithful, the residual x - d*q is exact in an fma, and
// RN(q + (x - d*q)*y) = RN(x/d) (Markstein's theorem; Brisebarre, Muller and Raina,
// "Accelerating correctly rounded floating-point division when the divisor is known in
// advance", IEEE TC 53(8), 2004).
// Preconditions, met by its callers' sqrt(v) / sqrt(1 - beta2^step) with beta2 in [0, 1): the
// divisor is in [2^-60, 1], and x is zero, infinite, NaN or of magnitude at least 2^-100 (the
// residual does not underflow), as a square root of a float or double always is. Zero,
// infinity and NaN divide to themselves by such a divisor and are passed through. Checked on
// every ISA against the division by tests/test_runtime.py (every float32 mantissa).
// kByReciprocal false: a true division. The loops over lower-precision storage take that one
// (a descriptor's DividedCoefficients, chosen by update_streams in src/kernels_isa.cpp): their
// conversions keep the vector ports busy, and there the multiply and fmas cost more than the
// division (bfloat16 params and state: 0.44 -> 0.49 ns/element at 8M).
template <class T, bool kByReciprocal = true>
struct Divisor {
  T divisor;
  T reciprocal;  // RN(1 / divisor)
};

template <class T>
ADAMKERN_HOST_DEVICE Divisor<T> make_divisor(T divisor) {
  return Divisor<T>{divisor, T(1) / divisor};
}

template <class T, bool kByReciprocal>
ADAMKERN_HD T divide(T x, const Divisor<T, kByReciprocal>& d) {
#if defined(__FMA__) && !defined(__CUDA_ARCH__)
  if constexpr (kByReciprocal) {
    T q = x * d.reciprocal;
    q = fused_mul_add(fused_mul_add(-q, d.divisor, x), d.reciprocal, q);
    const T magnitude = absolute(x);
    return magnitude > T(0) && magnitude <= std::numeric_limits<T>::max() ? q : x;
  }
#endif
  return x / d.divisor;
}

// The terms a reduction pass adds per element (math/lamb.hpp's pass returns its direction and
// the loop squares it and the param; Prodigy and the cautious count name their terms).
struct MeasuredTerms {
  double first;
  double second;
};

// What a reduction pass adds per element (the CPU loops and the CUDA kernels): a kernel
// returning its direction (LAMB) adds the squares of the param and of the direction; one
// returning MeasuredTerms (Prodigy) adds those terms.
template <class T>
ADAMKERN_HD void add_terms(double& first, double& second, T param, T direction) {
  first += static_cast<double>(param) * static_cast<double>(param);
  second += static_cast<double>(direction) * static_cast<double>(direction);
}
template <class T>
ADAMKERN_HD void add_terms(double& first, double& second, T, MeasuredTerms terms) {
  first += terms.first;
  second += terms.second;
}

// Cautious updates (Liang et al., "Cautious Optimizers: Improving Training with One Line of
// Code", 2024), as the authors' C-Optim (github.com/kyleliang919/C-Optim): the components of
// the update whose sign disagrees with the gradient's are dropped (update * grad > 0 fails),
// the others scaled by one number per tensor from the count of those that agree, so the
// update keeps its size. The count is exact (a sum of ones in double), so the scale is the
// same bits for any thread count and ISA. Its rules, computed in T as torch does on the 0/1
// mask (one rounding per operation):
//   mean   (c_adamw.py)  s = 1 / max(count / n, 1e-3)
//   count  (c_lion.py)   s = n / (count + 1)
enum class CautiousRescale { mean, count };

template <class T>
struct CautiousMask {
  T scale = T(1);  // per tensor, from the count (cautious_scale)
  static ADAMKERN_HD bool agree(T update, T grad) { return update * grad > T(0); }
  // The factor of one component of `update`: scale where it agrees with `grad`, else 0.
  ADAMKERN_HD T operator()(T update, T grad) const { return agree(update, grad) ? scale : T(0); }
};

template <class T>
ADAMKERN_HD T cautious_scale(CautiousRescale rescale, double count, std::int64_t size) {
  const T n = static_cast<T>(size);
  const T agreeing = static_cast<T>(count);
  if (rescale == CautiousRescale::mean) {
    const T mean = agreeing / n;
    const T floor = static_cast<T>(1e-3);
    return T(1) / (mean > floor ? mean : floor);
  }
  return n / (agreeing + T(1));
}

// The pass before a cautious update: per tensor, the count of components that agree, read
// only. Descriptor D has, after its plain variants, kCautiousVariants cautious ones (the same
// loops with the mask), the state buffers its `agrees` reads (kCautiousReads) and its rule
// (kCautiousRescale); `agrees` computes the update's sign as `update` will, without writing.
template <class D>
struct CautiousCount {
  template <class T>
  using Coefficients = typename D::template Coefficients<T>;
  static constexpr int kFirst = D::kVariants - D::kCautiousVariants;  // D's first cautious one
  static constexpr int kVariants = D::kCautiousVariants;
  static constexpr unsigned reads(int) { return D::kCautiousReads; }
  static constexpr unsigned writes(int) { return 0u; }

  // Whether this component agrees: the loop counts them (the first sum; the second is 0).
  template <class T, int kVariant>
  static ADAMKERN_HD bool measure(T param, T grad, T& s0, T& s1, T&, T&, const Coefficients<T>& c) {
    return D::template agrees<T, kFirst + kVariant>(param, grad, s0, s1, c);
  }
};

}  // namespace adamkern::math
