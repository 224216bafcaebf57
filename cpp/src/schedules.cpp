// The schedules of schedules.hpp. Formulas as their sources write them (see the header).
#include "adamkern/schedules.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <utility>

namespace adamkern::schedules {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

void require(bool ok, const char* name, const char* expected, double value) {
  if (!ok) {
    throw std::invalid_argument(std::string(name) + " must be " + expected + ", got " +
                                format_number(value));
  }
}

void require_finite(double value, const char* name) {
  require(std::isfinite(value), name, "a finite number", value);
}

void require_positive(double value, const char* name) {
  require(std::isfinite(value) && value > 0.0, name, "a finite number > 0", value);
}

void require_increasing(const std::vector<std::int64_t>& steps, const char* name) {
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i] < 0 || (i > 0 && steps[i] <= steps[i - 1])) {
      throw std::invalid_argument(std::string(name) +
                                  " must be non-negative and strictly increasing, got " +
                                  std::to_string(steps[i]) + " at index " + std::to_string(i));
    }
  }
}

// A schedule given by a function of the step.
template <class Fn>
class Formula final : public Schedule {
 public:
  explicit Formula(Fn fn) : fn_(std::move(fn)) {}

 protected:
  double at(std::int64_t step) const override { return fn_(step); }

 private:
  Fn fn_;
};

template <class Fn>
SchedulePtr formula(Fn fn) {
  return std::make_shared<const Formula<Fn>>(std::move(fn));
}

// torch OneCycleLR's phases: (end step, start value, end value) for the lr or the momentum.
struct Phase {
  double end_step;
  double start, end;
};

double anneal(Anneal kind, double start, double end, double pct) {
  if (kind == Anneal::cos) return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0);
  return (end - start) * pct + start;
}

class OneCycle final : public Schedule {
 public:
  OneCycle(const OneCycleOptions& o, bool momentum) : options_(o) {
    require(o.total_steps > 0, "total_steps", "> 0", static_cast<double>(o.total_steps));
    require_positive(o.max_value, "max_value");
    require(o.pct_start >= 0.0 && o.pct_start <= 1.0, "pct_start", "in [0, 1]", o.pct_start);
    require_positive(o.div_factor, "div_factor");
    require_positive(o.final_div_factor, "final_div_factor");
    require_finite(o.base_momentum, "base_momentum");
    require_finite(o.max_momentum, "max_momentum");
    const double initial = o.max_value / o.div_factor;
    const double minimum = initial / o.final_div_factor;
    const double total = static_cast<double>(o.total_steps);
    const double lo = o.base_momentum, hi = o.max_momentum;
    if (o.three_phase) {
      phases_ = {{o.pct_start * total - 1.0, momentum ? hi : initial, momentum ? lo : o.max_value},
                 {2.0 * o.pct_start * total - 2.0, momentum ? lo : o.max_value,
                  momentum ? hi : initial},
                 {total - 1.0, momentum ? hi : initial, momentum ? hi : minimum}};
    } else {
      phases_ = {{o.pct_start * total - 1.0, momentum ? hi : initial, momentum ? lo : o.max_value},
                 {total - 1.0, momentum ? lo : o.max_value, momentum ? hi : minimum}};
    }
    // Every phase needs a positive length, or torch divides by zero in it.
    double start = 0.0;
    for (const Phase& phase : phases_) {
      if (!(phase.end_step > start)) {
        throw std::invalid_argument(
            "pct_start * total_steps leaves a phase of one-cycle without steps (pct_start " +
            format_number(o.pct_start) + ", total_steps " + std::to_string(o.total_steps) +
            "); torch would divide by zero there");
      }
      start = phase.end_step;
    }
  }

 protected:
  void check_step(std::int64_t step) const override {
    Schedule::check_step(step);
    if (step > options_.total_steps) {
      throw std::invalid_argument("step " + std::to_string(step) +
                                  " is past total_steps = " +
                                  std::to_string(options_.total_steps) + " of one_cycle");
    }
  }

  double at(std::int64_t step) const override {
    const double k = static_cast<double>(step);
    double start = 0.0;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
      const Phase& phase = phases_[i];
      if (k <= phase.end_step || i + 1 == phases_.size()) {
        const double pct = (k - start) / (phase.end_step - start);
        return anneal(options_.anneal, phase.start, phase.end, pct);
      }
      start = phase.end_step;
    }
    return phases_.back().end;  // not reached
  }

 private:
  OneCycleOptions options_;
  std::vector<Phase> phases_;
};

