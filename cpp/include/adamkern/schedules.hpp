// Learning-rate (and weight-decay, momentum) schedules: value(step) for step = 0, 1, 2, ...
//
//   auto lr = adamkern::schedules::warmup_cosine_decay(0.0, 1e-3, 100, 10000, 1e-5);
//   double value = lr->value(step);                  // one step
//   lr->values(steps, out, n);                       // many steps in one call
//
// The catalogue and its formulas follow their sources: torch.optim.lr_scheduler (StepLR,
// MultiStepLR, ExponentialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, OneCycleLR,
// CyclicLR, ReduceLROnPlateau), Keras (keras/src/optimizers/schedules/learning_rate_schedule.py)
// and optax (optax/schedules/_schedule.py, _join.py); each factory below names its source.
// Everything is computed in double. Factories validate their arguments and throw
// std::invalid_argument naming the bad one; value() throws for a negative step (and for a
// step past the end of a one-cycle schedule, as torch does).
//
// Extremes. Every schedule a factory accepts has a finite value at every step in [0, 2^63),
// computed in a time that does not depend on the step (no loop over cycles or epochs). The
// step enters the formulas as a double, so past 2^53 it is rounded first. A value whose exact
// magnitude is past the double range (a factor > 1 compounded over many steps, or a bounded
// schedule whose end, such as init * alpha, is past it) is returned as +-DBL_MAX, where IEEE's
// round-toward-zero puts it, never as inf or NaN; where only a step on the way overflows
// (0 * inf, the difference of two huge bounds of opposite signs, a tiny decay_steps) the value
// is computed another way and is the one the formula means. Ordinary arguments give the bits
// of the formulas as their sources write them. Arguments for which the source formula has no
// value at some step are rejected by the factory (each says which below).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace adamkern::schedules {

class Schedule {
 public:
  virtual ~Schedule() = default;
  // The value at `step` (>= 0).
  double value(std::int64_t step) const;
  // out[i] = value(steps[i]) for i < count: the same bits as value(), in one call. Every step
  // is checked before anything is written.
  void values(const std::int64_t* steps, double* out, std::size_t count) const;
  // Throws std::invalid_argument if value(step) would (a negative step, a step past the end).
  void check(std::int64_t step) const { check_step(step); }

 protected:
  virtual double at(std::int64_t step) const = 0;  // step already checked
  virtual void check_step(std::int64_t step) const;
};

using SchedulePtr = std::shared_ptr<const Schedule>;

SchedulePtr constant(double value);
// torch StepLR: init * gamma^(step // step_size).
SchedulePtr step_decay(double init_value, std::int64_t step_size, double gamma = 0.1);
// torch MultiStepLR: init * gamma^(number of milestones <= step), repeated milestones counted.
SchedulePtr multistep_decay(double init_value, std::vector<std::int64_t> milestones,
                            double gamma = 0.1);
// values[i] on [boundaries[i-1], boundaries[i]) (the boundary step takes the next value).
SchedulePtr piecewise_constant(std::vector<std::int64_t> boundaries, std::vector<double> values);
// Keras ExponentialDecay + optax exponential_decay: init * rate^((step - begin) / decay_steps)
// (floored with staircase), init before transition_begin; end_value bounds it (from below when
// rate < 1, from above otherwise). torch ExponentialLR(gamma) is decay_steps = 1. With
// rate > 1 and no end_value the value grows until it saturates at +-DBL_MAX.
SchedulePtr exponential_decay(double init_value, double decay_steps, double decay_rate,
                              bool staircase = false, std::int64_t transition_begin = 0,
                              std::optional<double> end_value = std::nullopt);
// Keras InverseTimeDecay: init / (1 + rate * step / decay_steps) (ratio floored with
// staircase). Keras 2's Adam(lr, decay=d) is inverse_time_decay(lr, 1, d).
SchedulePtr inverse_time_decay(double init_value, double decay_steps, double decay_rate,
                               bool staircase = false);
// Keras PolynomialDecay (cycle) + optax polynomial_schedule (transition_begin):
// (init - end) * (1 - t / decay_steps)^power + end with t = min(step - begin, decay_steps), or
// with cycle the decay_steps stretched to the next multiple of decay_steps past t. power >= 0
// (a negative power has no value where the base reaches 0).
SchedulePtr polynomial_decay(double init_value, double end_value, double decay_steps,
                             double power = 1.0, bool cycle = false,
                             std::int64_t transition_begin = 0);
// optax linear_schedule: polynomial_decay with power 1.
SchedulePtr linear(double init_value, double end_value, std::int64_t transition_steps,
                   std::int64_t transition_begin = 0);
// optax cosine_decay_schedule: init * ((1 - alpha) * (0.5 (1 + cos(pi t / D)))^exponent + alpha),
// t = min(step, D). torch CosineAnnealingLR's closed form with eta_min = alpha * init.
// exponent >= 0 (a negative exponent has no value at D, where the cosine is 0).
SchedulePtr cosine_decay(double init_value, double decay_steps, double alpha = 0.0,
                         double exponent = 1.0);
