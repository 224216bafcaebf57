// LAMB (You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
// ICLR 2020), as optax.lamb (google-deepmind/optax, optax/_src/alias.py: scale_by_adam,
// add_decayed_weights, scale_by_trust_ratio, scale_by_learning_rate):
//   g = -g (maximize)
//   m = (1 - b1) * g + b1 * m;  v = (1 - b2) * g^2 + b2 * v
//   r = (m * 1/(1 - b1^t)) / (sqrt(v * 1/(1 - b2^t) + eps_root) + eps) + wd * p
//   ratio = ||p|| / ||r|| per tensor, 1 if either norm is 0
//   p = p + (-lr) * (r * ratio)
// The bias corrections are multiplications by reciprocals computed once per call (optax
// divides; this is within an ULP of it and keeps the two passes from being bound by the
// divider, since the direction is computed twice). It takes two passes: LambMoments updates m and v
// and sums p^2 and r^2 per tensor (a deterministic reduction, see partition.hpp); LambApply
// recomputes r from the new m and v, bit for bit the same, and updates p.
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

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

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct LambCoefficients {
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T inv_bias_correction1;  // 1 / (1 - b1^t)
  T inv_bias_correction2;  // 1 / (1 - b2^t)
  T eps_root;
  T eps;
  DecayedUpdate<T> apply;
  T trust_ratio;  // per tensor, set by LambApply::with_trust_ratio
  Switch<T> maximize;
};

template <class T>
ADAMKERN_HD T lamb_direction(T param, T exp_avg, T exp_avg_sq, const LambCoefficients<T>& c) {
  const T adam_direction = (exp_avg * c.inv_bias_correction1) /
                           (square_root(exp_avg_sq * c.inv_bias_correction2 + c.eps_root) + c.eps);
  return c.apply.direction(adam_direction, param);
}

// LAMB's options (its two passes are LambMoments and LambApply below).
struct Lamb {
  using Options = LambOptions;
  static constexpr const char* kName = "lamb";
  static constexpr const char* kClassName = "LAMB";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>,      kBeta1<Options>,
                                                       kBeta2<Options>,   kEps<Options>,
                                                       kEpsRoot<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};
};

struct LambMoments : OneLoop<2> {
  template <class T>
  using Coefficients = LambCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const LambOptions& o, double step) {
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(1.0 / (1.0 - std::pow(o.beta1, step))),
            static_cast<T>(1.0 / (1.0 - std::pow(o.beta2, step))),
            static_cast<T>(o.eps_root),
            static_cast<T>(o.eps),
            make_decayed_update<T>(o.lr, o.weight_decay),
            T(1),
            make_switch<T>(o.maximize)};
  }

  // Updates the moments; returns the direction r (param is read, not written).
  template <class T, int kVariant>
  static ADAMKERN_HD T measure(T param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                               const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    exp_avg = moving_average(exp_avg, g, c.beta1, c.one_minus_beta1);
    exp_avg_sq = moving_average(exp_avg_sq, g * g, c.beta2, c.one_minus_beta2);
    return lamb_direction(param, exp_avg, exp_avg_sq, c);
  }
};

struct LambApply {
  template <class T>
  using Coefficients = LambCoefficients<T>;
  static constexpr int kVariants = 1;
  static constexpr bool kTorchRemainder = false;
  static constexpr bool kReadsGrad = false;  // the moments are done: no grad stream
  static constexpr unsigned reads(int) { return 0b11u; }
  static constexpr unsigned writes(int) { return 0u; }

  // The tensor's coefficients once its norms are known (optax's scale_by_trust_ratio).
  template <class T>
  static ADAMKERN_HOST_DEVICE Coefficients<T> with_trust_ratio(Coefficients<T> c, double param_norm,
                                                               double direction_norm) {
    const T ratio = (param_norm == 0.0 || direction_norm == 0.0)
                        ? T(1)
                        : static_cast<T>(param_norm / direction_norm);
    c.trust_ratio = ratio;
    return c;
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    const T direction = lamb_direction(param, exp_avg, exp_avg_sq, c);
    param = param + c.apply.neg_lr * (direction * c.trust_ratio);
  }
};

}  // namespace adamkern::math
