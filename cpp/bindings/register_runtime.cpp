// ISA selection, threads and build information.
#include <pybind11/stl.h>

#include <string>

#include "adamkern/dispatch.hpp"
#include "register.hpp"

namespace adamkern::bindings {

namespace py = pybind11;

void register_runtime(py::module_& m) {
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def("available_isas", [] {
    py::list names;
    for (Isa isa : available_isas()) names.append(isa_name(isa));
    return names;
  });
  m.def("set_isa", [](const std::string& name) { set_isa(parse_isa(name)); }, py::arg("name"));
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("num_threads"));
  m.def("build_info", [] {
    const BuildInfo info = build_info();
    py::dict flags;
    for (const auto& [isa, isa_flags] : info.isa_flags) flags[py::str(isa)] = isa_flags;
    py::dict out;
    out["compiler"] = info.compiler;
    out["common_flags"] = info.common_flags;
    out["isa_flags"] = flags;
    out["openmp"] = info.openmp;
    out["openmp_version"] = info.openmp_version;
    return out;
  });
  // Resolve ADAMKERN_ISA now, so a bad value fails the import with a clear message.
  (void)active_isa();
}

}  // namespace adamkern::bindings
