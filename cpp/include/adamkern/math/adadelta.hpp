// Adadelta (Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012), as
// torch.optim.Adadelta (torch/optim/adadelta.py, single-tensor path); eps sits inside both
// square roots:
//   g = -g (maximize);  g = g + wd * p (L2)
//   or p = fma(p, -lr*wd, p) (decoupled_weight_decay: Keras' and optimi's p -= lr*wd*p)
//   s = rho * s + (1 - rho) * g^2
//   delta = sqrt(d + eps) / sqrt(s + eps) * g
//   d = rho * d + (1 - rho) * delta^2
//   p = p - lr * delta
#pragma once

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.Adadelta. State: square_avg, acc_delta.
struct AdadeltaOptions {
  double lr = 1.0;
  double rho = 0.9;
  double eps = 1e-6;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p -= lr * wd * p before the update (not g += wd*p)
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct AdadeltaCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (decoupled_weight_decay)
  T rho;
  T one_minus_rho;
  T eps;
  T neg_lr;
  Switch<T> maximize;
};

struct Adadelta : OneLoop<2> {
  using Options = AdadeltaOptions;
  static constexpr const char* kName = "adadelta";
  static constexpr const char* kClassName = "Adadelta";
  static constexpr bool kTakesStep = false;
  static constexpr NumberOption<Options> kNumbers[] = {kLr<Options>,
                                                       {"rho", &Options::rho, Range::unit_closed},
                                                       kEps<Options>,
                                                       kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>};
  static constexpr StateBuffer kState[] = {{"square_avg", "square_avgs", kUnsigned},
                                           {"acc_delta", "acc_deltas", kUnsigned}};

  template <class T>
  using Coefficients = AdadeltaCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const AdadeltaOptions& o) {
    return {make_weight_decay<T>(o.lr, o.weight_decay, o.decoupled_weight_decay),
            static_cast<T>(o.rho),
            static_cast<T>(1.0 - o.rho),
            static_cast<T>(o.eps),
            static_cast<T>(-o.lr),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& square_avg, T& acc_delta, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    g = c.decay.l2(g, param);
    param = c.decay.decoupled(param);
    square_avg = fused_mul_add(c.one_minus_rho * g, g, square_avg * c.rho);
    const T std_dev = square_root(square_avg + c.eps);
    const T delta = (square_root(acc_delta + c.eps) / std_dev) * g;
    acc_delta = fused_mul_add(c.one_minus_rho * delta, delta, acc_delta * c.rho);
    param = fused_mul_add(delta, c.neg_lr, param);
  }
};

}  // namespace adamkern::math
