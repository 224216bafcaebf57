// The element loops, compiled once per ISA (CMake passes ADAMKERN_ISA_NS and the ISA's flags).
// The loops are written plainly and vectorized by the compiler; the math is in math/*.hpp.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "adamkern/math/lowp.hpp"
#include "isa_table.hpp"
#include "lowp_isa.hpp"
#include "partition.hpp"

#ifndef ADAMKERN_ISA_NS
#error "kernels_isa.cpp is compiled once per ISA with -DADAMKERN_ISA_NS=isa_<name>"
#endif
#ifndef ADAMKERN_ISA_FLAGS
#define ADAMKERN_ISA_FLAGS ""
#endif

// The per-element lambdas below are called from two loops (whole cache lines, then the rest);
// GCC does not always inline such a lambda on its own, and a call stops the vectorizer.
#if defined(__GNUC__)
#define ADAMKERN_INLINE_LAMBDA __attribute__((always_inline))
#else
#define ADAMKERN_INLINE_LAMBDA
#endif

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {
// Lanes of the reductions (partition.hpp): element i always goes to lane i % kLanes and each
// lane adds in index order, so the sums are the same bits on every ISA (and any split into
// calls that start at multiples of kLanes).
constexpr std::int64_t kLanes = kReductionLanes;

// The state buffers' pointers, restrict-qualified, and the load/store of those a variant uses,
// stored with codec C; keys[k]: state k's stochastic rounding key.
template <class T, unsigned kReads, unsigned kWrites, class C = Plain<T>>
struct StateStreams {
  using Stored = typename C::Stored;
  using Codec = C;
  Stored* __restrict s0;
  Stored* __restrict s1;
  Stored* __restrict s2;
  Stored* __restrict s3;
  std::uint32_t keys[kMaxStateBuffers] = {};

  explicit StateStreams(const Tensor<T>& tensor)
      : s0(tensor.state[0]), s1(tensor.state[1]), s2(tensor.state[2]), s3(tensor.state[3]) {}
  StateStreams(void* const (&state)[kMaxStateBuffers],
               const std::uint32_t (&state_keys)[kMaxStateBuffers])
      : s0(static_cast<Stored*>(state[0])),
        s1(static_cast<Stored*>(state[1])),
        s2(static_cast<Stored*>(state[2])),
        s3(static_cast<Stored*>(state[3])) {
    for (int k = 0; k < kMaxStateBuffers; ++k) keys[k] = state_keys[k];
  }

  inline void load(std::int64_t i, T& v0, T& v1, T& v2, T& v3) const {
    if constexpr ((kReads & 1u) != 0) v0 = C::decode(s0[i]);
    if constexpr ((kReads & 2u) != 0) v1 = C::decode(s1[i]);
    if constexpr ((kReads & 4u) != 0) v2 = C::decode(s2[i]);
    if constexpr ((kReads & 8u) != 0) v3 = C::decode(s3[i]);
  }
  inline void store(std::int64_t i, T v0, T v1, T v2, T v3) const {
    if constexpr ((kWrites & 1u) != 0) s0[i] = C::encode(v0, keys[0], i);
    if constexpr ((kWrites & 2u) != 0) s1[i] = C::encode(v1, keys[1], i);
    if constexpr ((kWrites & 4u) != 0) s2[i] = C::encode(v2, keys[2], i);
    if constexpr ((kWrites & 8u) != 0) s3[i] = C::encode(v3, keys[3], i);
  }
  // store() of element j of a line staged in float (LineCodec<C>::kEncode), then its encoding.
  inline void stage(std::int64_t j, T v0, T v1, T v2, T v3, T (&out)[4][kLineValues]) const {
    if constexpr ((kWrites & 1u) != 0) out[0][j] = v0;
    if constexpr ((kWrites & 2u) != 0) out[1][j] = v1;
    if constexpr ((kWrites & 4u) != 0) out[2][j] = v2;
    if constexpr ((kWrites & 8u) != 0) out[3][j] = v3;
  }
  inline void encode_line(std::int64_t line, const T (&out)[4][kLineValues]) const {
    Stored* const buffers[4] = {s0, s1, s2, s3};
    for (int k = 0; k < 4; ++k) {
      if ((kWrites & (1u << k)) != 0) write_line<C>(out[k], buffers[k] + line, keys[k], line);
    }
  }
  // Prefetches every line of elements [i, i + kCount) of the used buffers (none past `last`).
  template <unsigned kUsed, std::int64_t kCount>
  inline void prefetch(std::int64_t i, std::int64_t last) const {
    constexpr std::int64_t kStep = kCacheLineBytes / sizeof(Stored);
    for (std::int64_t k = 0; k < (kCount + kStep - 1) / kStep; ++k) {  // a fixed count: unrolled
      const std::int64_t at = std::min(i + k * kStep, last);
      if constexpr ((kUsed & 1u) != 0) __builtin_prefetch(s0 + at, 1);
      if constexpr ((kUsed & 2u) != 0) __builtin_prefetch(s1 + at, 1);
      if constexpr ((kUsed & 4u) != 0) __builtin_prefetch(s2 + at, 1);
      if constexpr ((kUsed & 8u) != 0) __builtin_prefetch(s3 + at, 1);
    }
  }
};

// The params and grads, stored with codec C, and (kMaster) float32 master weights the update
// reads and writes instead of the params, which then receive their rounded copy. Grads are
// unscaled (and written back, rounded to nearest) in the unscaling loops; the update uses the
// unrounded value.
template <class T, class C = Plain<T>, bool kMaster = false>
struct ParamStreams {
  using Stored = typename C::Stored;
  using Codec = C;
  Stored* __restrict param;
  Stored* __restrict grad;
  float* __restrict master = nullptr;
  std::uint32_t key = 0;
  static constexpr bool kMasterWeights = kMaster;

  inline T load(std::int64_t i) const {
    if constexpr (kMaster) {
      return master[i];
    } else {
      return C::decode(param[i]);
    }
  }
  inline void store(std::int64_t i, T p) const {
    if constexpr (kMaster) master[i] = p;
    param[i] = C::encode(p, key, i);
  }
  template <bool kUnscale>
  inline T load_grad(std::int64_t i, T grad_scale) const {
    T g = C::decode(grad[i]);
    if constexpr (kUnscale) {
      g = g / grad_scale;
      grad[i] = C::Nearest::encode(g, 0, i);
    }
    return g;
  }
  // A line's params (unless kMaster) and grads decoded to float (LineCodec<C>::kDecode).
  inline void decode_line(std::int64_t line, T* p, T* g) const {
    if constexpr (!kMaster) LineCodec<C>::decode(param + line, p);
    LineCodec<C>::decode(grad + line, g);
  }
  // store() of element j of a line whose params are staged in float (LineCodec<C>::kEncode),
  // then their encoding.
  inline void stage(std::int64_t i, std::int64_t j, T p, T* out) const {
    if constexpr (kMaster) master[i] = p;
    out[j] = p;
  }
  inline void encode_line(std::int64_t line, const T* out) const {
    write_line<C>(out, param + line, key, line);
  }
  // As StateStreams::prefetch, for the params, the grads (kReadsGrad) and the master weights.
  template <bool kReadsGrad, std::int64_t kCount>
  inline void prefetch(std::int64_t i, std::int64_t last) const {
    constexpr std::int64_t kStep = kCacheLineBytes / sizeof(Stored);
    for (std::int64_t k = 0; k < (kCount + kStep - 1) / kStep; ++k) {  // a fixed count: unrolled
      const std::int64_t at = std::min(i + k * kStep, last);
      __builtin_prefetch(param + at, 1);
      if constexpr (kReadsGrad) __builtin_prefetch(grad + at);
    }
    if constexpr (kMaster) {
      constexpr std::int64_t kFloatStep = kCacheLineBytes / sizeof(float);
      for (std::int64_t k = 0; k < (kCount + kFloatStep - 1) / kFloatStep; ++k) {
        __builtin_prefetch(master + std::min(i + k * kFloatStep, last), 1);
      }
    }
  }
};

// Whether kernel K reads the grads (every update but LAMB's second pass): the stream the loop
// prefetches. A kernel says otherwise with `static constexpr bool kReadsGrad = false`.
template <class K, class = void>
struct ReadsGrad : std::true_type {};
template <class K>
struct ReadsGrad<K, std::void_t<decltype(K::kReadsGrad)>> : std::bool_constant<K::kReadsGrad> {};

// The coefficients a loop's update reads: the descriptor's, or in the loops over
// lower-precision storage (kDivided) its DividedCoefficients where it has them, the same
// numbers divided by the divider (math::divide).
template <class K, class T, bool kDivided, class = void>
struct LoopCoefficients {
  using type = typename K::template Coefficients<T>;
};
template <class K, class T>
struct LoopCoefficients<K, T, true, std::void_t<typename K::template DividedCoefficients<T>>> {
  using type = typename K::template DividedCoefficients<T>;
};

// A copy of the descriptor's coefficients as C, a type of the same layout.
template <class C>
C coefficients_as(const void* coefficients) {
  static_assert(std::is_trivially_copyable_v<C>);
  C c;
  std::memcpy(&c, coefficients, sizeof c);
  return c;
}

// The update loop over elements [begin, end) of the params and states streams.
template <class T, class K, int kVariant, bool kUnscale, bool kRemainder, class Params,
          class States>
void update_streams(const Params& params, const States& state, std::int64_t begin, std::int64_t end,
                    const void* coefficients, T grad_scale) {
  // A local copy keeps the coefficients in registers.
  constexpr bool kDivided = !std::is_same_v<typename Params::Codec, Plain<T>> ||
                            !std::is_same_v<typename States::Codec, Plain<T>> ||
                            Params::kMasterWeights;
  using Coefficients = typename LoopCoefficients<K, T, kDivided>::type;
  static_assert(sizeof(Coefficients) == sizeof(typename K::template Coefficients<T>));
  const Coefficients c = coefficients_as<Coefficients>(coefficients);
  const auto element = [&](std::int64_t i) ADAMKERN_INLINE_LAMBDA {
    const T g = params.template load_grad<kUnscale>(i, grad_scale);
    T s0{}, s1{}, s2{}, s3{};
    state.load(i, s0, s1, s2, s3);
    T p = params.load(i);
    K::template update<T, kVariant, kRemainder>(p, g, s0, s1, s2, s3, c);
    params.store(i, p);
    state.store(i, s0, s1, s2, s3);
  };
  // One line of the narrowest stream at a time, each read stream prefetched 1 KB (of T) ahead,
  // every line of it: with 2-byte streams a float stream moves two lines a step, and
  // prefetching only the first (as until 2026-12-04) left bfloat16 state at 0.54-0.56
  // ns/element at 16M elements on one thread (0.49-0.50 now), bfloat16 params with float32
  // master weights at 0.82-0.83 (0.61-0.74).
  // Where the update's division and square-root throughput is close to the memory time (2
  // cores here: 0.68 ns/element in cache against 1.0 beyond it) the hardware prefetcher alone
  // falls behind: measured 1.19 -> 1.04 ns/element at 16M elements on one thread (0.84 -> 0.98
  // of the roofline kernel), unchanged in cache; 0.5-1.5 KB ahead all measured alike. The line
  // is that of the narrowest stream: with 2-byte streams a float line (16 elements) gave GCC
  // half-width float vectors (two ymm per 16 elements), 0.46 ns/element in cache against 0.23.
  constexpr std::int64_t kNarrowest =
      std::min({sizeof(T), sizeof(typename Params::Stored), sizeof(typename States::Stored)});
  constexpr std::int64_t kLine = kCacheLineBytes / kNarrowest;
  constexpr std::int64_t kAhead = 1024 / static_cast<std::int64_t>(sizeof(T));
  // A line of 2-byte streams whose codecs convert whole lines (LineCodec) is staged in float:
  // decoded before the element loop and encoded after it.
  using PC = typename Params::Codec;
  using SC = typename States::Codec;
  constexpr bool kDecodeParams = LineCodec<PC>::kDecode && !kUnscale;
  constexpr bool kStaged =
      kLine == kLineValues && (kDecodeParams || LineCodec<PC>::kEncode || LineCodec<SC>::kEncode);
  const auto staged_line = [&](auto line) ADAMKERN_INLINE_LAMBDA {  // generic: compiled if called
    alignas(64) T p_in[kLineValues], g_in[kLineValues], p_out[kLineValues];
    alignas(64) T s_out[4][kLineValues];
    if constexpr (kDecodeParams) params.decode_line(line, p_in, g_in);
#pragma omp simd
    for (std::int64_t j = 0; j < kLineValues; ++j) {
      const std::int64_t i = line + j;
      const T g = kDecodeParams ? g_in[j] : params.template load_grad<kUnscale>(i, grad_scale);
      T s0{}, s1{}, s2{}, s3{};
      state.load(i, s0, s1, s2, s3);
      T p = kDecodeParams && !Params::kMasterWeights ? p_in[j] : params.load(i);
      K::template update<T, kVariant, kRemainder>(p, g, s0, s1, s2, s3, c);
      if constexpr (LineCodec<PC>::kEncode) {
        params.stage(i, j, p, p_out);
      } else {
        params.store(i, p);
      }
      if constexpr (LineCodec<SC>::kEncode) {
        state.stage(j, s0, s1, s2, s3, s_out);
      } else {
        state.store(i, s0, s1, s2, s3);
      }
    }
    if constexpr (LineCodec<PC>::kEncode) params.encode_line(line, p_out);
    if constexpr (LineCodec<SC>::kEncode) state.encode_line(line, s_out);
  };
  const std::int64_t lines_end = begin + (end - begin) / kLine * kLine;
  for (std::int64_t line = begin; line < lines_end; line += kLine) {
    params.template prefetch<ReadsGrad<K>::value, kLine>(line + kAhead, end - 1);
    state.template prefetch<K::reads(kVariant), kLine>(line + kAhead, end - 1);
    if constexpr (kStaged) {
      staged_line(line);
    } else {
#pragma omp simd
      for (std::int64_t i = line; i < line + kLine; ++i) element(i);
    }
  }
#pragma omp simd
  for (std::int64_t i = lines_end; i < end; ++i) element(i);
}

template <class T, class K, int kVariant, bool kUnscale, bool kRemainder>
void update_range(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                  const void* coefficients, T grad_scale) {
  const StateStreams<T, K::reads(kVariant), K::writes(kVariant)> state(tensor);
  const ParamStreams<T> params{tensor.param, tensor.grad};
  update_streams<T, K, kVariant, kUnscale, kRemainder>(params, state, begin, end, coefficients,
                                                       grad_scale);
}

// update_range for the lower-precision storage the loop reads and writes itself (no float32
// copies), one of the FusedFormats: params and grads with codec PC (and kMaster: float32 master
// weights), every used state buffer with codec SC. keys: the stochastic rounding keys of the
// param (0) and of state k (1 + k) for these elements.
template <class K, int kVariant, bool kUnscale, bool kRemainder, class PC, bool kMaster, class SC>
void update_range_fused(const MixedTensor& tensor, std::int64_t begin, std::int64_t end,
                        const void* coefficients, float grad_scale,
                        const std::uint32_t (&keys)[1 + kMaxStateBuffers]) {
  const std::uint32_t state_keys[kMaxStateBuffers] = {keys[1], keys[2], keys[3], keys[4]};
  const StateStreams<float, K::reads(kVariant), K::writes(kVariant), SC> state(tensor.state,
                                                                               state_keys);
  using Stored = typename PC::Stored;
  const ParamStreams<float, PC, kMaster> params{static_cast<Stored*>(tensor.param),
                                                static_cast<Stored*>(tensor.grad), tensor.master,
                                                keys[0]};
  update_streams<float, K, kVariant, kUnscale, kRemainder>(params, state, begin, end, coefficients,
                                                           grad_scale);
}

template <class T, class K, int kVariant, bool kUnscale>
void measure_range(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                   const void* coefficients, T grad_scale, double* lanes) {
  T* __restrict param = tensor.param;
  const ParamStreams<T> params{tensor.param, tensor.grad};
  const StateStreams<T, K::reads(kVariant), K::writes(kVariant)> state(tensor);
  const auto c = *static_cast<const typename K::template Coefficients<T>*>(coefficients);
  double first[kLanes], second[kLanes];  // local copies: GCC keeps them in registers
  for (std::int64_t j = 0; j < kLanes; ++j) {
    first[j] = lanes[j];
    second[j] = lanes[kLanes + j];
  }
  // A kernel returning bool (a cautious count) counts in integer lanes of T's width, which
  // vectorize beside T, and adds them to the first sum at the end (exact: a range is at most
  // a chunk of the reduction).
  using Measured = decltype(K::template measure<T, kVariant>(
      T{}, T{}, std::declval<T&>(), std::declval<T&>(), std::declval<T&>(), std::declval<T&>(), c));
  constexpr bool kCounts = std::is_same_v<Measured, bool>;
  using Count = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
  Count counts[kLanes] = {};
  const auto element = [&](std::int64_t i, std::int64_t lane) ADAMKERN_INLINE_LAMBDA {
    const T g = params.template load_grad<kUnscale>(i, grad_scale);
    T s0{}, s1{}, s2{}, s3{};
    state.load(i, s0, s1, s2, s3);
    const T p = param[i];
    const auto measured = K::template measure<T, kVariant>(p, g, s0, s1, s2, s3, c);
    state.store(i, s0, s1, s2, s3);
    if constexpr (kCounts) {
      counts[lane] += measured ? Count{1} : Count{0};
    } else {
      math::add_terms(first[lane], second[lane], p, measured);
    }
  };
  // Full blocks of kLanes (a fixed trip count the compiler turns into whole vectors), then
  // the partial block at the end of the range.
  const std::int64_t full_end = begin + (end - begin) / kLanes * kLanes;
  // No software prefetch: the hardware prefetcher streams this pass better alone (the cautious
  // count only reads; LAMB's and Prodigy's first pass also writes its moments). Measured on 16M
  // float32 elements, one thread, the C++ API (2026-12-04): without the prefetches 2 KB ahead that
  // this pass had, the two-pass steps took 12-13% less time (cautious AdamW 1.24 -> 1.10
  // ns/element, cautious Lion 1.04 -> 0.90, LAMB 1.48 -> 1.30, Prodigy 1.72 -> 1.52), at two
  // threads the same within the host's noise.
  for (std::int64_t block = begin; block < full_end; block += kLanes) {
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) element(block + j, j);
  }
  for (std::int64_t j = 0; j < end - full_end; ++j) element(full_end + j, j);
  if constexpr (kCounts) {
    for (std::int64_t j = 0; j < kLanes; ++j) first[j] += static_cast<double>(counts[j]);
  }
  for (std::int64_t j = 0; j < kLanes; ++j) {
    lanes[j] = first[j];
    lanes[kLanes + j] = second[j];
  }
}

