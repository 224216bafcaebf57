// The element loops, compiled once per ISA (CMake passes ADAMKERN_ISA_NS and the ISA's flags).
// The loops are written plainly and vectorized by the compiler; the math is in math/*.hpp.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "adamkern/math/lowp.hpp"
#include "isa_table.hpp"
#include "partition.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

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

// How a buffer is stored, for the loops that read and write it themselves: Plain<T> (the type
// the update computes in), or, for float updates, bfloat16 or float16 bits decoded exactly and
// rounded to nearest even (as the mixed-precision driver's float32 copies are), with
// Bf16Stochastic for stochastic rounding (the random bits of element i: math::rounding_bits of
// the buffer's key and the low 32 bits of i).
template <class T>
struct Plain {
  using Stored = T;
  using Nearest = Plain;
  static inline T decode(T x) { return x; }
  static inline T encode(T x, std::uint32_t /*key*/, std::int64_t /*i*/) { return x; }
};
struct Bf16 {
  using Stored = std::uint16_t;
  using Nearest = Bf16;
  static inline float decode(std::uint16_t x) { return math::bfloat16_to_float(x); }
  static inline std::uint16_t encode(float x, std::uint32_t, std::int64_t) {
    return math::float_to_bfloat16(x);
  }
};
struct Bf16Stochastic : Bf16 {
  static inline std::uint16_t encode(float x, std::uint32_t key, std::int64_t i) {
    return math::float_to_bfloat16_stochastic(
        x, math::rounding_bits(key, static_cast<std::uint32_t>(i)));
  }
};
struct F16 {
  using Stored = std::uint16_t;
  using Nearest = F16;
  static inline float decode(std::uint16_t x) { return math::float16_to_float(x); }
  static inline std::uint16_t encode(float x, std::uint32_t, std::int64_t) {
    return math::float_to_float16(x);
  }
};

