// RAdam: Adam with the variance rectification of Liu et al., "On the Variance of the Adaptive
// Learning Rate and Beyond" (2020), as torch.optim.RAdam (torch/optim/radam.py, single-tensor):
//   g = -g (maximize);  p = p * (1 - lr*wd) (decoupled) or g = g + wd * p (L2)
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2
//   rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
//   r = m / (1 - beta1^t) * lr
//   if rho_t > 5:  r = r * (sqrt(1 - beta2^t) / (sqrt(v) + eps)) * rect_t,
//                  rect_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2)
//                  rho_t))
//   p = p - r
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.RAdam. State: exp_avg, exp_avg_sq.
struct RadamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct RadamCoefficients {
  L2Decay<T> l2;
  T decay_factor;
  Lerp<T> first_moment;
  T beta2;
  T one_minus_beta2;
  T bias_correction1;
  T lr;
  T bias_correction2_sqrt;
  T eps;
  T rectification;
  Switch<T> rectified;  // rho_t > 5
  Switch<T> maximize;
};

struct Radam : OneLoop<2> {
  using Options = RadamOptions;
  static constexpr const char* kName = "radam";
  static constexpr const char* kClassName = "RAdam";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>, kBeta1<Options>, kBeta2<Options>, kEps<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};

  template <class T>
  using Coefficients = RadamCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const RadamOptions& o, double step) {
    const double bias_correction2 = 1.0 - std::pow(o.beta2, step);
    const double rho_inf = 2.0 / (1.0 - o.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * step * std::pow(o.beta2, step) / bias_correction2;
    const bool rectified = rho_t > 5.0;
    const double rectification = rectified ? std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                                       ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                                           : 1.0;
    const bool decoupled = o.decoupled_weight_decay;
    return {make_l2_decay<T>(decoupled ? 0.0 : o.weight_decay),
            static_cast<T>(decoupled ? 1.0 - o.lr * o.weight_decay : 1.0),
            make_lerp<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(1.0 - std::pow(o.beta1, step)),
            static_cast<T>(o.lr),
            static_cast<T>(std::sqrt(bias_correction2)),
            static_cast<T>(o.eps),
            static_cast<T>(rectification),
            make_switch<T>(rectified),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    const T p = param * c.decay_factor;
    g = c.l2(g, param);
    exp_avg = c.first_moment(exp_avg, g);
    exp_avg_sq = fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    const T step = (exp_avg / c.bias_correction1) * c.lr;
    const T adaptive_lr = c.bias_correction2_sqrt / (square_root(exp_avg_sq) + c.eps);
    param = p - choose(c.rectified, (step * adaptive_lr) * c.rectification, step);
  }
};

}  // namespace adamkern::math
