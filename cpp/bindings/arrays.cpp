#include "arrays.hpp"

#include <sstream>

namespace adamkern::bindings {
namespace {

std::string type_name(py::handle object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

std::string label(const ArrayList& list, std::size_t index) {
  return std::string(list.name) + "[" + std::to_string(index) + "]";
}

std::string shape_string(const py::array& array) {
  std::ostringstream out;
  out << "(";
  for (py::ssize_t d = 0; d < array.ndim(); ++d) {
    out << array.shape(d) << (array.ndim() == 1 || d + 1 < array.ndim() ? "," : "");
    if (d + 1 < array.ndim()) out << " ";
  }
  out << ")";
  return out.str();
}

std::string dtype_string(const py::array& array) {
  return py::str(array.dtype()).cast<std::string>();
}

bool is_dtype(const py::array& array, DType dtype) {
  // NumPy's native float32/float64 descriptors are singletons: compare pointers first (this
  // runs for every array of every call), and ask NumPy only for the rare equivalent dtype.
  const PyObject* descr = reinterpret_cast<const PyObject*>(
      py::detail::array_proxy(array.ptr())->descr);
  // held for the life of the process (never released at interpreter exit)
  static PyObject* const float32 = py::dtype::of<float>().release().ptr();
  static PyObject* const float64 = py::dtype::of<double>().release().ptr();
  PyObject* const expected = dtype == DType::float32 ? float32 : float64;
  if (descr == expected) return true;
  const auto& api = py::detail::npy_api::get();
  return api.PyArray_EquivTypes_(const_cast<PyObject*>(descr), expected);
}

bool is_aligned(const py::array& array) {
  return (py::detail::array_proxy(array.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

}  // namespace

ArrayList array_list(py::handle object, const char* name, bool written) {
  ArrayList list{name, {}, written};
  if (py::isinstance<py::array>(object)) {
    list.arrays.push_back(py::reinterpret_borrow<py::array>(object));
    return list;
  }
  if (!PyList_Check(object.ptr()) && !PyTuple_Check(object.ptr())) {
    throw py::type_error(std::string(name) +
                         " must be a numpy.ndarray or a list/tuple of them, got " +
                         type_name(object));
  }
  const py::sequence sequence = py::reinterpret_borrow<py::sequence>(object);
  list.arrays.reserve(sequence.size());
  for (std::size_t i = 0; i < sequence.size(); ++i) {
    py::object item = sequence[i];
    if (!py::isinstance<py::array>(item)) {
      throw py::type_error(label(list, i) + " must be a numpy.ndarray, got " + type_name(item));
    }
    list.arrays.push_back(py::reinterpret_steal<py::array>(item.release()));
  }
  return list;
}

DType check_array_lists(const std::vector<const ArrayList*>& lists) {
  const ArrayList& params = *lists.front();
  for (const ArrayList* list : lists) {
    if (list->arrays.size() != params.arrays.size()) {
      throw py::value_error(std::string(list->name) + " has " +
                            std::to_string(list->arrays.size()) + " arrays but " + params.name +
                            " has " + std::to_string(params.arrays.size()));
    }
  }
  if (params.arrays.empty()) return DType::float32;

  const py::array& first = params.arrays.front();
  DType dtype;
  if (is_dtype(first, DType::float32)) {
    dtype = DType::float32;
  } else if (is_dtype(first, DType::float64)) {
    dtype = DType::float64;
  } else {
    throw py::type_error(label(params, 0) + " has dtype " + dtype_string(first) +
                         "; expected float32 or float64 (native byte order)");
  }

  for (std::size_t i = 0; i < params.arrays.size(); ++i) {
    const py::array& param = params.arrays[i];
    for (const ArrayList* list : lists) {
      const py::array& array = list->arrays[i];
      // built only for an error message: this loop runs for every array of every call
      const auto where = [&] { return label(*list, i); };
      if (!is_dtype(array, dtype)) {
        throw py::type_error(where() + " has dtype " + dtype_string(array) + " but " +
                             label(params, 0) + " has " + dtype_string(first) +
                             "; all arrays of one call must share one dtype");
      }
      if (array.ndim() != param.ndim() ||
          !std::equal(param.shape(), param.shape() + param.ndim(), array.shape())) {
        throw py::value_error(where() + " has shape " + shape_string(array) + " but " +
                              label(params, i) + " has shape " + shape_string(param));
      }
      if (!(array.flags() & py::array::c_style)) {
        throw py::value_error(where() + " is not C-contiguous; pass a contiguous array "
                              "(an in-place update cannot work on a copy)");
      }
      if (!is_aligned(array)) {
        throw py::value_error(where() + " is not aligned to its element size");
      }
      if (list->written && !array.writeable()) {
        throw py::value_error(where() + " is read-only; it is updated in place");
      }
    }
  }
  return dtype;
}

bool optional_scalar(py::handle object, const char* name, float& value) {
  if (object.is_none()) return false;
  py::object number = py::reinterpret_borrow<py::object>(object);
  if (py::isinstance<py::array>(object)) {
    const auto array = py::reinterpret_borrow<py::array>(object);
    if (array.size() != 1) {
      throw py::value_error(std::string(name) + " must hold one value, got an array of size " +
                            std::to_string(array.size()));
    }
    number = array.attr("item")();
  }
  if (!PyNumber_Check(number.ptr()) || PyComplex_Check(number.ptr())) {
    throw py::type_error(std::string(name) + " must be None, a real number or a one-element "
                         "array, got " + type_name(object));
  }
  value = static_cast<float>(py::cast<double>(py::float_(number)));
  return true;
}

}  // namespace adamkern::bindings
