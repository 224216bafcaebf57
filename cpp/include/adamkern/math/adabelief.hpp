// AdaBelief (Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
// Gradients", NeurIPS 2020), as optax.adabelief (google-deepmind/optax, optax/_src/alias.py and
// transform.py scale_by_belief):
//   g = -g (maximize)
//   m = (1 - b1) * g + b1 * m
//   s = (1 - b2) * (g - m)^2 + b2 * s + eps_root      (the new m; eps_root is kept in s)
//   u = (m / (1 - b1^t)) / (sqrt(s / (1 - b2^t)) + eps)
//   p = p + (-lr) * (u + wd * p)                       (optax: no weight decay by default)
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

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

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct AdabeliefCoefficients {
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T eps_root;
  T bias_correction1;
  T bias_correction2;
  T eps;
  DecayedUpdate<T> apply;
  Switch<T> maximize;
};

struct Adabelief : OneLoop<2> {
  using Options = AdabeliefOptions;
  static constexpr const char* kName = "adabelief";
  static constexpr const char* kClassName = "AdaBelief";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>,      kBeta1<Options>,
                                                       kBeta2<Options>,   kEps<Options>,
                                                       kEpsRoot<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_var", "exp_avg_vars", kUnsigned}};

  template <class T>
  using Coefficients = AdabeliefCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const AdabeliefOptions& o, double step) {
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(o.eps_root),
            static_cast<T>(1.0 - std::pow(o.beta1, step)),
            static_cast<T>(1.0 - std::pow(o.beta2, step)),
            static_cast<T>(o.eps),
            make_decayed_update<T>(o.lr, o.weight_decay),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_var, T&, T&,
                                 const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    exp_avg = moving_average(exp_avg, g, c.beta1, c.one_minus_beta1);
    const T prediction_error = g - exp_avg;
    exp_avg_var = moving_average(exp_avg_var, prediction_error * prediction_error, c.beta2,
                                 c.one_minus_beta2) +
                  c.eps_root;
    const T direction =
        (exp_avg / c.bias_correction1) / (square_root(exp_avg_var / c.bias_correction2) + c.eps);
    param = c.apply(param, direction);
  }
};

}  // namespace adamkern::math
