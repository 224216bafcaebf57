// AdEMAMix (Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
// ICLR 2025), as the authors' PyTorch class (github.com/apple/ml-ademamix, pytorch/ademamix.py,
// AdEMAMix.step): Adam whose numerator mixes in a second, slow EMA of the gradient.
//   g = -g (maximize)
//   m1 = fma(g, 1 - b1, m1 * b1)              (exp_avg_fast.mul_(b1).add_(g, alpha=1-b1))
//   m2 = fma(g, 1 - b3_t, m2 * b3_t)          (exp_avg_slow, with the warmed-up beta3)
//   v  = fma((1 - b2) * g, g, v * b2)         (exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2))
//   u  = (m1 / (1 - b1^t) + alpha_t * m2) / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   u  = fma(p, wd, u)                        (update.add_(p, alpha=wd): AdamW-like decay)
//   p  = p + (-lr * u)
// The warmups (0 steps, the class's None: none), in double as the class computes them:
//   alpha_t = alpha * t / alpha_warmup                      while t < alpha_warmup
//   beta3_t = f^-1((1 - a) f(b1) + a f(b3)), a = t / beta3_warmup, while t < beta3_warmup,
//             f(b) = log(0.5) / log(b + 1e-8) - 1,  f^-1(x) = 0.5^(1 / (x + 1))
// (the half-life of the slow EMA grows linearly from beta1's to beta3's). The class keeps no
// fast EMA when beta1 = 0 and uses g itself: m1 = fma(g, 1, m1 * 0) is g here too.
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// The authors' AdEMAMix. State: exp_avg_fast, exp_avg_slow, exp_avg_sq.
struct AdemamixOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double beta3 = 0.9999;
  double alpha = 2.0;
  double beta3_warmup = 0.0;  // steps; 0: none (the class's None)
  double alpha_warmup = 0.0;  // steps; 0: none
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T, bool kByReciprocal = true>  // (see math::divide)
struct AdemamixCoefficients {
  T beta1;
  T one_minus_beta1;
  T beta3;  // this step's
  T one_minus_beta3;
  T beta2;
  T one_minus_beta2;
  T bias_correction1;
  Divisor<T, kByReciprocal> sqrt_bias_correction2;
  T alpha;  // this step's
  T eps;
  L2Decay<T> decay;  // u + wd * p, one fma
  T neg_lr;
  Switch<T> maximize;
};

struct Ademamix : OneLoop<3> {
  using Options = AdemamixOptions;
  static constexpr const char* kName = "ademamix";
  static constexpr const char* kClassName = "AdEMAMix";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      kBeta1<Options>,
      kBeta2<Options>,
      {"beta3", &Options::beta3, Range::unit_open, "betas[2]"},
      {"alpha", &Options::alpha, Range::non_negative},
      {"beta3_warmup", &Options::beta3_warmup, Range::non_negative},
      {"alpha_warmup", &Options::alpha_warmup, Range::non_negative},
      kEps<Options>,
      kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg_fast", "exp_avg_fasts", kSigned},
                                           {"exp_avg_slow", "exp_avg_slows", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};

  template <class T>
  using Coefficients = AdemamixCoefficients<T>;
  template <class T>  // the same, divided by the divider (math::divide)
  using DividedCoefficients = AdemamixCoefficients<T, false>;

  // The warmed-up alpha and beta3 of step t (ml-ademamix's linear_warmup_scheduler and
  // linear_hl_warmup_scheduler).
  static double alpha_at(const AdemamixOptions& o, double step) {
    if (!(step < o.alpha_warmup)) return o.alpha;
    return step / o.alpha_warmup * o.alpha;  // (1 - a) * 0 + a * alpha
  }
  static double beta3_at(const AdemamixOptions& o, double step) {
    if (!(step < o.beta3_warmup)) return o.beta3;
    const auto half_life = [](double beta) { return std::log(0.5) / std::log(beta + 1e-8) - 1.0; };
    const double a = step / o.beta3_warmup;
    return std::pow(0.5, 1.0 / ((1.0 - a) * half_life(o.beta1) + a * half_life(o.beta3) + 1.0));
  }

  template <class T>
  static Coefficients<T> coefficients(const AdemamixOptions& o, double step) {
    const double beta3 = beta3_at(o, step);
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(beta3),
            static_cast<T>(1.0 - beta3),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(1.0 - std::pow(o.beta1, step)),
            make_divisor(static_cast<T>(std::sqrt(1.0 - std::pow(o.beta2, step)))),
            static_cast<T>(alpha_at(o, step)),
            static_cast<T>(o.eps),
            make_l2_decay<T>(o.weight_decay),
            static_cast<T>(-o.lr),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder, class C>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg_fast, T& exp_avg_slow, T& exp_avg_sq,
                                 T&, const C& c) {
    const T g = oriented(grad, c.maximize);
    exp_avg_fast = fused_mul_add(g, c.one_minus_beta1, exp_avg_fast * c.beta1);
    exp_avg_slow = fused_mul_add(g, c.one_minus_beta3, exp_avg_slow * c.beta3);
    exp_avg_sq = fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    const T denom = divide(square_root(exp_avg_sq), c.sqrt_bias_correction2) + c.eps;
    const T mixed = exp_avg_fast / c.bias_correction1 + c.alpha * exp_avg_slow;
    const T direction = c.decay(mixed / denom, param);
    param = param + c.neg_lr * direction;
  }
};

}  // namespace adamkern::math
