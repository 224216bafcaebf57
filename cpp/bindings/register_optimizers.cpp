// adamkern._core.<optimizer>_ and roofline_: check the arrays, release the GIL, call the C++ API.
// Defaults live in the Python layer (adamkern.ops); here every argument is required.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <initializer_list>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "adamkern/kernels.hpp"
#include "adamkern/optimizers.hpp"
#include "arrays.hpp"
#include "keywords.hpp"
#include "register.hpp"

namespace adamkern::bindings {
namespace {

// One state argument: the Python object, its name, and whether these options use it (`needs`
// says which option does, for the error message when it is missing).
struct StateArg {
  py::handle object;
  const char* name;
  bool used = true;
  const char* needs = nullptr;
};

// All array arguments of one call, checked; state k is Tensor::state[k].
struct CallArrays {
  ArrayList params, grads;
  std::vector<ArrayList> states;
  std::vector<bool> used;
  ArrayList master{"master_params", {}, true};
  DType dtype = DType::float32;  // of the params
  std::vector<DType> state_dtypes;
  bool stochastic_rounding = false;
  std::uint64_t rounding_seed = 0;

  // Anything but float32 or float64 throughout: the mixed-precision path.
  bool mixed() const {
    if (dtype != DType::float32 && dtype != DType::float64) return true;
    if (!master.arrays.empty()) return true;
    for (std::size_t k = 0; k < states.size(); ++k) {
      if (used[k] && state_dtypes[k] != dtype) return true;
    }
    return false;
  }

  template <class T>
  std::vector<Tensor<T>> tensors() const {
    std::vector<Tensor<T>> out(params.arrays.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i].param = data_of<T>(params.arrays[i]);
      out[i].grad = data_of<T>(grads.arrays[i]);
      for (std::size_t k = 0; k < states.size(); ++k) {
        out[i].state[k] = used[k] ? data_of<T>(states[k].arrays[i]) : nullptr;
      }
      out[i].size = static_cast<std::int64_t>(params.arrays[i].size());
    }
    return out;
  }

  // See ArrayList::release_torch_views: once the kernel's pointers are taken.
  void release_torch_views() {
    for (ArrayList* list : {&params, &grads, &master}) list->release_torch_views();
    for (ArrayList& state : states) state.release_torch_views();
  }

  std::vector<MixedTensor> mixed_tensors() const {
    const auto format = [](DType dtype, const ArrayList& list) {
      if (list.blockwise) {
        return list.is_signed ? Format::blockwise8_signed : Format::blockwise8_unsigned;
      }
      return dtype == DType::bfloat16  ? Format::bfloat16
             : dtype == DType::float16 ? Format::float16
                                       : Format::float32;
    };
    std::vector<MixedTensor> out(params.arrays.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      MixedTensor& t = out[i];
      t.param = data_of<void>(params.arrays[i]);
      t.grad = data_of<void>(grads.arrays[i]);
      t.master = master.arrays.empty() ? nullptr : data_of<float>(master.arrays[i]);
      t.param_format = format(dtype, params);
      for (std::size_t k = 0; k < states.size(); ++k) {
        if (!used[k]) continue;
        t.state[k] = data_of<void>(states[k].arrays[i]);
        t.state_format[k] = format(state_dtypes[k], states[k]);
        if (states[k].blockwise) t.absmax[k] = data_of<float>(states[k].absmax[i]);
      }
      t.size = static_cast<std::int64_t>(params.arrays[i].size());
      t.stochastic_rounding = stochastic_rounding;
      t.rounding_seed = rounding_seed;
    }
    return out;
  }
};

// precision: None, or (master_params or None, stochastic_rounding, seed) from adamkern.ops.
CallArrays call_arrays(py::handle precision, py::handle params, py::handle grads,
                       bool grads_written, const std::vector<StateArg>& states) {
  CallArrays call{
      array_list(params, "params", true), array_list(grads, "grads", grads_written), {}, {}};
  std::vector<const ArrayList*> lists{&call.params, &call.grads};
  call.states.reserve(states.size());
  for (const StateArg& state : states) {
    if (state.used && state.object.is_none()) {
      throw py::value_error(std::string(state.needs ? state.needs : "this optimizer") + " needs " +
                            state.name + " (one array per param), got None");
    }
    call.states.push_back(state.used ? array_list(state.object, state.name, true, true)
                                     : ArrayList{state.name, {}, true});
    call.used.push_back(state.used);
  }
  for (std::size_t k = 0; k < call.states.size(); ++k) {
    if (call.used[k]) lists.push_back(&call.states[k]);
  }
  const std::vector<DType> dtypes = check_mixed_array_lists(lists);
  call.dtype = dtypes[0];
  call.state_dtypes.assign(call.states.size(), call.dtype);
  for (std::size_t k = 0, l = 2; k < call.states.size(); ++k) {
    if (call.used[k]) call.state_dtypes[k] = dtypes[l++];
  }
  if (!precision.is_none()) {
    const auto options = precision.cast<py::tuple>();
    if (!options[0].is_none()) {
      call.master = array_list(options[0], "master_params", true);
      if (!call.params.arrays.empty() && call.dtype != DType::bfloat16 &&
          call.dtype != DType::float16) {
        throw py::value_error(std::string("master_params are for bfloat16 or float16 params, "
                                          "but params[0] has dtype ") +
                              dtype_name(call.dtype));
      }
      check_master_params(call.params, call.master);
    }
    call.stochastic_rounding = options[1].cast<bool>();
    call.rounding_seed = options[2].cast<std::uint64_t>();
  }
  return call;
}

// grad_scale / found_inf as C++ AmpArgs (pointing into this object).
struct Amp {
  float scale = 1.0f;
  float found = 0.0f;
  AmpArgs args;

