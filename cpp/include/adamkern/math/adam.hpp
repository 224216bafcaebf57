// Adam / AdamW per-element update, written once for every CPU ISA, the scalar tail and CUDA.
//
// Source: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (2015); AdamW's decoupled
// decay from Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019); AMSGrad from
// Reddi et al., "On the Convergence of Adam and Beyond" (2018). The order of operations follows
// torch 2.13's CPU fused kernel (aten/src/ATen/native/cpu/FusedAdamKernel.cpp), which is what
// makes the results bitwise identical to torch.optim.Adam(fused=True):
//   g  = -g                                  (maximize)
//   g  = fma(p, wd, g)                       (L2 weight decay, Adam)
//   p  = p * fma(-lr, wd, 1)                 (decoupled weight decay, AdamW)
//   m  = lerp(m, g, 1-beta1)                 (torch's two-sided lerp, see common.hpp)
//   v  = fma((1-beta2)*g, g, v*beta2)
//   vm = max(vm, v)                          (AMSGrad; v below means vm then)
//   p  = p + (-lr/bc1 * m) / (sqrt(v) / sqrt(bc2) + eps)
// One quirk is reproduced on purpose: torch's compiled remainder loop (the last n % 8 float or
// n % 4 double elements of a tensor, observed on torch 2.13.0 x86-64 builds) contracts the
// second moment the other way round, v = fma(v, beta2, ((1-beta2)*g)*g). The driver runs
// those elements with kRemainder so that every bit of every element matches.
//
// epsilon_hat (Keras' Adam, keras/src/optimizers/adam.py, the paper's "epsilon hat"): eps is
// added to sqrt(v) before bias correction, p -= lr*sqrt(bc2)/bc1 * m / (sqrt(v) + eps). It is
// the same loop with sqrt(bc2) moved into the step size.
//
// cautious (Liang et al. 2024, C-Optim's c_adamw.py; see CautiousMask in common.hpp): the
// update's first moment is masked where m * g <= 0 (m the new first moment, g the gradient
// the moments see) and scaled by 1 / max(agreeing / n, 1e-3) per tensor:
//   p  = p + (-lr/bc1 * (m * mask)) / (sqrt(v) / sqrt(bc2) + eps)
#pragma once

#include <cmath>

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.Adam / AdamW. State: exp_avg, exp_avg_sq, max_exp_avg_sq (amsgrad only).
// epsilon_hat: Keras' form, p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // true: AdamW
  bool amsgrad = false;
  bool maximize = false;
  bool epsilon_hat = false;
  bool cautious = false;
};

}  // namespace adamkern

namespace adamkern::math {

enum class WeightDecay : int { none = 0, l2 = 1, decoupled = 2 };

// Per-call scalars: computed once in double and rounded once to T, as torch does
// (kByReciprocal: how sqrt(v) / sqrt(1 - beta2^step) is divided, see math::divide).
template <class T, bool kByReciprocal = true>
struct AdamCoefficients {
  T weight_decay;        // L2: g += wd * p
  T decay_factor;        // decoupled: p *= 1 - lr * wd
  Lerp<T> first_moment;  // m = lerp(m, g, 1 - beta1)
  T beta2;
  T one_minus_beta2;
  Divisor<T, kByReciprocal> bias_correction2_sqrt;  // sqrt(1 - beta2^step), 1 with epsilon_hat
  T eps;
  T neg_step_size;  // -lr / (1 - beta1^step), times sqrt(1 - beta2^step) with epsilon_hat
  Switch<T> maximize;
  CautiousMask<T> cautious;  // per tensor (cautious variants)
};

struct Adam {
  using Options = AdamOptions;
  static constexpr const char* kName = "adam";
  static constexpr const char* kClassName = "Adam";
  static constexpr bool kTakesStep = true;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>, kBeta1<Options>, kBeta2<Options>, kEps<Options>, kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {kDecoupledWeightDecay<Options>,
                                                   {"amsgrad", &Options::amsgrad},
                                                   kMaximize<Options>,
                                                   {"epsilon_hat", &Options::epsilon_hat},
                                                   {"cautious", &Options::cautious}};
  static constexpr StateBuffer kState[] = {
      {"exp_avg", "exp_avgs", kSigned},
      {"exp_avg_sq", "exp_avg_sqs", kUnsigned},
      {"max_exp_avg_sq", "max_exp_avg_sqs", kUnsigned, Needed::flag, "amsgrad"}};

