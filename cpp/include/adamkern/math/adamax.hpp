// Adamax: Adam with the infinity norm (Kingma & Ba 2015, section 7.1), as torch.optim.Adamax
// (torch/optim/adamax.py, single-tensor path). eps sits inside the max, as in torch:
//   g = -g (maximize);  g = g + wd * p (L2)
//   or p = fma(p, -lr*wd, p) (decoupled_weight_decay: Keras' and optimi's p -= lr*wd*p)
//   m = lerp(m, g, 1 - beta1)
//   u = max(beta2 * u, |g| + eps)
//   p = p + (-lr / (1 - beta1^step) * m) / u
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.Adamax. State: exp_avg, exp_inf.
struct AdamaxOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p -= lr * wd * p before the update (not g += wd*p)
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct AdamaxCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (decoupled_weight_decay)
  Lerp<T> first_moment;
  T beta2;
  T eps;
  T neg_step_size;
  Switch<T> maximize;
};

struct Adamax : OneLoop<2> {
  using Options = AdamaxOptions;
  static constexpr const char* kName = "adamax";
  static constexpr const char* kClassName = "Adamax";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>, kBeta1<Options>, kBeta2<Options>, kEps<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_inf", "exp_infs", kUnsigned}};

  template <class T>
  using Coefficients = AdamaxCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const AdamaxOptions& o, double step) {
    return {make_weight_decay<T>(o.lr, o.weight_decay, o.decoupled_weight_decay),
            make_lerp<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(o.eps),
            static_cast<T>(-(o.lr / (1.0 - std::pow(o.beta1, step)))),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_inf, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    g = c.decay.l2(g, param);
    param = c.decay.decoupled(param);
    exp_avg = c.first_moment(exp_avg, g);
    exp_inf = nan_maximum(exp_inf * c.beta2, absolute(g) + c.eps);
    param = param + (c.neg_step_size * exp_avg) / exp_inf;
  }
};

}  // namespace adamkern::math
