// Yogi (Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018), as
// optax.yogi (google-deepmind/optax, optax/_src/alias.py and transform.py scale_by_yogi):
//   g = -g (maximize)
//   m = (1 - b1) * g + b1 * m
//   v = -(1 - b2) * sign(v - g^2) * g^2 + v           (the old v inside the sign)
//   u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t) + eps_root) + eps)
//   p = p + (-lr) * (u + wd * p)                       (optax: no weight decay)
// optax initialises both m and v to initial_accumulator_value = 1e-6.
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

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

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct YogiCoefficients {
  T beta1;
  T one_minus_beta1;
  T neg_one_minus_beta2;
  T bias_correction1;
  T bias_correction2;
  T eps_root;
  T eps;
  DecayedUpdate<T> apply;
  Switch<T> maximize;
};

struct Yogi : OneLoop<2> {
  using Options = YogiOptions;
  static constexpr const char* kName = "yogi";
  static constexpr const char* kClassName = "Yogi";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>,      kBeta1<Options>,
                                                       kBeta2<Options>,   kEps<Options>,
                                                       kEpsRoot<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  // optax.yogi starts both moments at 1e-6 (its initial_accumulator_value)
  static constexpr StateBuffer kState[] = {
      {"exp_avg", "exp_avgs", kSigned, Needed::always, nullptr, "initial_accumulator_value", 1e-6},
      {"exp_avg_sq", "exp_avg_sqs", kUnsigned, Needed::always, nullptr, "initial_accumulator_value",
       1e-6}};

  template <class T>
  using Coefficients = YogiCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const YogiOptions& o, double step) {
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(-(1.0 - o.beta2)),
            static_cast<T>(1.0 - std::pow(o.beta1, step)),
            static_cast<T>(1.0 - std::pow(o.beta2, step)),
            static_cast<T>(o.eps_root),
            static_cast<T>(o.eps),
            make_decayed_update<T>(o.lr, o.weight_decay),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    exp_avg = moving_average(exp_avg, g, c.beta1, c.one_minus_beta1);
    const T grad_sq = g * g;
    exp_avg_sq = (c.neg_one_minus_beta2 * sign_of(exp_avg_sq - grad_sq)) * grad_sq + exp_avg_sq;
    const T direction = (exp_avg / c.bias_correction1) /
                        (square_root(exp_avg_sq / c.bias_correction2 + c.eps_root) + c.eps);
    param = c.apply(param, direction);
  }
};

}  // namespace adamkern::math
