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

// One array argument of a multi-tensor call: a single ndarray or a sequence of them.
struct ArrayList {
  const char* name;
  std::vector<py::array> arrays;
  bool written;  // updated in place, so it must be writable
  // Blockwise 8-bit state (adamkern.Blockwise8 items): arrays holds the codes, absmax the
  // per-block scales; is_signed: the signed map (first moments) or the unsigned one.
  bool blockwise = false;
  bool is_signed = true;
  std::vector<py::array> absmax;
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

// The data pointer of an array already checked by check_array_lists (writable if written).
template <class T>
T* data_of(const py::array& array) {
  return static_cast<T*>(const_cast<void*>(array.data()));
}

}  // namespace adamkern::bindings
