// ISA selection, threads and build information; the step counts of adamkern.torch's steady
// step.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <string>

#include "adamkern/dispatch.hpp"
#include "register.hpp"

namespace adamkern::bindings {

namespace py = pybind11;

namespace {

// The value of a one-element float32 or float64 array (a view of a torch step count), and
// where it is; TypeError for anything else.
struct Scalar {
  void* data;
  bool single;
};

Scalar scalar_of(py::handle item, bool written = false) {
  using api = py::detail::npy_api;
  if (!py::isinstance<py::array>(item)) throw py::type_error("expected NumPy arrays");
  const auto* array = py::detail::array_proxy(item.ptr());
  ssize_t size = 1;
  for (int k = 0; k < array->nd; ++k) size *= array->dimensions[k];
  const int type = py::detail::array_descriptor_proxy(array->descr)->type_num;
  const bool single = type == api::NPY_FLOAT_;
  if (!(single || type == api::NPY_DOUBLE_) || size != 1) {
    throw py::type_error("expected one-element float32 or float64 arrays");
  }
  if (written && !(array->flags & api::NPY_ARRAY_WRITEABLE_)) {
    throw py::value_error("expected writeable arrays");
  }
  return {array->data, single};
}

double value_of(py::handle item) {
  const Scalar s = scalar_of(item);
  return s.single ? *static_cast<const float*>(s.data) : *static_cast<const double*>(s.data);
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("available_isas", [] {
    py::list names;
    for (Isa isa : available_isas()) names.append(isa_name(isa));
    return names;
  });
  m.def("set_isa", [](const std::string& name) { set_isa(parse_isa(name)); }, py::arg("name"));
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("num_threads"));
  m.def("build_info", [] {
    const BuildInfo info = build_info();
    py::dict flags;
    for (const auto& [isa, isa_flags] : info.isa_flags) flags[py::str(isa)] = isa_flags;
    py::dict out;
    out["compiler"] = info.compiler;
    out["common_flags"] = info.common_flags;
    out["isa_flags"] = flags;
    out["openmp"] = info.openmp;
    out["openmp_version"] = info.openmp_version;
    return out;
  });
  // One C++ loop instead of a Python one over a training loop's ~150 step counts, whose
  // objects a backward pass has evicted from cache.
  m.def(
      "common_value",
      [](const py::list& arrays) -> py::object {
        if (arrays.empty()) return py::none();
        const double first = value_of(arrays[0]);
        for (py::handle item : arrays) {
          if (value_of(item) != first) return py::none();
        }
        return py::float_(first);
      },
      py::arg("arrays"),
      "The value every one-element array holds, or None where they differ (or one is NaN).");
  m.def(
      "fill_values_",
      [](const py::list& arrays, double value) {
        for (py::handle item : arrays) (void)scalar_of(item, true);
        for (py::handle item : arrays) {
          const Scalar s = scalar_of(item);
          if (s.single) {
            *static_cast<float*>(s.data) = static_cast<float>(value);
          } else {
            *static_cast<double*>(s.data) = value;
          }
        }
      },
      py::arg("arrays"), py::arg("value"),
      "Writes value into every one-element float32 or float64 array (all checked first).");
  // Resolve ADAMKERN_ISA now, so a bad value fails the import with a clear message.
  (void)active_isa();
}

}  // namespace adamkern::bindings