// Conversion of one line of a 2-byte stream (32 values) with the ISA's own instructions, where
// it has them, to the same bits as the codec's per-element code: decode always succeeds;
// encode(src, dst, key, first) (key: the buffer's stochastic rounding key, first: the index
// of the line's first element) returns false where the instruction would differ (the caller
// then encodes the line element by element). Measured on one thread (2026-12-04, AVX-512 with
// AVX512_BF16), AdamW in ns/element, in cache (32K elements) and at 16M: float16 params 1.18 ->
// 0.41 and 1.20 -> 0.45, bfloat16 params and state 0.62 -> 0.43 and 0.61 -> 0.42, bfloat16 state
// 0.47 -> 0.41 and 0.53 -> 0.46 (float32: 0.39 and 0.51-0.67).
constexpr std::int64_t kLineValues = kCacheLineBytes / 2;
template <class C>
struct LineCodec {
  static constexpr bool kDecode = false;
  static constexpr bool kEncode = false;
  static inline void decode(const std::uint16_t* src, float* dst) {
    for (std::int64_t j = 0; j < kLineValues; ++j) dst[j] = C::decode(src[j]);
  }
  static inline bool encode(const float*, std::uint16_t*, std::uint32_t, std::int64_t) {
    return false;
  }
};
#if defined(__AVX512F__)
// vcvtph2ps and vcvtps2ph (round to nearest even) are exact for every float16 and every float
// but NaN, whose payload vcvtps2ph keeps where math::float_to_float16 writes the quiet NaN:
// a line holding a NaN is left to the per-element code.
template <>
struct LineCodec<F16> {
  static constexpr bool kDecode = true;
  static constexpr bool kEncode = true;
  static inline void decode(const std::uint16_t* src, float* dst) {
    for (int h = 0; h < 2; ++h) {
      const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 16 * h));
      _mm512_storeu_ps(dst + 16 * h, _mm512_cvtph_ps(half));
    }
  }
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t, std::int64_t) {
    const __m512 low = _mm512_loadu_ps(src), high = _mm512_loadu_ps(src + 16);
    if ((_mm512_cmp_ps_mask(low, low, _CMP_UNORD_Q) |
         _mm512_cmp_ps_mask(high, high, _CMP_UNORD_Q)) != 0) {
      return false;
    }
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm512_cvtps_ph(low, kNearest));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16), _mm512_cvtps_ph(high, kNearest));
    return true;
  }
};
// Stochastic rounding in 32-bit lanes: the random bits of math::rounding_bits (the hash of the
// low 32 bits of each index) added below the kept bits, NaN quieted, the upper halves packed.
// GCC's code for the element-wise form carried the indices in 64-bit lanes: 0.91 -> 0.79-0.82
// ns/element in cache for bfloat16 params and state (2026-12-04).
template <>
struct LineCodec<Bf16Stochastic> {
  static constexpr bool kDecode = false;
  static constexpr bool kEncode = true;
  static inline __m512i rounded(const float* src, std::uint32_t key, std::uint32_t first) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512i x =
        _mm512_xor_si512(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(first)), lanes),
                         _mm512_set1_epi32(static_cast<int>(key)));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));  // math::mix32
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7FEB352D));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(static_cast<int>(0x846CA68Bu)));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    const __m512 value = _mm512_loadu_ps(src);
    const __m512i bits = _mm512_castps_si512(value);
    const __mmask16 nan = _mm512_cmp_ps_mask(value, value, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(_mm512_add_epi32(bits, _mm512_srli_epi32(x, 16)), nan, bits,
                                _mm512_set1_epi32(0x00400000));
  }
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t key,
                            std::int64_t first) {
    const auto index = static_cast<std::uint32_t>(first);
    const __m512i upper_halves =
        _mm512_setr_epi32(0x00030001, 0x00070005, 0x000B0009, 0x000F000D, 0x00130011, 0x00170015,
                          0x001B0019, 0x001F001D, 0x00230021, 0x00270025, 0x002B0029, 0x002F002D,
                          0x00330031, 0x00370035, 0x003B0039, 0x003F003D);
    _mm512_storeu_si512(dst, _mm512_permutex2var_epi16(rounded(src, key, index), upper_halves,
                                                       rounded(src + 16, key, index + 16)));
    return true;
  }
};
#elif defined(__AVX2__) && defined(__F16C__)
// The same conversions in 8-lane vectors (AVX2 and F16C).
template <>
struct LineCodec<F16> {
  static constexpr bool kDecode = true;
  static constexpr bool kEncode = true;
  static inline void decode(const std::uint16_t* src, float* dst) {
    for (int q = 0; q < 4; ++q) {
      const __m128i part = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 8 * q));
      _mm256_storeu_ps(dst + 8 * q, _mm256_cvtph_ps(part));
    }
  }
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t, std::int64_t) {
    __m256 value[4];
    int nan = 0;
    for (int q = 0; q < 4; ++q) {
      value[q] = _mm256_loadu_ps(src + 8 * q);
      nan |= _mm256_movemask_ps(_mm256_cmp_ps(value[q], value[q], _CMP_UNORD_Q));
    }
    if (nan != 0) return false;
    constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    for (int q = 0; q < 4; ++q) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 8 * q),
                       _mm256_cvtps_ph(value[q], kNearest));
    }
    return true;
  }
};
// A float's bits plus `below` (math::float_to_bfloat16's rounding bias, or stochastic
// rounding's random bits), NaN quieted instead: the bfloat16 in each 32-bit lane's lower half.
inline __m256i bfloat16_lanes(__m256 value, __m256i below) {
  const __m256i bits = _mm256_castps_si256(value);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(value, value, _CMP_UNORD_Q));
  const __m256i rounded = _mm256_blendv_epi8(
      _mm256_add_epi32(bits, below), _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000)), nan);
  return _mm256_srli_epi32(rounded, 16);
}
// A line's 32 bfloat16 lanes (four vectors of 8) stored in order: packus interleaves its two
// sources by 128-bit lane, the permute puts them back.
inline void store_bfloat16_lanes(std::uint16_t* dst, const __m256i (&lanes)[4]) {
  for (int h = 0; h < 2; ++h) {
    const __m256i packed = _mm256_packus_epi32(lanes[2 * h], lanes[2 * h + 1]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 16 * h),
                        _mm256_permute4x64_epi64(packed, 0xD8));
  }
}
// GCC's code for the element-wise form measured 0.77 and 1.12 ns/element in cache for
// bfloat16 state and bfloat16 params and state (float32 0.41) on AVX2.
template <>
struct LineCodec<Bf16> {
  static constexpr bool kDecode = false;
  static constexpr bool kEncode = true;
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t, std::int64_t) {
    __m256i lanes[4];
    for (int q = 0; q < 4; ++q) {
      const __m256 value = _mm256_loadu_ps(src + 8 * q);
      const __m256i lsb =
          _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(value), 16), _mm256_set1_epi32(1));
      lanes[q] = bfloat16_lanes(value, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
    }
    store_bfloat16_lanes(dst, lanes);
    return true;
  }
};
template <>
struct LineCodec<Bf16Stochastic> {
  static constexpr bool kDecode = false;
  static constexpr bool kEncode = true;
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t key,
                            std::int64_t first) {
    const __m256i lanes8 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i lanes[4];
    for (int q = 0; q < 4; ++q) {
      const auto index = static_cast<std::uint32_t>(first) + 8u * static_cast<std::uint32_t>(q);
      __m256i x =
          _mm256_xor_si256(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(index)), lanes8),
                           _mm256_set1_epi32(static_cast<int>(key)));
      x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));  // math::mix32
      x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7FEB352D));
      x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
      x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846CA68Bu)));
      x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
      lanes[q] = bfloat16_lanes(_mm256_loadu_ps(src + 8 * q), _mm256_srli_epi32(x, 16));
    }
    store_bfloat16_lanes(dst, lanes);
    return true;
  }
};
#endif
#if defined(__AVX512BF16__)
// Whether this CPU has AVX512_BF16 (the avx512 build is compiled for it and runs without it).
inline bool has_bf16_conversion() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512bf16") != 0);
  return has;
}
// vcvtne2ps2bf16 rounds to nearest even and quiets NaN as math::float_to_bfloat16, but
// flushes subnormal floats to zero: a line holding one is left to the per-element code.
template <>
struct LineCodec<Bf16> {
  static constexpr bool kDecode = false;
  static constexpr bool kEncode = true;
  static inline bool encode(const float* src, std::uint16_t* dst, std::uint32_t, std::int64_t) {
    if (!has_bf16_conversion()) return false;
    __m512 low = _mm512_loadu_ps(src), high = _mm512_loadu_ps(src + 16);
    // The conversion has no side effects to GCC, which could hoist it above the check and
    // run it on a CPU without the instruction; an opaque step in between pins it below.
    asm volatile("" : "+v"(low), "+v"(high));
    constexpr int kSubnormal = 0x20;
    if ((_mm512_fpclass_ps_mask(low, kSubnormal) | _mm512_fpclass_ps_mask(high, kSubnormal)) != 0) {
      return false;
    }
    _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(high, low)));
    return true;
  }
};
#endif

