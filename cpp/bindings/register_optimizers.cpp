// adamkern._core.<optimizer>_ and roofline_: check the arrays, release the GIL, call the C++ API.
// Defaults live in the Python layer (adamkern.ops); here every argument is required.
#include <algorithm>
#include <chrono>
#include <initializer_list>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "adamkern/kernels.hpp"
#include "adamkern/optimizers.hpp"
#include "arrays.hpp"
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
  DType dtype = DType::float32;         // of the params
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

  std::vector<MixedTensor> mixed_tensors() const {
    const auto format = [](DType dtype, const ArrayList& list) {
      if (list.blockwise) {
        return list.is_signed ? Format::blockwise8_signed : Format::blockwise8_unsigned;
      }
      return dtype == DType::bfloat16 ? Format::bfloat16
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
                       bool grads_written, std::initializer_list<StateArg> states) {
  CallArrays call{array_list(params, "params", true), array_list(grads, "grads", grads_written),
                  {}, {}};
  std::vector<const ArrayList*> lists{&call.params, &call.grads};
  call.states.reserve(states.size());
  for (const StateArg& state : states) {
    if (state.used && state.object.is_none()) {
      throw py::value_error(std::string(state.needs ? state.needs : "this optimizer") +
                            " needs " + state.name + " (one array per param), got None");
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
                                          "but params[0] has dtype ") + dtype_name(call.dtype));
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
void run(const CallArrays& call, Fn&& fn) {
  const auto release_and_call = [&](const auto& tensors) {
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

void adam_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                  py::handle exp_avg_sqs, py::handle max_exp_avg_sqs, Real step, Real lr,
                  Real beta1, Real beta2, Real eps, Real weight_decay,
                  bool decoupled_weight_decay, bool amsgrad, bool maximize, bool epsilon_hat,
                  py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{exp_avgs, "exp_avgs"},
                                       {exp_avg_sqs, "exp_avg_sqs"},
                                       {max_exp_avg_sqs, "max_exp_avg_sqs", amsgrad, "amsgrad=True"}});
  AdamOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.decoupled_weight_decay = decoupled_weight_decay;
  o.amsgrad = amsgrad;
  o.maximize = maximize;
  o.epsilon_hat = epsilon_hat;
  run(call, [&](const auto* tensors, std::size_t count) {
    adam_step(tensors, count, o, step, amp.args);
  });
}

void adamax_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                    py::handle exp_infs, Real step, Real lr, Real beta1, Real beta2,
                    Real eps, Real weight_decay, bool maximize, py::handle grad_scale,
                    py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{exp_avgs, "exp_avgs"}, {exp_infs, "exp_infs"}});
  AdamaxOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    adamax_step(tensors, count, o, step, amp.args);
  });
}

// mu_product: torch's NAdam state, a one-element float32 or float64 array updated in place
// (mu_product *= mu_step, in the array's precision, as torch's tensor arithmetic does).
void nadam_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                   py::handle exp_avg_sqs, py::handle mu_product, Real step, Real lr,
                   Real beta1, Real beta2, Real eps, Real weight_decay,
                   Real momentum_decay, bool decoupled_weight_decay, bool maximize,
                   py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  ArrayList product = array_list(mu_product, "mu_product", true);
  if (product.arrays.size() != 1 || product.arrays[0].size() != 1) {
    throw py::value_error("mu_product must be one array holding one value (torch's "
                          "state['mu_product'], 1.0 before the first step)");
  }
  const DType product_dtype = check_array_lists({&product});
  std::vector<const ArrayList*> call_lists{&call.params, &call.grads, &call.master};
  for (const ArrayList& state : call.states) call_lists.push_back(&state);
  check_disjoint(product.arrays[0], "mu_product", call_lists);
  py::array& product_array = product.arrays[0];
  NadamOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.momentum_decay = momentum_decay;
  o.decoupled_weight_decay = decoupled_weight_decay;
  o.maximize = maximize;
  const double stored = product_dtype == DType::float32
                            ? static_cast<double>(*data_of<float>(product_array))
                            : *data_of<double>(product_array);
  // 0 is reached: a float32 product of coefficients below 1 underflows (torch's too, at step
  // 133 with the defaults) and torch goes on with it
  if (!(stored >= 0.0 && stored <= 1.0)) {
    throw py::value_error("mu_product must be in [0, 1] (torch's state['mu_product'], 1.0 "
                          "before the first step), got " + py::str(py::float_(stored)).cast<std::string>());
  }
  const double mu = nadam_mu(o, step);
  const double updated = product_dtype == DType::float32
                             ? static_cast<double>(static_cast<float>(stored) * static_cast<float>(mu))
                             : stored * mu;
  run(call, [&](const auto* tensors, std::size_t count) {
    nadam_step(tensors, count, o, step, updated, amp.args);
  });
  if (amp.skips()) return;
  if (product_dtype == DType::float32) {
    *data_of<float>(product_array) = static_cast<float>(updated);
  } else {
    *data_of<double>(product_array) = updated;
  }
}

