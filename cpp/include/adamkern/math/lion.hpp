// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023), as optax.lion
// (google-deepmind/optax, optax/_src/alias.py and transform.py scale_by_lion):
//   g = -g (maximize)
//   u = sign((1 - b1) * g + b1 * m)       (the old m)
//   m = (1 - b2) * g + b2 * m
//   p = p + (-lr) * (u + wd * p)          (optax's decoupled weight decay, default 1e-3)
#pragma once

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// optax.lion. State: exp_avg.
struct LionOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double weight_decay = 1e-3;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct LionCoefficients {
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  DecayedUpdate<T> apply;
  Switch<T> maximize;
};

struct Lion : OneLoop<1> {
  using Options = LionOptions;
  static constexpr const char* kName = "lion";
  static constexpr bool kTakesStep = false;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>, {"beta1", &Options::beta1, Range::unit_closed, "betas[0]"},
      {"beta2", &Options::beta2, Range::unit_closed, "betas[1]"}, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {
      {"exp_avg", "exp_avgs", kSigned}};

  template <class T>
  using Coefficients = LionCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const LionOptions& o) {
    return {static_cast<T>(o.beta1), static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2), static_cast<T>(1.0 - o.beta2),
            make_decayed_update<T>(o.lr, o.weight_decay), make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T&, T&, T&,
                                     const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    const T direction = sign_of(moving_average(exp_avg, g, c.beta1, c.one_minus_beta1));
    exp_avg = moving_average(exp_avg, g, c.beta2, c.one_minus_beta2);
    param = c.apply(param, direction);
  }
};

}  // namespace adamkern::math
