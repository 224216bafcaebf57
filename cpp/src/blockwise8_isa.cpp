// The 8-bit block-wise state of one ISA: the codes of bitsandbytes' dynamic maps
// (dynamic_map.cpp) decoded by register permutes and encoded to the nearest entry, a block at
// a time (declared in lowp_isa.hpp; compiled once per ISA, as kernels_isa.cpp).
#include <cstdint>
#include <cstring>

#include "adamkern/kernels.hpp"
#include "adamkern/math/lowp.hpp"
#include "lowp_isa.hpp"

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

constexpr std::int64_t kBlock = kBlockwiseSize;  // one absmax each

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

#if defined(__AVX512F__) && defined(__GNUC__)
// The byte permutes below are AVX512_VBMI's, which the avx512 build does not assume: only the
// functions marked ADAMKERN_VBMI are compiled for it (so no other code of the build can pick up
// its instructions), and they run only where the CPU has it (has_byte_permutes).
#define ADAMKERN_VBMI __attribute__((target("avx512vbmi")))
#define ADAMKERN_HAVE_BYTE_PERMUTES 1

bool has_byte_permutes() {
  static const bool has = (__builtin_cpu_init(), __builtin_cpu_supports("avx512vbmi") != 0);
  return has;
}

// table[index] for 64 byte indices at a time, by byte permutes: the 256 floats of a table kept
// as four planes of bytes (plane k: byte k of every entry, four registers of 64), each looked
// up by two vpermi2b (entries 0-127 and 128-255) and a blend on the index's top bit, and the
// planes interleaved back into floats: 21 instructions per 64 values, where PermuteTable<256>
// spends 19 per 16. The same values, bit for bit (a lookup).
class BytePlaneTable {
 public:
  explicit BytePlaneTable(const float* table) {
    alignas(64) std::uint8_t bytes[4][256];
    for (int i = 0; i < 256; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, table + i, sizeof(bits));
      for (int k = 0; k < 4; ++k) bytes[k][i] = static_cast<std::uint8_t>(bits >> (8 * k));
    }
    for (int k = 0; k < 4; ++k) {
      for (int q = 0; q < 4; ++q) plane_[k][q] = _mm512_load_si512(bytes[k] + 64 * q);
    }
    // The unpacks in lookup leave, in lane L of register q, the values at positions
    // 16 L + 4 q .. 16 L + 4 q + 3: those positions take the indices of values 16 q + 4 L ...
    alignas(64) std::uint8_t order[64];
    for (int lane = 0; lane < 4; ++lane) {
      for (int q = 0; q < 4; ++q) {
        for (int m = 0; m < 4; ++m) {
          order[16 * lane + 4 * q + m] = static_cast<std::uint8_t>(16 * q + 4 * lane + m);
        }
      }
    }
    order_ = _mm512_load_si512(order);
  }

  // out[q] = table[index[16 q .. 16 q + 15]].
  ADAMKERN_VBMI inline void operator()(__m512i index, __m512 (&out)[4]) const {
    index = _mm512_permutexvar_epi8(order_, index);
    const __mmask64 upper = _mm512_movepi8_mask(index);
    __m512i b[4];
    for (int k = 0; k < 4; ++k) {
      b[k] =
          _mm512_mask_blend_epi8(upper, _mm512_permutex2var_epi8(plane_[k][0], index, plane_[k][1]),
                                 _mm512_permutex2var_epi8(plane_[k][2], index, plane_[k][3]));
    }
    const __m512i low01 = _mm512_unpacklo_epi8(b[0], b[1]);
    const __m512i high01 = _mm512_unpackhi_epi8(b[0], b[1]);
    const __m512i low23 = _mm512_unpacklo_epi8(b[2], b[3]);
    const __m512i high23 = _mm512_unpackhi_epi8(b[2], b[3]);
    out[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(low01, low23));
    out[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(low01, low23));
    out[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(high01, high23));
    out[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(high01, high23));
  }

 private:
  __m512i plane_[4][4];
  __m512i order_;
};

