// Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
// ICML 2018) as torch 2.13's torch.optim.Adafactor runs it (torch/optim/_adafactor.py,
// _single_tensor_adafactor), for a param of shape [..., R, C] (or a vector of n elements):
//
//   rho_t   = min(lr, 1 / step^0.5)                           (Python doubles)
//   alpha   = max(eps2, ||p||_2 / numel^0.5) * rho_t          (||p|| before weight decay)
//   beta_t  = step^beta2_decay                                (one minus beta2 at this step)
//   p       = p * (1 - lr * wd)                               (if wd != 0)
//   matrix: row_var = lerp(row_var, ||g_row||^2 / C, beta_t)  (sqrt, then square, then divide)
//           col_var = lerp(col_var, ||g_col||^2 / R, beta_t)
//           v       = (row_var * col_var) / max(mean(row_var), eps1)
//           u       = g / sqrt(max(v, eps1^2))                (see factored_update)
//   vector: variance = lerp(variance, g * g, beta_t)
//           u       = g / sqrt(max(variance, eps1^2))         (rsqrt as torch's: 1 / sqrt)
//   denom   = max(1, ||u||_2 / (numel^0.5 * d))
//   p       = p + (-alpha / denom) * u                        (one fma: add with alpha)
//
// g is -grad when maximizing; eps1 defaults to the machine epsilon of the param's dtype. Every
// scalar is computed in double as torch's Python code computes it and rounded once to T where
// torch passes it to a tensor op. The reductions are done by the driver (src/adafactor.cpp);
// this header holds the per-element math every pass and every ISA shares.
#pragma once

#include <cmath>
#include <cstdint>

#include "adamkern/config.hpp"
#include "adamkern/math/common.hpp"

