// adamkern._cuda: the optional CUDA target (built with ADAMKERN_CUDA=ON). The Python layer
// (adamkern.cuda) reads the device arrays, validates them and passes their addresses in a Call;
// here the options are validated by the CPU entry points themselves (a call with no tensors
// checks every hyperparameter and throws the same errors), the coefficients are computed by the
// kernel's own K::coefficients, and the CUDA kernels are launched on the call's stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "adamkern/kernels.hpp"
#include "adamkern/math/adadelta.hpp"
#include "adamkern/math/adagrad.hpp"
#include "adamkern/math/adabelief.hpp"
#include "adamkern/math/adam.hpp"
#include "adamkern/math/adamax.hpp"
#include "adamkern/math/adan.hpp"
#include "adamkern/math/lamb.hpp"
#include "adamkern/math/lion.hpp"
#include "adamkern/math/nadam.hpp"
#include "adamkern/math/radam.hpp"
#include "adamkern/math/rmsprop.hpp"
#include "adamkern/math/sgd.hpp"
#include "adamkern/math/yogi.hpp"
#include "launch.hpp"

namespace py = pybind11;

namespace adamkern::cuda {
namespace {

// Calls typed(param_tag, state_tag) for the call's (dtype, state dtype) pair.
template <class Typed>
void with_types(const DeviceCall& call, Typed&& typed) {
  const auto pair = [](DType a, DType b) { return static_cast<int>(a) * 4 + static_cast<int>(b); };
  switch (pair(call.dtype, call.state_dtype)) {
    case 0 * 4 + 0: return typed(float{}, float{});
    case 1 * 4 + 1: return typed(double{}, double{});
    case 2 * 4 + 2: return typed(Half{}, Half{});
    case 2 * 4 + 0: return typed(Half{}, float{});
    case 3 * 4 + 3: return typed(BFloat16{}, BFloat16{});
    case 3 * 4 + 0: return typed(BFloat16{}, float{});
    default:
      throw std::invalid_argument("unsupported (param dtype, state dtype) pair; the state is "
                                  "the param dtype, or float32 with 16-bit params");
  }
}

// Launches kernel K; coefficients(zero) returns K's Coefficients for the math type of zero.
template <class K, class Coefficients>
void launch(const DeviceCall& call, int variant, Coefficients&& coefficients) {
  with_types(call, [&](auto param, auto state) {
    using P = decltype(param);
    using S = decltype(state);
    const auto c = coefficients(Math<P>{});
    py::gil_scoped_release release;
    launch_update<K, P, S>(call, variant, c);
  });
}

// A call with no tensors: the CPU entry point checks the options and touches nothing.
constexpr const Tensor<float>* no_tensors = nullptr;

math::WeightDecay adam_decay(const AdamOptions& o) {
  return o.weight_decay == 0.0 ? math::WeightDecay::none
         : o.decoupled_weight_decay ? math::WeightDecay::decoupled
                                    : math::WeightDecay::l2;
}

void adam_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                  double eps, double weight_decay, bool decoupled_weight_decay, bool amsgrad,
                  bool maximize, bool epsilon_hat) {
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
  validate_adam_options(o, step);
  const int variant = math::Adam::variant(adam_decay(o), amsgrad);
  if (call.lr != 0 || call.step != 0) {
    if (call.step == 0) throw std::invalid_argument("a device lr needs a device step");
    with_types(call, [&](auto param, auto state) {
      py::gil_scoped_release release;
      launch_adam_device_scalars<decltype(param), decltype(state)>(call, variant, o);
    });
    return;
  }
  launch<math::Adam>(call, variant, [&](auto zero) {
    return math::Adam::coefficients<decltype(zero)>(o, step);
  });
}

void adamax_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                    double eps, double weight_decay, bool maximize) {
  AdamaxOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  adamax_step(no_tensors, 0, o, step);
  launch<math::Adamax>(call, 0, [&](auto zero) {
    return math::Adamax::coefficients<decltype(zero)>(o, step);
  });
}

void nadam_binding(const DeviceCall& call, double step, double mu_product, double lr,
                   double beta1, double beta2, double eps, double weight_decay,
                   double momentum_decay, bool decoupled_weight_decay, bool maximize) {
  NadamOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.momentum_decay = momentum_decay;
  o.decoupled_weight_decay = decoupled_weight_decay;
  o.maximize = maximize;
  nadam_step(no_tensors, 0, o, step, mu_product);
  launch<math::Nadam>(call, 0, [&](auto zero) {
    return math::Nadam::coefficients<decltype(zero)>(o, step, mu_product);
  });
}

void radam_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                   double eps, double weight_decay, bool decoupled_weight_decay, bool maximize) {
  RadamOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.decoupled_weight_decay = decoupled_weight_decay;
  o.maximize = maximize;
  radam_step(no_tensors, 0, o, step);
  launch<math::Radam>(call, 0, [&](auto zero) {
    return math::Radam::coefficients<decltype(zero)>(o, step);
  });
}

