// Adam / AdamW per-element update, written once for every CPU ISA, the scalar tail and CUDA.
//
// Source: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2015); AdamW's decoupled
// decay from Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019); AMSGrad from
// Reddi et al., "On the Convergence of Adam and Beyond" (2018). The order of operations follows
// torch 2.13's CPU fused kernel (aten/src/ATen/native/cpu/FusedAdamKernel.cpp), which is what
// makes the results bitwise identical to torch.optim.Adam(fused=True):
//   g  = grad / grad_scale                   (written back to grad, as torch's AMP unscale)
//   g  = -g                                  (maximize)
//   g  = fma(p, wd, g)                       (L2 weight decay, Adam)
//   p  = p * fma(-lr, wd, 1)                 (decoupled weight decay, AdamW)
//   m  = lerp(m, g, 1-beta1)                 (torch's two-sided lerp, see below)
//   v  = fma((1-beta2)*g, g, v*beta2)
//   vm = max(vm, v)                          (AMSGrad; v below means vm then)
//   p  = p + (-lr/bc1 * m) / (sqrt(v) / sqrt(bc2) + eps)
// One quirk is reproduced on purpose: torch's compiled remainder loop (the last n % 8 float or
// n % 4 double elements of a tensor, observed on torch 2.13.0 x86-64 builds) contracts the
// second moment the other way round, v = fma(v, beta2, ((1-beta2)*g)*g). The driver runs
// those elements with kRemainderForm so that every bit of every element matches.
#pragma once

#include <cmath>

#include "adamkern/config.hpp"

namespace adamkern::math {

enum class WeightDecay : int { none = 0, l2 = 1, decoupled = 2 };

// Per-call scalars: computed once in double and rounded once to T, as torch does.
template <class T>
struct AdamCoefficients {
  T weight_decay;           // L2: g += wd * p
  T decay_factor;           // decoupled: p *= 1 - lr * wd
  T lerp_coefficient;       // w = 1 - beta1 if |w| < 0.5, else w - 1
  bool lerp_from_exp_avg;   // which end of the lerp the fma starts from
  T beta2;
  T one_minus_beta2;
  T bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  T eps;
  T neg_step_size;          // -lr / (1 - beta1^step)
  T grad_scale;             // grads are divided by it when the call unscales them
  bool maximize;
};

template <class T>
ADAMKERN_HD AdamCoefficients<T> adam_coefficients(double lr, double beta1, double beta2,
                                                  double eps, double weight_decay,
                                                  bool decoupled_weight_decay, bool maximize,
                                                  double step, float grad_scale) {
  const double bias_correction1 = 1.0 - pow(beta1, step);
  const double bias_correction2 = 1.0 - pow(beta2, step);
  // torch.lerp(start, end, w): start + w*(end-start) for |w| < 0.5, else
  // end - (end-start)*(1-w); both written as one fma.
  const T lerp_weight = static_cast<T>(1.0 - beta1);
  const bool small_weight = (lerp_weight < T(0) ? -lerp_weight : lerp_weight) < T(0.5);
  AdamCoefficients<T> c{};
  c.weight_decay = static_cast<T>(weight_decay);
  // torch's compiled code contracts 1 - lr*wd into one fma; rounding it the same way matters
  // when lr*wd is large.
  c.decay_factor =
      static_cast<T>(fused_mul_add(-lr, decoupled_weight_decay ? weight_decay : 0.0, 1.0));
  c.lerp_coefficient = small_weight ? lerp_weight : lerp_weight - T(1);
  c.lerp_from_exp_avg = small_weight;
  c.beta2 = static_cast<T>(beta2);
  c.one_minus_beta2 = static_cast<T>(1.0 - beta2);
  c.bias_correction2_sqrt = static_cast<T>(sqrt(bias_correction2));
  c.eps = static_cast<T>(eps);
  c.neg_step_size = static_cast<T>(-(lr / bias_correction1));
  c.grad_scale = static_cast<T>(grad_scale);
  c.maximize = maximize;
  return c;
}

// Elements at the end of a tensor that torch's fused kernel updates in its scalar remainder.
template <class T>
constexpr int torch_remainder_width() {
  return sizeof(T) == 4 ? 8 : 4;
}

// One element of the update. `max_exp_avg_sq` is read and written only when kAmsgrad, `grad`
// written only when kUnscaleGrad.
template <class T, WeightDecay kDecay, bool kAmsgrad, bool kUnscaleGrad, bool kRemainderForm>
ADAMKERN_HD void adam_update(T& param, T& grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq,
                             const AdamCoefficients<T>& c) {
  T g = grad;
  if constexpr (kUnscaleGrad) {
    g = g / c.grad_scale;
    grad = g;
  }
  if (c.maximize) g = -g;
  T p = param;
  if constexpr (kDecay == WeightDecay::l2) g = fused_mul_add(p, c.weight_decay, g);
  if constexpr (kDecay == WeightDecay::decoupled) p = p * c.decay_factor;

  const T m_old = exp_avg;
  const T m = fused_mul_add(c.lerp_coefficient, g - m_old, c.lerp_from_exp_avg ? m_old : g);
  const T v = kRemainderForm
                  ? fused_mul_add(exp_avg_sq, c.beta2, (c.one_minus_beta2 * g) * g)
                  : fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
  exp_avg = m;
  exp_avg_sq = v;

  T second_moment = v;
  if constexpr (kAmsgrad) {
    second_moment = nan_maximum(max_exp_avg_sq, v);
    max_exp_avg_sq = second_moment;
  }
  const T denom = square_root(second_moment) / c.bias_correction2_sqrt + c.eps;
  param = p + (c.neg_step_size * m) / denom;
}

}  // namespace adamkern::math
