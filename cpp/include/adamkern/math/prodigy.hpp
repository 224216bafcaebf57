// Prodigy (Mishchenko and Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
// ICML 2024), as its authors' prodigyopt 1.1 (github.com/konstmish/prodigy, prodigyopt/
// prodigy.py, Prodigy.step): Adam whose step size is d * lr, with d estimated on the fly from
// the distance travelled since the initial params p0. Per call (one param group), with
// k the group's step counter (0 at the first call) and d, d_max, d_numerator the group's
// scalars from the call before:
//   bias_correction = use_bias_correction ? (1 - b2^(k+1))^0.5 / (1 - b1^(k+1)) : 1
//   dlr = d * lr * bias_correction
// pass 1, every element (torch's float roundings: add with alpha and addcmul are fmas):
//   g = -g                                  (maximize; prodigyopt has no such option)
//   g = fma(p, wd, g)                       (L2 weight decay unless decouple)
//   dot += g * (p0 - p)                     (p0 - p rounded to T, the product in double)
//   m = fma(g, d*(1-b1), m*b1)              (exp_avg.mul_(b1).add_(g, alpha=d*(1-b1)))
//   v = fma((d*d*(1-b2))*g, g, v*b2)        (exp_avg_sq.mul_(b2).addcmul_(g, g, value=...))
//   s = fma(g, alpha_s, s*b3)               (alpha_s = (d/d0)*dlr, or (d/d0)*d with
//                                            safeguard_warmup; b3 = sqrt(b2) unless given)
//   abs_sum += |s|
// between the passes (double, as the package's Python floats):
//   d_numerator = d_numerator * b3 + sum over tensors, in order, of (d/d0)*dlr * dot_tensor
//   d_denom = sum over tensors of abs_sum_tensor;  if d_denom == 0 the call ends here
//   d_hat = d_coef * d_numerator / d_denom
//   if d == d0: d = max(d, d_hat)
//   d_max = max(d_max, d_hat);  d = min(d_max, d * growth_rate);  k = k + 1
// pass 2, every element, with the new d but the dlr of the call's start:
//   p = fma(p, -wd*dlr, p)                  (decouple: p.add_(p, alpha=-wd*dlr))
//   p = p + ((-dlr) * m) / (sqrt(v) + d*eps) (p.addcdiv_(exp_avg, denom, value=-dlr))
// The sums are reduced in double in fixed chunks and lanes (partition.hpp, kernels_isa.cpp),
// so d is the same bits for any thread count and ISA; prodigyopt's torch.dot and sum reduce in
// float32 in an order of torch's choosing, so d agrees with it to a relative 1e-6 or so
// (tests/test_prodigy.py), not bitwise.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// prodigyopt.Prodigy (1.1). State: exp_avg, exp_avg_sq, s, p0 (the initial params); and the
// group's scalars (ProdigyScalars).
struct ProdigyOptions {
  double lr = 1.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double beta3 = std::numeric_limits<double>::quiet_NaN();  // NaN: sqrt(beta2) (beta3=None)
  double eps = 1e-8;
  double weight_decay = 0.0;
  double d0 = 1e-6;
  double d_coef = 1.0;
  double growth_rate = std::numeric_limits<double>::infinity();  // d grows without limit
  bool decouple = true;
  bool use_bias_correction = false;
  bool safeguard_warmup = false;
  bool maximize = false;
};

// The scalars prodigyopt keeps per param group, in the order of the float64 array a call
// reads and updates (StepArgs::group_scalars): d, d_max, d_numerator and k are read; all six
// are written after a step that moved the params (d_denom and d_hat are outputs only).
enum ProdigyScalar : int { kD, kDMax, kDNumerator, kK, kDDenom, kDHat, kProdigyScalars };

}  // namespace adamkern

namespace adamkern::math {

// The per-call values of a step, in double, from the options and the scalars before it.
struct ProdigyStep {
  double beta3;
  double d;
  double dlr;
  double numerator_coefficient;  // (d / d0) * dlr: each tensor's dot is scaled by it
};

inline double prodigy_beta3(const ProdigyOptions& o) {
  return std::isnan(o.beta3) ? std::sqrt(o.beta2) : o.beta3;
}

inline ProdigyStep prodigy_step(const ProdigyOptions& o, double d, double k) {
  const double bias_correction =
      o.use_bias_correction
          ? std::pow(1.0 - std::pow(o.beta2, k + 1.0), 0.5) / (1.0 - std::pow(o.beta1, k + 1.0))
          : 1.0;
  const double dlr = d * o.lr * bias_correction;
  return {prodigy_beta3(o), d, dlr, (d / o.d0) * dlr};
}

// Between the passes (the CPU and the CUDA step): the group's scalars after a step, from each
// tensor's sums of g * (p0 - p) and |s| (sums[i][0], sums[i][1]) added in tensor order, as
// prodigyopt adds them. Returns false, the scalars unchanged, when every s is 0: prodigyopt
// returns before its update then.
inline bool prodigy_advance(const ProdigyOptions& o, const ProdigyStep& step,
                            const std::array<double, 2>* sums, std::size_t count, double* scalars) {
  double numerator = scalars[kDNumerator] * step.beta3;
  double denom = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    numerator += step.numerator_coefficient * sums[i][0];
    denom += sums[i][1];
  }
  if (denom == 0.0) return false;
  double d = scalars[kD];
  double d_max = scalars[kDMax];
  const double d_hat = o.d_coef * numerator / denom;
  if (d == o.d0) d = std::max(d, d_hat);
  d_max = std::max(d_max, d_hat);
  d = std::min(d_max, d * o.growth_rate);
  scalars[kD] = d;
  scalars[kDMax] = d_max;
  scalars[kDNumerator] = numerator;
  scalars[kK] += 1.0;
  scalars[kDDenom] = denom;
  scalars[kDHat] = d_hat;
  return true;
}

