// The keyword arguments of an optimizer's binding, read as its math header describes them:
// every option by name (math/describe.hpp), the step inputs, and nothing else. Shared by the
// CPU module (adamkern._core) and the CUDA module (adamkern._cuda), so both take the same
// keywords and refuse the same values with the same messages.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "adamkern/adafactor.hpp"
#include "adamkern/kernels.hpp"
#include "adamkern/math/describe.hpp"
#include "adamkern/optimizers.hpp"

namespace adamkern::bindings {

namespace py = pybind11;

// The keywords of one call to `op` ("adam_"); each is taken once, and finish() refuses any
// left over. Conversions raise TypeError (or ValueError for a number beyond a double's range)
// naming the keyword.
class Keywords {
 public:
  // The keyword `op`, when given, is the name messages use instead (adamkern.adamw_ calls
  // adam_ and its errors name adamw_).
  Keywords(std::string op, py::kwargs kwargs);

  py::handle required(const char* name);
  py::handle optional(const char* name);  // None when not given
  double real(const char* name);          // a real number (bools refused)
  bool flag(const char* name);            // True or False (NumPy's too)
  void finish() const;

 private:
  std::string op_;
  py::kwargs kwargs_;
  std::vector<std::string> taken_;
};

// Adafactor's options from their keywords (eps1 None: the params' machine epsilon), checked
// (ValueError "adafactor_: ...").
AdafactorOptions adafactor_options_from(Keywords& keywords);

// D's options from their keywords.
template <class D>
typename D::Options options_from(Keywords& keywords) {
  typename D::Options options;
  for (const auto& number : D::kNumbers) options.*number.member = keywords.real(number.name);
  for (const auto& flag : D::kFlags) options.*flag.member = keywords.flag(flag.name);
  return options;
}

// The step inputs D takes (`step`, SGD's `is_first_step`) from their keywords.
template <class D>
StepArgs step_args_from(Keywords& keywords) {
  StepArgs args;
  if constexpr (D::kTakesStep) args.step = keywords.real("step");
  if constexpr (kTakesFirstStep<D>) args.is_first_step = keywords.flag("is_first_step");
  return args;
}

// Whether these options use state buffer `buffer`, and if it is conditional, the condition as
// an error message writes it ("amsgrad=True", "momentum > 0").
template <class D>
bool buffer_used(const typename D::Options& options, const math::StateBuffer& buffer) {
  if (buffer.needed == math::Needed::always) return true;
  const std::string option = buffer.option;
  if (buffer.needed == math::Needed::flag) {
    for (const auto& flag : D::kFlags) {
      if (option == flag.name) return options.*flag.member;
    }
  }
  for (const auto& number : D::kNumbers) {
    if (option != number.name) continue;
    const double value = options.*number.member;
    return buffer.needed == math::Needed::positive ? value > 0.0 : value != 0.0;
  }
  return true;
}

std::string buffer_condition(const math::StateBuffer& buffer);

}  // namespace adamkern::bindings