void radam_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                   py::handle exp_avg_sqs, Real step, Real lr, Real beta1, Real beta2,
                   Real eps, Real weight_decay, bool decoupled_weight_decay, bool maximize,
                   py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  RadamOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.decoupled_weight_decay = decoupled_weight_decay;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    radam_step(tensors, count, o, step, amp.args);
  });
}

void rmsprop_binding(py::handle params, py::handle grads, py::handle square_avgs,
                     py::handle momentum_buffers, py::handle grad_avgs, Real lr, Real alpha,
                     Real eps, Real weight_decay, Real momentum, bool centered,
                     bool maximize, bool eps_inside_sqrt, py::handle grad_scale,
                     py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
      {{square_avgs, "square_avgs"},
       {momentum_buffers, "momentum_buffers", momentum > 0.0, "momentum > 0"},
       {grad_avgs, "grad_avgs", centered, "centered=True"}});
  RmspropOptions o;
  o.lr = lr;
  o.alpha = alpha;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.momentum = momentum;
  o.centered = centered;
  o.maximize = maximize;
  o.eps_inside_sqrt = eps_inside_sqrt;
  run(call, [&](const auto* tensors, std::size_t count) {
    rmsprop_step(tensors, count, o, amp.args);
  });
}

void adagrad_binding(py::handle params, py::handle grads, py::handle state_sums, Real step,
                     Real lr, Real lr_decay, Real weight_decay, Real eps, bool maximize,
                     bool eps_inside_sqrt, py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call =
      call_arrays(precision, params, grads, amp.unscales(), {{state_sums, "state_sums"}});
  AdagradOptions o;
  o.lr = lr;
  o.lr_decay = lr_decay;
  o.weight_decay = weight_decay;
  o.eps = eps;
  o.maximize = maximize;
  o.eps_inside_sqrt = eps_inside_sqrt;
  run(call, [&](const auto* tensors, std::size_t count) {
    adagrad_step(tensors, count, o, step, amp.args);
  });
}

void adadelta_binding(py::handle params, py::handle grads, py::handle square_avgs,
                      py::handle acc_deltas, Real lr, Real rho, Real eps,
                      Real weight_decay, bool maximize, py::handle grad_scale,
                      py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{square_avgs, "square_avgs"}, {acc_deltas, "acc_deltas"}});
  AdadeltaOptions o;
  o.lr = lr;
  o.rho = rho;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    adadelta_step(tensors, count, o, amp.args);
  });
}

void sgd_binding(py::handle params, py::handle grads, py::handle momentum_buffers, Real lr,
                 Real momentum, Real dampening, Real weight_decay, bool nesterov,
                 bool maximize, bool is_first_step, py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call =
      call_arrays(precision, params, grads, amp.unscales(),
                  {{momentum_buffers, "momentum_buffers", momentum != 0.0, "momentum != 0"}});
  SgdOptions o;
  o.lr = lr;
  o.momentum = momentum;
  o.dampening = dampening;
  o.weight_decay = weight_decay;
  o.nesterov = nesterov;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    sgd_step(tensors, count, o, is_first_step, amp.args);
  });
}

void lion_binding(py::handle params, py::handle grads, py::handle exp_avgs, Real lr,
                  Real beta1, Real beta2, Real weight_decay, bool maximize,
                  py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(), {{exp_avgs, "exp_avgs"}});
  LionOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    lion_step(tensors, count, o, amp.args);
  });
}

// adabelief_, lamb_ and yogi_ share one signature: two moments and optax's eps/eps_root.
template <class Options>
Options optax_adam_like(double lr, double beta1, double beta2, double eps, double eps_root,
                        double weight_decay, bool maximize) {
  Options o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.eps_root = eps_root;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  return o;
}

