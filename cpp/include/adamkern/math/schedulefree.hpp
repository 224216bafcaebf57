// Schedule-Free AdamW and SGD (Defazio et al., "The Road Less Scheduled", NeurIPS 2024), as the
// schedulefree package 1.4 (facebookresearch/schedule_free: AdamWScheduleFree.step and
// SGDScheduleFree.step, their single-tensor path; the foreach path makes the same roundings).
// The params are the sequence y; z is the state that starts as a copy of the param (on the call
// with is_first_step: z = p before anything else). Per call the caller gives the scheduled lr
// (lr times the warmup) and ckp1 = weight / weight_sum, the package's running average weight
// (adamkern.ops computes both, and the running lr_max and weight_sum, in double as the package
// does). torch's roundings (add/sub with alpha and lerp are fmas, see common.hpp):
//   AdamW:  v = fma((1 - b2) * g, g, v * b2)
//           n = g / (sqrt(v / (1 - b2^t)) + eps);  n = fma(y, wd, n) (wd != 0)
//   SGD:    n = fma(y, wd, g) (wd != 0)
//   both:   y = lerp(y, z, ckp1);  y = fma(n, lr * (b1 * (1 - ckp1) - 1), y);  z = fma(n, -lr, z)
// (SGD's momentum is AdamW's beta1 here.)
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// schedulefree.AdamWScheduleFree, one call. State: z, exp_avg_sq.
struct AdamwSchedulefreeOptions {
  double lr = 0.0025;  // this step's: the package's lr times its warmup
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double ckp1 = 1.0;  // weight / weight_sum of this step
  bool maximize = false;
};

// schedulefree.SGDScheduleFree, one call. State: z.
struct SgdSchedulefreeOptions {
  double lr = 1.0;  // this step's
  double momentum = 0.9;
  double weight_decay = 0.0;
  double ckp1 = 1.0;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

// The interpolation both share: y toward z, then along the normalised gradient n.
template <class T>
struct ScheduleFreeStep {
  Lerp<T> toward_z;  // lerp(y, z, ckp1)
  T y_rate;          // lr * (beta1 * (1 - ckp1) - 1)
  T neg_lr;
  L2Decay<T> decay;  // n + wd * y

  template <class Options>
  static ScheduleFreeStep make(const Options& o, double beta1) {
    return {make_lerp<T>(o.ckp1), static_cast<T>(o.lr * (beta1 * (1.0 - o.ckp1) - 1.0)),
            static_cast<T>(-o.lr), make_l2_decay<T>(o.weight_decay)};
  }
  ADAMKERN_HD void operator()(T& y, T& z, T n) const {
    n = decay(n, y);
    y = toward_z(y, z);
    y = fused_mul_add(n, y_rate, y);
    z = fused_mul_add(n, neg_lr, z);
  }
};

template <class T>
struct AdamwSchedulefreeCoefficients {
  T beta2;
  T one_minus_beta2;
  T bias_correction2;
  T eps;
  ScheduleFreeStep<T> step;
  Switch<T> maximize;
};

// variant 0: the first call (z starts as the param), 1: later calls
struct AdamwSchedulefree {
  using Options = AdamwSchedulefreeOptions;
  static constexpr const char* kName = "adamw_schedulefree";
  static constexpr const char* kClassName = "AdamWScheduleFree";
  static constexpr bool kTakesStep = true;
  static constexpr bool kTakesFirstStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,  kBeta1<Options>,       kBeta2<Options>,
      kEps<Options>, kWeightDecay<Options>, {"ckp1", &Options::ckp1, Range::unit_closed}};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"z", "zs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};

  template <class T>
  using Coefficients = AdamwSchedulefreeCoefficients<T>;
  static constexpr int kVariants = 2;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const Options&, const StepValues& v) {
    return v.is_first_step ? 0 : 1;
  }
  static constexpr unsigned reads(int variant) { return variant == 0 ? 0b10u : 0b11u; }
  static constexpr unsigned writes(int) { return 0b11u; }

  template <class T>
  static Coefficients<T> coefficients(const Options& o, double step) {
    return {static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(1.0 - std::pow(o.beta2, step)),
            static_cast<T>(o.eps),
            ScheduleFreeStep<T>::make(o, o.beta1),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& z, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    if constexpr (kVariant == 0) z = param;
    const T g = oriented(grad, c.maximize);
    exp_avg_sq = fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    const T denom = square_root(exp_avg_sq / c.bias_correction2) + c.eps;
    c.step(param, z, g / denom);
  }
};

template <class T>
struct SgdSchedulefreeCoefficients {
  ScheduleFreeStep<T> step;
  Switch<T> maximize;
};

struct SgdSchedulefree {
  using Options = SgdSchedulefreeOptions;
  static constexpr const char* kName = "sgd_schedulefree";
  static constexpr const char* kClassName = "SGDScheduleFree";
  static constexpr bool kTakesStep = false;
  static constexpr bool kTakesFirstStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      {"momentum", &Options::momentum, Range::unit_open},
      kWeightDecay<Options>,
      {"ckp1", &Options::ckp1, Range::unit_closed}};
  static constexpr FlagOption<Options> kFlags[] = {kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"z", "zs", kSigned}};

  template <class T>
  using Coefficients = SgdSchedulefreeCoefficients<T>;
  static constexpr int kVariants = 2;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const Options&, const StepValues& v) {
    return v.is_first_step ? 0 : 1;
  }
  // the package's rule beside the ranges
  static constexpr const char* inconsistency(const Options& o) {
    return o.momentum <= 0.0 ? "momentum must be in (0, 1) (schedulefree's range)" : nullptr;
  }
  static constexpr unsigned reads(int variant) { return variant == 0 ? 0u : 0b1u; }
  static constexpr unsigned writes(int) { return 0b1u; }

  template <class T>
  static Coefficients<T> coefficients(const Options& o) {
    return {ScheduleFreeStep<T>::make(o, o.momentum), make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& z, T&, T&, T&, const Coefficients<T>& c) {
    if constexpr (kVariant == 0) z = param;
    c.step(param, z, oriented(grad, c.maximize));
  }
};

}  // namespace adamkern::math
