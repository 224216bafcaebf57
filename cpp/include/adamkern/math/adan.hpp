// Adan (Xie et al., "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
// Models", 2022), as optax.adan (google-deepmind/optax, optax/_src/alias.py and transform.py
// scale_by_adan):
//   g = -g (maximize);  d = g - g_prev, 0 on the first step
//   m = (1 - b1) * g + b1 * m
//   n_d = (1 - b2) * d + b2 * n_d                       (exp_avg_diff)
//   v = (1 - b3) * (g + (1 - b2) * d)^2 + b3 * v        (exp_avg_sq)
//   u = (m / (1 - b1^t) + (1 - b2) * n_d / (1 - b2^t)) / (sqrt(v / (1 - b3^t) + eps_root) + eps)
//   g_prev = g
//   p = p + (-lr) * (u + wd * p)
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// optax.adan. State: exp_avg, exp_avg_diff, exp_avg_sq, prev_grad.
struct AdanOptions {
  double lr = 1e-3;
  double beta1 = 0.98;
  double beta2 = 0.92;
  double beta3 = 0.99;
  double eps = 1e-8;
  double eps_root = 1e-8;  // optax.adan's
  double weight_decay = 0.0;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct AdanCoefficients {
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T beta3;
  T one_minus_beta3;
  T bias_correction1;
  T bias_correction2;
  T bias_correction3;
  T eps_root;
  T eps;
  DecayedUpdate<T> apply;
  Switch<T> maximize;
};

struct Adan {
  using Options = AdanOptions;
  static constexpr const char* kName = "adan";
  static constexpr const char* kClassName = "Adan";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,         kBeta1<Options>,
      kBeta2<Options>,      {"beta3", &Options::beta3, Range::unit_open, "betas[2]"},
      kEps<Options>,        kEpsRoot<Options>,
      kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_diff", "exp_avg_diffs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned},
                                           {"prev_grad", "prev_grads", kSigned}};

  template <class T>
  using Coefficients = AdanCoefficients<T>;
  // variant 0: first step (no previous gradient yet), 1: later steps
  static constexpr int kVariants = 2;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const AdanOptions&, const StepValues& v) {
    return v.step == 1.0 ? 0 : 1;
  }
  // state: exp_avg, exp_avg_diff, exp_avg_sq, prev_grad
  static constexpr unsigned reads(int variant) { return variant == 0 ? 0b0111u : 0b1111u; }
  static constexpr unsigned writes(int) { return 0b1111u; }

  template <class T>
  static Coefficients<T> coefficients(const AdanOptions& o, double step) {
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(o.beta3),
            static_cast<T>(1.0 - o.beta3),
            static_cast<T>(1.0 - std::pow(o.beta1, step)),
            static_cast<T>(1.0 - std::pow(o.beta2, step)),
            static_cast<T>(1.0 - std::pow(o.beta3, step)),
            static_cast<T>(o.eps_root),
            static_cast<T>(o.eps),
            make_decayed_update<T>(o.lr, o.weight_decay),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_diff, T& exp_avg_sq,
                                 T& prev_grad, const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    const T diff = kVariant == 0 ? T(0) : g - prev_grad;
    exp_avg = moving_average(exp_avg, g, c.beta1, c.one_minus_beta1);
    exp_avg_diff = moving_average(exp_avg_diff, diff, c.beta2, c.one_minus_beta2);
    const T corrected = g + c.one_minus_beta2 * diff;
    exp_avg_sq = moving_average(exp_avg_sq, corrected * corrected, c.beta3, c.one_minus_beta3);
    prev_grad = g;
    const T numerator =
        exp_avg / c.bias_correction1 + c.one_minus_beta2 * (exp_avg_diff / c.bias_correction2);
    const T direction =
        numerator / (square_root(exp_avg_sq / c.bias_correction3 + c.eps_root) + c.eps);
    param = c.apply(param, direction);
  }
};

}  // namespace adamkern::math