// value(k) for k <= factors.size() as a table of running products, held after the last.
class Products final : public Schedule {
 public:
  Products(double init_value, const std::vector<double>& factors) {
    values_.reserve(factors.size() + 1);
    values_.push_back(init_value);
    for (double factor : factors) values_.push_back(values_.back() * factor);
  }

 protected:
  double at(std::int64_t step) const override {
    const auto last = static_cast<std::int64_t>(values_.size()) - 1;
    return values_[static_cast<std::size_t>(std::min(step, last))];
  }

 private:
  std::vector<double> values_;
};

class PerEpoch final : public Schedule {
 public:
  PerEpoch(SchedulePtr schedule, std::int64_t steps_per_epoch)
      : schedule_(std::move(schedule)), steps_per_epoch_(steps_per_epoch) {}

 protected:
  void check_step(std::int64_t step) const override {
    Schedule::check_step(step);
    schedule_->check(step / steps_per_epoch_);
  }
  double at(std::int64_t step) const override {
    return schedule_->value(step / steps_per_epoch_);
  }

 private:
  SchedulePtr schedule_;
  std::int64_t steps_per_epoch_;
};

}  // namespace

void Schedule::check_step(std::int64_t step) const {
  if (step < 0) {
    throw std::invalid_argument("step must be >= 0 (steps count from 0), got " +
                                std::to_string(step));
  }
}

double Schedule::value(std::int64_t step) const {
  check_step(step);
  return at(step);
}

void Schedule::values(const std::int64_t* steps, double* out, std::size_t count) const {
  for (std::size_t i = 0; i < count; ++i) check_step(steps[i]);
  for (std::size_t i = 0; i < count; ++i) out[i] = at(steps[i]);
}

SchedulePtr constant(double value) {
  require_finite(value, "value");
  return formula([value](std::int64_t) { return value; });
}

SchedulePtr step_decay(double init_value, std::int64_t step_size, double gamma) {
  require_finite(init_value, "init_value");
  require(step_size > 0, "step_size", "> 0", static_cast<double>(step_size));
  require_finite(gamma, "gamma");
  return formula([=](std::int64_t step) {
    return init_value * std::pow(gamma, static_cast<double>(step / step_size));
  });
}

SchedulePtr multistep_decay(double init_value, std::vector<std::int64_t> milestones,
                            double gamma) {
  require_finite(init_value, "init_value");
  require_finite(gamma, "gamma");
  for (std::size_t i = 0; i < milestones.size(); ++i) {
    if (milestones[i] < 0) {
      throw std::invalid_argument("milestones must be >= 0, got " +
                                  std::to_string(milestones[i]) + " at index " +
                                  std::to_string(i));
    }
  }
  std::sort(milestones.begin(), milestones.end());
  return formula([=](std::int64_t step) {
    const auto passed = std::upper_bound(milestones.begin(), milestones.end(), step) -
                        milestones.begin();
    return init_value * std::pow(gamma, static_cast<double>(passed));
  });
}

SchedulePtr piecewise_constant(std::vector<std::int64_t> boundaries, std::vector<double> values) {
  if (values.size() != boundaries.size() + 1) {
    throw std::invalid_argument("values must have one more entry than boundaries, got " +
                                std::to_string(values.size()) + " values and " +
                                std::to_string(boundaries.size()) + " boundaries");
  }
  require_increasing(boundaries, "boundaries");
  for (double v : values) require_finite(v, "values");
  return formula([=](std::int64_t step) {
    return values[std::upper_bound(boundaries.begin(), boundaries.end(), step) -
                  boundaries.begin()];
  });
}