// A line of codec C written from float (first: the index of its first value): by LineCodec
// where it can, else value by value.
template <class C>
inline void write_line(const float* src, typename C::Stored* dst, std::uint32_t key,
                       std::int64_t first) {
  if (LineCodec<C>::encode(src, dst, key, first)) return;
  for (std::int64_t j = 0; j < kLineValues; ++j) dst[j] = C::encode(src[j], key, first + j);
}

// n values of codec C written from float (first: the index of in[0]), whole lines by
// LineCodec where the ISA has one.
template <class C>
void encode_values(const float* __restrict in, std::uint16_t* __restrict out, std::int64_t first,
                   std::int64_t n, std::uint32_t key) {
  std::int64_t j = 0;
  if constexpr (LineCodec<C>::kEncode) {
    for (; j + kLineValues <= n; j += kLineValues) write_line<C>(in + j, out + j, key, first + j);
  }
#pragma omp simd
  for (std::int64_t k = j; k < n; ++k) out[k] = C::encode(in[k], key, first + k);
}

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

// The update loop over elements [begin, end) of the params and states streams.
template <class T, class K, int kVariant, bool kUnscale, bool kRemainder, class Params,
          class States>
void update_streams(const Params& params, const States& state, std::int64_t begin, std::int64_t end,
                    const void* coefficients, T grad_scale) {
  // A local copy keeps the coefficients in registers.
  const auto c = *static_cast<const typename K::template Coefficients<T>*>(coefficients);
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

// Whether a measure kernel reads the param (one that says so, a cautious count, may not: its
// lines are then not prefetched, which would make them a stream of the pass).
template <class K, class = void>
struct MeasureReadsParam {
  static constexpr bool at(int) { return true; }
};
template <class K>
struct MeasureReadsParam<K, std::void_t<decltype(K::reads_param(0))>> {
  static constexpr bool at(int variant) { return K::reads_param(variant); }
};

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
  // Software prefetch 2 KB (float) ahead: measured 15% faster on this pass beyond the caches
  // (on an earlier machine; the update loops prefetch 1 KB ahead, see update_streams).
  constexpr std::int64_t kAhead = 512;
  for (std::int64_t block = begin; block < full_end; block += kLanes) {
    const std::int64_t ahead = std::min(block + kAhead, end - 1);  // never past the buffers
    if constexpr (MeasureReadsParam<K>::at(kVariant)) __builtin_prefetch(param + ahead);
    __builtin_prefetch(params.grad + ahead);
    if constexpr ((K::reads(kVariant) & 1u) != 0) __builtin_prefetch(state.s0 + ahead, 1);
    if constexpr ((K::reads(kVariant) & 2u) != 0) __builtin_prefetch(state.s1 + ahead, 1);
    if constexpr ((K::reads(kVariant) & 4u) != 0) __builtin_prefetch(state.s2 + ahead, 1);
    if constexpr ((K::reads(kVariant) & 8u) != 0) __builtin_prefetch(state.s3 + ahead);
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

// ---- Mixed precision: a span of elements at a time, in float32 ----

constexpr std::int64_t kBlock = kBlockwiseSize;  // of 8-bit quantization: one absmax each
// Elements per span of the driver: several quantization blocks, so the per-span work (the
// calls, loop set-up) is spread thin, while the span's float32 copies stay in L1 (6 x 4 KB).
constexpr std::int64_t kSpan = 4 * kBlock;
static_assert(kSpan % kLanes == 0, "a measure's lanes go on across spans");

bool is_blockwise8(Format format) {
  return format == Format::blockwise8_signed || format == Format::blockwise8_unsigned;
}

// The roofline of a mixed-precision Adam step: roofline_range's streams in the storage of
// the mode (PS: params and grads; S0, S1: exp_avg and exp_avg_sq; 8-bit codes and their
// absmax; optional float32 master weights), moved as raw bits with no math.
template <class PS, class S0, class S1, bool kMaster>
void mixed_roofline_streams(const MixedTensor& tensor, std::int64_t begin, std::int64_t end) {
  PS* __restrict param = static_cast<PS*>(tensor.param);
  PS* __restrict grad = static_cast<PS*>(tensor.grad);
  S0* __restrict exp_avg = static_cast<S0*>(tensor.state[0]);
  S1* __restrict exp_avg_sq = static_cast<S1*>(tensor.state[1]);
  std::uint32_t* __restrict master = reinterpret_cast<std::uint32_t*>(tensor.master);
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    const PS p = param[i];
    if constexpr (kMaster) master[i] = master[i] + p;
    param[i] = static_cast<PS>(p ^ grad[i]);
    const S0 m = exp_avg[i];
    exp_avg[i] = static_cast<S0>(exp_avg_sq[i]);
    exp_avg_sq[i] = static_cast<S1>(m + p);
  }
  for (int k = 0; k < 2; ++k) {
    if (!is_blockwise8(tensor.state_format[k])) continue;
    float* __restrict absmax = tensor.absmax[k];
    for (std::int64_t b = begin / kBlockwiseSize; b < (end + kBlockwiseSize - 1) / kBlockwiseSize;
         ++b) {
      absmax[b] = absmax[b] + 1.0f;
    }
  }
}

// Calls fn(tag) with a value of the unsigned type as wide as `format`'s elements.
template <class Fn>
void with_storage(Format format, Fn&& fn) {
  if (format == Format::float32) return fn(std::uint32_t{});
  if (format == Format::bfloat16 || format == Format::float16) return fn(std::uint16_t{});
  fn(std::uint8_t{});
}

void mixed_roofline(const MixedTensor& tensor, std::int64_t begin, std::int64_t end) {
  with_storage(tensor.param_format, [&](auto p) {
    with_storage(tensor.state_format[0], [&](auto s0) {
      with_storage(tensor.state_format[1], [&](auto s1) {
        using PS = decltype(p);
        using S0 = decltype(s0);
        using S1 = decltype(s1);
        if (tensor.master != nullptr) {
          mixed_roofline_streams<PS, S0, S1, true>(tensor, begin, end);
        } else {
          mixed_roofline_streams<PS, S0, S1, false>(tensor, begin, end);
        }
      });
    });
  });
}

#if defined(__AVX512F__)
// table[index] for 16 indices below kEntries (128 or 256) of a table held in registers
// (`part[k]` = entries 16k .. 16k + 15): register permutes, where a gather per 16 elements
// measured 4-5x slower on the whole update here.
template <int kEntries>
struct PermuteTable {
  static_assert(kEntries == 128 || kEntries == 256, "tables of 128 or 256 entries");
  static constexpr int kParts = kEntries / 16;
  __m512 part[kParts];

  explicit PermuteTable(const float* table) {
    for (int k = 0; k < kParts; ++k) part[k] = _mm512_loadu_ps(table + 16 * k);
  }
  inline __m512 operator()(__m512i index) const {
    __m512 r[kParts / 2];
    for (int k = 0; k < kParts / 2; ++k) {
      r[k] = _mm512_permutex2var_ps(part[2 * k], index, part[2 * k + 1]);
    }
    const __mmask16 m5 = _mm512_test_epi32_mask(index, _mm512_set1_epi32(32));
    const __mmask16 m6 = _mm512_test_epi32_mask(index, _mm512_set1_epi32(64));
    __m512 value = _mm512_mask_blend_ps(m6, _mm512_mask_blend_ps(m5, r[0], r[1]),
                                        _mm512_mask_blend_ps(m5, r[2], r[3]));
    if constexpr (kEntries == 256) {
      const __m512 upper = _mm512_mask_blend_ps(m6, _mm512_mask_blend_ps(m5, r[4], r[5]),
                                                _mm512_mask_blend_ps(m5, r[6], r[7]));
      value =
          _mm512_mask_blend_ps(_mm512_test_epi32_mask(index, _mm512_set1_epi32(128)), value, upper);
    }
    return value;
  }
};
#endif

// out[j] = table[index[j]] for int32 indices below kEntries (128 or 256).
template <int kEntries>
void lookup_block(const float* __restrict table, const std::int32_t* __restrict index,
                  std::int64_t n, float* __restrict out) {
  std::int64_t j = 0;
#if defined(__AVX512F__)
  const PermuteTable<kEntries> lookup(table);
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(out + j, lookup(_mm512_loadu_si512(index + j)));
#endif
  for (; j < n; ++j) out[j] = table[index[j]];
}

// out[j] = table[codes[j]] * scale for the codes of one 8-bit block (a 256-entry map).
void dequantize_block(const float* __restrict table, const std::uint8_t* __restrict codes,
                      float scale, std::int64_t n, float* __restrict out) {
  std::int64_t j = 0;
#if defined(__AVX512F__)
  const PermuteTable<256> lookup(table);
  const __m512 factor = _mm512_set1_ps(scale);
  for (; j + 16 <= n; j += 16) {
    const __m512i index =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j)));
    _mm512_storeu_ps(out + j, _mm512_mul_ps(lookup(index), factor));
  }
