// Adagrad (Duchi, Hazan & Singer, JMLR 2011), as torch.optim.Adagrad; the order of operations
// is torch 2.13's CPU fused kernel (aten/src/ATen/native/cpu/FusedAdagradKernel.cpp), so the
// result is bitwise identical to Adagrad(fused=True):
//   g = -g (maximize);  g = fma(p, wd, g) (L2)
//   or p = fma(p, -clr*wd, p) (decoupled_weight_decay: Keras' and optimi's p -= lr*wd*p)
//   s = fma(g, g, s)
//   std = sqrt(s) + eps       (eps_inside_sqrt, Keras' adagrad.py: std = sqrt(s + eps))
//   p = p - (clr * g) / std,  clr = lr / fma(step - 1, lr_decay, 1)
// torch initialises s to initial_accumulator_value (default 0; Keras' default is 0.1).
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.Adagrad. State: state_sum (torch initialises it to initial_accumulator_value).
struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p -= clr * wd * p before the update (not g += wd*p)
  double eps = 1e-10;
  bool maximize = false;
  bool eps_inside_sqrt = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct AdagradCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (decoupled_weight_decay)
  T eps_inside;               // Keras: sqrt(s + eps)
  T eps_outside;              // torch: sqrt(s) + eps
  T clr;
  Switch<T> maximize;
};

struct Adagrad : OneLoop<1> {
  using Options = AdagradOptions;
  static constexpr const char* kName = "adagrad";
  static constexpr const char* kClassName = "Adagrad";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      {"lr_decay", &Options::lr_decay, Range::non_negative},
      kWeightDecay<Options>,
      kEps<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>,
                                                   {"eps_inside_sqrt", &Options::eps_inside_sqrt}};
  static constexpr StateBuffer kState[] = {
      {"sum", "state_sums", kUnsigned, Needed::always, nullptr, "initial_accumulator_value", 0.0}};

  template <class T>
  using Coefficients = AdagradCoefficients<T>;

  template <class T>
  static Coefficients<T> coefficients(const AdagradOptions& o, double step) {
    // torch's compiled code contracts 1 + (step - 1) * lr_decay into one fma
    const double clr = o.lr / std::fma(step - 1.0, o.lr_decay, 1.0);
    return {make_weight_decay<T>(clr, o.weight_decay, o.decoupled_weight_decay),
            static_cast<T>(o.eps_inside_sqrt ? o.eps : 0.0),
            static_cast<T>(o.eps_inside_sqrt ? 0.0 : o.eps), static_cast<T>(clr),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& state_sum, T&, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    g = c.decay.l2(g, param);
    param = c.decay.decoupled(param);
    state_sum = fused_mul_add(g, g, state_sum);
    // One of the two eps is 0, and adding 0 changes nothing here.
    const T std_dev = square_root(state_sum + c.eps_inside) + c.eps_outside;
    param = param - (c.clr * g) / std_dev;
  }
};

}  // namespace adamkern::math