  Amp(py::handle grad_scale, py::handle found_inf) {
    if (optional_scalar(grad_scale, "grad_scale", scale)) args.grad_scale = &scale;
    if (optional_scalar(found_inf, "found_inf", found)) args.found_inf = &found;
  }
  Amp(const Amp&) = delete;
  Amp& operator=(const Amp&) = delete;
  bool unscales() const { return args.grad_scale != nullptr; }
  bool skips() const { return args.found_inf != nullptr && found != 0.0f; }
};

// Calls fn(tensors, count) without the GIL, with Tensor<float> or Tensor<double> for the
// call's dtype, or (kMixed) MixedTensor when the call mixes precisions.
template <bool kMixed = true, class Fn>
void run(CallArrays& call, Fn&& fn) {
  const auto release_and_call = [&](const auto& tensors) {
    call.release_torch_views();
    py::gil_scoped_release release;
    fn(tensors.data(), tensors.size());
  };
  if constexpr (kMixed) {
    if (call.mixed()) return release_and_call(call.mixed_tensors());
  } else {
    if (call.mixed()) throw py::type_error("params[0]: expected float32 or float64 arrays");
  }
  if (call.dtype == DType::float32) {
    release_and_call(call.tensors<float>());
  } else {
    release_and_call(call.tensors<double>());
  }
}

// NAdam's mu_product: one float32 or float64 value in a one-element array, apart from every
// array of the call; the C++ entry point checks its range and advances it in place.
void take_mu_product(py::handle object, const CallArrays& call, StepArgs& args) {
  ArrayList product = array_list(object, "mu_product", true);
  if (product.arrays.size() != 1 || product.arrays[0].size() != 1) {
    throw py::value_error(
        "mu_product must be one array holding one value (torch's "
        "state['mu_product'], 1.0 before the first step)");
  }
  const DType dtype = check_array_lists({&product});
  std::vector<const ArrayList*> call_lists{&call.params, &call.grads, &call.master};
  for (const ArrayList& state : call.states) call_lists.push_back(&state);
  check_disjoint(product.arrays[0], "mu_product", call_lists);
  if (dtype == DType::float32) {
    args.mu_product_f32 = data_of<float>(product.arrays[0]);
  } else {
    args.mu_product_f64 = data_of<double>(product.arrays[0]);
  }
}

// Prodigy's group scalars: one float64 array of kProdigyScalars values, apart from every
// array of the call; the C++ entry point checks them and updates them in place.
void take_group_scalars(py::handle object, const CallArrays& call, StepArgs& args) {
  ArrayList scalars = array_list(object, "group_scalars", true);
  if (scalars.arrays.size() != 1 || scalars.arrays[0].size() != kProdigyScalars) {
    throw py::value_error("group_scalars must be one array of " + std::to_string(kProdigyScalars) +
                          " values (d, d_max, d_numerator, k, d_denom, d_hat)");
  }
  if (check_array_lists({&scalars}) != DType::float64) {
    throw py::type_error("group_scalars must be a float64 array");
  }
  std::vector<const ArrayList*> call_lists{&call.params, &call.grads, &call.master};
  for (const ArrayList& state : call.states) call_lists.push_back(&state);
  check_disjoint(scalars.arrays[0], "group_scalars", call_lists);
  args.group_scalars = data_of<double>(scalars.arrays[0]);
}

// adamkern._core.<name>_ for optimizer D: every argument a keyword (the arrays, D's options
// and step inputs as its math header names them, grad_scale, found_inf, precision).
template <class D>
void step_binding(const py::kwargs& kwargs) {
  Keywords keywords(std::string(D::kName) + "_", kwargs);
  const py::handle params = keywords.required("params"), grads = keywords.required("grads");
  std::vector<py::handle> state_objects;
  for (const math::StateBuffer& buffer : D::kState) {
    state_objects.push_back(keywords.optional(buffer.argument));
  }
  const auto options = options_from<D>(keywords);
  StepArgs args = step_args_from<D>(keywords);
  [[maybe_unused]] py::handle mu_product;
  if constexpr (kTakesMuProduct<D>) mu_product = keywords.required("mu_product");
  [[maybe_unused]] py::handle group_scalars;
  if constexpr (kTakesGroupScalars<D>) group_scalars = keywords.required("group_scalars");
  const Amp amp(keywords.optional("grad_scale"), keywords.optional("found_inf"));
  const py::handle precision = keywords.optional("precision");
  keywords.finish();

  std::vector<StateArg> states;
  std::vector<std::string> conditions;
  conditions.reserve(std::size(D::kState));
  for (std::size_t k = 0; k < std::size(D::kState); ++k) {
    const math::StateBuffer& buffer = D::kState[k];
    conditions.push_back(buffer_condition(buffer));
    states.push_back({state_objects[k], buffer.argument, buffer_used<D>(options, buffer),
                      conditions.back().c_str()});
  }
  CallArrays call = call_arrays(precision, params, grads, amp.unscales(), states);
  if constexpr (kTakesMuProduct<D>) take_mu_product(mu_product, call, args);
  if constexpr (kTakesGroupScalars<D>) take_group_scalars(group_scalars, call, args);
  args.amp = amp.args;
  run(call, [&](const auto* tensors, std::size_t count) {
    optimizer_step<D>(tensors, count, options, args);
  });
}

void roofline_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                      py::handle exp_avg_sqs, py::handle master_params) {
  const py::object precision =
      master_params.is_none() ? py::object(py::none()) : py::make_tuple(master_params, false, 0);
  CallArrays call = call_arrays(precision, params, grads, false,
                                {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  run(call, [&](const auto* tensors, std::size_t count) { roofline_step(tensors, count); });
}

// Seconds of each of `repeats` AdamW steps (defaults) over the arrays, timed in C++ around
// the C++ API call alone: the kernel time that the call-overhead benchmark subtracts.
py::list adam_kernel_seconds_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                                     py::handle exp_avg_sqs, int repeats) {
  CallArrays call = call_arrays(py::none(), params, grads, false,
                                {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  AdamOptions o;
  o.decoupled_weight_decay = true;
  o.weight_decay = 1e-2;
  std::vector<double> seconds(static_cast<std::size_t>(std::max(repeats, 0)));
  run(call, [&](const auto* tensors, std::size_t count) {
    for (std::size_t r = 0; r < seconds.size(); ++r) {
      const auto start = std::chrono::steady_clock::now();
      StepArgs args;
      args.step = static_cast<double>(r + 1);
      optimizer_step<math::Adam>(tensors, count, o, args);
      seconds[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  });
  py::list out;
  for (const double s : seconds) out.append(s);
  return out;
}

py::tuple grad_stats_binding(py::handle grads) {
  const ArrayList list = array_list(grads, "grads", false);
  const DType dtype = check_array_lists({&list});
  const auto typed = [&](auto zero) {
    using T = decltype(zero);
    std::vector<const T*> data;
    std::vector<std::int64_t> sizes;
    for (const py::array& a : list.arrays) {
      data.push_back(data_of<T>(a));
      sizes.push_back(static_cast<std::int64_t>(a.size()));
    }
    py::gil_scoped_release release;
    return grad_stats<T>(data.data(), sizes.data(), data.size());
  };
  const GradStats stats = dtype == DType::float32 ? typed(0.0f) : typed(0.0);
  return py::make_tuple(stats.norm, stats.finite);
}

const char* range_name(math::Range range) {
  switch (range) {
    case math::Range::finite: return "finite";
    case math::Range::non_negative: return "non_negative";
    case math::Range::positive: return "positive";
    case math::Range::unit_open: return "unit_open";
    case math::Range::unit_closed: return "unit_closed";
    case math::Range::unit_open_or_unset: return "unit_open_or_unset";
    case math::Range::positive_or_inf: return "positive_or_inf";
  }
  return "";
}

py::object optional_str(const char* text) {
  return text != nullptr ? py::object(py::str(text)) : py::object(py::none());
}

const char* needed_name(math::Needed needed) {
  switch (needed) {
    case math::Needed::always: return "always";
    case math::Needed::flag: return "flag";
    case math::Needed::positive: return "positive";
    case math::Needed::nonzero: return "nonzero";
  }
  return "";
}

// {name: {"class_name": its class in adamkern.optim and adamkern.torch, "takes_step": bool,
// "options": {option: {"default", "range", "label"} or {"default"} for a flag}, "state":
// [each buffer's description, in order]}} of every optimizer in the registry
// (adamkern/optimizers.hpp).
py::dict optimizer_options() {
  py::dict out;
  std::apply(
      [&](auto... descriptors) {
        const auto describe = [&](auto descriptor) {
          using D = decltype(descriptor);
          const typename D::Options defaults{};
          py::dict options;
          for (const auto& option : D::kNumbers) {
            // an unset default (NaN) is Python's None
            const double value = defaults.*option.member;
            const py::object shown_default =
                std::isnan(value) ? py::object(py::none()) : py::object(py::float_(value));
            options[option.name] = py::dict(py::arg("default") = shown_default,
                                            py::arg("range") = range_name(option.range),
                                            py::arg("label") = option.shown());
          }
          for (const auto& flag : D::kFlags) {
            options[flag.name] = py::dict(py::arg("default") = defaults.*flag.member);
          }
          static_assert(std::size(D::kState) <= kMaxStateBuffers);
          py::list state;
          for (const math::StateBuffer& buffer : D::kState) {
            state.append(py::dict(py::arg("name") = buffer.name,
                                  py::arg("argument") = buffer.argument,
                                  py::arg("signed") = buffer.is_signed,
                                  py::arg("needed") = needed_name(buffer.needed),
                                  py::arg("option") = optional_str(buffer.option),
                                  py::arg("initial_option") = optional_str(buffer.initial_option),
                                  py::arg("initial") = buffer.initial));
          }
          out[D::kName] =
              py::dict(py::arg("class_name") = D::kClassName, py::arg("takes_step") = D::kTakesStep,
                       py::arg("options") = options, py::arg("state") = state);
        };
        (describe(descriptors), ...);
      },
      Optimizers{});
  return out;
}

}  // namespace

void register_optimizers(py::module_& m) {
  using py::arg;
  std::apply(
      [&](auto... descriptors) {
        const auto define = [&](auto descriptor) {
          using D = decltype(descriptor);
          const std::string name = std::string(D::kName) + "_";
          m.def(name.c_str(), &step_binding<D>,
                ("Fused in-place " + name + " step; every argument a keyword (see adamkern." +
                 name + ")")
                    .c_str());
        };
        (define(descriptors), ...);
      },
      Optimizers{});
  m.def("optimizer_options", &optimizer_options,
        "Every optimizer as its C++ header describes it: its class name, its options "
        "(default, range and the name used in messages), whether its entry point takes "
        "`step`, and its state buffers.");
  m.def("grad_stats", &grad_stats_binding, arg("grads"),
        "(global L2 norm, all finite) of an array or a list of arrays, in one parallel pass; "
        "the norm is the same bits for any thread count and ISA.");
  m.def(
      "dynamic_map",
      [](bool is_signed) {
        const float* values = dynamic_map(is_signed);
        return py::array_t<float>(256, values);  // a copy
      },
      arg("signed"),
      "bitsandbytes' dynamic quantization map (create_dynamic_map(signed)): the 256 sorted "
      "float32 values of the blockwise 8-bit state codes.");
  m.def("adam_kernel_seconds_", &adam_kernel_seconds_binding, arg("params"), arg("grads"),
        arg("exp_avgs"), arg("exp_avg_sqs"), arg("repeats"),
        "Seconds of each of `repeats` AdamW steps (defaults, steps 1, 2, ...) over the arrays, "
        "timed in C++ around the kernel call alone (no Python, no argument checks).");
  m.def("roofline_", &roofline_binding, arg("params"), arg("grads"), arg("exp_avgs"),
        arg("exp_avg_sqs"), arg("master_params") = py::none(),
        R"doc(Seven-stream memory roofline of an Adam step: reads params, grads, exp_avgs and
exp_avg_sqs and writes params, exp_avgs and exp_avg_sqs, with no math (it overwrites them).
Same threading and alignment as adam_; used by the benchmarks as the bandwidth limit.
Takes every storage adam_ takes (bfloat16/float16 params, bfloat16 or Blockwise8 state,
float32 master_params) and then moves the bytes that mode's update moves (8-bit absmax and
master weights included).)doc");
}

}  // namespace adamkern::bindings