template <class T>
struct ProdigyCoefficients {
  L2Decay<T> l2;  // unless decouple
  T beta1;
  T exp_avg_alpha;  // d * (1 - beta1)
  T beta2;
  T exp_avg_sq_value;  // d * d * (1 - beta2)
  T beta3;
  T s_alpha;  // (d / d0) * dlr, or (d / d0) * d with safeguard_warmup
  Switch<T> maximize;
  // pass 2
  Switch<T> decouples;     // decouple and wd != 0
  T neg_weight_decay_dlr;  // -wd * dlr
  T neg_dlr;
  T d_eps;  // new d * eps
};

// Prodigy's options; its two passes are ProdigyMoments and ProdigyApply.
struct Prodigy {
  using Options = ProdigyOptions;
  static constexpr const char* kName = "prodigy";
  static constexpr const char* kClassName = "Prodigy";
  static constexpr bool kTakesStep = false;  // k is among the group's scalars
  static constexpr bool kTakesGroupScalars = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      kBeta1<Options>,
      kBeta2<Options>,
      {"beta3", &Options::beta3, Range::unit_open_or_unset},
      kEps<Options>,
      kWeightDecay<Options>,
      {"d0", &Options::d0, Range::positive},
      {"d_coef", &Options::d_coef, Range::positive},
      {"growth_rate", &Options::growth_rate, Range::positive_or_inf}};
  static constexpr FlagOption<Options> kFlags[] = {
      {"decouple", &Options::decouple},
      {"use_bias_correction", &Options::use_bias_correction},
      {"safeguard_warmup", &Options::safeguard_warmup},
      kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned},
                                           {"s", "s", kSigned},
                                           {"p0", "p0", kSigned}};
};

struct ProdigyMoments {
  static constexpr int kVariants = 1;
  static constexpr unsigned reads(int) { return 0b1111u; }
  static constexpr unsigned writes(int) { return 0b0111u; }  // p0 is only read
  template <class T>
  using Coefficients = ProdigyCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const ProdigyOptions& o, const ProdigyStep& step) {
    ProdigyCoefficients<T> c{};
    c.l2 = make_l2_decay<T>(o.decouple ? 0.0 : o.weight_decay);
    c.beta1 = static_cast<T>(o.beta1);
    c.exp_avg_alpha = static_cast<T>(step.d * (1.0 - o.beta1));
    c.beta2 = static_cast<T>(o.beta2);
    c.exp_avg_sq_value = static_cast<T>(step.d * step.d * (1.0 - o.beta2));
    c.beta3 = static_cast<T>(step.beta3);
    c.s_alpha = static_cast<T>((step.d / o.d0) * (o.safeguard_warmup ? step.d : step.dlr));
    c.maximize = make_switch<T>(o.maximize);
    c.decouples = make_switch<T>(o.decouple && o.weight_decay != 0.0);
    c.neg_weight_decay_dlr = static_cast<T>(-o.weight_decay * step.dlr);
    c.neg_dlr = static_cast<T>(-step.dlr);
    c.d_eps = T(0);  // set for pass 2 by ProdigyApply::with_new_d
    return c;
  }

  // Updates exp_avg, exp_avg_sq and s; returns this element's terms of the dot product
  // g . (p0 - p) and of sum |s| (param is read, not written).
  template <class T, int kVariant>
  static ADAMKERN_HD MeasuredTerms measure(T param, T grad, T& exp_avg, T& exp_avg_sq, T& s, T& p0,
                                           const Coefficients<T>& c) {
    const T g = c.l2(oriented(grad, c.maximize), param);
    const T travelled = p0 - param;
    exp_avg = fused_mul_add(g, c.exp_avg_alpha, exp_avg * c.beta1);
    exp_avg_sq = fused_mul_add(c.exp_avg_sq_value * g, g, exp_avg_sq * c.beta2);
    s = fused_mul_add(g, c.s_alpha, s * c.beta3);
    return {static_cast<double>(g) * static_cast<double>(travelled),
            static_cast<double>(absolute(s))};
  }
};

struct ProdigyApply {
  template <class T>
  using Coefficients = ProdigyCoefficients<T>;
  static constexpr int kVariants = 1;
  static constexpr bool kTorchRemainder = false;
  static constexpr bool kReadsGrad = false;  // the moments are done: no grad stream
  static constexpr unsigned reads(int) { return 0b11u; }
  static constexpr unsigned writes(int) { return 0u; }

  template <class T>
  static Coefficients<T> with_new_d(Coefficients<T> c, const ProdigyOptions& o, double d) {
    c.d_eps = static_cast<T>(d * o.eps);
    return c;
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    const T denom = square_root(exp_avg_sq) + c.d_eps;
    const T p = choose(c.decouples, fused_mul_add(param, c.neg_weight_decay_dlr, param), param);
    param = p + (c.neg_dlr * exp_avg) / denom;
  }
};

}  // namespace adamkern::math