template <class Options, const char* kSecondMoment>
void optax_adam_like_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                             py::handle second_moments, Real step, Real lr, Real beta1,
                             Real beta2, Real eps, Real eps_root, Real weight_decay,
                             bool maximize, py::handle grad_scale, py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call =
      call_arrays(precision, params, grads, amp.unscales(),
                  {{exp_avgs, "exp_avgs"}, {second_moments, kSecondMoment}});
  const auto o = optax_adam_like<Options>(lr, beta1, beta2, eps, eps_root, weight_decay, maximize);
  run(call, [&](const auto* tensors, std::size_t count) {
    if constexpr (std::is_same_v<Options, AdabeliefOptions>) {
      adabelief_step(tensors, count, o, step, amp.args);
    } else if constexpr (std::is_same_v<Options, LambOptions>) {
      lamb_step(tensors, count, o, step, amp.args);
    } else {
      yogi_step(tensors, count, o, step, amp.args);
    }
  });
}

constexpr char kExpAvgVars[] = "exp_avg_vars";
constexpr char kExpAvgSqs[] = "exp_avg_sqs";

void adan_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                  py::handle exp_avg_diffs, py::handle exp_avg_sqs, py::handle prev_grads,
                  Real step, Real lr, Real beta1, Real beta2, Real beta3, Real eps,
                  Real eps_root, Real weight_decay, bool maximize, py::handle grad_scale,
                  py::handle found_inf, py::handle precision) {
  const Amp amp(grad_scale, found_inf);
  const CallArrays call = call_arrays(precision, params, grads, amp.unscales(),
                                      {{exp_avgs, "exp_avgs"},
                                       {exp_avg_diffs, "exp_avg_diffs"},
                                       {exp_avg_sqs, "exp_avg_sqs"},
                                       {prev_grads, "prev_grads"}});
  AdanOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.beta3 = beta3;
  o.eps = eps;
  o.eps_root = eps_root;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  run(call, [&](const auto* tensors, std::size_t count) {
    adan_step(tensors, count, o, step, amp.args);
  });
}