SchedulePtr exponential_decay(double init_value, double decay_steps, double decay_rate,
                              bool staircase, std::int64_t transition_begin,
                              std::optional<double> end_value) {
  require_finite(init_value, "init_value");
  require_positive(decay_steps, "decay_steps");
  require_positive(decay_rate, "decay_rate");
  require(transition_begin >= 0, "transition_begin", ">= 0",
          static_cast<double>(transition_begin));
  if (end_value) require_finite(*end_value, "end_value");
  return formula([=](std::int64_t step) {
    const std::int64_t elapsed = step - transition_begin;
    if (elapsed <= 0) return init_value;
    double exponent = static_cast<double>(elapsed) / decay_steps;
    if (staircase) exponent = std::floor(exponent);
    const double value = init_value * std::pow(decay_rate, exponent);
    if (!end_value) return value;
    return decay_rate < 1.0 ? std::max(value, *end_value) : std::min(value, *end_value);
  });
}

SchedulePtr inverse_time_decay(double init_value, double decay_steps, double decay_rate,
                               bool staircase) {
  require_finite(init_value, "init_value");
  require_positive(decay_steps, "decay_steps");
  require(std::isfinite(decay_rate) && decay_rate >= 0.0, "decay_rate", "a finite number >= 0",
          decay_rate);
  return formula([=](std::int64_t step) {
    double progress = static_cast<double>(step) / decay_steps;
    if (staircase) progress = std::floor(progress);
    return init_value / (1.0 + decay_rate * progress);
  });
}

SchedulePtr polynomial_decay(double init_value, double end_value, double decay_steps,
                             double power, bool cycle, std::int64_t transition_begin) {
  require_finite(init_value, "init_value");
  require_finite(end_value, "end_value");
  require_positive(decay_steps, "decay_steps");
  require_finite(power, "power");
  require(transition_begin >= 0, "transition_begin", ">= 0",
          static_cast<double>(transition_begin));
  return formula([=](std::int64_t step) {
    const double t = static_cast<double>(std::max<std::int64_t>(step - transition_begin, 0));
    double steps = decay_steps;
    double elapsed = std::min(t, decay_steps);
    if (cycle) {  // Keras: stretch decay_steps to the next multiple past t
      steps = decay_steps * (t == 0.0 ? 1.0 : std::ceil(t / decay_steps));
      elapsed = t;
    }
    return (init_value - end_value) * std::pow(1.0 - elapsed / steps, power) + end_value;
  });
}

SchedulePtr linear(double init_value, double end_value, std::int64_t transition_steps,
                   std::int64_t transition_begin) {
  require(transition_steps > 0, "transition_steps", "> 0", static_cast<double>(transition_steps));
  return polynomial_decay(init_value, end_value, static_cast<double>(transition_steps), 1.0,
                          false, transition_begin);
}

SchedulePtr cosine_decay(double init_value, double decay_steps, double alpha, double exponent) {
  require_finite(init_value, "init_value");
  require_positive(decay_steps, "decay_steps");
  require_finite(alpha, "alpha");
  require_finite(exponent, "exponent");
  return formula([=](std::int64_t step) {
    const double t = std::min(static_cast<double>(step), decay_steps);
    const double cosine = 0.5 * (1.0 + std::cos(kPi * t / decay_steps));
    return init_value * ((1.0 - alpha) * std::pow(cosine, exponent) + alpha);
  });
}

SchedulePtr cosine_restarts(double init_value, double first_decay_steps, double t_mul,
                            double m_mul, double alpha) {
  require_finite(init_value, "init_value");
  require_positive(first_decay_steps, "first_decay_steps");
  require(std::isfinite(t_mul) && t_mul >= 1.0, "t_mul", "a finite number >= 1", t_mul);
  require(std::isfinite(m_mul) && m_mul >= 0.0, "m_mul", "a finite number >= 0", m_mul);
  require_finite(alpha, "alpha");
  // Cycle i starts at first * (t_mul^i - 1) / (t_mul - 1) and lasts first * t_mul^i.
  const auto cycle_start = [=](double i) {
    return t_mul == 1.0 ? first_decay_steps * i
                        : first_decay_steps * (std::pow(t_mul, i) - 1.0) / (t_mul - 1.0);
  };
  return formula([=](std::int64_t step) {
    const double k = static_cast<double>(step);
    // Keras' closed form for the cycle index, then corrected by whole cycles: its float log
    // can land one cycle early at an exact restart (torch's closed form has that bug).
    double i = t_mul == 1.0
                   ? std::floor(k / first_decay_steps)
                   : std::floor(std::log(1.0 - k / first_decay_steps * (1.0 - t_mul)) /
                                std::log(t_mul));
    while (i > 0.0 && cycle_start(i) > k) i -= 1.0;
    while (cycle_start(i + 1.0) <= k) i += 1.0;
    const double fraction = (k - cycle_start(i)) / (first_decay_steps * std::pow(t_mul, i));
    const double cosine = 0.5 * std::pow(m_mul, i) * (1.0 + std::cos(kPi * fraction));
    return init_value * ((1.0 - alpha) * cosine + alpha);
  });
}

