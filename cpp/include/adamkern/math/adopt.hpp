// ADOPT (Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the Optimal
// Rate", NeurIPS 2024), as the authors' torch-adopt 0.1.0 (github.com/iShohei220/adopt,
// adopt/adopt.py, _single_tensor_adopt: the path ADOPT takes on CPU). Its step counter s is
// taken before the increment (0 on the first call): s = step - 1 here. torch's float ops as
// its AVX2/AVX-512 kernels round them (add with alpha is an fma, addcmul is
// fma(value*t1, t2, self), lerp is torch's two-sided lerp, see common.hpp):
//   g = -g                                  (maximize)
//   g = fma(p, wd, g)                       (L2 weight decay: grad.add(param, alpha=wd))
//   step 1 (s = 0), and nothing else:
//     v = fma(g, g, v)                      (exp_avg_sq.addcmul_(grad, grad))
//   every later step:
//     p = fma(p, -lr*wd, p)                 (decoupled: param.add_(param, alpha=-lr*wd))
//     n = g / max(sqrt(v), eps)             (v before this step's gradient: ADOPT's point)
//     n = clamp(n, -c, c), c = s^(1/4)      (clip: torch-adopt's default clip_lambda)
//     m = lerp(m, n, 1 - beta1)
//     p = fma(m, -lr, p)                    (param.add_(exp_avg, alpha=-lr))
//     v = fma((1-beta2)*g, g, v*beta2)      (exp_avg_sq.mul_(beta2).addcmul_(g, g, 1-beta2))
// The square root is correctly rounded. torch's CPU sqrt on x86 builds is not: it is MKL's
// vsSqrt/vdSqrt in high-accuracy mode (aten/src/ATen/cpu/vml.h), within 1 ULP; on torch 2.13.0
// about 1 float32 result in 6 differs. So the results are bitwise torch-adopt's with its sqrt
// replaced by a correctly rounded one, and within a few ULP of torch-adopt as it runs
// (tests/test_adopt.py), where torch runs its AVX2 or AVX-512 kernels (its scalar "default"
// kernels round add and addcmul without an fma).
//
// cautious (Liang et al. 2024; C-Optim's c_adamw.py rule on ADOPT's first moment, see
// CautiousMask in common.hpp), from step 2: p = fma(m * mask, -lr, p), the mask where
// m * g <= 0 (m the new first moment, g the gradient after L2) and 1 / max(agreeing / n, 1e-3)
// elsewhere. Step 1 moves nothing, so it has no mask.
#pragma once

#include <cmath>
#include <limits>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch-adopt's ADOPT. State: exp_avg, exp_avg_sq.
struct AdoptOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.9999;
  double eps = 1e-6;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // torch-adopt's decouple
  bool clip = true;                     // clip_lambda = step**0.25; false: clip_lambda=None
  bool maximize = false;
  bool cautious = false;
};

}  // namespace adamkern

namespace adamkern::math {

// Per-call scalars: computed once in double and rounded once to T, as torch does.
template <class T>
struct AdoptCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (torch-adopt skips the term at wd = 0)
  T eps;
  T clip;                // (step - 1)^(1/4); inf without clip (clamping nothing)
  Lerp<T> first_moment;  // m = lerp(m, n, 1 - beta1)
  T neg_lr;
  T beta2;
  T one_minus_beta2;
  Switch<T> maximize;
  CautiousMask<T> cautious;  // per tensor (the cautious variant)
};

struct Adopt {
  using Options = AdoptOptions;
  static constexpr const char* kName = "adopt";
  static constexpr const char* kClassName = "ADOPT";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>, kBeta1<Options>, kBeta2<Options>, kEps<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   {"clip", &Options::clip},
                                                   kMaximize<Options>,
                                                   {"cautious", &Options::cautious}};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};

  template <class T>
  using Coefficients = AdoptCoefficients<T>;
  // variant 0: step 1 (the second moment starts from g^2, no update), 1: later steps,
  // 2: later steps, cautious. Step 1 also reads exp_avg and stores it back unchanged, so that
  // every step checks (overlap) and touches the same buffers.
  static constexpr int kVariants = 3;
  static constexpr int kCautiousVariants = 1;
  static constexpr unsigned kCautiousReads = 0b11u;
  static constexpr CautiousRescale kCautiousRescale = CautiousRescale::mean;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const AdoptOptions& o, const StepValues& v) {
    return v.step == 1.0 ? 0 : o.cautious ? 2 : 1;
  }
  // state: exp_avg, exp_avg_sq
  static constexpr unsigned reads(int) { return 0b11u; }
  static constexpr unsigned writes(int) { return 0b11u; }

  template <class T>
  static Coefficients<T> coefficients(const AdoptOptions& o, double step) {
    AdoptCoefficients<T> c{};
    c.decay = make_weight_decay<T>(o.lr, o.weight_decay, o.decoupled_weight_decay);
    c.eps = static_cast<T>(o.eps);
    c.clip =
        o.clip ? static_cast<T>(std::pow(step - 1.0, 0.25)) : std::numeric_limits<T>::infinity();
    c.first_moment = make_lerp<T>(1.0 - o.beta1);
    c.neg_lr = static_cast<T>(-o.lr);
    c.beta2 = static_cast<T>(o.beta2);
    c.one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    c.maximize = make_switch<T>(o.maximize);
    return c;
  }

  // torch.clamp(x, -bound, bound): NaN passes through.
  template <class T>
  static ADAMKERN_HD T clamped(T x, T bound) {
    const T above = x < -bound ? -bound : x;
    return above > bound ? bound : above;
  }

  // The new first moment (from step 2).
  template <class T>
  static ADAMKERN_HD T first_moment(T g, T exp_avg, T exp_avg_sq, const Coefficients<T>& c) {
    const T denom = nan_maximum(square_root(exp_avg_sq), c.eps);
    return c.first_moment(exp_avg, clamped(g / denom, c.clip));
  }

  // Whether this component of a cautious update is kept (its new m agrees with g).
  template <class T, int kVariant>
  static ADAMKERN_HD bool agrees(T param, T grad, T exp_avg, T exp_avg_sq,
                                 const Coefficients<T>& c) {
    const T g = c.decay.l2(oriented(grad, c.maximize), param);
    return CautiousMask<T>::agree(first_moment(g, exp_avg, exp_avg_sq, c), g);
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    const T g = c.decay.l2(oriented(grad, c.maximize), param);
    if constexpr (kVariant == 0) {
      exp_avg_sq = fused_mul_add(g, g, exp_avg_sq);
    } else {
      const T p = c.decay.decoupled(param);
      exp_avg = first_moment(g, exp_avg, exp_avg_sq, c);
      const T m = kVariant == 2 ? exp_avg * c.cautious(exp_avg, g) : exp_avg;
      param = fused_mul_add(m, c.neg_lr, p);
      exp_avg_sq = fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    }
  }
};

}  // namespace adamkern::math