#endif
  for (; j < n; ++j) out[j] = table[codes[j]] * scale;
}

// out[0, n) = elements [begin, begin + n) of a buffer in `format`, as float32.
void decode_block(Format format, const void* data, const float* absmax, std::int64_t begin,
                  std::int64_t n, float* __restrict out) {
  if (format == Format::bfloat16 || format == Format::float16) {
    const std::uint16_t* __restrict in = static_cast<const std::uint16_t*>(data) + begin;
    if (format == Format::bfloat16) {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) out[j] = math::bfloat16_to_float(in[j]);
    } else {
      std::int64_t j = 0;
      if constexpr (LineCodec<F16>::kDecode) {
        for (; j + kLineValues <= n; j += kLineValues) LineCodec<F16>::decode(in + j, out + j);
      }
#pragma omp simd
      for (std::int64_t k = j; k < n; ++k) out[k] = math::float16_to_float(in[k]);
    }
    return;
  }
  if (is_blockwise8(format)) {
    const std::uint8_t* codes = static_cast<const std::uint8_t*>(data) + begin;
    const float* table = dynamic_map(format == Format::blockwise8_signed);
    for (std::int64_t block = 0; block < n; block += kBlock) {
      dequantize_block(table, codes + block, absmax[(begin + block) / kBlock],
                       std::min(kBlock, n - block), out + block);
    }
    return;
  }
  const float* __restrict in = static_cast<const float*>(data) + begin;
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) out[j] = in[j];
}