// Keras CosineDecayRestarts: cosine cycles of length first_decay_steps * t_mul^i, the i-th
// scaled by m_mul^i. torch CosineAnnealingWarmRestarts(T_0, T_mult, eta_min) is
// (init, T_0, T_mult, 1, eta_min / init). The cycle of a step is found in closed form and
// corrected by at most a few whole cycles; where cycles are shorter than the spacing of the
// doubles near the step (a tiny first_decay_steps, t_mul within ~1e-15 of 1 at huge steps)
// the position in the cycle is the exact remainder (t_mul = 1) or clamped to [0, 1], so the
// value stays between init * alpha and the cycle's peak init * m_mul^i.
SchedulePtr cosine_restarts(double init_value, double first_decay_steps, double t_mul = 2.0,
                            double m_mul = 1.0, double alpha = 0.0);
// Linear from init_value to schedule(0) over warmup_steps, then schedule(step - warmup_steps).
SchedulePtr warmup(SchedulePtr schedule, std::int64_t warmup_steps, double init_value = 0.0);
// optax warmup_cosine_decay_schedule: linear init -> peak over warmup_steps, then cosine down
// to end_value at decay_steps (which counts the warmup). optax's alpha = end_value /
// peak_value must be a finite double.
SchedulePtr warmup_cosine_decay(double init_value, double peak_value, std::int64_t warmup_steps,
                                std::int64_t decay_steps, double end_value = 0.0);

enum class Anneal { cos, linear };
enum class CyclicMode { triangular, triangular2, exp_range };

// torch OneCycleLR over steps 0..total_steps: lr from max/div_factor up to max_value, then
// down to max/div_factor/final_div_factor (with three_phase: back to the start first); both
// of those must be finite doubles.
struct OneCycleOptions {
  std::int64_t total_steps = 0;
  double max_value = 0.0;
  double pct_start = 0.3;
  Anneal anneal = Anneal::cos;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
};
SchedulePtr one_cycle(const OneCycleOptions& options);
// The momentum torch's OneCycleLR cycles against the lr (Adam: betas[0]).
SchedulePtr one_cycle_momentum(const OneCycleOptions& options);

// torch CyclicLR (step_size_down <= 0: the same as step_size_up). The cycle,
// step_size_up + step_size_down, must be a finite double.
SchedulePtr cyclic(double base_value, double max_value, double step_size_up = 2000.0,
                   double step_size_down = 0.0, CyclicMode mode = CyclicMode::triangular,
                   double gamma = 1.0);

// torch MultiplicativeLR with a constant factor: init * factor^step (torch multiplies
// recursively, k roundings: within 1e-13 relative of this after 1000 steps). factor > 1
// saturates at +-DBL_MAX.
SchedulePtr multiplicative(double init_value, double factor);
// torch MultiplicativeLR with one factor per step: value(0) = init,
// value(k) = value(k-1) * factors[k-1], multiplied in that order (the same bits as torch's
// recursion) while the products stay normal doubles; held at value(factors.size()) after the
// last factor.
SchedulePtr multiplicative(double init_value, std::vector<double> factors);

// The schedule advanced once per epoch: value(step) = schedule.value(step / steps_per_epoch),
// constant within each epoch of steps_per_epoch steps (epochs count from 0).
SchedulePtr per_epoch(SchedulePtr schedule, std::int64_t steps_per_epoch);

// optax join_schedules: schedules[i] from boundaries[i-1] on, called with step - boundary.
SchedulePtr join(std::vector<SchedulePtr> schedules, std::vector<std::int64_t> boundaries);

// torch ReduceLROnPlateau: stateful, fed one metric per evaluation.
class ReduceLROnPlateau {
 public:
  enum class Mode { min, max };
  enum class ThresholdMode { rel, abs };
  struct State {
    double lr;
    double best;
    std::int64_t num_bad_epochs;
    std::int64_t cooldown_counter;
    std::int64_t last_epoch;
  };

  ReduceLROnPlateau(double init_value, Mode mode = Mode::min, double factor = 0.1,
                    std::int64_t patience = 10, double threshold = 1e-4,
                    ThresholdMode threshold_mode = ThresholdMode::rel, std::int64_t cooldown = 0,
                    double min_lr = 0.0, double eps = 1e-8);
  // Records one metric; returns the (possibly reduced) lr.
  double update(double metric);
  double lr() const { return state_.lr; }
  const State& state() const { return state_; }
  void set_state(const State& state);

 private:
  bool is_better(double metric) const;

  Mode mode_;
  double factor_, threshold_;
  ThresholdMode threshold_mode_;
  std::int64_t patience_, cooldown_;
  double min_lr_, eps_;
  State state_;
};

}  // namespace adamkern::schedules
