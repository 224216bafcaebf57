// RMSprop (Hinton, Coursera lecture 6e, 2012), centered variant from Graves, "Generating
// Sequences With Recurrent Neural Networks" (2013), as torch.optim.RMSprop
// (torch/optim/rmsprop.py, single-tensor path):
//   g = -g (maximize);  g = g + wd * p (L2)
//   or p = fma(p, -lr*wd, p) (decoupled_weight_decay: Keras' and optimi's p -= lr*wd*p)
//   s = alpha * s + (1 - alpha) * g^2
//   centered: a = lerp(a, g, 1 - alpha);  x = s - a^2     else x = s
//   avg = sqrt(x) + eps        (eps_inside_sqrt, Keras' rmsprop.py: avg = sqrt(x + eps))
//   momentum > 0: b = momentum * b + g / avg;  p = p - lr * b
//   else:         p = p - lr * g / avg
// The momentum buffer is torch's (lr applied outside it); Keras keeps lr inside, which is the
// same update while lr is constant.
#pragma once

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.RMSprop. State: square_avg, momentum_buffer (momentum > 0), grad_avg (centered).
// eps_inside_sqrt: Keras' form, sqrt(square_avg + eps) instead of sqrt(square_avg) + eps.
struct RmspropOptions {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p -= lr * wd * p before the update (not g += wd*p)
  double momentum = 0.0;
  bool centered = false;
  bool maximize = false;
  bool eps_inside_sqrt = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct RmspropCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (decoupled_weight_decay)
  T alpha;
  T one_minus_alpha;
  Lerp<T> grad_average;
  T eps_inside;   // Keras: sqrt(x + eps)
  T eps_outside;  // torch: sqrt(x) + eps
  T momentum;
  T neg_lr;
  Switch<T> maximize;
};

struct Rmsprop {
  using Options = RmspropOptions;
  static constexpr const char* kName = "rmsprop";
  static constexpr const char* kClassName = "RMSprop";
  static constexpr bool kTakesStep = false;
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      {"alpha", &Options::alpha, Range::unit_closed},
      kEps<Options>,
      kWeightDecay<Options>,
      {"momentum", &Options::momentum, Range::non_negative}};
  static constexpr FlagOption<Options> kFlags[] = {{"centered", &Options::centered},
                                                   kDecoupledWeightDecay<Options>,
                                                   kMaximize<Options>,
                                                   {"eps_inside_sqrt", &Options::eps_inside_sqrt}};
  static constexpr StateBuffer kState[] = {
      {"square_avg", "square_avgs", kUnsigned},
      {"momentum_buffer", "momentum_buffers", kSigned, Needed::positive, "momentum"},
      {"grad_avg", "grad_avgs", kSigned, Needed::flag, "centered"}};

  template <class T>
  using Coefficients = RmspropCoefficients<T>;
  // variant bit 0: momentum > 0, bit 1: centered
  static constexpr int kVariants = 4;
  static constexpr bool kTorchRemainder = false;
  static constexpr int variant(const RmspropOptions& o, const StepValues&) {
    const bool momentum = o.momentum > 0.0, centered = o.centered;
    return (momentum ? 1 : 0) + (centered ? 2 : 0);
  }
  // state: square_avg, momentum_buffer, grad_avg
  static constexpr unsigned reads(int variant) {
    return 0b001u | ((variant & 1) ? 0b010u : 0u) | ((variant & 2) ? 0b100u : 0u);
  }
  static constexpr unsigned writes(int variant) { return reads(variant); }

  template <class T>
  static Coefficients<T> coefficients(const RmspropOptions& o) {
    return {make_weight_decay<T>(o.lr, o.weight_decay, o.decoupled_weight_decay),
            static_cast<T>(o.alpha),
            static_cast<T>(1.0 - o.alpha),
            make_lerp<T>(1.0 - o.alpha),
            static_cast<T>(o.eps_inside_sqrt ? o.eps : 0.0),
            static_cast<T>(o.eps_inside_sqrt ? 0.0 : o.eps),
            static_cast<T>(o.momentum),
            static_cast<T>(-o.lr),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& square_avg, T& momentum_buffer, T& grad_avg,
                                 T&, const Coefficients<T>& c) {
    constexpr bool kMomentum = (kVariant & 1) != 0;
    constexpr bool kCentered = (kVariant & 2) != 0;
    T g = oriented(grad, c.maximize);
    g = c.decay.l2(g, param);
    param = c.decay.decoupled(param);
    square_avg = fused_mul_add(c.one_minus_alpha * g, g, square_avg * c.alpha);
    T second_moment = square_avg;
    if constexpr (kCentered) {
      grad_avg = c.grad_average(grad_avg, g);
      second_moment = fused_mul_add(-grad_avg, grad_avg, square_avg);
    }
    // One of the two eps is 0, and adding 0 changes nothing here.
    const T avg = square_root(second_moment + c.eps_inside) + c.eps_outside;
    if constexpr (kMomentum) {
      momentum_buffer = momentum_buffer * c.momentum + g / avg;
      param = fused_mul_add(momentum_buffer, c.neg_lr, param);
    } else {
      param = param + (c.neg_lr * g) / avg;
    }
  }
};

}  // namespace adamkern::math
