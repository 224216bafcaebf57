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

enum class DType { float32, float64 };

// One array argument of a multi-tensor call: a single ndarray or a sequence of them.
struct ArrayList {
  const char* name;
  std::vector<py::array> arrays;
  bool written;  // updated in place, so it must be writable
};

ArrayList array_list(py::handle object, const char* name, bool written);

// Checks types, dtypes, shapes, layout and writability of every array of every list against
// lists[0] (the params) and returns the dtype of the call. Throws TypeError/ValueError.
DType check_array_lists(const std::vector<const ArrayList*>& lists);

// A scalar flag or scale given as None, a Python number or a one-element array.
bool optional_scalar(py::handle object, const char* name, float& value);

// The data pointer of an array already checked by check_array_lists (writable if written).
template <class T>
T* data_of(const py::array& array) {
  return static_cast<T*>(const_cast<void*>(array.data()));
}

}  // namespace adamkern::bindings
