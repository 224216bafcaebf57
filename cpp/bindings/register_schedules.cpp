// adamkern._core.schedules: the C++ schedules, evaluated one step or a whole int64 array at a
// time (argument names, defaults and reprs live in adamkern.schedules).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "adamkern/schedules.hpp"
#include "register.hpp"

namespace adamkern::bindings {
namespace {

namespace py = pybind11;
using schedules::Schedule;
using Holder = std::shared_ptr<Schedule>;

Holder hold(schedules::SchedulePtr schedule) { return std::const_pointer_cast<Schedule>(schedule); }

std::vector<schedules::SchedulePtr> unhold(const std::vector<Holder>& held) {
  return {held.begin(), held.end()};
}

py::array_t<double> values(const Schedule& schedule, const py::array& steps) {
  const auto contiguous = py::array_t<std::int64_t, py::array::c_style>::ensure(steps);
  if (!contiguous) throw py::type_error("steps must be an integer array");
  py::array_t<double> out(std::vector<py::ssize_t>(steps.shape(), steps.shape() + steps.ndim()));
  const std::int64_t* in = contiguous.data();
  double* result = out.mutable_data();
  const auto count = static_cast<std::size_t>(contiguous.size());
  {
    py::gil_scoped_release release;
    schedule.values(in, result, count);
  }
  return out;
}

template <class Enum>
Enum parse(const std::string& value, const char* name,
           std::initializer_list<std::pair<const char*, Enum>> choices) {
  std::string names;
  for (const auto& [text, choice] : choices) {
    if (value == text) return choice;
    names += std::string(names.empty() ? "" : " or ") + "'" + text + "'";
  }
  throw py::value_error(std::string(name) + " must be " + names + ", got '" + value + "'");
}

schedules::OneCycleOptions one_cycle_options(std::int64_t total_steps, double max_value,
                                             double pct_start, const std::string& anneal,
                                             double div_factor, double final_div_factor,
                                             bool three_phase, double base_momentum,
                                             double max_momentum) {
  schedules::OneCycleOptions o;
  o.total_steps = total_steps;
  o.max_value = max_value;
  o.pct_start = pct_start;
  o.anneal = parse<schedules::Anneal>(
      anneal, "anneal", {{"cos", schedules::Anneal::cos}, {"linear", schedules::Anneal::linear}});
  o.div_factor = div_factor;
  o.final_div_factor = final_div_factor;
  o.three_phase = three_phase;
  o.base_momentum = base_momentum;
  o.max_momentum = max_momentum;
  return o;
}

}  // namespace

void register_schedules(py::module_& m) {
  using py::arg;
  py::module_ s = m.def_submodule("schedules", "The C++ schedules (use adamkern.schedules).");
  py::class_<Schedule, Holder>(s, "Schedule")
      .def("value", &Schedule::value, arg("step"), "The value at one step (>= 0).")
      .def("values", &values, arg("steps"),
           "The values at an integer array of steps, as a float64 array of its shape.");

  s.def("constant", [](double v) { return hold(schedules::constant(v)); }, arg("value"));
  s.def(
      "step_decay",
      [](double init, std::int64_t size, double gamma) {
        return hold(schedules::step_decay(init, size, gamma));
      },
      arg("init_value"), arg("step_size"), arg("gamma"));
  s.def(
      "multistep_decay",
      [](double init, std::vector<std::int64_t> milestones, double gamma) {
        return hold(schedules::multistep_decay(init, std::move(milestones), gamma));
      },
      arg("init_value"), arg("milestones"), arg("gamma"));
  s.def(
      "piecewise_constant",
      [](std::vector<std::int64_t> boundaries, std::vector<double> v) {
        return hold(schedules::piecewise_constant(std::move(boundaries), std::move(v)));
      },
      arg("boundaries"), arg("values"));
  s.def(
      "exponential_decay",
      [](double init, double steps, double rate, bool staircase, std::int64_t begin,
         std::optional<double> end) {
        return hold(schedules::exponential_decay(init, steps, rate, staircase, begin, end));
      },
      arg("init_value"), arg("decay_steps"), arg("decay_rate"), arg("staircase"),
      arg("transition_begin"), arg("end_value").none(true));
  s.def(
      "inverse_time_decay",
      [](double init, double steps, double rate, bool staircase) {
        return hold(schedules::inverse_time_decay(init, steps, rate, staircase));
      },
      arg("init_value"), arg("decay_steps"), arg("decay_rate"), arg("staircase"));
  s.def(
      "polynomial_decay",
      [](double init, double end, double steps, double power, bool cycle, std::int64_t begin) {
        return hold(schedules::polynomial_decay(init, end, steps, power, cycle, begin));
      },
      arg("init_value"), arg("end_value"), arg("decay_steps"), arg("power"), arg("cycle"),
      arg("transition_begin"));
  s.def(
      "linear",
      [](double init, double end, std::int64_t steps, std::int64_t begin) {
        return hold(schedules::linear(init, end, steps, begin));
      },
      arg("init_value"), arg("end_value"), arg("transition_steps"), arg("transition_begin"));
  s.def(
      "cosine_decay",
      [](double init, double steps, double alpha, double exponent) {
        return hold(schedules::cosine_decay(init, steps, alpha, exponent));
      },
      arg("init_value"), arg("decay_steps"), arg("alpha"), arg("exponent"));
  s.def(
      "cosine_restarts",
      [](double init, double first, double t_mul, double m_mul, double alpha) {
        return hold(schedules::cosine_restarts(init, first, t_mul, m_mul, alpha));
      },
      arg("init_value"), arg("first_decay_steps"), arg("t_mul"), arg("m_mul"), arg("alpha"));
  s.def(
      "warmup",
      [](const Holder& schedule, std::int64_t steps, double init) {
        return hold(schedules::warmup(schedule, steps, init));
      },
      arg("schedule"), arg("warmup_steps"), arg("init_value"));
  s.def(
      "warmup_cosine_decay",
      [](double init, double peak, std::int64_t warmup_steps, std::int64_t decay_steps,
         double end) {
        return hold(schedules::warmup_cosine_decay(init, peak, warmup_steps, decay_steps, end));
      },
      arg("init_value"), arg("peak_value"), arg("warmup_steps"), arg("decay_steps"),
      arg("end_value"));
  s.def(
      "one_cycle",
      [](std::int64_t total_steps, double max_value, double pct_start, const std::string& anneal,
         double div_factor, double final_div_factor, bool three_phase, double base_momentum,
         double max_momentum) {
        const auto o =
            one_cycle_options(total_steps, max_value, pct_start, anneal, div_factor,
                              final_div_factor, three_phase, base_momentum, max_momentum);
        return py::make_tuple(hold(schedules::one_cycle(o)),
                              hold(schedules::one_cycle_momentum(o)));
      },
      arg("total_steps"), arg("max_value"), arg("pct_start"), arg("anneal"), arg("div_factor"),
      arg("final_div_factor"), arg("three_phase"), arg("base_momentum"), arg("max_momentum"),
      "(lr schedule, momentum schedule) of torch's OneCycleLR.");
  s.def(
      "cyclic",
      [](double base, double max, double up, std::optional<double> down, const std::string& mode,
         double gamma) {
        const auto parsed =
            parse<schedules::CyclicMode>(mode, "mode",
                                         {{"triangular", schedules::CyclicMode::triangular},
                                          {"triangular2", schedules::CyclicMode::triangular2},
                                          {"exp_range", schedules::CyclicMode::exp_range}});
        if (down && !(*down > 0.0)) {
          throw py::value_error("step_size_down must be > 0 or None, got " + std::to_string(*down));
        }
        return hold(schedules::cyclic(base, max, up, down.value_or(0.0), parsed, gamma));
      },
      arg("base_value"), arg("max_value"), arg("step_size_up"), arg("step_size_down").none(true),
      arg("mode"), arg("gamma"));
  s.def(
      "multiplicative",
      [](double init, double factor) { return hold(schedules::multiplicative(init, factor)); },
      arg("init_value"), arg("factor"));
  s.def(
      "multiplicative_table",
      [](double init, std::vector<double> factors) {
        return hold(schedules::multiplicative(init, std::move(factors)));
      },
      arg("init_value"), arg("factors"));
  s.def(
      "per_epoch",
      [](const Holder& schedule, std::int64_t steps_per_epoch) {
        return hold(schedules::per_epoch(schedule, steps_per_epoch));
      },
      arg("schedule"), arg("steps_per_epoch"));
  s.def(
      "join",
      [](const std::vector<Holder>& parts, std::vector<std::int64_t> boundaries) {
        return hold(schedules::join(unhold(parts), std::move(boundaries)));
      },
      arg("schedules"), arg("boundaries"));

  using Plateau = schedules::ReduceLROnPlateau;
  py::class_<Plateau>(s, "ReduceLROnPlateau")
      .def(py::init([](double init, const std::string& mode, double factor, std::int64_t patience,
                       double threshold, const std::string& threshold_mode, std::int64_t cooldown,
                       double min_lr, double eps) {
             return Plateau(
                 init,
                 parse<Plateau::Mode>(mode, "mode",
                                      {{"min", Plateau::Mode::min}, {"max", Plateau::Mode::max}}),
                 factor, patience, threshold,
                 parse<Plateau::ThresholdMode>(
                     threshold_mode, "threshold_mode",
                     {{"rel", Plateau::ThresholdMode::rel}, {"abs", Plateau::ThresholdMode::abs}}),
                 cooldown, min_lr, eps);
           }),
           arg("init_value"), arg("mode"), arg("factor"), arg("patience"), arg("threshold"),
           arg("threshold_mode"), arg("cooldown"), arg("min_lr"), arg("eps"))
      .def("update", &Plateau::update, arg("metric"))
      .def_property_readonly("lr", &Plateau::lr)
      .def("get_state",
           [](const Plateau& p) {
             const Plateau::State& st = p.state();
             py::dict d;
             d["lr"] = st.lr;
             d["best"] = st.best;
             d["num_bad_epochs"] = st.num_bad_epochs;
             d["cooldown_counter"] = st.cooldown_counter;
             d["last_epoch"] = st.last_epoch;
             return d;
           })
      .def(
          "set_state",
          [](Plateau& p, double lr, double best, std::int64_t num_bad_epochs,
             std::int64_t cooldown_counter, std::int64_t last_epoch) {
            p.set_state({lr, best, num_bad_epochs, cooldown_counter, last_epoch});
          },
          arg("lr"), arg("best"), arg("num_bad_epochs"), arg("cooldown_counter"),
          arg("last_epoch"));
}

}  // namespace adamkern::bindings