#if defined(__AVX512F__)
// math::candidate_magnitude for whole vectors of 16, with the decade from register tables
// instead of six comparisons: the magnitude's binade (2^-31 up, 32 of them) holds at most one
// of the decade thresholds 1e-6 ... 1e-1, so the decade is the binade's count of thresholds
// below it plus one comparison. The same bits as the generic form (NaN included: decade 0).
// Returns how many elements it did (a multiple of 16).
struct DecadeTables {
  float below[32];      // thresholds below the binade
  float threshold[32];  // the threshold inside the binade, or +inf
};

constexpr DecadeTables make_decade_tables() {
  constexpr float kThresholds[6] = {1e-6f, 1e-5f, 1e-4f, 1e-3f, 1e-2f, 1e-1f};
  DecadeTables tables{};
  float low = 1.0f / 2147483648.0f;  // 2^-31
  for (int e = 0; e < 32; ++e, low *= 2.0f) {
    tables.below[e] = 0.0f;
    tables.threshold[e] = __builtin_inff();
    for (const float t : kThresholds) {
      if (t <= low) tables.below[e] += 1.0f;
      if (t > low && t < 2.0f * low) tables.threshold[e] = t;
    }
  }
  return tables;
}

template <bool kSigned>
std::int64_t candidates_avx512(const float* __restrict in, float inverse, std::int64_t n,
                               std::int32_t* __restrict below_index) {
  static constexpr DecadeTables kTables = make_decade_tables();
  const __m512 below_lo = _mm512_loadu_ps(kTables.below),
               below_hi = _mm512_loadu_ps(kTables.below + 16);
  const __m512 thr_lo = _mm512_loadu_ps(kTables.threshold),
               thr_hi = _mm512_loadu_ps(kTables.threshold + 16);
  // by decade: 1 / the decade's top, and its number of values (as the generic chain)
  const __m512 inv_scale =
      _mm512_setr_ps(1e6f, 1e5f, 1e4f, 1e3f, 1e2f, 1e1f, 1.0f, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0);
  const float c0 = kSigned ? 1.0f : 2.0f;
  const __m512 counts = _mm512_setr_ps(c0, 2 * c0, 4 * c0, 8 * c0, 16 * c0, 32 * c0, 64 * c0,
                                       64 * c0, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512 scale = _mm512_set1_ps(inverse);
  const __m512 tenth = _mm512_set1_ps(0.1f), per_unit = _mm512_set1_ps(1.0f / 0.9f);
  const __m512 nudge = _mm512_set1_ps(1.0f / 64.0f), zero = _mm512_setzero_ps(),
               one = _mm512_set1_ps(1.0f);
  const __m512i sign = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i base = _mm512_set1_epi32(127 - 31), top = _mm512_set1_epi32(31);
  const __m512i first_offset = _mm512_set1_epi32(kSigned ? 1 : 2);
  std::int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(in + j), scale);
    const __m512 a = kSigned ? _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), sign))
                             : _mm512_max_ps(x, zero);  // max: NaN -> 0, as the generic form
    const __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    __m512i binade = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_castps_si512(a), 23), base);
    binade = _mm512_min_epi32(_mm512_max_epi32(binade, _mm512_setzero_si512()), top);
    binade = _mm512_mask_mov_epi32(binade, nan, _mm512_setzero_si512());
    __m512 decade = _mm512_permutex2var_ps(below_lo, binade, below_hi);
    const __m512 threshold = _mm512_permutex2var_ps(thr_lo, binade, thr_hi);
    decade = _mm512_mask_add_ps(decade, _mm512_cmp_ps_mask(a, threshold, _CMP_GE_OQ), decade, one);
    const __m512i d = _mm512_cvttps_epi32(decade);
    const __m512 count = _mm512_permutexvar_ps(d, counts);
    __m512 interval = _mm512_sub_ps(_mm512_mul_ps(a, _mm512_permutexvar_ps(d, inv_scale)), tenth);
    interval = _mm512_add_ps(_mm512_mul_ps(interval, _mm512_mul_ps(count, per_unit)), nudge);
    interval = _mm512_max_ps(interval, zero);  // NaN -> 0
    interval = _mm512_min_ps(interval, _mm512_sub_ps(count, one));
    const __m512i q = _mm512_sub_epi32(
        _mm512_add_epi32(_mm512_cvttps_epi32(interval), _mm512_cvttps_epi32(count)), first_offset);
    _mm512_storeu_si512(below_index + j, q);
  }
  return j;
}
#endif

