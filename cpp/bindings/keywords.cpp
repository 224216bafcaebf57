#include "keywords.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace adamkern::bindings {
namespace {

std::string describe(py::handle value) {
  return py::repr(value).cast<std::string>() + " (" + std::string(Py_TYPE(value.ptr())->tp_name) +
         ")";
}

bool is_numpy_named(py::handle value, const char* prefix) {
  return std::string(Py_TYPE(value.ptr())->tp_name).rfind(prefix, 0) == 0;
}

}  // namespace

Keywords::Keywords(std::string op, py::kwargs kwargs)
    : op_(std::move(op)), kwargs_(std::move(kwargs)) {
  if (kwargs_.contains("op")) op_ = py::str(optional("op"));
}

py::handle Keywords::required(const char* name) {
  if (!kwargs_.contains(name)) {
    throw py::type_error(op_ + "() missing the keyword argument '" + name + "'");
  }
  taken_.emplace_back(name);
  return kwargs_[name];
}

py::handle Keywords::optional(const char* name) {
  if (!kwargs_.contains(name)) return py::none();
  taken_.emplace_back(name);
  return kwargs_[name];
}

double Keywords::real(const char* name) {
  const py::handle value = required(name);
  PyObject* object = value.ptr();
  if (PyFloat_CheckExact(object)) return PyFloat_AS_DOUBLE(object);  // the common case first
  bool real = !PyBool_Check(object) && !PyComplex_Check(object) && !PyUnicode_Check(object) &&
              !is_numpy_named(value, "numpy.bool") && !is_numpy_named(value, "numpy.complex");
  if (real && py::isinstance<py::array>(value)) {
    const auto array = py::reinterpret_borrow<py::array>(value);
    const char kind = array.dtype().kind();
    real = array.ndim() == 0 && (kind == 'f' || kind == 'i' || kind == 'u');
  }
  real = real && PyNumber_Check(object);
  if (!real) {
    throw py::type_error(op_ + ": " + name + " must be a real number, got " + describe(value));
  }
  const double number = PyFloat_AsDouble(object);
  if (number == -1.0 && PyErr_Occurred()) {
    const bool overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
    PyErr_Clear();
    if (overflow) {
      throw py::value_error(op_ + ": " + name + " must be a finite number, got " +
                            py::repr(value).cast<std::string>());
    }
    throw py::type_error(op_ + ": " + name + " must be a real number, got " + describe(value));
  }
  return number;
}

bool Keywords::flag(const char* name) {
  const py::handle value = required(name);
  if (PyBool_Check(value.ptr())) return value.ptr() == Py_True;
  if (is_numpy_named(value, "numpy.bool")) return PyObject_IsTrue(value.ptr()) == 1;
  throw py::type_error(op_ + ": " + name + " must be True or False, got " + describe(value));
}

void Keywords::finish() const {
  if (taken_.size() == kwargs_.size()) return;
  for (const auto& item : kwargs_) {
    const std::string key = py::str(item.first);
    if (std::find(taken_.begin(), taken_.end(), key) == taken_.end()) {
      throw py::type_error(op_ + "() got an unexpected keyword argument '" + key + "'");
    }
  }
}

std::string buffer_condition(const math::StateBuffer& buffer) {
  switch (buffer.needed) {
    case math::Needed::always: return "this optimizer";
    case math::Needed::flag: return std::string(buffer.option) + "=True";
    case math::Needed::positive: return std::string(buffer.option) + " > 0";
    case math::Needed::nonzero: return std::string(buffer.option) + " != 0";
  }
  return "this optimizer";
}

AdafactorOptions adafactor_options_from(Keywords& keywords) {
  AdafactorOptions options;
  options.lr = keywords.real("lr");
  options.beta2_decay = keywords.real("beta2_decay");
  if (!keywords.optional("eps1").is_none()) options.eps1 = keywords.real("eps1");
  options.eps2 = keywords.real("eps2");
  options.d = keywords.real("d");
  options.weight_decay = keywords.real("weight_decay");
  options.maximize = keywords.flag("maximize");
  try {
    check_adafactor_options(options);
  } catch (const std::invalid_argument& error) {
    throw py::value_error(std::string("adafactor_: ") + error.what());
  }
  return options;
}

}  // namespace adamkern::bindings