void roofline_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                      py::handle exp_avg_sqs, py::handle master_params) {
  const py::object precision =
      master_params.is_none() ? py::object(py::none()) : py::make_tuple(master_params, false, 0);
  const CallArrays call = call_arrays(precision, params, grads, false,
                                      {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  run(call, [&](const auto* tensors, std::size_t count) { roofline_step(tensors, count); });
}

// Seconds of each of `repeats` AdamW steps (defaults) over the arrays, timed in C++ around
// the C++ API call alone: the kernel time that the call-overhead benchmark subtracts.
py::list adam_kernel_seconds_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                                     py::handle exp_avg_sqs, int repeats) {
  const CallArrays call = call_arrays(py::none(), params, grads, false,
                                      {{exp_avgs, "exp_avgs"}, {exp_avg_sqs, "exp_avg_sqs"}});
  AdamOptions o;
  o.decoupled_weight_decay = true;
  o.weight_decay = 1e-2;
  std::vector<double> seconds(static_cast<std::size_t>(std::max(repeats, 0)));
  run(call, [&](const auto* tensors, std::size_t count) {
    for (std::size_t r = 0; r < seconds.size(); ++r) {
      const auto start = std::chrono::steady_clock::now();
      adam_step(tensors, count, o, static_cast<double>(r + 1), AmpArgs{});
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

// {name: {"takes_step": bool, "options": {option: {"default", "range", "label"} or
// {"default"} for a flag}, "state": [each buffer's description, in order]}} of every
// optimizer in the registry (adamkern/optimizers.hpp).
py::dict optimizer_options() {
  py::dict out;
  std::apply(
      [&](auto... descriptors) {
        const auto describe = [&](auto descriptor) {
          using D = decltype(descriptor);
          const typename D::Options defaults{};
          py::dict options;
          for (const auto& option : D::kNumbers) {
            options[option.name] = py::dict(py::arg("default") = defaults.*option.member,
                                            py::arg("range") = range_name(option.range),
                                            py::arg("label") = option.shown());
          }
          for (const auto& flag : D::kFlags) {
            options[flag.name] = py::dict(py::arg("default") = defaults.*flag.member);
          }
          static_assert(std::size(D::kState) <= kMaxStateBuffers);
          py::list state;
          for (const math::StateBuffer& buffer : D::kState) {
            state.append(py::dict(
                py::arg("name") = buffer.name, py::arg("argument") = buffer.argument,
                py::arg("signed") = buffer.is_signed,
                py::arg("needed") = needed_name(buffer.needed),
                py::arg("option") = optional_str(buffer.option),
                py::arg("initial_option") = optional_str(buffer.initial_option),
                py::arg("initial") = buffer.initial));
          }
          out[D::kName] = py::dict(py::arg("takes_step") = D::kTakesStep,
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
  m.def("adam_", &adam_binding, arg("params"), arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"),
        arg("max_exp_avg_sqs").none(true), arg("step"), arg("lr"), arg("beta1"), arg("beta2"),
        arg("eps"), arg("weight_decay"), arg("decoupled_weight_decay"), arg("amsgrad"),
        arg("maximize"), arg("epsilon_hat"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place Adam/AdamW step (see adamkern.adam_).");
  m.def("adamax_", &adamax_binding, arg("params"), arg("grads"), arg("exp_avgs"),
        arg("exp_infs"), arg("step"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"),
        arg("weight_decay"), arg("maximize"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place Adamax step (see adamkern.adamax_).");
  m.def("nadam_", &nadam_binding, arg("params"), arg("grads"), arg("exp_avgs"),
        arg("exp_avg_sqs"), arg("mu_product"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("weight_decay"), arg("momentum_decay"),
        arg("decoupled_weight_decay"), arg("maximize"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place NAdam step (see adamkern.nadam_).");
  m.def("radam_", &radam_binding, arg("params"), arg("grads"), arg("exp_avgs"),
        arg("exp_avg_sqs"), arg("step"), arg("lr"), arg("beta1"), arg("beta2"), arg("eps"),
        arg("weight_decay"), arg("decoupled_weight_decay"), arg("maximize"),
        arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place RAdam step (see adamkern.radam_).");
  m.def("rmsprop_", &rmsprop_binding, arg("params"), arg("grads"), arg("square_avgs"),
        arg("momentum_buffers").none(true), arg("grad_avgs").none(true), arg("lr"),
        arg("alpha"), arg("eps"), arg("weight_decay"), arg("momentum"), arg("centered"),
        arg("maximize"), arg("eps_inside_sqrt"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place RMSprop step (see adamkern.rmsprop_).");
  m.def("adagrad_", &adagrad_binding, arg("params"), arg("grads"), arg("state_sums"),
        arg("step"), arg("lr"), arg("lr_decay"), arg("weight_decay"), arg("eps"),
        arg("maximize"), arg("eps_inside_sqrt"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place Adagrad step (see adamkern.adagrad_).");
  m.def("adadelta_", &adadelta_binding, arg("params"), arg("grads"), arg("square_avgs"),
        arg("acc_deltas"), arg("lr"), arg("rho"), arg("eps"), arg("weight_decay"),
        arg("maximize"), arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place Adadelta step (see adamkern.adadelta_).");
  m.def("sgd_", &sgd_binding, arg("params"), arg("grads"), arg("momentum_buffers").none(true),
        arg("lr"), arg("momentum"), arg("dampening"), arg("weight_decay"), arg("nesterov"),
        arg("maximize"), arg("is_first_step"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place SGD step (see adamkern.sgd_).");
  m.def("lion_", &lion_binding, arg("params"), arg("grads"), arg("exp_avgs"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("weight_decay"), arg("maximize"),
        arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place Lion step (see adamkern.lion_).");
  m.def("adabelief_", &optax_adam_like_binding<AdabeliefOptions, kExpAvgVars>, arg("params"),
        arg("grads"), arg("exp_avgs"), arg("exp_avg_vars"), arg("step"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"),
        arg("maximize"), arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place AdaBelief step (see adamkern.adabelief_).");
  m.def("lamb_", &optax_adam_like_binding<LambOptions, kExpAvgSqs>, arg("params"),
        arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("step"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"),
        arg("maximize"), arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place LAMB step (see adamkern.lamb_).");
  m.def("yogi_", &optax_adam_like_binding<YogiOptions, kExpAvgSqs>, arg("params"),
        arg("grads"), arg("exp_avgs"), arg("exp_avg_sqs"), arg("step"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"),
        arg("maximize"), arg("grad_scale").none(true), arg("found_inf").none(true), arg("precision") = py::none(),
        "Fused in-place Yogi step (see adamkern.yogi_).");
  m.def("adan_", &adan_binding, arg("params"), arg("grads"), arg("exp_avgs"),
        arg("exp_avg_diffs"), arg("exp_avg_sqs"), arg("prev_grads"), arg("step"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("beta3"), arg("eps"), arg("eps_root"),
        arg("weight_decay"), arg("maximize"), arg("grad_scale").none(true),
        arg("found_inf").none(true), arg("precision") = py::none(), "Fused in-place Adan step (see adamkern.adan_).");
  m.def("optimizer_options", &optimizer_options,
        "Every optimizer's options as its C++ header describes them: default, range and the "
        "name used in messages, and whether its entry point takes `step`.");
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