template <bool kSigned>
void quantize_block(const float* __restrict in, std::uint8_t* __restrict codes, float* absmax,
                    std::int64_t n) {
  float largest = 0.0f;  // NaN is skipped: the comparison is false
#pragma omp simd reduction(max : largest)
  for (std::int64_t j = 0; j < n; ++j) {
    const float a = in[j] < 0.0f ? -in[j] : in[j];
    largest = a > largest ? a : largest;
  }
  *absmax = largest;
  // bitsandbytes multiplies by the reciprocal of the absmax; an all-zero block stays zero.
  const float inverse = largest > 0.0f ? 1.0f / largest : 0.0f;
  const float* midpoints = dynamic_map_midpoints(kSigned);
  const float top_midpoint = midpoints[kSigned ? 127 : 254];
  // math::nearest_code in three vector passes, so the table lookup can be permutes.
  alignas(64) std::int32_t below_index[kBlock];
  alignas(64) float below[kBlock];
  std::int64_t first = 0;
#if defined(__AVX512F__)
  first = candidates_avx512<kSigned>(in, inverse, n, below_index);
#endif
#pragma omp simd
  for (std::int64_t j = first; j < n; ++j) {
    const float a = math::code_magnitude_input<kSigned>(in[j] * inverse);
    below_index[j] = static_cast<std::int32_t>(math::candidate_magnitude<kSigned>(a)) - 1;
  }
  lookup_block<kSigned ? 128 : 256>(midpoints, below_index, n, below);
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) {
    const float x = in[j] * inverse;
    codes[j] = static_cast<std::uint8_t>(math::code_from_magnitude<kSigned>(
        x, math::code_magnitude_input<kSigned>(x), below_index[j] + 1, below[j], top_midpoint));
  }
}

