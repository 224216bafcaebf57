// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023), as optax.lion
// (google-deepmind/optax, optax/_src/alias.py and transform.py scale_by_lion):
//   g = -g (maximize)
//   u = sign((1 - b1) * g + b1 * m)       (the old m)
//   m = (1 - b2) * g + b2 * m
//   p = p + (-lr) * (u + wd * p)          (optax's decoupled weight decay, default 1e-3)
// cautious (Liang et al. 2024, C-Optim's c_lion.py; see CautiousMask in common.hpp): u is
// masked where u * g <= 0 and scaled by n / (agreeing + 1) per tensor before the decay.
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
  bool cautious = false;
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
  CautiousMask<T> cautious;  // per tensor (the cautious variant)
};

struct Lion {
  using Options = LionOptions;
  static constexpr const char* kName = "lion";
  static constexpr const char* kClassName = "Lion";
  static constexpr bool kTakesStep = false;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      {"beta1", &Options::beta1, Range::unit_closed, "betas[0]"},
      {"beta2", &Options::beta2, Range::unit_closed, "betas[1]"},
      kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>,
                                                   {"cautious", &Options::cautious}};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned}};
  // variant 1: cautious
  static constexpr int kVariants = 2;
  static constexpr int kCautiousVariants = 1;
  static constexpr unsigned kCautiousReads = 0b1u;
  static constexpr CautiousRescale kCautiousRescale = CautiousRescale::count;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const LionOptions& o, const StepValues&) { return o.cautious; }
  static constexpr unsigned reads(int) { return 0b1u; }
  static constexpr unsigned writes(int) { return 0b1u; }

  template <class T>
  using Coefficients = LionCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const LionOptions& o) {
    return {static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            make_decayed_update<T>(o.lr, o.weight_decay),
            make_switch<T>(o.maximize),
            {}};
  }

  // The sign step u, before the cautious mask.
  template <class T>
  static ADAMKERN_HD T direction(T g, T exp_avg, const Coefficients<T>& c) {
    return sign_of(moving_average(exp_avg, g, c.beta1, c.one_minus_beta1));
  }

  // Whether this component of a cautious update is kept (u agrees with g).
  template <class T, int kVariant>
  static ADAMKERN_HD bool agrees(T, T grad, T exp_avg, T, const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    return CautiousMask<T>::agree(direction(g, exp_avg, c), g);
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T&, T&, T&,
                                 const Coefficients<T>& c) {
    const T g = oriented(grad, c.maximize);
    T u = direction(g, exp_avg, c);
    if constexpr (kVariant == 1) u = u * c.cautious(u, g);
    exp_avg = moving_average(exp_avg, g, c.beta2, c.one_minus_beta2);
    param = c.apply(param, u);
  }
};

}  // namespace adamkern::math
