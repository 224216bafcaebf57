// SGD with momentum, dampening and Nesterov momentum (Sutskever et al., ICML 2013), as
// torch.optim.SGD; the order of operations is torch 2.13's CPU fused kernel
// (aten/src/ATen/native/cpu/FusedSGDKernel.cpp), so the result is bitwise identical to
// SGD(fused=True) (see adam.hpp for the remainder quirk, here in the momentum buffer, where
// torch's scalar remainder loop contracts b = fma(b, momentum, g * (1 - dampening))):
//   g = -g (maximize);  g = fma(p, wd, g) (L2)
//   or p = fma(p, -lr*wd, p) (decoupled_weight_decay: Keras' and optimi's p -= lr*wd*p)
//   momentum != 0:  b = g on the first step, else b = fma(g, 1 - dampening, b * momentum)
//                   g = fma(b, momentum, g) (nesterov) or g = b
//   p = fma(g, -lr, p)
#pragma once

#include "adamkern/kernels.hpp"
#include "adamkern/math/common.hpp"
#include "adamkern/math/describe.hpp"

namespace adamkern {

// torch.optim.SGD. State: momentum_buffer (momentum != 0).
struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // p -= lr * wd * p before the update (not g += wd*p)
  bool nesterov = false;
  bool maximize = false;
};

}  // namespace adamkern

namespace adamkern::math {

template <class T>
struct SgdCoefficients {
  WeightDecayTerms<T> decay;  // L2, or decoupled (decoupled_weight_decay)
  T momentum;
  T one_minus_dampening;
  T neg_lr;
  Switch<T> nesterov;
  Switch<T> maximize;
};

struct Sgd {
  using Options = SgdOptions;
  static constexpr const char* kName = "sgd";
  static constexpr const char* kClassName = "SGD";
  static constexpr bool kTakesStep = false;
  static constexpr bool kTakesFirstStep = true;  // the call says is_first_step (StepArgs)
  static constexpr NumberOption<Options> kNumbers[] = {
      kLr<Options>,
      {"momentum", &Options::momentum, Range::non_negative},
      {"dampening", &Options::dampening, Range::finite},
      kWeightDecay<Options>};
  static constexpr FlagOption<Options> kFlags[] = {
      {"nesterov", &Options::nesterov}, kDecoupledWeightDecay<Options>, kMaximize<Options>};
  static constexpr StateBuffer kState[] = {
      {"momentum_buffer", "momentum_buffers", kSigned, Needed::nonzero, "momentum"}};

  template <class T>
  using Coefficients = SgdCoefficients<T>;
  // variant 0: no momentum, 1: momentum (first step: the buffer is only written), 2: momentum
  static constexpr int kVariants = 3;
  static constexpr bool kTorchRemainder = true;
  static constexpr int variant(const SgdOptions& o, const StepValues& v) {
    return o.momentum != 0.0 ? (v.is_first_step ? 1 : 2) : 0;
  }
  // torch's rule beside the ranges: null when the options are consistent
  static constexpr const char* inconsistency(const SgdOptions& o) {
    return o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0)
               ? "nesterov=True needs momentum > 0 and dampening = 0"
               : nullptr;
  }
  // state: momentum_buffer
  static constexpr unsigned reads(int variant) { return variant == 2 ? 0b1u : 0u; }
  static constexpr unsigned writes(int variant) { return variant >= 1 ? 0b1u : 0u; }

  template <class T>
  static Coefficients<T> coefficients(const SgdOptions& o) {
    return {make_weight_decay<T>(o.lr, o.weight_decay, o.decoupled_weight_decay),
            static_cast<T>(o.momentum),
            static_cast<T>(1.0 - o.dampening),
            static_cast<T>(-o.lr),
            make_switch<T>(o.nesterov),
            make_switch<T>(o.maximize)};
  }

  template <class T, int kVariant, bool kRemainder>
  static ADAMKERN_HD void update(T& param, T grad, T& momentum_buffer, T&, T&, T&,
                                 const Coefficients<T>& c) {
    T g = oriented(grad, c.maximize);
    g = c.decay.l2(g, param);
    param = c.decay.decoupled(param);
    if constexpr (kVariant >= 1) {
      if constexpr (kVariant == 1) {
        momentum_buffer = g;
      } else {
        momentum_buffer =
            kRemainder ? fused_mul_add(momentum_buffer, c.momentum, g * c.one_minus_dampening)
                       : fused_mul_add(g, c.one_minus_dampening, momentum_buffer * c.momentum);
      }
      g = choose(c.nesterov, fused_mul_add(momentum_buffer, c.momentum, g), momentum_buffer);
    }
    param = fused_mul_add(g, c.neg_lr, param);
  }
};

}  // namespace adamkern::math
