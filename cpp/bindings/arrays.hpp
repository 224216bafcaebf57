// Argument checks for in-place array arguments. Arrays are never converted or copied: a copy
// would receive the update and the caller's array would silently stay unchanged.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace adamkern::bindings {

namespace py = pybind11;

enum class DType { float32, float64, float16, bfloat16, uint8 };

// The dtype's name as NumPy prints it.
const char* dtype_name(DType dtype);

// One array argument of a multi-tensor call: a single ndarray or a sequence of them. CPU
// torch tensors are taken too: each is viewed by an ndarray made here (torch's Python API
// read, adamkern links no torch), and `tensors` holds them.
struct ArrayList {
  const char* name;
  std::vector<py::array> arrays;
  bool written;  // updated in place, so it must be writable
  // Blockwise 8-bit state (adamkern.Blockwise8 items): arrays holds the codes, absmax the
  // per-block scales; is_signed: the signed map (first moments) or the unsigned one.
  bool blockwise = false;
  bool is_signed = true;
  std::vector<py::array> absmax;
  std::vector<py::object> tensors;  // the torch tensors the arrays view, in order

  // Once the data pointers are taken: releases the views made of torch tensors (where every
  // array is one) while they are still in cache, before a kernel's pass over memory evicts
  // them. The tensors, still held, keep the memory.
  void release_torch_views() {
    if (!tensors.empty() && tensors.size() == arrays.size()) arrays.clear();
  }
};

// With allow_blockwise, the items may also be adamkern.Blockwise8 objects (all of them or none).
ArrayList array_list(py::handle object, const char* name, bool written,
                     bool allow_blockwise = false);

// Checks types, dtypes, shapes, layout and writability of every array of every list against
// lists[0] (the params) and returns the dtype of the call. Throws TypeError/ValueError.
DType check_array_lists(const std::vector<const ArrayList*>& lists);

// As check_array_lists, for a mixed-precision call: lists[0] the params (float32, float64,
// bfloat16 or float16), lists[1] the grads (the params' dtype), then state lists: float64 with
// float64 params, else float32, bfloat16 or float16, or blockwise 8-bit. Each list has one
// dtype. Returns the dtype of each list.
std::vector<DType> check_mixed_array_lists(const std::vector<const ArrayList*>& lists);

// Float32 master weights, one per param, each of its param's shape.
void check_master_params(const ArrayList& params, const ArrayList& master);

// A scalar flag or scale given as None, a Python number or a one-element array.
bool optional_scalar(py::handle object, const char* name, float& value);

// Throws ValueError if the bytes of `array` (argument `name`) overlap those of any array of
// `lists` (a scalar buffer updated in place, as NAdam's mu_product, must not alias a tensor).
void check_disjoint(const py::array& array, const char* name,
                    const std::vector<const ArrayList*>& lists);

// A real hyperparameter as a binding argument: a Python float or int, a NumPy real scalar or a
// 0-d real array. Booleans, strings, None, complex numbers and arrays with more than one
// dimension do not convert (adamkern.ops then names the argument in its TypeError).
struct Real {
  double value = 0.0;
  operator double() const { return value; }  // NOLINT(google-explicit-constructor)
};

// The data pointer of an array already checked by check_array_lists (writable if written).
template <class T>
T* data_of(const py::array& array) {
  return static_cast<T*>(const_cast<void*>(array.data()));
}

}  // namespace adamkern::bindings

namespace pybind11::detail {

template <>
struct type_caster<adamkern::bindings::Real> {
  PYBIND11_TYPE_CASTER(adamkern::bindings::Real, const_name("float"));

  bool load(handle src, bool convert) {
    PyObject* object = src.ptr();
    if (PyFloat_CheckExact(object)) {  // the common case first
      value.value = PyFloat_AS_DOUBLE(object);
      return true;
    }
    if (PyBool_Check(object) || PyComplex_Check(object) || PyUnicode_Check(object)) return false;
    if (isinstance<array>(src)) {
      const char kind = reinterpret_borrow<array>(src).dtype().kind();
      if (reinterpret_borrow<array>(src).ndim() != 0 ||
          (kind != 'f' && kind != 'i' && kind != 'u')) {
        return false;
      }
    } else {
      const std::string type = Py_TYPE(object)->tp_name;
      if (type == "numpy.bool" || type == "numpy.bool_" || type.rfind("numpy.complex", 0) == 0) {
        return false;
      }
    }
    make_caster<double> number;
    if (!number.load(src, convert)) return false;
    value.value = cast_op<double>(number);
    return true;
  }

  static handle cast(adamkern::bindings::Real real, return_value_policy, handle) {
    return PyFloat_FromDouble(real.value);
  }
};

}  // namespace pybind11::detail
