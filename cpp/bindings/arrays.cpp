#include "arrays.hpp"

#include <algorithm>
#include <initializer_list>
#include <iterator>
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
  PyObject* const descr = reinterpret_cast<PyObject*>(py::detail::array_proxy(array.ptr())->descr);
  // held for the life of the process (never released at interpreter exit)
  static PyObject* const float32 = py::dtype::of<float>().release().ptr();
  static PyObject* const float64 = py::dtype::of<double>().release().ptr();
  static PyObject* const float16 = py::dtype("float16").release().ptr();
  static PyObject* const uint8 = py::dtype::of<std::uint8_t>().release().ptr();
  if (dtype == DType::bfloat16) {  // ml_dtypes.bfloat16, a NumPy extension type: by name once
    static PyObject* bfloat16 = nullptr;
    if (bfloat16 != nullptr) return descr == bfloat16;
    const py::dtype actual = array.dtype();
    if (actual.itemsize() != 2 || py::str(actual).cast<std::string>() != "bfloat16") return false;
    bfloat16 = py::reinterpret_borrow<py::object>(descr).release().ptr();
    return true;
  }
  PyObject* const expected = dtype == DType::float32   ? float32
                             : dtype == DType::float64 ? float64
                             : dtype == DType::uint8   ? uint8
                                                       : float16;
  if (descr == expected) return true;
  const auto& api = py::detail::npy_api::get();
  return api.PyArray_EquivTypes_(descr, expected);
}

// The first of `candidates` the array has; false if none.
bool find_dtype(const py::array& array, std::initializer_list<DType> candidates, DType& found) {
  for (DType dtype : candidates) {
    if (is_dtype(array, dtype)) {
      found = dtype;
      return true;
    }
  }
  return false;
}

// torch's tensor types, dtypes, strided layout and the names read from its tensors, taken once
// the torch module is imported (null before: no torch tensor can exist then). Held for the
// life of the process.
struct TorchApi {
  PyObject* tensor;
  PyObject* parameter;
  PyObject* strided;
  PyObject* dtypes[4];  // torch.float32, float64, float16, bfloat16: DType's order
  // interned names: attributes, then methods
  PyObject *is_cpu, *layout, *dtype, *shape, *requires_grad, *is_contiguous, *is_neg, *data_ptr;
};

const TorchApi* torch_api() {
  static const TorchApi* api = nullptr;
  if (api != nullptr) return api;
  PyObject* const module = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");
  if (module == nullptr) return nullptr;
  const auto torch = py::reinterpret_borrow<py::module_>(module);
  const auto held = [](py::object object) { return object.release().ptr(); };
  const auto name = [](const char* text) { return PyUnicode_InternFromString(text); };
  api = new TorchApi{held(torch.attr("Tensor")),
                     held(torch.attr("nn").attr("Parameter")),
                     held(torch.attr("strided")),
                     {held(torch.attr("float32")), held(torch.attr("float64")),
                      held(torch.attr("float16")), held(torch.attr("bfloat16"))},
                     name("is_cpu"),
                     name("layout"),
                     name("dtype"),
                     name("shape"),
                     name("requires_grad"),
                     name("is_contiguous"),
                     name("is_neg"),
                     name("data_ptr")};
  return api;
}

