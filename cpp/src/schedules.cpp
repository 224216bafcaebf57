// The schedules of schedules.hpp. Formulas as their sources write them (see the header).
#include "adamkern/schedules.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "require.hpp"

namespace adamkern::schedules {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kLargest = std::numeric_limits<double>::max();

// The contract of schedules.hpp: a value past the double range is returned as +-DBL_MAX (where
// IEEE's round-toward-zero puts it), never as an infinity.
double saturate(double value) { return std::clamp(value, -kLargest, kLargest); }

// A real number as mantissa * 2^exponent with an unbounded exponent: the fallback for the few
// formulas whose exact value, or a step on the way to it, leaves the double range (0 * inf,
// 1e-300 * 1e10^31, max - base of opposite signs). Products, inverses and sums round as
// doubles do, and so does a power with an integer exponent below ~1000; a larger or fractional
// one is good to ~1e-16 * |log2 of the result|, i.e. ~1e-13 relative for anything that
// converts back to a double. Only used where the formula as written would give inf, NaN or a
// lost 0.
class Wide {
 public:
  static Wide of(double value) { return normalized(value, 0.0); }
  bool is_zero() const { return mantissa_ == 0.0; }
  double to_double() const {
    if (mantissa_ == 0.0 || exponent_ < -1100.0) return 0.0 * mantissa_;
    if (exponent_ > 1100.0) return std::copysign(kLargest, mantissa_);
    return saturate(std::ldexp(mantissa_, static_cast<int>(exponent_)));
  }
  Wide inverse() const { return normalized(1.0 / mantissa_, -exponent_); }  // of a nonzero number
  // this^power for power >= 0 (an integer where this is negative).
  Wide pow(double power) const {
    if (power == 0.0) return of(1.0);
    if (mantissa_ == 0.0) return {};
    const double sign = mantissa_ < 0.0 && std::fmod(power, 2.0) == 1.0 ? -1.0 : 1.0;
    // (m 2^e)^p = m^p 2^(e p): as precise as pow while m^p is normal and e p an exact integer.
    const double mantissa_power = std::pow(std::fabs(mantissa_), power);
    const double exponent_power = exponent_ * power;
    if (std::isnormal(mantissa_power) && std::fabs(exponent_power) < 0x1p53 &&
        exponent_power == std::floor(exponent_power)) {
      return normalized(sign * mantissa_power, exponent_power);
    }
    const double log2_magnitude = std::log2(std::fabs(mantissa_)) + exponent_;
    if (log2_magnitude == 0.0) return of(sign);  // |this| = 1, whatever the power
    const double log2_result = log2_magnitude * power;
    if (std::isinf(log2_result)) return {sign, log2_result};
    const double whole = std::floor(log2_result);
    return normalized(sign * std::exp2(log2_result - whole), whole);
  }
  Wide operator*(const Wide& other) const {
    return normalized(mantissa_ * other.mantissa_, exponent_ + other.exponent_);
  }
  Wide operator+(const Wide& other) const {
    if (other.mantissa_ == 0.0) return *this;
    if (mantissa_ == 0.0) return other;
    const bool this_larger = exponent_ >= other.exponent_;
    const Wide& larger = this_larger ? *this : other;
    const Wide& smaller = this_larger ? other : *this;
    const double shift = smaller.exponent_ - larger.exponent_;  // <= 0
    if (shift < -64.0 || std::isinf(larger.exponent_)) return larger;
    return normalized(larger.mantissa_ + std::ldexp(smaller.mantissa_, static_cast<int>(shift)),
                      larger.exponent_);
  }

 private:
  Wide() = default;
  Wide(double mantissa, double exponent) : mantissa_(mantissa), exponent_(exponent) {}
  static Wide normalized(double value, double exponent) {
    if (value == 0.0) return {};
    if (std::isinf(exponent)) return {exponent > 0.0 ? value : 0.0, exponent};
    int shift = 0;
    const double mantissa = std::frexp(value, &shift);
    return {mantissa, exponent + shift};
  }

