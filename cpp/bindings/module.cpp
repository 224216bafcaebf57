// adamkern._core: wiring only; each area registers itself.
#include <pybind11/pybind11.h>

#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "adamkern's compiled kernels (use the adamkern package, not this module)";
  adamkern::bindings::register_runtime(m);
  adamkern::bindings::register_optimizers(m);
  adamkern::bindings::register_schedules(m);
  adamkern::bindings::register_sparse(m);
  adamkern::bindings::register_adafactor(m);
}