void rmsprop_binding(const DeviceCall& call, double lr, double alpha, double eps,
                     double weight_decay, double momentum, bool centered, bool maximize,
                     bool eps_inside_sqrt) {
  RmspropOptions o;
  o.lr = lr;
  o.alpha = alpha;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.momentum = momentum;
  o.centered = centered;
  o.maximize = maximize;
  o.eps_inside_sqrt = eps_inside_sqrt;
  rmsprop_step(no_tensors, 0, o);
  launch<math::Rmsprop>(call, math::Rmsprop::variant(momentum > 0.0, centered), [&](auto zero) {
    return math::Rmsprop::coefficients<decltype(zero)>(o);
  });
}

void adagrad_binding(const DeviceCall& call, double step, double lr, double lr_decay,
                     double weight_decay, double eps, bool maximize, bool eps_inside_sqrt) {
  AdagradOptions o;
  o.lr = lr;
  o.lr_decay = lr_decay;
  o.weight_decay = weight_decay;
  o.eps = eps;
  o.maximize = maximize;
  o.eps_inside_sqrt = eps_inside_sqrt;
  adagrad_step(no_tensors, 0, o, step);
  launch<math::Adagrad>(call, 0, [&](auto zero) {
    return math::Adagrad::coefficients<decltype(zero)>(o, step);
  });
}

void adadelta_binding(const DeviceCall& call, double lr, double rho, double eps,
                      double weight_decay, bool maximize) {
  AdadeltaOptions o;
  o.lr = lr;
  o.rho = rho;
  o.eps = eps;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  adadelta_step(no_tensors, 0, o);
  launch<math::Adadelta>(call, 0, [&](auto zero) {
    return math::Adadelta::coefficients<decltype(zero)>(o);
  });
}

void sgd_binding(const DeviceCall& call, double lr, double momentum, double dampening,
                 double weight_decay, bool nesterov, bool maximize, bool is_first_step) {
  SgdOptions o;
  o.lr = lr;
  o.momentum = momentum;
  o.dampening = dampening;
  o.weight_decay = weight_decay;
  o.nesterov = nesterov;
  o.maximize = maximize;
  sgd_step(no_tensors, 0, o, is_first_step);
  launch<math::Sgd>(call, math::Sgd::variant(momentum != 0.0, is_first_step), [&](auto zero) {
    return math::Sgd::coefficients<decltype(zero)>(o);
  });
}

void lion_binding(const DeviceCall& call, double lr, double beta1, double beta2,
                  double weight_decay, bool maximize) {
  LionOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  lion_step(no_tensors, 0, o);
  launch<math::Lion>(call, 0, [&](auto zero) {
    return math::Lion::coefficients<decltype(zero)>(o);
  });
}

// AdaBelief, Yogi and LAMB share optax's adam-like options.
template <class Options>
Options optax_options(double lr, double beta1, double beta2, double eps, double eps_root,
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

void adabelief_binding(const DeviceCall& call, double step, double lr, double beta1,
                       double beta2, double eps, double eps_root, double weight_decay,
                       bool maximize) {
  const auto o = optax_options<AdabeliefOptions>(lr, beta1, beta2, eps, eps_root, weight_decay,
                                                 maximize);
  adabelief_step(no_tensors, 0, o, step);
  launch<math::Adabelief>(call, 0, [&](auto zero) {
    return math::Adabelief::coefficients<decltype(zero)>(o, step);
  });
}

void yogi_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                  double eps, double eps_root, double weight_decay, bool maximize) {
  const auto o = optax_options<YogiOptions>(lr, beta1, beta2, eps, eps_root, weight_decay,
                                            maximize);
  yogi_step(no_tensors, 0, o, step);
  launch<math::Yogi>(call, 0, [&](auto zero) {
    return math::Yogi::coefficients<decltype(zero)>(o, step);
  });
}

void lamb_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                  double eps, double eps_root, double weight_decay, bool maximize) {
  const auto o = optax_options<LambOptions>(lr, beta1, beta2, eps, eps_root, weight_decay,
                                            maximize);
  lamb_step(no_tensors, 0, o, step);
  with_types(call, [&](auto param, auto state) {
    py::gil_scoped_release release;
    launch_lamb<decltype(param), decltype(state)>(call, o, step);
  });
}

void adan_binding(const DeviceCall& call, double step, double lr, double beta1, double beta2,
                  double beta3, double eps, double eps_root, double weight_decay, bool maximize) {
  AdanOptions o;
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.beta3 = beta3;
  o.eps = eps;
  o.eps_root = eps_root;
  o.weight_decay = weight_decay;
  o.maximize = maximize;
  adan_step(no_tensors, 0, o, step);
  launch<math::Adan>(call, step == 1.0 ? 0 : 1, [&](auto zero) {
    return math::Adan::coefficients<decltype(zero)>(o, step);
  });
}

}  // namespace
}  // namespace adamkern::cuda