  template <class T>
  using Coefficients = AdamCoefficients<T>;
  template <class T>  // the same, divided by the divider (math::divide)
  using DividedCoefficients = AdamCoefficients<T, false>;
  // variant = weight decay mode + 3 * amsgrad + 6 * cautious
  static constexpr int kVariants = 12;
  static constexpr int kCautiousVariants = 6;
  static constexpr unsigned kCautiousReads = 0b001u;  // exp_avg
  static constexpr CautiousRescale kCautiousRescale = CautiousRescale::mean;
  static constexpr bool kTorchRemainder = true;  // see above
  static constexpr int variant(const AdamOptions& o, const StepValues&) {
    const WeightDecay decay = o.weight_decay == 0.0      ? WeightDecay::none
                              : o.decoupled_weight_decay ? WeightDecay::decoupled
                                                         : WeightDecay::l2;
    return static_cast<int>(decay) + 3 * (o.amsgrad ? 1 : 0) + 6 * (o.cautious ? 1 : 0);
  }
  // state: exp_avg, exp_avg_sq, max_exp_avg_sq
  static constexpr unsigned reads(int variant) { return variant % 6 >= 3 ? 0b111u : 0b011u; }
  static constexpr unsigned writes(int variant) { return reads(variant); }

  template <class T>
  static ADAMKERN_HOST_DEVICE Coefficients<T> coefficients(const AdamOptions& o, double step) {
    const double bias_correction1 = 1.0 - std::pow(o.beta1, step);
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, step));
    AdamCoefficients<T> c{};
    c.weight_decay = static_cast<T>(o.weight_decay);
    // torch's compiled code contracts 1 - lr*wd into one fma; rounding it the same way
    // matters when lr*wd is large.
    c.decay_factor =
        static_cast<T>(std::fma(-o.lr, o.decoupled_weight_decay ? o.weight_decay : 0.0, 1.0));
    c.first_moment = make_lerp<T>(1.0 - o.beta1);
    c.beta2 = static_cast<T>(o.beta2);
    c.one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    c.bias_correction2_sqrt =
        make_divisor(o.epsilon_hat ? T(1) : static_cast<T>(bias_correction2_sqrt));
    c.eps = static_cast<T>(o.eps);
    c.neg_step_size =
        static_cast<T>(o.epsilon_hat ? -(o.lr * bias_correction2_sqrt / bias_correction1)
                                     : -(o.lr / bias_correction1));
    c.maximize = make_switch<T>(o.maximize);
    return c;
  }

  // The gradient the moments see.
  template <class T, int kVariant, class C>
  static ADAMKERN_HD T gradient(T grad, T param, const C& c) {
    const T g = oriented(grad, c.maximize);
    if constexpr (static_cast<WeightDecay>(kVariant % 3) == WeightDecay::l2) {
      return fused_mul_add(param, c.weight_decay, g);
    }
    return g;
  }

  // Whether this component of a cautious update is kept (its new m agrees with g).
  template <class T, int kVariant>
  static ADAMKERN_HD bool agrees(T param, T grad, T exp_avg, T, const Coefficients<T>& c) {
    const T g = gradient<T, kVariant>(grad, param, c);
    return CautiousMask<T>::agree(c.first_moment(exp_avg, g), g);
  }

  template <class T, int kVariant, bool kRemainder, class C>
  static ADAMKERN_HD void update(T& param, T grad, T& exp_avg, T& exp_avg_sq, T& max_exp_avg_sq, T&,
                                 const C& c) {
    constexpr auto kDecay = static_cast<WeightDecay>(kVariant % 3);
    constexpr bool kAmsgrad = kVariant % 6 >= 3;
    constexpr bool kCautious = kVariant >= 6;

    const T g = gradient<T, kVariant>(grad, param, c);
    T p = param;
    if constexpr (kDecay == WeightDecay::decoupled) p = p * c.decay_factor;

    exp_avg = c.first_moment(exp_avg, g);
    exp_avg_sq = kRemainder ? fused_mul_add(exp_avg_sq, c.beta2, (c.one_minus_beta2 * g) * g)
                            : fused_mul_add(c.one_minus_beta2 * g, g, exp_avg_sq * c.beta2);
    T second_moment = exp_avg_sq;
    if constexpr (kAmsgrad) {
      second_moment = nan_maximum(max_exp_avg_sq, second_moment);
      max_exp_avg_sq = second_moment;
    }
    const T denom = divide(square_root(second_moment), c.bias_correction2_sqrt) + c.eps;
    const T first_moment = kCautious ? exp_avg * c.cautious(exp_avg, g) : exp_avg;
    param = p + (c.neg_step_size * first_moment) / denom;
  }
};

}  // namespace adamkern::math