// Writes in[0, n) to elements [begin, begin + n) of a buffer in `format`. key: the stochastic
// rounding key of this buffer and block, used when `stochastic` (bfloat16 only).
void encode_block(Format format, const float* __restrict in, void* data, float* absmax,
                  std::int64_t begin, std::int64_t n, bool stochastic, std::uint32_t key) {
  if (format == Format::bfloat16 || format == Format::float16) {
    std::uint16_t* __restrict out = static_cast<std::uint16_t*>(data) + begin;
    if (format == Format::float16) {
      encode_values<F16>(in, out, begin, n, key);
    } else if (stochastic) {
      encode_values<Bf16Stochastic>(in, out, begin, n, key);
    } else {
      encode_values<Bf16>(in, out, begin, n, key);
    }
    return;
  }
  if (is_blockwise8(format)) {
    for (std::int64_t block = 0; block < n; block += kBlock) {
      std::uint8_t* codes = static_cast<std::uint8_t*>(data) + begin + block;
      float* block_absmax = absmax + (begin + block) / kBlock;
      const std::int64_t size = std::min(kBlock, n - block);
      if (format == Format::blockwise8_signed) {
        quantize_block<true>(in + block, codes, block_absmax, size);
      } else {
        quantize_block<false>(in + block, codes, block_absmax, size);
      }
    }
    return;
  }
  float* __restrict out = static_cast<float*>(data) + begin;
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) out[j] = in[j];
}

// Which one-pass loop (FusedFormats) runs `work` on `tensor`, or -1 (the span driver): a
// plain update (no measure, writes memory) whose used state buffers share one format, float32
// or bfloat16, in one of the combinations listed in FusedFormats.
int fused_formats(const MixedTensor& tensor, const MixedWork& work, unsigned used) {
  if (work.measure != nullptr || work.update == nullptr || !work.writes_memory) return -1;
  Format state = Format::float32;
  bool first = true;
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    if ((used & (1u << k)) == 0) continue;
    if (!first && tensor.state_format[k] != state) return -1;
    state = tensor.state_format[k];
    first = false;
  }
  const bool bf16_state = state == Format::bfloat16;
  if (!bf16_state && state != Format::float32) return -1;
  const bool master = tensor.master != nullptr;
  // stochastic rounding matters where something is written as bfloat16
  const bool stochastic =
      tensor.stochastic_rounding && (bf16_state || tensor.param_format == Format::bfloat16);
  switch (tensor.param_format) {
    case Format::float32: return bf16_state && !stochastic ? kFusedFloatParamsBf16State : -1;
    case Format::bfloat16:
      if (stochastic) return bf16_state && !master ? kFusedBf16ParamsBf16StateStochastic : -1;
      if (master) return bf16_state ? -1 : kFusedBf16MasterFloatState;
      return bf16_state ? kFusedBf16ParamsBf16State : kFusedBf16ParamsFloatState;
    case Format::float16:
      if (bf16_state) return -1;
      return master ? kFusedF16MasterFloatState : kFusedF16ParamsFloatState;
    default: return -1;
  }
}

