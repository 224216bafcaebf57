#pragma once

#include <pybind11/pybind11.h>

namespace adamkern::bindings {

void register_adafactor(pybind11::module_& m);
void register_optimizers(pybind11::module_& m);
void register_runtime(pybind11::module_& m);
void register_schedules(pybind11::module_& m);
void register_sparse(pybind11::module_& m);

}  // namespace adamkern::bindings