SchedulePtr warmup(SchedulePtr schedule, std::int64_t warmup_steps, double init_value) {
  if (!schedule) throw std::invalid_argument("schedule is null");
  require(warmup_steps >= 0, "warmup_steps", ">= 0", static_cast<double>(warmup_steps));
  require_finite(init_value, "init_value");
  const double target = schedule->value(0);
  return formula([=](std::int64_t step) {
    if (step >= warmup_steps) return schedule->value(step - warmup_steps);
    return init_value +
           (target - init_value) * static_cast<double>(step) / static_cast<double>(warmup_steps);
  });
}

SchedulePtr warmup_cosine_decay(double init_value, double peak_value, std::int64_t warmup_steps,
                                std::int64_t decay_steps, double end_value) {
  require_finite(peak_value, "peak_value");
  require_finite(end_value, "end_value");
  require(warmup_steps >= 0, "warmup_steps", ">= 0", static_cast<double>(warmup_steps));
  if (decay_steps <= warmup_steps) {
    throw std::invalid_argument("decay_steps must be > warmup_steps (it counts the warmup), got " +
                                std::to_string(decay_steps) + " and " +
                                std::to_string(warmup_steps));
  }
  const double alpha = peak_value == 0.0 ? 0.0 : end_value / peak_value;
  SchedulePtr decay =
      cosine_decay(peak_value, static_cast<double>(decay_steps - warmup_steps), alpha);
  if (warmup_steps == 0) return decay;
  return join({linear(init_value, peak_value, warmup_steps), decay}, {warmup_steps});
}

SchedulePtr one_cycle(const OneCycleOptions& options) {
  return std::make_shared<const OneCycle>(options, false);
}

SchedulePtr one_cycle_momentum(const OneCycleOptions& options) {
  return std::make_shared<const OneCycle>(options, true);
}

SchedulePtr cyclic(double base_value, double max_value, double step_size_up,
                   double step_size_down, CyclicMode mode, double gamma) {
  require_finite(base_value, "base_value");
  require_finite(max_value, "max_value");
  require_positive(step_size_up, "step_size_up");
  require(std::isfinite(step_size_down) && step_size_down >= 0.0, "step_size_down",
          "a finite number > 0 (or 0/None: the same as step_size_up)", step_size_down);
  require_positive(gamma, "gamma");
  const double down = step_size_down > 0.0 ? step_size_down : step_size_up;
  const double total = step_size_up + down;
  const double ratio = step_size_up / total;
  return formula([=](std::int64_t step) {
    const double k = static_cast<double>(step);
    const double cycle = std::floor(1.0 + k / total);
    const double x = 1.0 + k / total - cycle;
    const double scale_factor = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
    const double base_height = (max_value - base_value) * scale_factor;
    double scale = 1.0;
    if (mode == CyclicMode::triangular2) scale = 1.0 / std::pow(2.0, cycle - 1.0);
    if (mode == CyclicMode::exp_range) scale = std::pow(gamma, k);
    return base_value + base_height * scale;
  });
}

SchedulePtr multiplicative(double init_value, double factor) {
  require_finite(init_value, "init_value");
  require(std::isfinite(factor) && factor >= 0.0, "factor", "a finite number >= 0", factor);
  return formula([=](std::int64_t step) {
    return init_value * std::pow(factor, static_cast<double>(step));
  });
}

SchedulePtr multiplicative(double init_value, std::vector<double> factors) {
  require_finite(init_value, "init_value");
  for (std::size_t i = 0; i < factors.size(); ++i) {
    if (!(std::isfinite(factors[i]) && factors[i] >= 0.0)) {
      throw std::invalid_argument("factors must be finite numbers >= 0, got " +
                                  format_number(factors[i]) + " at index " + std::to_string(i));
    }
  }
  return std::make_shared<const Products>(init_value, factors);
}

