// adamkern._cuda: the optional CUDA target (built with ADAMKERN_CUDA=ON). The Python layer
// (adamkern.cuda) reads the device arrays, validates them and passes their addresses in a Call;
// here every optimizer of the registry gets one binding, derived from its descriptor: the
// options are read and checked as the CPU binding does (keywords.hpp, prepare_step), the
// coefficients are computed by the descriptor, and the CUDA kernels are launched on the call's
// stream.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "adamkern/kernels.hpp"
#include "adamkern/optimizers.hpp"
#include "keywords.hpp"
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
      throw std::invalid_argument(
          "unsupported (param dtype, state dtype) pair; the state is "
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

// Prodigy's group scalars: the group's float64 host array, read and updated in place (the
// Python layer has checked its values with the host op).
py::array host_scalars(py::handle object) {
  auto array = py::reinterpret_borrow<py::array>(object);
  if (!py::isinstance<py::array>(object) || !array.dtype().is(py::dtype::of<double>()) ||
      array.size() < kProdigyScalars || !array.writeable() ||
      (array.flags() & py::array::c_style) == 0) {
    throw std::invalid_argument(
        "group_scalars must be a writable, contiguous float64 array "
        "of 6 (d, d_max, d_numerator, k, d_denom, d_hat)");
  }
  return array;
}

// adamkern._cuda.<name>_ for optimizer D: the launch for `call`, with D's options and step
// inputs as keywords (bindings/keywords.hpp, as adamkern._core takes them). The options are
// checked by the C++ API's prepare_step, as on the CPU. NAdam's mu_product is the value after
// this step: adamkern.cuda advances the host value through adamkern._core.nadam_ first.
template <class D>
void step_binding(const DeviceCall& call, const py::kwargs& kwargs) {
  bindings::Keywords keywords(std::string(D::kName) + "_", kwargs);
  const auto o = bindings::options_from<D>(keywords);
  StepArgs args = bindings::step_args_from<D>(keywords);
  [[maybe_unused]] double mu_product = 1.0;
  if constexpr (kTakesMuProduct<D>) {
    mu_product = keywords.real("mu_product");
    args.mu_product_f64 = &mu_product;  // checked as the stored value; replaced below
  }
  [[maybe_unused]] py::array group_scalars;
  if constexpr (kTakesGroupScalars<D>) {
    group_scalars = host_scalars(keywords.required("group_scalars"));
    args.group_scalars = static_cast<double*>(group_scalars.mutable_data());
  }
  keywords.finish();
  StepValues values = prepare_step<D>(o, args);
  if constexpr (kTakesMuProduct<D>) values.mu_product = mu_product;
  if constexpr (std::is_same_v<D, math::Prodigy>) {
    with_types(call, [&](auto param, auto state) {
      py::gil_scoped_release release;
      launch_prodigy<decltype(param), decltype(state)>(call, o, args.group_scalars);
    });
  } else if constexpr (std::is_same_v<D, math::Lamb>) {
    with_types(call, [&](auto param, auto state) {
      py::gil_scoped_release release;
      launch_lamb<decltype(param), decltype(state)>(call, o, values.step);
    });
  } else {
    const int variant = variant_of<D>(o, values);
    if (is_cautious_variant<D>(variant)) {
      if (call.lr != 0 || call.step != 0) {
        throw std::invalid_argument(std::string(D::kName) +
                                    "_: cautious=True takes lr and "
                                    "step as host numbers (not device tensors)");
      }
      with_types(call, [&](auto param, auto state) {
        using P = decltype(param);
        using S = decltype(state);
        const auto c = coefficients_of<D, Math<P>>(o, values);
        py::gil_scoped_release release;
        launch_cautious<D, P, S>(call, variant, c);
      });
      return;
    }
    if constexpr (std::is_same_v<D, math::Adam>) {
      if (call.lr != 0 || call.step != 0) {
        if (call.step == 0) throw std::invalid_argument("a device lr needs a device step");
        with_types(call, [&](auto param, auto state) {
          py::gil_scoped_release release;
          launch_adam_device_scalars<decltype(param), decltype(state)>(call, variant, o);
        });
        return;
      }
    }
    launch<D>(call, variant,
              [&](auto zero) { return coefficients_of<D, decltype(zero)>(o, values); });
  }
}

// adamkern._cuda.adafactor_: every tensor's step on `stream`, the options as keywords (read and
// checked as adamkern._core.adafactor_ reads them).
void adafactor_binding(const std::vector<AdafactorDeviceTensor>& tensors, DType dtype,
                       std::uintptr_t stream, int device, const py::kwargs& kwargs) {
  bindings::Keywords keywords("adafactor_", kwargs);
  const AdafactorOptions options = bindings::adafactor_options_from(keywords);
  keywords.finish();
  py::gil_scoped_release release;
  if (dtype == DType::float32) {
    launch_adafactor<float>(tensors, options, stream, device);
  } else if (dtype == DType::float64) {
    launch_adafactor<double>(tensors, options, stream, device);
  } else {
    throw std::invalid_argument("adafactor_: params must be float32 or float64");
  }
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

  py::class_<ak::AdafactorDeviceTensor>(m, "AdafactorTensor",
                                        "One Adafactor tensor by device address (validated).")
      .def(py::init<>())
      .def_readwrite("param", &ak::AdafactorDeviceTensor::param)
      .def_readwrite("grad", &ak::AdafactorDeviceTensor::grad)
      .def_readwrite("row_var", &ak::AdafactorDeviceTensor::row_var)
      .def_readwrite("col_var", &ak::AdafactorDeviceTensor::col_var)
      .def_readwrite("variance", &ak::AdafactorDeviceTensor::variance)
      .def_readwrite("batch", &ak::AdafactorDeviceTensor::batch)
      .def_readwrite("rows", &ak::AdafactorDeviceTensor::rows)
      .def_readwrite("cols", &ak::AdafactorDeviceTensor::cols)
      .def_readwrite("factored", &ak::AdafactorDeviceTensor::factored)
      .def_readwrite("step", &ak::AdafactorDeviceTensor::step);
  m.def("adafactor_", &ak::adafactor_binding, arg("tensors"), arg("dtype"), arg("stream"),
        arg("device"), "Launches adafactor_ on the stream; the options as keywords");

  m.def("device_count", &ak::device_count,
        "Number of CUDA devices; 0 (never an error) without a driver or a GPU.");
  m.def("pointer_device", &ak::pointer_device, arg("address"),
        "The device holding a device address, or -1 (host memory, unknown, or no GPU).");
  m.def("copy_", &ak::copy_async, arg("destination"), arg("source"), arg("bytes"), arg("stream"),
        arg("device"), "cudaMemcpyAsync device to device (the benchmarks' bandwidth roofline).");
  m.def("synchronize", &ak::synchronize, arg("device"));
  m.def("runtime_version", &ak::runtime_version_string, "CUDA runtime version built against.");

  std::apply(
      [&](auto... descriptors) {
        const auto define = [&](auto descriptor) {
          using D = decltype(descriptor);
          const std::string name = std::string(D::kName) + "_";
          m.def(name.c_str(), &ak::step_binding<D>, arg("call"),
                ("Launches " + name + " on the call's stream; the options as keywords").c_str());
        };
        (define(descriptors), ...);
      },
      adamkern::Optimizers{});
}