// NumPy's dtype for a DType (bfloat16: ml_dtypes'), a new reference.
PyObject* numpy_descr(DType dtype) {
  static PyObject* const descrs[] = {
      py::dtype::of<float>().release().ptr(), py::dtype::of<double>().release().ptr(),
      py::dtype("float16").release().ptr(),
      py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")).release().ptr()};
  PyObject* const descr = descrs[static_cast<int>(dtype)];
  Py_INCREF(descr);
  return descr;
}

// The ndarray viewing item `index` of `list`, a CPU torch tensor (torch.Tensor or
// torch.nn.Parameter exactly): contiguous, real, without torch's negative bit; if the list is
// written, writable and not requiring grad. Its base is the tensor. False if the item is no torch
// tensor. (This runs for every grad of a torch optimizer's step: attributes and methods by interned
// name.)
bool add_torch_view(ArrayList& list, py::handle item, std::size_t index) {
  const TorchApi* const torch = torch_api();
  PyObject* const tensor = item.ptr();
  PyObject* const type = reinterpret_cast<PyObject*>(Py_TYPE(tensor));
  if (torch == nullptr || (type != torch->tensor && type != torch->parameter)) return false;
  const auto where = [&] { return label(list, index); };
  const auto checked = [](PyObject* result) {
    if (result == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(result);
  };
  const auto get = [&](PyObject* name) { return checked(PyObject_GetAttr(tensor, name)); };
  PyObject* self[] = {nullptr, tensor};  // slot 0 for the callee (ARGUMENTS_OFFSET)
  const auto call = [&](PyObject* name) {
    return checked(
        PyObject_VectorcallMethod(name, self + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
  };
  const auto text = [&](const char* name) { return py::str(item.attr(name)).cast<std::string>(); };
  if (get(torch->is_cpu).ptr() != Py_True) {
    throw py::value_error(where() + " is a torch tensor on " + text("device") +
                          "; these kernels take CPU tensors");
  }
  if (get(torch->layout).ptr() != torch->strided) {
    throw py::value_error(where() + " is a torch tensor with layout " + text("layout") +
                          "; a dense (strided) tensor is needed");
  }
  const py::object dtype = get(torch->dtype);
  const auto found = std::find(std::begin(torch->dtypes), std::end(torch->dtypes), dtype.ptr());
  if (found == std::end(torch->dtypes)) {
    throw py::type_error(where() + " has dtype " + text("dtype") +
                         "; expected torch.float32, float64, bfloat16 or float16");
  }
  if (call(torch->is_contiguous).ptr() != Py_True) {
    throw py::value_error(where() +
                          " is not contiguous; pass a contiguous tensor "
                          "(an in-place update cannot work on a copy)");
  }
  if (list.written && get(torch->requires_grad).ptr() == Py_True) {
    throw py::value_error(where() +
                          " requires grad and is updated in place; pass its .detach() "
                          "(as torch.optim steps under no_grad)");
  }
  if (call(torch->is_neg).ptr() == Py_True) {
    throw py::value_error(where() + " has torch's negative bit set; resolve_neg() it first");
  }
  const py::object shape = get(torch->shape);  // a torch.Size: a tuple
  const auto ndim = PyTuple_GET_SIZE(shape.ptr());
  Py_intptr_t dims[64];
  if (ndim > 64) throw py::value_error(where() + " has more than 64 dimensions");
  for (Py_ssize_t d = 0; d < ndim; ++d) {
    dims[d] = PyLong_AsSsize_t(PyTuple_GET_ITEM(shape.ptr(), d));
  }
  void* const data = PyLong_AsVoidPtr(call(torch->data_ptr).ptr());
  const auto& api = py::detail::npy_api::get();
  const int flags = list.written ? py::detail::npy_api::NPY_ARRAY_WRITEABLE_ : 0;
  auto view = py::reinterpret_steal<py::array>(api.PyArray_NewFromDescr_(
      api.PyArray_Type_, numpy_descr(static_cast<DType>(found - std::begin(torch->dtypes))),
      static_cast<int>(ndim), dims, nullptr, data, flags, nullptr));
  if (!view) throw py::error_already_set();
  if (api.PyArray_SetBaseObject_(view.ptr(), item.inc_ref().ptr()) != 0) {
    throw py::error_already_set();
  }
  list.arrays.push_back(std::move(view));
  list.tensors.push_back(py::reinterpret_borrow<py::object>(item));
  return true;
}

bool is_aligned(const py::array& array) {
  return (py::detail::array_proxy(array.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_) !=
         0;
}

// Adds one adamkern.Blockwise8 item (codes, absmax, signed) to a blockwise list.
bool add_blockwise(ArrayList& list, py::handle item, std::size_t index) {
  if (!py::hasattr(item, "codes") || !py::hasattr(item, "absmax") || !py::hasattr(item, "signed")) {
    return false;
  }
  const py::object codes = item.attr("codes"), absmax = item.attr("absmax");
  if (!py::isinstance<py::array>(codes) || !py::isinstance<py::array>(absmax)) {
    throw py::type_error(label(list, index) + ".codes and .absmax must be numpy.ndarray");
  }
  const py::object signed_flag = item.attr("signed");
  if (!PyBool_Check(signed_flag.ptr())) {
    throw py::type_error(std::string(list.name) + "[" + std::to_string(index) +
                         "].signed must be True or False, got " + type_name(signed_flag));
  }
  const bool is_signed = signed_flag.cast<bool>();
  if (index > 0 && (!list.blockwise || is_signed != list.is_signed)) {
    throw py::type_error(label(list, index) + " is blockwise 8-bit but " + label(list, 0) +
                         " is not the same kind; every state of one list has one format");
  }
  list.blockwise = true;
  list.is_signed = is_signed;
  list.arrays.push_back(py::reinterpret_borrow<py::array>(codes));
  list.absmax.push_back(py::reinterpret_borrow<py::array>(absmax));
  return true;
}

// Shape, layout and writability of array i of `list` against params[i].
void check_layout(const ArrayList& list, std::size_t i, const ArrayList& params) {
  const py::array& array = list.arrays[i];
  const py::array& param = params.arrays[i];
  // built only for an error message: this runs for every array of every call
  const auto where = [&] { return label(list, i) + (list.blockwise ? ".codes" : ""); };
  if (array.ndim() != param.ndim() ||
      !std::equal(param.shape(), param.shape() + param.ndim(), array.shape())) {
    throw py::value_error(where() + " has shape " + shape_string(array) + " but " +
                          label(params, i) + " has shape " + shape_string(param));
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(where() +
                          " is not C-contiguous; pass a contiguous array "
                          "(an in-place update cannot work on a copy)");
  }
  if (!is_aligned(array)) {
    throw py::value_error(where() + " is not aligned to its element size");
  }
  if (list.written && !array.writeable()) {
    throw py::value_error(where() + " is read-only; it is updated in place");
  }
  if (!list.blockwise) return;
  const py::array& absmax = list.absmax[i];
  const auto blocks = (static_cast<py::ssize_t>(param.size()) + 255) / 256;
  if (!is_dtype(absmax, DType::float32) || absmax.ndim() != 1 || absmax.size() != blocks) {
    throw py::value_error(label(list, i) + ".absmax must be a float32 array of shape (" +
                          std::to_string(blocks) + ",) (one per 256 elements), got " +
                          dtype_string(absmax) + " " + shape_string(absmax));
  }
  if (!(absmax.flags() & py::array::c_style) || !is_aligned(absmax) || !absmax.writeable()) {
    throw py::value_error(label(list, i) + ".absmax must be contiguous, aligned and writable");
  }
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::uint8: return "uint8";
  }
  return "?";
}

ArrayList array_list(py::handle object, const char* name, bool written, bool allow_blockwise) {
  ArrayList list{name, {}, written};
  if (py::isinstance<py::array>(object)) {
    list.arrays.push_back(py::reinterpret_borrow<py::array>(object));
    return list;
  }
  if (allow_blockwise && add_blockwise(list, object, 0)) return list;
  if (add_torch_view(list, object, 0)) return list;
  if (!PyList_Check(object.ptr()) && !PyTuple_Check(object.ptr())) {
    throw py::type_error(std::string(name) +
                         " must be a numpy.ndarray, a CPU torch.Tensor or a list/tuple of "
                         "them, got " +
                         type_name(object));
  }
  // a list or tuple: its items borrowed directly (this runs for every array of every call)
  PyObject* const sequence = object.ptr();
  const auto size = static_cast<std::size_t>(PySequence_Fast_GET_SIZE(sequence));
  PyObject** const items = PySequence_Fast_ITEMS(sequence);
  list.arrays.reserve(size);
  for (std::size_t i = 0; i < size; ++i) {
    const py::handle item = items[i];
    if (allow_blockwise && !py::isinstance<py::array>(item) && add_blockwise(list, item, i)) {
      continue;
    }
    if (list.blockwise) {
      throw py::type_error(label(list, i) + " is not blockwise 8-bit but " + label(list, 0) +
                           " is; every state of one list has one format");
    }
    if (py::isinstance<py::array>(item)) {
      list.arrays.push_back(py::reinterpret_borrow<py::array>(item));
    } else if (!add_torch_view(list, item, i)) {
      throw py::type_error(label(list, i) + " must be a numpy.ndarray or a CPU torch.Tensor, got " +
                           type_name(item));
    }
  }
  return list;
}

namespace {

// Every list has as many arrays as the first (the params); returns the first.
const ArrayList& check_lengths(const std::vector<const ArrayList*>& lists) {
  const ArrayList& params = *lists.front();
  for (const ArrayList* list : lists) {
    if (list->arrays.size() != params.arrays.size()) {
      throw py::value_error(std::string(list->name) + " has " +
                            std::to_string(list->arrays.size()) + " arrays but " + params.name +
                            " has " + std::to_string(params.arrays.size()));
    }
  }
  return params;
}

}  // namespace

DType check_array_lists(const std::vector<const ArrayList*>& lists) {
  const ArrayList& params = check_lengths(lists);
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
    for (const ArrayList* list : lists) {
      const py::array& array = list->arrays[i];
      if (!is_dtype(array, dtype)) {
        throw py::type_error(label(*list, i) + " has dtype " + dtype_string(array) + " but " +
                             label(params, 0) + " has " + dtype_string(first) +
                             "; all arrays of one call must share one dtype");
      }
      check_layout(*list, i, params);
    }
  }
  return dtype;
}

std::vector<DType> check_mixed_array_lists(const std::vector<const ArrayList*>& lists) {
  const ArrayList& params = check_lengths(lists);
  std::vector<DType> dtypes(lists.size(), DType::float32);
  if (params.arrays.empty()) return dtypes;
  const py::array& first = params.arrays.front();
  if (!find_dtype(first, {DType::float32, DType::float64, DType::bfloat16, DType::float16},
                  dtypes[0])) {
    throw py::type_error(label(params, 0) + " has dtype " + dtype_string(first) +
                         "; expected float32, float64, bfloat16 or float16 (native byte order)");
  }
  const DType param_dtype = dtypes[0];
  for (std::size_t l = 1; l < lists.size(); ++l) {
    const ArrayList& list = *lists[l];
    const py::array& head = list.arrays.front();
    const bool ok =
        l == 1 || param_dtype == DType::float64 ? is_dtype(head, param_dtype)
        : list.blockwise
            ? is_dtype(head, DType::uint8)
            : find_dtype(head, {DType::float32, DType::bfloat16, DType::float16}, dtypes[l]);
    if (!ok) {
      const std::string expected =
          l == 1                          ? "grads have their params' dtype"
          : param_dtype == DType::float64 ? "the state of float64 params is float64"
          : list.blockwise ? "blockwise 8-bit codes are uint8"
                           : std::string("the state of ") + dtype_name(param_dtype) +
                                 " params is float32, bfloat16, float16 or blockwise 8-bit";
      throw py::type_error(label(list, 0) + (list.blockwise ? ".codes" : "") + " has dtype " +
                           dtype_string(head) + " but " + label(params, 0) + " has " +
                           dtype_string(first) + "; " + expected);
    }
    if (l == 1 || param_dtype == DType::float64) dtypes[l] = param_dtype;
    if (list.blockwise) dtypes[l] = DType::uint8;
  }
  for (std::size_t i = 0; i < params.arrays.size(); ++i) {
    for (std::size_t l = 0; l < lists.size(); ++l) {
      const ArrayList& list = *lists[l];
      const py::array& array = list.arrays[i];
      if (!is_dtype(array, dtypes[l])) {
        throw py::type_error(label(list, i) + " has dtype " + dtype_string(array) + " but " +
                             label(list, 0) + " has " + dtype_name(dtypes[l]) +
                             "; the arrays of one list share one dtype");
      }
      check_layout(list, i, params);
    }
  }
  return dtypes;
}

void check_master_params(const ArrayList& params, const ArrayList& master) {
  if (master.arrays.size() != params.arrays.size()) {
    throw py::value_error(std::string(master.name) + " has " +
                          std::to_string(master.arrays.size()) + " arrays but " + params.name +
                          " has " + std::to_string(params.arrays.size()));
  }
  for (std::size_t i = 0; i < master.arrays.size(); ++i) {
    if (!is_dtype(master.arrays[i], DType::float32)) {
      throw py::type_error(label(master, i) + " has dtype " + dtype_string(master.arrays[i]) +
                           "; master weights are float32");
    }
    check_layout(master, i, params);
  }
}

bool optional_scalar(py::handle object, const char* name, float& value) {
  if (object.is_none()) return false;
  py::object number = py::reinterpret_borrow<py::object>(object);
  bool complex = false;
  if (py::isinstance<py::array>(object)) {
    const auto array = py::reinterpret_borrow<py::array>(object);
    if (array.size() != 1) {
      throw py::value_error(std::string(name) + " must hold one value, got an array of size " +
                            std::to_string(array.size()));
    }
    complex = array.dtype().kind() == 'c';
    number = array.attr("item")();
  }
  // NumPy's complex64 scalar is no Python complex, and float() of it only warns
  complex = complex || PyComplex_Check(number.ptr()) ||
            std::string(Py_TYPE(number.ptr())->tp_name).rfind("numpy.complex", 0) == 0;
  if (!PyNumber_Check(number.ptr()) || complex) {
    throw py::type_error(std::string(name) +
                         " must be None, a real number or a one-element "
                         "array, got " +
                         type_name(object));
  }
  double as_double = 0.0;
  try {
    as_double = py::cast<double>(py::float_(number));
  } catch (const py::error_already_set&) {  // an int beyond a double's range
    throw py::value_error(std::string(name) + " must be a finite number, got " +
                          py::repr(object).cast<std::string>());
  }
  value = static_cast<float>(as_double);
  return true;
}

void check_disjoint(const py::array& array, const char* name,
                    const std::vector<const ArrayList*>& lists) {
  const auto begin = reinterpret_cast<std::uintptr_t>(array.data());
  const auto end = begin + static_cast<std::uintptr_t>(array.nbytes());
  const auto overlaps = [&](const py::array& other) {
    const auto other_begin = reinterpret_cast<std::uintptr_t>(other.data());
    return other.nbytes() > 0 &&
           begin < other_begin + static_cast<std::uintptr_t>(other.nbytes()) && other_begin < end;
  };
  for (const ArrayList* list : lists) {
    for (std::size_t i = 0; i < list->arrays.size(); ++i) {
      const bool in_absmax = list->blockwise && overlaps(list->absmax[i]);
      if (overlaps(list->arrays[i]) || in_absmax) {
        throw py::value_error(std::string(name) + " overlaps " + label(*list, i) +
                              (in_absmax ? ".absmax" : "") +
                              ": it is updated in place and "
                              "must be a buffer of its own");
      }
    }
  }
}

}  // namespace adamkern::bindings