template <class T>
void reduce_range(const T* __restrict x, std::int64_t begin, std::int64_t end, double* sums) {
  double squares[kLanes] = {};
  T non_finite[kLanes] = {};  // x - x: 0 for finite x, NaN for inf and NaN
  const std::int64_t full_end = begin + (end - begin) / kLanes * kLanes;
  for (std::int64_t block = begin; block < full_end; block += kLanes) {
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) {
      const T v = x[block + j];
      squares[j] += static_cast<double>(v) * static_cast<double>(v);
      non_finite[j] += v - v;
    }
  }
  for (std::int64_t j = 0; j < end - full_end; ++j) {
    const T v = x[full_end + j];
    squares[j] += static_cast<double>(v) * static_cast<double>(v);
    non_finite[j] += v - v;
  }
  double flags = 0.0;
  for (std::int64_t j = 0; j < kLanes; ++j) flags += static_cast<double>(non_finite[j]);
  sums[0] += lane_total(squares);
  sums[1] += flags;
}

template <class T>
void roofline_range(const Tensor<T>& tensor, std::int64_t begin, std::int64_t end) {
  T* __restrict param = tensor.param;
  T* __restrict grad = tensor.grad;
  T* __restrict exp_avg = tensor.state[0];
  T* __restrict exp_avg_sq = tensor.state[1];
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    // Reads four streams, writes three, one add: the traffic of Adam without its math.
    const T p = param[i];
    param[i] = exp_avg[i];
    exp_avg[i] = exp_avg_sq[i];
    exp_avg_sq[i] = p + grad[i];
  }
}

