// Runtime configuration: which instruction set the kernels use and how many threads they run on.
#pragma once

#include <string>
#include <vector>

namespace adamkern {

// Each kernel source is compiled once per ISA; one variant is chosen at run time.
enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
// Throws std::invalid_argument for an unknown name.
Isa parse_isa(const std::string& name);

// ISAs compiled into this build and supported by this CPU, in increasing order.
std::vector<Isa> available_isas();
// The variant in use: the best available one, or ADAMKERN_ISA from the environment.
Isa active_isa();
// Throws std::invalid_argument if `isa` is not available here.
void set_isa(Isa isa);

// Threads used by one call (default: the OpenMP default, i.e. the usable cores or
// OMP_NUM_THREADS). Calls smaller than a few cache-resident chunks run on one thread.
int get_num_threads();
void set_num_threads(int num_threads);  // throws std::invalid_argument if < 1

struct BuildInfo {
  std::string compiler;
  std::string common_flags;
  std::vector<std::pair<std::string, std::string>> isa_flags;  // (isa, flags) per variant
  bool openmp = false;
  int openmp_version = 0;  // _OPENMP, e.g. 201511
};
BuildInfo build_info();

}  // namespace adamkern
