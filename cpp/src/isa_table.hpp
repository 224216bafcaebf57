// Internal: the table of loops each per-ISA compilation of kernels_isa.cpp provides.
#pragma once

#include <cstdint>
#include <tuple>

#include "adamkern/kernels.hpp"
#include "adamkern/optimizers.hpp"

namespace adamkern::detail {

// Every kernel with a per-element update (see math/common.hpp): the registry's one-pass
// optimizers and the second passes of LAMB and Prodigy.
#define ADAMKERN_KERNEL_TYPE(name, ...) math::name,
using UpdateKernels = std::tuple<ADAMKERN_ONE_PASS_OPTIMIZERS(ADAMKERN_KERNEL_TYPE) math::LambApply,
                                 math::ProdigyApply>;
#undef ADAMKERN_KERNEL_TYPE
// Kernels that also reduce (two sums per tensor, see for_each_chunk and add_terms): the first
// passes of LAMB and Prodigy, and the counts before cautious updates.
using MeasureKernels =
    std::tuple<math::LambMoments, math::ProdigyMoments, math::CautiousCount<math::Adam>,
               math::CautiousCount<math::Lion>, math::CautiousCount<math::Adopt>>;

// Updates elements [begin, end) of one tensor. `coefficients` points to the kernel's
// Coefficients<T>; grads are divided by grad_scale (and written back) in the unscaling loops.
template <class T>
using UpdateRangeFn = void (*)(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                               const void* coefficients, T grad_scale);
// As UpdateRangeFn, and adds the kernel's two terms per element (LAMB: param^2 and
// direction^2; Prodigy: g * (p0 - p) and |s|) to lanes: element begin + j to lanes[j % L] and
// lanes[L + j % L], L = kReductionLanes (partition.hpp); the caller totals them (lane_total).
template <class T>
using MeasureRangeFn = void (*)(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                                const void* coefficients, T grad_scale, double* lanes);
template <class T>
using RooflineRangeFn = void (*)(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end);
// Adds to sums[0] the sum of squares of x[begin, end) (double lanes, fixed order) and to
// sums[1] the sum of x - x, which is 0 unless some element is inf or NaN.
template <class T>
using ReduceRangeFn = void (*)(const T* x, std::int64_t begin, std::int64_t end, double* sums);

// The lower-precision storage the float32 update loop reads and writes in one pass (the
// mixed-precision driver's other cases, 8-bit state among them, go through float32 copies of
// each span). Every used state buffer has the one format named.
enum FusedFormats : int {
  kFusedFloatParamsBf16State,
  kFusedBf16ParamsFloatState,
  kFusedBf16ParamsBf16State,
  kFusedBf16ParamsBf16StateStochastic,  // stochastic rounding of params and state
  kFusedBf16MasterFloatState,           // float32 master weights, bfloat16 params
  kFusedF16ParamsFloatState,
  kFusedF16MasterFloatState,
  kFusedFormats,
};
// update_range over a MixedTensor of one of the FusedFormats; keys: the stochastic rounding
// keys of the param (0) and state k (1 + k) for these elements (math::rounding_key).
using FusedRangeFn = void (*)(const MixedTensor& tensor, std::int64_t begin, std::int64_t end,
                              const void* coefficients, float grad_scale,
                              const std::uint32_t (&keys)[1 + kMaxStateBuffers]);

// fn: [variant][unscale grad][remainder form]; fused (T = float only): [formats][the same].
template <class T, class K>
struct UpdateLoops {
  using Kernel = K;
  UpdateRangeFn<T> fn[K::kVariants][2][2];
  FusedRangeFn fused[kFusedFormats][K::kVariants][2][2];
};
template <class T, class K>
struct MeasureLoops {
  using Kernel = K;
  MeasureRangeFn<T> fn[K::kVariants][2];
};

template <class T, class Kernels, template <class, class> class Loops>
struct LoopTuple;
template <class T, class... K, template <class, class> class Loops>
struct LoopTuple<T, std::tuple<K...>, Loops> {
  using type = std::tuple<Loops<T, K>...>;
};

template <class T>
struct TypedTable {
  typename LoopTuple<T, UpdateKernels, UpdateLoops>::type update;
  typename LoopTuple<T, MeasureKernels, MeasureLoops>::type measure;
  RooflineRangeFn<T> roofline;
  ReduceRangeFn<T> reduce;
};

// What the mixed-precision driver runs on each block of a MixedTensor, once the block is in
// float32: `measure` (if set: adds to sums, with measure_coefficients), then `update` (if
// set; its remainder form on the last size % remainder_width elements of the tensor, as the
// float32 driver does), over the state buffers `reads` and `writes` name.
struct MixedWork {
  MeasureRangeFn<float> measure = nullptr;
  const void* measure_coefficients = nullptr;
  UpdateRangeFn<float> update = nullptr;
  UpdateRangeFn<float> update_remainder = nullptr;
  // The same update in one pass for the FusedFormats: [formats][remainder form] (null: none)
  FusedRangeFn fused[kFusedFormats][2] = {};
  std::int64_t remainder_width = 0;
  float grad_scale = 1.0f;
  bool unscale = false;       // grads are unscaled in place (so written back)
  bool writes_memory = true;  // false: a pass that only reads (works on copies of every buffer)
  unsigned reads = 0;         // bit k: state k
  unsigned writes = 0;
};

// Elements [begin, end) of a mixed-precision tensor (begin a multiple of kBlockwiseSize):
// each block is converted to float32, run through `work`, and written back in its formats.
// `tensor_index` is the tensor's position in the call (for stochastic rounding).
using MixedRangeFn = void (*)(const MixedTensor& tensor, std::size_t tensor_index,
                              std::int64_t begin, std::int64_t end, const MixedWork& work,
                              const void* coefficients, double* sums);

// The midpoints between the magnitudes of the dynamic map (math/lowp.hpp: nearest_code),
// 256 floats (unused ones +inf).
const float* dynamic_map_midpoints(bool is_signed);

// The roofline of a mixed-precision Adam step over elements [begin, end) (begin a multiple of
// kBlockwiseSize): the update's streams in their storage formats, no math.
using MixedRooflineFn = void (*)(const MixedTensor& tensor, std::int64_t begin, std::int64_t end);

struct KernelTable {
  TypedTable<float> f32;
  TypedTable<double> f64;
  MixedRangeFn mixed;
  MixedRooflineFn mixed_roofline;
  const char* flags;  // compiler flags of this variant
};

// One per compiled variant; the symbols live in ISA-named namespaces so they never collide.
namespace isa_baseline {
const KernelTable& kernel_table();
}
#if defined(ADAMKERN_HAVE_AVX2)
namespace isa_avx2 {
const KernelTable& kernel_table();
}
#endif
#if defined(ADAMKERN_HAVE_AVX512)
namespace isa_avx512 {
const KernelTable& kernel_table();
}
#endif

// The table of the active ISA (see dispatch.cpp).
const KernelTable& active_kernel_table();

template <class T>
const TypedTable<T>& typed_table(const KernelTable& table) {
  if constexpr (sizeof(T) == sizeof(float)) {
    return table.f32;
  } else {
    return table.f64;
  }
}

template <class T, class K>
const UpdateLoops<T, K>& update_loops() {
  return std::get<UpdateLoops<T, K>>(typed_table<T>(active_kernel_table()).update);
}

template <class T, class K>
const MeasureLoops<T, K>& measure_loops() {
  return std::get<MeasureLoops<T, K>>(typed_table<T>(active_kernel_table()).measure);
}

}  // namespace adamkern::detail