SchedulePtr per_epoch(SchedulePtr schedule, std::int64_t steps_per_epoch) {
  if (!schedule) throw std::invalid_argument("schedule must not be null");
  require(steps_per_epoch > 0, "steps_per_epoch", "> 0", static_cast<double>(steps_per_epoch));
  return std::make_shared<const PerEpoch>(std::move(schedule), steps_per_epoch);
}

SchedulePtr join(std::vector<SchedulePtr> schedules, std::vector<std::int64_t> boundaries) {
  if (schedules.empty()) throw std::invalid_argument("schedules must not be empty");
  for (const SchedulePtr& s : schedules) {
    if (!s) throw std::invalid_argument("schedules must not contain null");
  }
  if (boundaries.size() + 1 != schedules.size()) {
    throw std::invalid_argument("boundaries must have one entry fewer than schedules, got " +
                                std::to_string(boundaries.size()) + " boundaries and " +
                                std::to_string(schedules.size()) + " schedules");
  }
  require_increasing(boundaries, "boundaries");
  return formula([=](std::int64_t step) {
    const auto i = static_cast<std::size_t>(
        std::upper_bound(boundaries.begin(), boundaries.end(), step) - boundaries.begin());
    return schedules[i]->value(i == 0 ? step : step - boundaries[i - 1]);
  });
}

ReduceLROnPlateau::ReduceLROnPlateau(double init_value, Mode mode, double factor,
                                     std::int64_t patience, double threshold,
                                     ThresholdMode threshold_mode, std::int64_t cooldown,
                                     double min_lr, double eps)
    : mode_(mode),
      factor_(factor),
      threshold_(threshold),
      threshold_mode_(threshold_mode),
      patience_(patience),
      cooldown_(cooldown),
      min_lr_(min_lr),
      eps_(eps),
      state_{init_value,
             mode == Mode::min ? std::numeric_limits<double>::infinity()
                               : -std::numeric_limits<double>::infinity(),
             0, 0, 0} {
  require_finite(init_value, "init_value");
  require(factor >= 0.0 && factor < 1.0, "factor", "in [0, 1)", factor);
  require(patience >= 0, "patience", ">= 0", static_cast<double>(patience));
  require(std::isfinite(threshold) && threshold >= 0.0, "threshold", "a finite number >= 0",
          threshold);
  require(cooldown >= 0, "cooldown", ">= 0", static_cast<double>(cooldown));
  require(std::isfinite(min_lr) && min_lr >= 0.0, "min_lr", "a finite number >= 0", min_lr);
  require(std::isfinite(eps) && eps >= 0.0, "eps", "a finite number >= 0", eps);
}

bool ReduceLROnPlateau::is_better(double metric) const {
  const double best = state_.best;
  if (mode_ == Mode::min) {
    return threshold_mode_ == ThresholdMode::rel ? metric < best * (1.0 - threshold_)
                                                 : metric < best - threshold_;
  }
  return threshold_mode_ == ThresholdMode::rel ? metric > best * (threshold_ + 1.0)
                                               : metric > best + threshold_;
}

double ReduceLROnPlateau::update(double metric) {
  state_.last_epoch += 1;
  if (is_better(metric)) {
    state_.best = metric;
    state_.num_bad_epochs = 0;
  } else {
    state_.num_bad_epochs += 1;
  }
  if (state_.cooldown_counter > 0) {
    state_.cooldown_counter -= 1;
    state_.num_bad_epochs = 0;
  }
  if (state_.num_bad_epochs > patience_) {
    const double reduced = std::max(state_.lr * factor_, min_lr_);
    if (state_.lr - reduced > eps_) state_.lr = reduced;
    state_.cooldown_counter = cooldown_;
    state_.num_bad_epochs = 0;
  }
  return state_.lr;
}

void ReduceLROnPlateau::set_state(const State& state) {
  require_finite(state.lr, "lr");
  require(state.num_bad_epochs >= 0, "num_bad_epochs", ">= 0",
          static_cast<double>(state.num_bad_epochs));
  require(state.cooldown_counter >= 0, "cooldown_counter", ">= 0",
          static_cast<double>(state.cooldown_counter));
  state_ = state;
}

}  // namespace adamkern::schedules