template <class K, int kVariant, class PC, bool kMaster, class SC>
constexpr void fill_fused(FusedRangeFn (&slot)[2][2]) {
  slot[0][0] = &update_range_fused<K, kVariant, false, false, PC, kMaster, SC>;
  slot[1][0] = &update_range_fused<K, kVariant, true, false, PC, kMaster, SC>;
  slot[0][1] = &update_range_fused<K, kVariant, false, K::kTorchRemainder, PC, kMaster, SC>;
  slot[1][1] = &update_range_fused<K, kVariant, true, K::kTorchRemainder, PC, kMaster, SC>;
}

template <class T, class K, int kVariant>
constexpr void fill_variant(UpdateLoops<T, K>& loops) {
  auto& slot = loops.fn[kVariant];
  slot[0][0] = &update_range<T, K, kVariant, false, false>;
  slot[1][0] = &update_range<T, K, kVariant, true, false>;
  if constexpr (K::kTorchRemainder) {
    slot[0][1] = &update_range<T, K, kVariant, false, true>;
    slot[1][1] = &update_range<T, K, kVariant, true, true>;
  } else {  // no separate remainder form: never selected, but never null either
    slot[0][1] = slot[0][0];
    slot[1][1] = slot[1][0];
  }
  if constexpr (std::is_same_v<T, float>) {
    auto& fused = loops.fused;
    using F32 = Plain<float>;
    fill_fused<K, kVariant, F32, false, Bf16>(fused[kFusedFloatParamsBf16State][kVariant]);
    fill_fused<K, kVariant, Bf16, false, F32>(fused[kFusedBf16ParamsFloatState][kVariant]);
    fill_fused<K, kVariant, Bf16, false, Bf16>(fused[kFusedBf16ParamsBf16State][kVariant]);
    fill_fused<K, kVariant, Bf16Stochastic, false, Bf16Stochastic>(
        fused[kFusedBf16ParamsBf16StateStochastic][kVariant]);
    fill_fused<K, kVariant, Bf16, true, F32>(fused[kFusedBf16MasterFloatState][kVariant]);
    fill_fused<K, kVariant, F16, false, F32>(fused[kFusedF16ParamsFloatState][kVariant]);
    fill_fused<K, kVariant, F16, true, F32>(fused[kFusedF16MasterFloatState][kVariant]);
  }
}

template <class T, class K, int kVariant>
constexpr void fill_variant(MeasureLoops<T, K>& loops) {
  loops.fn[kVariant][0] = &measure_range<T, K, kVariant, false>;
  loops.fn[kVariant][1] = &measure_range<T, K, kVariant, true>;
}

template <class T, class K, template <class, class> class Loops, int... kVariants>
constexpr void fill_kernel(Loops<T, K>& loops, std::integer_sequence<int, kVariants...>) {
  (fill_variant<T, K, kVariants>(loops), ...);
}

template <class... Loops>
constexpr void fill_all(std::tuple<Loops...>& all) {
  (fill_kernel(std::get<Loops>(all), std::make_integer_sequence<int, Loops::Kernel::kVariants>()),
   ...);
}

template <class T>
TypedTable<T> make_table() {
  TypedTable<T> table{};
  fill_all(table.update);
  fill_all(table.measure);
  table.roofline = &roofline_range<T>;
  table.reduce = &reduce_range<T>;
  return table;
}

}  // namespace

const KernelTable& kernel_table() {
  static const KernelTable table{make_table<float>(), make_table<double>(), &mixed_range,
                                 &mixed_roofline, ADAMKERN_ISA_FLAGS};
  return table;
}

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
