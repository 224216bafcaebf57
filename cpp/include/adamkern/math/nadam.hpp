// NAdam: Adam with Nesterov momentum (Dozat, "Incorporating Nesterov Momentum into Adam", 2016)
// with the momentum schedule mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay)), as
// torch.optim.NAdam (torch/optim/nadam.py, single-tensor path):
//   g = -g (maximize);  p = p * (1 - lr*wd) (decoupled) or g = g + wd * p (L2)
//   m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g^2
//   denom = sqrt(v / (1 - beta2^t)) + eps
//   p = p + (-lr * (1 - mu_t) / (1 - mu_product_t) * g) / denom
//   p = p + (-lr * mu_{t+1} / (1 - mu_product_t * mu_{t+1}) * m) / denom
// mu_product is torch's per-param state (the product of mu_1..mu_t), kept by the caller.
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.NAdam. State: exp_avg, exp_avg_sq (and the scalar mu_product, see nadam_step).
struct NadamOptions {
  double lr = 2e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double momentum_decay = 4e-3;
  bool decoupled_weight_decay = false;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct NadamCoefficients {
  L2Decay<T> l2;
  T decay_factor;
  Lerp<T> first_moment;
  T beta2;
  T one_minus_beta2;
  T bias_correction2;
  T eps;
  T grad_coefficient;
  T exp_avg_coefficient;
  Switch<T> maximize;
};

inline double nadam_momentum(double beta1, double momentum_decay, double step) {
  return beta1 * (1.0 - 0.5 * std::pow(0.96, step * momentum_decay));
}

struct Nadam : OneLoop<2> {
  using Options = NadamOptions;
  static constexpr const char* kName = "nadam";
  static constexpr const char* kClassName = "NAdam";
  static constexpr bool kTakesStep = true;
  static constexpr bool kTakesMuProduct = true;  // torch's state['mu_product'] (StepArgs)
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,          kBeta1<Options>,
      kBeta2<Options>,       kEps<Options>,
      kWeightDecay<Options>, {"momentum_decay", &Options::momentum_decay, Range::non_negative}};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"exp_avg", "exp_avgs", kSigned},
                                           {"exp_avg_sq", "exp_avg_sqs", kUnsigned}};

  template <class T>
  using Coefficients = NadamCoefficients<T>;

  // mu_product: mu_1 * ... * mu_step, this step's factor included.
  template <class T>
  static Coefficients<T> coefficients(const NadamOptions& o, double step, double mu_product) {
    const double mu = nadam_momentum(o.beta1, o.momentum_decay, step);
    const double mu_next = nadam_momentum(o.beta1, o.momentum_decay, step + 1.0);
    const double mu_product_next = mu_product * mu_next;
    const bool decoupled = o.decoupled_weight_decay;
    return {make_l2_decay<T>(decoupled ? 0.0 : o.weight_decay),
            static_cast<T>(decoupled ? 1.0 - o.lr * o.weight_decay : 1.0),
            make_lerp<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(1.0 - std::pow(o.beta2, step)),
            static_cast<T>(o.eps),
            static_cast<T>(-o.lr * (1.0 - mu) / (1.0 - mu_product)),
            static_cast<T>((-o.lr * mu_next) / (1.0 - mu_product_next)),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    T p = param * c.decay_factor;
    g = c.l2(g, param);
    exp_avg = c.first_moment(exp_avg, g);
    exp_avg_sq = fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    const T denom = square_root(exp_avg_sq / c.bias_correction2) + c.eps;
    p = p + (c.grad_coefficient * g) / denom;
    param = p + (c.exp_avg_coefficient * exp_avg) / denom;
  }
};

}  // namespace adamkern::math