namespace adamkern::math {

// The per-tensor scalars of one step, computed once in double (adafactor_scalars).
struct AdafactorScalars {
  double rho;          // min(lr, 1 / step^0.5)
  double beta;         // step^beta2_decay
  double decay;        // 1 - lr * weight_decay (applied only when weight_decay != 0)
  double eps1;         // clamp of mean(row_var)
  double eps1_square;  // clamp of the variance estimate, eps1 * eps1 in double
};

inline AdafactorScalars adafactor_scalars(double lr, double beta2_decay, double weight_decay,
                                          double eps1, double step) {
  AdafactorScalars s;
  s.rho = std::fmin(lr, 1.0 / std::pow(step, 0.5));
  s.beta = std::pow(step, beta2_decay);
  s.decay = 1.0 - lr * weight_decay;
  s.eps1 = eps1;
  s.eps1_square = eps1 * eps1;
  return s;
}

// The norm of a sum of squares as torch's norm(...).item() gives it: rounded to T.
template <class T>
ADAMKERN_HOST_DEVICE inline double norm_of(double sum_of_squares) {
  return static_cast<double>(static_cast<T>(std::sqrt(sum_of_squares)));
}

// alpha of the step from the param's norm (a T rounded to double, as tensor.item() gives).
ADAMKERN_HOST_DEVICE inline double adafactor_alpha(double param_norm, std::int64_t numel,
                                                   double eps2, double rho) {
  return std::fmax(eps2, param_norm / std::pow(static_cast<double>(numel), 0.5)) * rho;
}

// The step's scale -alpha / denom from the update's norm.
ADAMKERN_HOST_DEVICE inline double adafactor_scale(double update_norm, std::int64_t numel, double d,
                                                   double alpha) {
  const double denom =
      std::fmax(1.0, update_norm / (std::pow(static_cast<double>(numel), 0.5) * d));
  return -alpha / denom;
}

// The scale of the step from the sums of squares of the params (before weight decay) and of
// the update, with the per-tensor scalars (adafactor_scalars), rounded to T.
template <class T>
ADAMKERN_HOST_DEVICE inline T adafactor_step_scale(double param_sum, double update_sum,
                                                   std::int64_t numel, double eps2, double rho,
                                                   double d) {
  const double alpha = adafactor_alpha(norm_of<T>(param_sum), numel, eps2, rho);
  return static_cast<T>(adafactor_scale(norm_of<T>(update_sum), numel, d, alpha));
}

// The per-element values of a pass, rounded to T.
template <class T>
struct AdafactorElement {
  T eps1_square;
  T inv_eps1;  // 1 / sqrt(eps1_square) in T, as torch's rsqrt of a clamped estimate gives it
  T decay;     // 1 - lr * weight_decay: exactly 1 without weight decay
  Switch<T> maximize;  // negate the grad (applied as the sign of the scale, see adafactor_apply)
  T scale;             // -alpha / denom (the last pass only)
};

// The per-element values of a step before its scale is known (scale 0).
template <class T>
AdafactorElement<T> adafactor_element(const AdafactorScalars& s, bool maximize) {
  AdafactorElement<T> e{};
  e.eps1_square = static_cast<T>(s.eps1_square);
  e.inv_eps1 = T(1) / square_root(e.eps1_square);
  e.decay = static_cast<T>(s.decay);
  e.maximize = make_switch<T>(maximize);
  e.scale = T(0);
  return e;
}

// torch.clamp(x, min=lo): NaN stays NaN.
template <class T>
ADAMKERN_HD T clamp_below(T x, T lo) {
  return x < lo ? lo : x;
}

// torch's norm(dim).square_().div_(n): the sum of squares (accumulated in double), its square
// root rounded to T, squared and divided by n in T.
template <class T>
ADAMKERN_HD T mean_square_from_sum(double sum_of_squares, T n) {
  const T norm = static_cast<T>(square_root(sum_of_squares));
  return norm * norm / n;
}

// A factored tensor's 1 / sqrt(v) = 1 / sqrt(row * col / row_mean) is split into a factor per
// row, sqrt(row_mean / row), and one per column, 1 / sqrt(col), each computed in double and
// rounded once to T; an element's update is then two products and a clamp, where torch spends a
// division, a square root and a reciprocal on every element. Against torch's rounding of
// row * col, of the quotient, of the square root and of the reciprocal this differs by a few
// ULP of u (the params by far less: u enters them times the step's scale), except where torch's
// row * col underflows or overflows T and this is the exact value. Zeros, infinities and NaN
// give torch's results: 0 * inf is NaN where torch's inf * 0 is, and a zero row or column gives
// the clamp's 1 / eps1.
template <class T>
ADAMKERN_HD T adafactor_row_factor(T row, T row_mean) {
  return static_cast<T>(square_root(static_cast<double>(row_mean) / static_cast<double>(row)));
}

template <class T>
ADAMKERN_HD T adafactor_col_factor(T col) {
  return static_cast<T>(1.0 / square_root(static_cast<double>(col)));
}

// The updates below are of the grad as given: with maximize, torch's update of -grad is exactly
// the negation of this one, so its sign goes on the scale (adafactor_apply) and the sum of
// squares needs none.

// u = grad * min(row_factor * col_factor, 1 / eps1): torch's clamp of v below by eps1^2 is a
// clamp of 1 / sqrt(v) above by 1 / eps1. NaN stays NaN.
template <class T>
ADAMKERN_HD T factored_update(T row_factor, T col_factor, T grad, const AdafactorElement<T>& e) {
  const T factor = row_factor * col_factor;
  return (e.inv_eps1 < factor ? e.inv_eps1 : factor) * grad;
}

// u = grad / sqrt(max(v, eps1^2)), as torch computes it: rsqrt as 1 / sqrt, then times grad.
template <class T>
ADAMKERN_HD T adafactor_update(T variance, T grad, const AdafactorElement<T>& e) {
  return (T(1) / square_root(clamp_below(variance, e.eps1_square))) * grad;
}

// p * (1 - lr*wd) (a product with exactly 1 without weight decay), then p + scale * u as one fma,
// the scale negated when maximizing: fma(-u, s, p) and fma(u, -s, p) round alike.
template <class T>
ADAMKERN_HD T adafactor_apply(T param, T update, const AdafactorElement<T>& e) {
  return fused_mul_add(update, oriented(e.scale, e.maximize), param * e.decay);
}

}  // namespace adamkern::math