  double mantissa_ = 0.0;  // 0 or in [0.5, 1) in magnitude
  double exponent_ = 0.0;  // an integer, or +-inf (a power past any double)
};

// scale * base^exponent (exponent >= 0, an integer where base < 0), as written while
// base^exponent is a normal double (the bits torch and the tests expect); in Wide once it
// overflows or underflows, so that a zero scale stays 0 and a tiny scale times a huge power
// keeps its value.
double scaled_power(double scale, double base, double exponent) {
  const double power = std::pow(base, exponent);
  if (scale == 0.0) return scale * std::copysign(1.0, power);
  if (std::isnormal(power) || base == 0.0) return scale * power;
  return (Wide::of(scale) * Wide::of(base).pow(exponent)).to_double();
}

using adamkern::detail::format_number;
using adamkern::detail::require;
using adamkern::detail::require_positive;

void require_finite(double value, const char* name) {
  require(std::isfinite(value), name, "a finite number", value);
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

// torch's _annealing_cos / _annealing_linear; where end - start overflows (momentum bounds of
// opposite signs near the double range) the same point as a weighted mean of the two.
double anneal(Anneal kind, double start, double end, double pct) {
  const double value = kind == Anneal::cos ? end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0)
                                           : (end - start) * pct + start;
  if (std::isfinite(value)) return value;
  const double start_weight = kind == Anneal::cos ? (std::cos(kPi * pct) + 1.0) / 2.0 : 1.0 - pct;
  return start * start_weight + end * (1.0 - start_weight);
}

// init * ((1 - alpha) * cosine + alpha), optax's and Keras' cosine between init and init * alpha,
// as they write it (their bits). Past |alpha| = 4096 (an end more than 4096 times the start)
// 1 - alpha cancels against alpha and loses more than ~1e-12 of the value, all of it once
// |alpha| passes 2^53 (0 instead of init at step 0): there the same value is computed as
// init * (cosine + alpha * (1 - cosine)), which keeps it.
double cosine_between(double init, double alpha, double cosine) {
  if (std::fabs(alpha) <= 4096.0) return init * ((1.0 - alpha) * cosine + alpha);
  return init * (cosine + alpha * (1.0 - cosine));
}

// `value`, a formula's start + (end - start) * progress with progress in [0, 1], where it is
// finite; else the same point as a weighted mean (end - start, or its product with a
// numerator, overflowed on the way: bounds of opposite signs near the double range).
double finite_or_mean(double value, double start, double end, double progress) {
  if (std::isfinite(value)) return value;
  return start * (1.0 - progress) + end * progress;
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
    require(std::isfinite(initial), "max_value / div_factor (the initial value)", "a finite number",
            initial);
    require(std::isfinite(minimum), "max_value / div_factor / final_div_factor (the final value)",
            "a finite number", minimum);
    const double total = static_cast<double>(o.total_steps);
    const double lo = o.base_momentum, hi = o.max_momentum;
    if (o.three_phase) {
      phases_ = {
          {o.pct_start * total - 1.0, momentum ? hi : initial, momentum ? lo : o.max_value},
          {2.0 * o.pct_start * total - 2.0, momentum ? lo : o.max_value, momentum ? hi : initial},
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
      throw std::invalid_argument("step " + std::to_string(step) + " is past total_steps = " +
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
  // The products in torch's order (its bits) while they stay normal doubles; from the first
  // that overflows or underflows on, the product kept in Wide (torch would carry inf, then NaN
  // after a zero factor, or a 0 where the exact product comes back into range).
  Products(double init_value, const std::vector<double>& factors) {
    values_.reserve(factors.size() + 1);
    values_.push_back(init_value);
    Wide exact = Wide::of(init_value);
    bool left_range = false;
    for (double factor : factors) {
      exact = exact * Wide::of(factor);
      const double product = values_.back() * factor;
      left_range = left_range || !(std::isnormal(product) || exact.is_zero());
      values_.push_back(left_range ? exact.to_double() : product);
    }
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
  double at(std::int64_t step) const override { return schedule_->value(step / steps_per_epoch_); }

 private:
  SchedulePtr schedule_;
  std::int64_t steps_per_epoch_;
};

// Keras CosineDecayRestarts. Cycle i starts at first * (t_mul^i - 1) / (t_mul - 1) (first * i
// when t_mul = 1) and lasts first * t_mul^i. Every step takes a bounded amount of work: the
// cycle is found in closed form and corrected by at most kCorrections cycles each way.
class CosineRestarts final : public Schedule {
 public:
  CosineRestarts(double init_value, double first, double t_mul, double m_mul, double alpha)
      : init_value_(init_value),
        first_(first),
        t_mul_(t_mul),
        m_mul_(m_mul),
        alpha_(alpha),
        log_t_mul_(std::log1p(t_mul - 1.0)) {}

 protected:
  double at(std::int64_t step) const override {
    const double k = static_cast<double>(step);
    double cycle = 0.0, fraction = 0.0;
    if (t_mul_ == 1.0) {
      locate_equal_cycles(k, cycle, fraction);
    } else {
      locate_growing_cycles(k, cycle, fraction);
    }
    const double decay = 1.0 + std::cos(kPi * fraction);
    const double cosine = 0.5 * std::pow(m_mul_, cycle) * decay;
    const double value = cosine_between(init_value_, alpha_, cosine);
    if (std::isfinite(value)) return value;
    // m_mul > 1 raised to many cycles (or init * alpha) left the double range on the way:
    // init * (cosine + alpha * (1 - cosine)) in Wide.
    const Wide wide_cosine = Wide::of(0.5 * decay) * Wide::of(m_mul_).pow(cycle);
    const Wide rest = Wide::of(1.0) + Wide::of(-1.0) * wide_cosine;
    return (Wide::of(init_value_) * (wide_cosine + Wide::of(alpha_) * rest)).to_double();
  }

 private:
  // Enough for the closed form's rounding (one cycle at an exact restart) up to cycle indices
  // of ~1e15; past those the index is only known to within its rounding anyway.
  static constexpr int kCorrections = 4;

  // t_mul = 1: cycles of first_ steps. Keras' k / first, floored, then corrected by a cycle
  // where first * i rounds past k (the bits of the formula as Keras and torch write it). Past
  // 2^53 cycles (or infinitely many: a tiny first_) that quotient has lost the position in the
  // cycle, which is then the exact remainder of the step by first_.
  void locate_equal_cycles(double k, double& cycle, double& fraction) const {
    const double cycles = k / first_;
    if (!(cycles < 0x1p53)) {
      cycle = cycles;
      fraction = std::fmod(k, first_) / first_;
      return;
    }
    double i = std::floor(cycles);
    for (int n = 0; n < kCorrections && i > 0.0 && first_ * i > k; ++n) i -= 1.0;
    for (int n = 0; n < kCorrections && first_ * (i + 1.0) <= k; ++n) i += 1.0;
    cycle = i;
    fraction = std::clamp((k - first_ * i) / first_, 0.0, 1.0);
  }

  // t_mul > 1: Keras' closed form log(1 + k (t_mul - 1) / first) / log(t_mul) for the cycle,
  // in logarithms where its argument overflows, then corrected by whole cycles (the float log
  // can land one cycle early at an exact restart, torch's closed-form bug); the fraction is
  // clamped to [0, 1] where a cycle index past 2^53 leaves the boundaries approximate.
  void locate_growing_cycles(double k, double& cycle, double& fraction) const {
    const double argument = k / first_ * (t_mul_ - 1.0);
    const double log_growth = std::isfinite(argument)
                                  ? std::log1p(argument)
                                  : std::log(k) - std::log(first_) + std::log(t_mul_ - 1.0);
    double i = std::floor(log_growth / log_t_mul_);
    for (int n = 0; n < kCorrections && i > 0.0 && start(i) > k; ++n) i -= 1.0;
    for (int n = 0; n < kCorrections && start(i + 1.0) <= k; ++n) i += 1.0;
    cycle = i;
    fraction = (k - start(i)) / scaled_power(first_, t_mul_, i);
    fraction = fraction >= 0.0 ? std::min(fraction, 1.0) : 0.0;  // NaN (inf / inf) too
  }

  // The step cycle i starts at, first * (t_mul^i - 1) / (t_mul - 1) in torch's order (its
  // bits); in Wide where first * (t_mul^i - 1) overflows or underflows; +DBL_MAX past the
  // double range (a start that no step reaches).
  double start(double i) const {
    const double growth = std::pow(t_mul_, i) - 1.0;
    const double scaled = first_ * growth;
    if ((std::isnormal(scaled) || growth == 0.0) && std::isfinite(scaled / (t_mul_ - 1.0))) {
      return scaled / (t_mul_ - 1.0);
    }
    return (Wide::of(first_) * (Wide::of(t_mul_).pow(i) + Wide::of(-1.0)) *
            Wide::of(t_mul_ - 1.0).inverse())
        .to_double();
  }

  double init_value_, first_, t_mul_, m_mul_, alpha_, log_t_mul_;
};

// The schedules built on others pass each step's check on, so that values() rejects a step
// past the end of a one-cycle part before it writes anything.
class Warmup final : public Schedule {
 public:
  Warmup(SchedulePtr schedule, std::int64_t warmup_steps, double init_value)
      : schedule_(std::move(schedule)),
        warmup_steps_(warmup_steps),
        init_value_(init_value),
        target_(schedule_->value(0)) {}

 protected:
  void check_step(std::int64_t step) const override {
    Schedule::check_step(step);
    if (step >= warmup_steps_) schedule_->check(step - warmup_steps_);
  }
  double at(std::int64_t step) const override {
    if (step >= warmup_steps_) return schedule_->value(step - warmup_steps_);
    const double k = static_cast<double>(step), steps = static_cast<double>(warmup_steps_);
    return finite_or_mean(init_value_ + (target_ - init_value_) * k / steps, init_value_, target_,
                          k / steps);
  }

 private:
  SchedulePtr schedule_;
  std::int64_t warmup_steps_;
  double init_value_, target_;
};

class Join final : public Schedule {
 public:
  Join(std::vector<SchedulePtr> schedules, std::vector<std::int64_t> boundaries)
      : schedules_(std::move(schedules)), boundaries_(std::move(boundaries)) {}

 protected:
  void check_step(std::int64_t step) const override {
    Schedule::check_step(step);
    const auto [part, local_step] = locate(step);
    part.check(local_step);
  }
  double at(std::int64_t step) const override {
    const auto [part, local_step] = locate(step);
    return part.value(local_step);
  }

 private:
  std::pair<const Schedule&, std::int64_t> locate(std::int64_t step) const {
    const auto i = static_cast<std::size_t>(
        std::upper_bound(boundaries_.begin(), boundaries_.end(), step) - boundaries_.begin());
    return {*schedules_[i], i == 0 ? step : step - boundaries_[i - 1]};
  }

  std::vector<SchedulePtr> schedules_;
  std::vector<std::int64_t> boundaries_;
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
  return saturate(at(step));
}

void Schedule::values(const std::int64_t* steps, double* out, std::size_t count) const {
  for (std::size_t i = 0; i < count; ++i) check_step(steps[i]);
  for (std::size_t i = 0; i < count; ++i) out[i] = saturate(at(steps[i]));
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
    return scaled_power(init_value, gamma, static_cast<double>(step / step_size));
  });
}

SchedulePtr multistep_decay(double init_value, std::vector<std::int64_t> milestones, double gamma) {
  require_finite(init_value, "init_value");
  require_finite(gamma, "gamma");
  for (std::size_t i = 0; i < milestones.size(); ++i) {
    if (milestones[i] < 0) {
      throw std::invalid_argument("milestones must be >= 0, got " + std::to_string(milestones[i]) +
                                  " at index " + std::to_string(i));
    }
  }
  std::sort(milestones.begin(), milestones.end());
  return formula([=](std::int64_t step) {
    const auto passed =
        std::upper_bound(milestones.begin(), milestones.end(), step) - milestones.begin();
    return scaled_power(init_value, gamma, static_cast<double>(passed));
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
  require(transition_begin >= 0, "transition_begin", ">= 0", static_cast<double>(transition_begin));
  if (end_value) require_finite(*end_value, "end_value");
  return formula([=](std::int64_t step) {
    const std::int64_t elapsed = step - transition_begin;
    if (elapsed <= 0) return init_value;
    double exponent = static_cast<double>(elapsed) / decay_steps;
    if (staircase) exponent = std::floor(exponent);
    const double value = scaled_power(init_value, decay_rate, exponent);
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
    const double k = static_cast<double>(step);
    double progress = k / decay_steps;
    if (staircase) progress = std::floor(progress);
    const double denominator = 1.0 + decay_rate * progress;
    if (std::isfinite(denominator)) return init_value / denominator;
    if (decay_rate == 0.0) return init_value;  // 0 * inf
    // step / decay_steps, or its product with decay_rate, is past the double range (a tiny
    // decay_steps); that quotient has no fraction for a staircase to floor.
    const Wide rate = Wide::of(decay_rate) * Wide::of(k) * Wide::of(decay_steps).inverse();
    return (Wide::of(init_value) * (Wide::of(1.0) + rate).inverse()).to_double();
  });
}

SchedulePtr polynomial_decay(double init_value, double end_value, double decay_steps, double power,
                             bool cycle, std::int64_t transition_begin) {
  require_finite(init_value, "init_value");
  require_finite(end_value, "end_value");
  require_positive(decay_steps, "decay_steps");
  // A negative power has no value at decay_steps, where 1 - t / decay_steps reaches 0.
  require(std::isfinite(power) && power >= 0.0, "power", "a finite number >= 0", power);
  require(transition_begin >= 0, "transition_begin", ">= 0", static_cast<double>(transition_begin));
  return formula([=](std::int64_t step) {
    const double t = static_cast<double>(std::max<std::int64_t>(step - transition_begin, 0));
    double fraction = std::min(t, decay_steps) / decay_steps;
    if (cycle) {  // Keras: stretch decay_steps to the next multiple past t
      const double steps = decay_steps * (t == 0.0 ? 1.0 : std::ceil(t / decay_steps));
      // t / decay_steps past the double range: t / steps tends to 1 as the cycles shrink.
      fraction = std::isfinite(steps) ? t / steps : 1.0;
    }
    // 1 - fraction is clamped at 0: the rounded multiple of decay_steps can land just below t.
    const double remaining = std::pow(std::max(1.0 - fraction, 0.0), power);
    return finite_or_mean((init_value - end_value) * remaining + end_value, end_value, init_value,
                          remaining);
  });
}

SchedulePtr linear(double init_value, double end_value, std::int64_t transition_steps,
                   std::int64_t transition_begin) {
  require(transition_steps > 0, "transition_steps", "> 0", static_cast<double>(transition_steps));
  return polynomial_decay(init_value, end_value, static_cast<double>(transition_steps), 1.0, false,
                          transition_begin);
}

SchedulePtr cosine_decay(double init_value, double decay_steps, double alpha, double exponent) {
  require_finite(init_value, "init_value");
  require_positive(decay_steps, "decay_steps");
  require_finite(alpha, "alpha");
  // A negative exponent has no value at decay_steps, where the cosine reaches 0.
  require(std::isfinite(exponent) && exponent >= 0.0, "exponent", "a finite number >= 0", exponent);
  return formula([=](std::int64_t step) {
    const double t = std::min(static_cast<double>(step), decay_steps);
    // At t = decay_steps the cosine is 0, also where pi * t rounds (a subnormal decay_steps).
    const double cosine = t < decay_steps ? 0.5 * (1.0 + std::cos(kPi * t / decay_steps)) : 0.0;
    return cosine_between(init_value, alpha, std::pow(cosine, exponent));
  });
}

SchedulePtr cosine_restarts(double init_value, double first_decay_steps, double t_mul, double m_mul,
                            double alpha) {
  require_finite(init_value, "init_value");
  require_positive(first_decay_steps, "first_decay_steps");
  require(std::isfinite(t_mul) && t_mul >= 1.0, "t_mul", "a finite number >= 1", t_mul);
  require(std::isfinite(m_mul) && m_mul >= 0.0, "m_mul", "a finite number >= 0", m_mul);
  require_finite(alpha, "alpha");
  return std::make_shared<const CosineRestarts>(init_value, first_decay_steps, t_mul, m_mul, alpha);
}

SchedulePtr warmup(SchedulePtr schedule, std::int64_t warmup_steps, double init_value) {
  if (!schedule) throw std::invalid_argument("schedule is null");
  require(warmup_steps >= 0, "warmup_steps", ">= 0", static_cast<double>(warmup_steps));
  require_finite(init_value, "init_value");
  return std::make_shared<const Warmup>(std::move(schedule), warmup_steps, init_value);
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
  if (!std::isfinite(alpha)) {
    throw std::invalid_argument(
        "end_value / peak_value must be a finite number (optax scales the cosine by "
        "peak_value and decays it to alpha = end_value / peak_value), got end_value " +
        format_number(end_value) + " and peak_value " + format_number(peak_value));
  }
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

SchedulePtr cyclic(double base_value, double max_value, double step_size_up, double step_size_down,
                   CyclicMode mode, double gamma) {
  require_finite(base_value, "base_value");
  require_finite(max_value, "max_value");
  require_positive(step_size_up, "step_size_up");
  require(std::isfinite(step_size_down) && step_size_down >= 0.0, "step_size_down",
          "a finite number > 0 (or 0/None: the same as step_size_up)", step_size_down);
  require_positive(gamma, "gamma");
  const double down = step_size_down > 0.0 ? step_size_down : step_size_up;
  const double total = step_size_up + down;
  require(std::isfinite(total), "step_size_up + step_size_down (the cycle length)",
          "a finite number", total);
  const double ratio = step_size_up / total;
  return formula([=](std::int64_t step) {
    const double k = static_cast<double>(step);
    const double position = k / total;
    const double cycle = std::floor(1.0 + position);
    // Past 2^52 cycles torch's formula has lost the phase (x = 0, or NaN from inf - inf); the
    // remainder of the step by the cycle length is exact.
    const double x = position < 0x1p52 ? 1.0 + position - cycle : std::fmod(k, total) / total;
    double scale_factor = (x - 1.0) / (ratio - 1.0);
    if (x <= ratio) scale_factor = x == 0.0 ? 0.0 : x / ratio;  // ratio may underflow to 0
    const double base_height = (max_value - base_value) * scale_factor;
    double scale = 1.0;
    if (mode == CyclicMode::triangular2) scale = 1.0 / std::pow(2.0, cycle - 1.0);
    if (mode == CyclicMode::exp_range) scale = std::pow(gamma, k);
    const double value = base_value + base_height * scale;
    if (std::isfinite(value)) return value;
    // max - base overflowed (bounds of opposite signs near the range), or gamma > 1 raised to
    // the step did (exp_range): the same sum in Wide.
    Wide wide_scale = Wide::of(1.0);
    if (mode == CyclicMode::triangular2) wide_scale = Wide::of(2.0).pow(cycle - 1.0).inverse();
    if (mode == CyclicMode::exp_range) wide_scale = Wide::of(gamma).pow(k);
    const Wide height = (Wide::of(max_value) + Wide::of(-base_value)) * Wide::of(scale_factor);
    return (Wide::of(base_value) + height * wide_scale).to_double();
  });
}

SchedulePtr multiplicative(double init_value, double factor) {
  require_finite(init_value, "init_value");
  require(std::isfinite(factor) && factor >= 0.0, "factor", "a finite number >= 0", factor);
  return formula([=](std::int64_t step) {
    return scaled_power(init_value, factor, static_cast<double>(step));
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
  return std::make_shared<const Join>(std::move(schedules), std::move(boundaries));
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
