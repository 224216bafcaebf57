// Internal: the lower-precision storage of one ISA, for the files compiled once per ISA
// (kernels_isa.cpp, blockwise8_isa.cpp, mixed_isa.cpp). The 2-byte codecs, element by element
// and a cache line at a time, are inline here: the update loops read and write them in their
// one pass, the span driver converts its float32 copies with them. The 8-bit block codec and
// the span driver are declared below.
#pragma once

#include <cstddef>
#include <cstdint>

#include "adamkern/math/lowp.hpp"
#include "isa_table.hpp"
#include "partition.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef ADAMKERN_ISA_NS
#error "lowp_isa.hpp is for the files compiled once per ISA with -DADAMKERN_ISA_NS=isa_<name>"
#endif

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

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

}  // namespace

// ---- 8-bit block-wise state (blockwise8_isa.cpp) ----

// out[j] = table[codes[j]] * scale for the codes of one 8-bit block (a 256-entry map).
void dequantize_block(const float* table, const std::uint8_t* codes, float scale, std::int64_t n,
                      float* out);

// *absmax = the largest magnitude of in[0, n) (n <= kBlockwiseSize), codes[j] = the nearest
// entry of the signed or unsigned dynamic map to in[j] / *absmax.
void quantize_block(bool is_signed, const float* in, std::uint8_t* codes, float* absmax,
                    std::int64_t n);

// ---- The span driver (mixed_isa.cpp): isa_table.hpp's MixedRangeFn and MixedRooflineFn ----

void mixed_range(const MixedTensor& tensor, std::size_t tensor_index, std::int64_t begin,
                 std::int64_t end, const MixedWork& work, const void* coefficients, double* sums);
void mixed_roofline(const MixedTensor& tensor, std::int64_t begin, std::int64_t end);

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
