// Internal: the table of loops each per-ISA compilation of kernels_isa.cpp provides.
#pragma once

#include <cstdint>

#include "adamkern/kernels.hpp"
#include "adamkern/math/adam.hpp"

namespace adamkern::detail {

// Updates elements [begin, end) of one tensor.
template <class T>
using AdamRangeFn = void (*)(const AdamTensor<T>& tensor, std::int64_t begin, std::int64_t end,
                             const math::AdamCoefficients<T>& coefficients);
template <class T>
using RooflineRangeFn = void (*)(const AdamTensor<T>& tensor, std::int64_t begin,
                                 std::int64_t end);

// Indexed [weight decay mode][amsgrad][unscale grad][remainder form].
template <class T>
struct AdamLoops {
  AdamRangeFn<T> update[3][2][2][2];
  RooflineRangeFn<T> roofline;
};

struct KernelTable {
  AdamLoops<float> f32;
  AdamLoops<double> f64;
  const char* flags;  // compiler flags of this variant
};

template <class T>
const AdamLoops<T>& loops(const KernelTable& table);
template <>
inline const AdamLoops<float>& loops<float>(const KernelTable& table) { return table.f32; }
template <>
inline const AdamLoops<double>& loops<double>(const KernelTable& table) { return table.f64; }

// One per compiled variant; the symbols live in ISA-named namespaces so they never collide.
namespace isa_baseline { const KernelTable& kernel_table(); }
#if defined(ADAMKERN_HAVE_AVX2)
namespace isa_avx2 { const KernelTable& kernel_table(); }
#endif
#if defined(ADAMKERN_HAVE_AVX512)
namespace isa_avx512 { const KernelTable& kernel_table(); }
#endif

// The table of the active ISA (see dispatch.cpp).
const KernelTable& active_kernel_table();

}  // namespace adamkern::detail
