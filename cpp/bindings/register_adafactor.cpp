// adamkern._core.adafactor_: Adafactor's shape-aware step (adamkern/adafactor.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "adamkern/adafactor.hpp"
#include "keywords.hpp"
#include "register.hpp"

namespace adamkern::bindings {
namespace {

namespace py = pybind11;

std::string shape_of(const std::vector<py::ssize_t>& shape) {
  std::string out = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) {
    out += std::to_string(shape[k]) + (shape.size() == 1 || k + 1 < shape.size() ? "," : "");
    if (k + 1 < shape.size()) out += " ";
  }
  return out + ")";
}

std::vector<py::ssize_t> shape_of_array(const py::array& a) {
  return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// The arrays of one list argument; None items stay None (a param's unused state).
std::vector<py::object> items_of(py::handle list, const char* name) {
  if (!py::isinstance<py::list>(list) && !py::isinstance<py::tuple>(list)) {
    throw py::type_error(std::string("adafactor_: ") + name + " must be a list");
  }
  std::vector<py::object> items;
  for (py::handle item : list) items.push_back(py::reinterpret_borrow<py::object>(item));
  return items;
}

template <class T>
bool has_dtype(const py::array& a) {
  return a.dtype().is(py::dtype::of<T>());
}

// Array `name`[i]: an ndarray of dtype T, C-contiguous, writable if written, of `shape`.
template <class T>
py::array checked(const py::object& item, const std::string& name, std::size_t i,
                  const std::vector<py::ssize_t>& shape, bool written) {
  const std::string label = name + "[" + std::to_string(i) + "]";
  if (item.is_none()) throw py::value_error(label + " is required, got None");
  if (!py::isinstance<py::array>(item)) {
    throw py::type_error(label + " must be a NumPy array, got " +
                         std::string(py::str(py::type::of(item).attr("__name__"))));
  }
  py::array array = py::reinterpret_borrow<py::array>(item);
  if (!has_dtype<T>(array)) {
    throw py::type_error(label + " has dtype " + std::string(py::str(array.dtype())) +
                         "; expected " + std::string(py::str(py::dtype::of<T>())) +
                         " as params[0] (native byte order)");
  }
  if (shape_of_array(array) != shape) {
    throw py::value_error(label + " has shape " + shape_of(shape_of_array(array)) + "; expected " +
                          shape_of(shape));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(label +
                          " is not C-contiguous; pass a contiguous array "
                          "(an in-place update cannot work on a copy)");
  }
  if (written && !array.writeable()) {
    throw py::value_error(label + " is read-only; it is updated in place");
  }
  return array;
}

template <class T>
T* data_of(const py::array& a) {
  return static_cast<T*>(const_cast<void*>(a.data()));
}

template <class T>
void step_of(const std::vector<py::object> (&lists)[5], const std::vector<double>& steps,
             const AdafactorOptions& options) {
  const std::size_t count = lists[0].size();
  std::vector<AdafactorTensor<T>> tensors(count);
  for (std::size_t i = 0; i < count; ++i) {
    const std::string label = "params[" + std::to_string(i) + "]";
    if (!py::isinstance<py::array>(lists[0][i])) {
      throw py::type_error(label + " must be a NumPy array");
    }
    const auto shape = shape_of_array(py::reinterpret_borrow<py::array>(lists[0][i]));
    if (shape.empty()) {
      throw py::value_error(label +
                            " is 0-d; Adafactor steps vectors and tensors with two or "
                            "more dimensions (reshape a scalar to (1,))");
    }
    const py::array param = checked<T>(lists[0][i], "params", i, shape, true);
    const py::array grad = checked<T>(lists[1][i], "grads", i, shape, false);
    AdafactorTensor<T>& t = tensors[i];
    t.param = data_of<T>(param);
    t.grad = data_of<T>(grad);
    t.step = steps[i];
    const auto unused = [&](std::size_t list, const char* name) {
      if (!lists[list][i].is_none()) {
        throw py::value_error(
            std::string(name) + "[" + std::to_string(i) + "] must be None for a " +
            (shape.size() >= 2 ? "param with two or more dimensions" : "vector param"));
      }
    };
    if (shape.size() >= 2) {
      t.factored = true;
      t.rows = shape[shape.size() - 2];
      t.cols = shape[shape.size() - 1];
      t.batch = 1;
      for (std::size_t k = 0; k + 2 < shape.size(); ++k) t.batch *= shape[k];
      auto row_shape = shape, col_shape = shape;
      row_shape.back() = 1;
      col_shape[shape.size() - 2] = 1;
      t.row_var = data_of<T>(checked<T>(lists[2][i], "row_vars", i, row_shape, true));
      t.col_var = data_of<T>(checked<T>(lists[3][i], "col_vars", i, col_shape, true));
      unused(4, "variances");
    } else {
      t.cols = shape[0];
      t.variance = data_of<T>(checked<T>(lists[4][i], "variances", i, shape, true));
      unused(2, "row_vars");
      unused(3, "col_vars");
    }
  }
  py::gil_scoped_release release;
  adafactor_step(tensors.data(), tensors.size(), options);
}

void adafactor_binding(const py::kwargs& kwargs) {
  Keywords keywords("adafactor_", kwargs);
  static const char* const names[5] = {"params", "grads", "row_vars", "col_vars", "variances"};
  std::vector<py::object> lists[5];
  for (int k = 0; k < 5; ++k) lists[k] = items_of(keywords.required(names[k]), names[k]);
  std::vector<double> steps;
  for (py::handle s : items_of(keywords.required("steps"), "steps")) {
    steps.push_back(py::cast<double>(s));
  }
  const AdafactorOptions options = adafactor_options_from(keywords);
  keywords.finish();
  for (int k = 1; k < 5; ++k) {
    if (lists[k].size() != lists[0].size()) {
      throw py::value_error(std::string("adafactor_: ") + names[k] + " has " +
                            std::to_string(lists[k].size()) + " items but params has " +
                            std::to_string(lists[0].size()));
    }
  }
  if (steps.size() != lists[0].size()) {
    throw py::value_error("adafactor_: steps has " + std::to_string(steps.size()) +
                          " items but params has " + std::to_string(lists[0].size()));
  }
  if (lists[0].empty()) return;
  const py::handle first = lists[0][0];
  if (py::isinstance<py::array>(first) &&
      has_dtype<double>(py::reinterpret_borrow<py::array>(first))) {
    step_of<double>(lists, steps, options);
  } else if (py::isinstance<py::array>(first) &&
             has_dtype<float>(py::reinterpret_borrow<py::array>(first))) {
    step_of<float>(lists, steps, options);
  } else if (!py::isinstance<py::array>(first)) {
    throw py::type_error("params[0] must be a NumPy array");
  } else {
    throw py::type_error("params[0] has dtype " +
                         std::string(py::str(py::reinterpret_borrow<py::array>(first).dtype())) +
                         "; expected float32 or float64 (native byte order)");
  }
}

}  // namespace

void register_adafactor(py::module_& m) {
  m.def("adafactor_", &adafactor_binding,
        R"(In-place Adafactor step (torch.optim.Adafactor); every argument a keyword (see
adamkern.adafactor_).)");
  m.def(
      "adafactor_options",
      [] {
        const AdafactorOptions defaults{};
        py::dict out;
        out["lr"] = defaults.lr;
        out["beta2_decay"] = defaults.beta2_decay;
        out["eps1"] = py::none();
        out["eps2"] = defaults.eps2;
        out["d"] = defaults.d;
        out["weight_decay"] = defaults.weight_decay;
        out["maximize"] = defaults.maximize;
        return out;
      },
      "The defaults of Adafactor's options as the C++ header sets them (AdafactorOptions).");
}

}  // namespace adamkern::bindings