void mixed_range(const MixedTensor& tensor, std::size_t tensor_index, std::int64_t begin,
                 std::int64_t end, const MixedWork& work, const void* coefficients, double* sums) {
  const unsigned used = work.reads | work.writes;
  const std::int64_t remainder_start =
      work.remainder_width > 0 ? tensor.size - tensor.size % work.remainder_width : tensor.size;
  if (const int fused = fused_formats(tensor, work, used);
      fused >= 0 && work.fused[fused][0] != nullptr) {
    // The rounding keys change every 2^32 elements (math::rounding_key).
    constexpr std::int64_t kKeySpan = std::int64_t{1} << 32;
    for (std::int64_t b = begin; b < end; b = (b / kKeySpan + 1) * kKeySpan) {
      const std::int64_t e = std::min(end, (b / kKeySpan + 1) * kKeySpan);
      std::uint32_t keys[1 + kMaxStateBuffers] = {};
      if (tensor.stochastic_rounding) {
        for (int buffer = 0; buffer <= kMaxStateBuffers; ++buffer) {
          keys[buffer] = math::rounding_key(tensor.rounding_seed, tensor_index, buffer,
                                            static_cast<std::uint64_t>(b) >> 32);
        }
      }
      const std::int64_t split = std::clamp(remainder_start, b, e);
      if (split > b) work.fused[fused][0](tensor, b, split, coefficients, work.grad_scale, keys);
      if (split < e) work.fused[fused][1](tensor, split, e, coefficients, work.grad_scale, keys);
    }
    return;
  }
  // A measure's lanes go on from span to span (kSpan is a multiple of them): the chunk's sums
  // are those of the float32 loop over the whole chunk.
  double lanes[2 * kLanes] = {};
  alignas(64) float param[kSpan];
  alignas(64) float grad[kSpan];
  alignas(64) float state[kMaxStateBuffers][kSpan];
  // float32 buffers are worked on in place, unless this pass must not write.
  const bool in_place = work.writes_memory;
  const bool param_in_float = tensor.master == nullptr && tensor.param_format == Format::float32;
  const bool grad_in_float = tensor.param_format == Format::float32;
  const auto key_of = [&](std::uint64_t buffer, std::int64_t block_begin) -> std::uint32_t {
    if (!tensor.stochastic_rounding) return 0;
    return math::rounding_key(tensor.rounding_seed, tensor_index, buffer,
                              static_cast<std::uint64_t>(block_begin) >> 32);
  };
  for (std::int64_t b = begin; b < end; b += kSpan) {
    const std::int64_t n = std::min(kSpan, end - b);
    Tensor<float> local;
    local.size = n;
    float* const param_in_memory = tensor.master != nullptr ? tensor.master
                                   : param_in_float         ? static_cast<float*>(tensor.param)
                                                            : nullptr;
    if (param_in_memory != nullptr && in_place) {
      local.param = param_in_memory + b;
    } else if (param_in_memory != nullptr) {
      decode_block(Format::float32, param_in_memory, nullptr, b, n, param);
      local.param = param;
    } else {
      decode_block(tensor.param_format, tensor.param, nullptr, b, n, param);
      local.param = param;
    }
    if (grad_in_float && in_place) {
      local.grad = static_cast<float*>(tensor.grad) + b;
    } else {
      decode_block(tensor.param_format, tensor.grad, nullptr, b, n, grad);
      local.grad = grad;
    }
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((used & (1u << k)) == 0) continue;
      if (tensor.state_format[k] == Format::float32 && in_place) {
        local.state[k] = static_cast<float*>(tensor.state[k]) + b;
      } else {
        if ((work.reads & (1u << k)) != 0) {
          decode_block(tensor.state_format[k], tensor.state[k], tensor.absmax[k], b, n, state[k]);
        }
        local.state[k] = state[k];
      }
    }

    if (work.measure != nullptr) {
      work.measure(local, 0, n, work.measure_coefficients, work.grad_scale, lanes);
    }
    if (work.update != nullptr) {
      const std::int64_t split = std::clamp(remainder_start - b, std::int64_t{0}, n);
      if (split > 0) work.update(local, 0, split, coefficients, work.grad_scale);
      if (split < n) work.update_remainder(local, split, n, coefficients, work.grad_scale);
    }
    if (!work.writes_memory) continue;

    if (work.update != nullptr && !param_in_float) {
      encode_block(tensor.param_format, local.param, tensor.param, nullptr, b, n,
                   tensor.stochastic_rounding, key_of(0, b));
    }
    if (work.unscale && !grad_in_float) {
      encode_block(tensor.param_format, grad, tensor.grad, nullptr, b, n, false, 0);
    }
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((work.writes & (1u << k)) == 0 || tensor.state_format[k] == Format::float32) continue;
      encode_block(tensor.state_format[k], state[k], tensor.state[k], tensor.absmax[k], b, n,
                   tensor.stochastic_rounding, key_of(1 + k, b));
    }
  }
  if (work.measure != nullptr) {
    sums[0] += lane_total(lanes);
    sums[1] += lane_total(lanes + kLanes);
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