// The byte planes of the tables the blocks are coded with (the maps and their midpoints, both
// signs), made once; nullptr for any other table.
const BytePlaneTable* byte_planes_of(const float* table) {
  struct Known {
    const float* table[4];
    BytePlaneTable planes[4];
  };
  static const Known known = [] {
    const float* tables[4] = {dynamic_map(true), dynamic_map(false), dynamic_map_midpoints(true),
                              dynamic_map_midpoints(false)};
    return Known{{tables[0], tables[1], tables[2], tables[3]},
                 {BytePlaneTable(tables[0]), BytePlaneTable(tables[1]), BytePlaneTable(tables[2]),
                  BytePlaneTable(tables[3])}};
  }();
  for (int k = 0; k < 4; ++k) {
    if (table == known.table[k]) return &known.planes[k];
  }
  return nullptr;
}

// lookup_block's and dequantize_block's whole groups of 64 by byte planes, called only after
// has_byte_permutes(). Return how many they did.
ADAMKERN_VBMI __attribute__((noinline)) std::int64_t lookup_by_planes(
    const BytePlaneTable& lookup, const std::int32_t* __restrict index, std::int64_t n,
    float* __restrict out) {
  std::int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m512i bytes = _mm512_castsi128_si512(_mm512_cvtepi32_epi8(_mm512_loadu_si512(index + j)));
    for (int q = 1; q < 4; ++q) {
      bytes = _mm512_inserti32x4(bytes,
                                 _mm512_cvtepi32_epi8(_mm512_loadu_si512(index + j + 16 * q)), q);
    }
    __m512 values[4];
    lookup(bytes, values);
    for (int q = 0; q < 4; ++q) _mm512_storeu_ps(out + j + 16 * q, values[q]);
  }
  return j;
}

ADAMKERN_VBMI __attribute__((noinline)) std::int64_t dequantize_by_planes(
    const BytePlaneTable& lookup, const std::uint8_t* __restrict codes, float scale, std::int64_t n,
    float* __restrict out) {
  const __m512 factor = _mm512_set1_ps(scale);
  std::int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m512 values[4];
    lookup(_mm512_loadu_si512(codes + j), values);
    for (int q = 0; q < 4; ++q)
      _mm512_storeu_ps(out + j + 16 * q, _mm512_mul_ps(values[q], factor));
  }
  return j;
}
#endif

// out[j] = table[index[j]] for int32 indices below kEntries (128 or 256).
template <int kEntries>
void lookup_block(const float* __restrict table, const std::int32_t* __restrict index,
                  std::int64_t n, float* __restrict out) {
  std::int64_t j = 0;
#if defined(ADAMKERN_HAVE_BYTE_PERMUTES)
  if (const BytePlaneTable* planes = has_byte_permutes() ? byte_planes_of(table) : nullptr;
      planes != nullptr) {
    j = lookup_by_planes(*planes, index, n, out);
  }
#endif
#if defined(__AVX512F__)
  if (j + 16 <= n) {
    const PermuteTable<kEntries> lookup(table);
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(out + j, lookup(_mm512_loadu_si512(index + j)));
  }
#endif
  for (; j < n; ++j) out[j] = table[index[j]];
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
void quantize_codes(const float* __restrict in, std::uint8_t* __restrict codes, float* absmax,
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

}  // namespace

void dequantize_block(const float* __restrict table, const std::uint8_t* __restrict codes,
                      float scale, std::int64_t n, float* __restrict out) {
  std::int64_t j = 0;
#if defined(ADAMKERN_HAVE_BYTE_PERMUTES)
  if (const BytePlaneTable* planes = has_byte_permutes() ? byte_planes_of(table) : nullptr;
      planes != nullptr) {
    j = dequantize_by_planes(*planes, codes, scale, n, out);
  }
#endif
#if defined(__AVX512F__)
  if (j + 16 <= n) {
    const PermuteTable<256> lookup(table);
    const __m512 factor = _mm512_set1_ps(scale);
    for (; j + 16 <= n; j += 16) {
      const __m512i index =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j)));
      _mm512_storeu_ps(out + j, _mm512_mul_ps(lookup(index), factor));
    }
  }
#endif
  for (; j < n; ++j) out[j] = table[codes[j]] * scale;
}

void quantize_block(bool is_signed, const float* in, std::uint8_t* codes, float* absmax,
                    std::int64_t n) {
  if (is_signed) {
    quantize_codes<true>(in, codes, absmax, n);
  } else {
    quantize_codes<false>(in, codes, absmax, n);
  }
}

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