PYBIND11_MODULE(_cuda, m) {
  using adamkern::cuda::DeviceCall;
  using adamkern::cuda::DType;
  using py::arg;
  namespace ak = adamkern::cuda;
  m.doc() = R"doc(adamkern's optional CUDA kernels (built with ADAMKERN_CUDA=ON). Use them through
adamkern's functional ops, which accept CUDA arrays (__cuda_array_interface__ or DLPack) and
validate them; the functions here take raw device addresses and trust them.)doc";

  py::enum_<DType>(m, "DType")
      .value("float32", DType::float32)
      .value("float64", DType::float64)
      .value("float16", DType::float16)
      .value("bfloat16", DType::bfloat16);

  py::class_<DeviceCall>(m, "Call", "The device arrays of one call, as addresses (validated).")
      .def(py::init<>())
      .def_readwrite("params", &DeviceCall::params)
      .def_readwrite("grads", &DeviceCall::grads)
      .def_property(
          "states",
          [](const DeviceCall& c) {
            py::list out;
            for (const auto& s : c.states) out.append(py::cast(s));
            return out;
          },
          [](DeviceCall& c, const std::vector<std::vector<std::uintptr_t>>& states) {
            if (states.size() > adamkern::kMaxStateBuffers) {
              throw py::value_error("at most 4 state lists");
            }
            for (std::size_t k = 0; k < adamkern::kMaxStateBuffers; ++k) {
              c.states[k] = k < states.size() ? states[k] : std::vector<std::uintptr_t>{};
            }
          })
      .def_readwrite("sizes", &DeviceCall::sizes)
      .def_readwrite("dtype", &DeviceCall::dtype)
      .def_readwrite("state_dtype", &DeviceCall::state_dtype)
      .def_readwrite("stream", &DeviceCall::stream)
      .def_readwrite("device", &DeviceCall::device)
      .def_readwrite("grad_scale", &DeviceCall::grad_scale)
      .def_readwrite("found_inf", &DeviceCall::found_inf)
      .def_readwrite("host_grad_scale", &DeviceCall::host_grad_scale)
      .def_readwrite("unscale", &DeviceCall::unscale)
      .def_readwrite("lr", &DeviceCall::lr)
      .def_readwrite("step", &DeviceCall::step);

  m.def("device_count", &ak::device_count,
        "Number of CUDA devices; 0 (never an error) without a driver or a GPU.");
  m.def("pointer_device", &ak::pointer_device, arg("address"),
        "The device holding a device address, or -1 (host memory, unknown, or no GPU).");
  m.def("copy_", &ak::copy_async, arg("destination"), arg("source"), arg("bytes"),
        arg("stream"), arg("device"),
        "cudaMemcpyAsync device to device (the benchmarks' bandwidth roofline).");
  m.def("synchronize", &ak::synchronize, arg("device"));
  m.def("runtime_version", &ak::runtime_version_string, "CUDA runtime version built against.");

  m.def("adam_", &ak::adam_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled_weight_decay"),
        arg("amsgrad"), arg("maximize"), arg("epsilon_hat"));
  m.def("adamax_", &ak::adamax_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("weight_decay"), arg("maximize"));
  m.def("nadam_", &ak::nadam_binding, arg("call"), arg("step"), arg("mu_product"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("momentum_decay"),
        arg("decoupled_weight_decay"), arg("maximize"));
  m.def("radam_", &ak::radam_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled_weight_decay"),
        arg("maximize"));
  m.def("rmsprop_", &ak::rmsprop_binding, arg("call"), arg("lr"), arg("alpha"), arg("eps"),
        arg("weight_decay"), arg("momentum"), arg("centered"), arg("maximize"),
        arg("eps_inside_sqrt"));
  m.def("adagrad_", &ak::adagrad_binding, arg("call"), arg("step"), arg("lr"), arg("lr_decay"),
        arg("weight_decay"), arg("eps"), arg("maximize"), arg("eps_inside_sqrt"));
  m.def("adadelta_", &ak::adadelta_binding, arg("call"), arg("lr"), arg("rho"), arg("eps"),
        arg("weight_decay"), arg("maximize"));
  m.def("sgd_", &ak::sgd_binding, arg("call"), arg("lr"), arg("momentum"), arg("dampening"),
        arg("weight_decay"), arg("nesterov"), arg("maximize"), arg("is_first_step"));
  m.def("lion_", &ak::lion_binding, arg("call"), arg("lr"), arg("beta1"), arg("beta2"),
        arg("weight_decay"), arg("maximize"));
  m.def("adabelief_", &ak::adabelief_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"), arg("maximize"));
  m.def("yogi_", &ak::yogi_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"), arg("maximize"));
  m.def("lamb_", &ak::lamb_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("eps_root"), arg("weight_decay"), arg("maximize"));
  m.def("adan_", &ak::adan_binding, arg("call"), arg("step"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("beta3"), arg("eps"), arg("eps_root"), arg("weight_decay"),
        arg("maximize"));
}
