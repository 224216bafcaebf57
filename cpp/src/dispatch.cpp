// Runtime ISA selection and thread configuration.
#include "adamkern/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "isa_table.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef ADAMKERN_COMMON_FLAGS
#define ADAMKERN_COMMON_FLAGS ""
#endif
#ifndef ADAMKERN_COMPILER
#define ADAMKERN_COMPILER "unknown"
#endif

namespace adamkern {
namespace {

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::baseline: return true;
#if defined(__x86_64__) || defined(__i386__)
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default: return false;
  }
}

bool compiled(Isa isa) {
  switch (isa) {
    case Isa::baseline: return true;
#if defined(ADAMKERN_HAVE_AVX2)
    case Isa::avx2: return true;
#endif
#if defined(ADAMKERN_HAVE_AVX512)
    case Isa::avx512: return true;
#endif
    default: return false;
  }
}

const detail::KernelTable& table_for(Isa isa) {
  switch (isa) {
#if defined(ADAMKERN_HAVE_AVX512)
    case Isa::avx512: return detail::isa_avx512::kernel_table();
#endif
#if defined(ADAMKERN_HAVE_AVX2)
    case Isa::avx2: return detail::isa_avx2::kernel_table();
#endif
    default: return detail::isa_baseline::kernel_table();
  }
}

bool is_available(Isa isa) { return compiled(isa) && cpu_supports(isa); }

Isa initial_isa() {
  if (const char* forced = std::getenv("ADAMKERN_ISA"); forced != nullptr && *forced != '\0') {
    const Isa isa = parse_isa(forced);
    if (!is_available(isa)) {
      throw std::invalid_argument(std::string("ADAMKERN_ISA=") + forced +
                                  ": this ISA is not available on this CPU or in this build");
    }
    return isa;
  }
  return available_isas().back();
}

int initial_num_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Function-local statics: initialised on first use, thread-safe.
std::atomic<int>& active_isa_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

std::atomic<int>& num_threads_slot() {
  static std::atomic<int> slot{initial_num_threads()};
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::baseline: return "baseline";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) return isa;
  }
  throw std::invalid_argument("unknown ISA '" + name + "'; expected baseline, avx2 or avx512");
}

std::vector<Isa> available_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
    if (is_available(isa)) isas.push_back(isa);
  }
  return isas;
}

Isa active_isa() { return static_cast<Isa>(active_isa_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!is_available(isa)) {
    throw std::invalid_argument(std::string("ISA '") + isa_name(isa) +
                                "' is not available on this CPU or in this build");
  }
  active_isa_slot().store(static_cast<int>(isa), std::memory_order_relaxed);
}

int get_num_threads() { return num_threads_slot().load(std::memory_order_relaxed); }

void set_num_threads(int num_threads) {
  if (num_threads < 1) {
    throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(num_threads));
  }
#if !defined(_OPENMP)
  num_threads = 1;  // built without OpenMP: every call is single-threaded
#endif
  num_threads_slot().store(num_threads, std::memory_order_relaxed);
}

BuildInfo build_info() {
  BuildInfo info;
  info.compiler = ADAMKERN_COMPILER;
  info.common_flags = ADAMKERN_COMMON_FLAGS;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) {
    if (compiled(isa)) info.isa_flags.emplace_back(isa_name(isa), table_for(isa).flags);
  }
#if defined(_OPENMP)
  info.openmp = true;
  info.openmp_version = _OPENMP;
#endif
  return info;
}

namespace detail {
const KernelTable& active_kernel_table() { return table_for(active_isa()); }
}  // namespace detail

}  // namespace adamkern
