// Per-element conversions of the mixed-precision formats (kernels.hpp: Format), written once
// for every ISA and the device:
//   bfloat16 <-> float32   round to nearest even, or stochastic rounding with 16 random bits
//   float16  <-> float32   round to nearest even, subnormals, inf and NaN included
//   blockwise8             nearest code of bitsandbytes' dynamic map (create_dynamic_map)
// and the counter-based hash that supplies the random bits.
//
// Stochastic rounding (Gupta et al., "Deep Learning with Limited Numerical Precision", 2015):
// add 16 uniform random bits below bfloat16's last mantissa bit, then truncate, so a value
// rounds up with probability equal to its distance from the value below: E[round(x)] = x.
// The random bits of element i of a buffer are mix32(low 32 bits of i ^ key), where key is a
// SplitMix64 hash of (seed, tensor index in the call, buffer, high bits of i): reproducible,
// and the same whatever the thread count or ISA. adamkern.reference repeats both hashes.
#pragma once

#include <cstdint>
#include <cstring>

#include "adamkern/config.hpp"

namespace adamkern::math {

ADAMKERN_HD std::uint32_t float_bits(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

ADAMKERN_HD float bits_float(std::uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

ADAMKERN_HD float bfloat16_to_float(std::uint16_t h) {
  return bits_float(static_cast<std::uint32_t>(h) << 16);
}

// Round to nearest even; NaN stays a (quiet) NaN.
ADAMKERN_HD std::uint16_t float_to_bfloat16(float x) {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const std::uint32_t nan = (bits >> 16) | 0x40u;
  return static_cast<std::uint16_t>(x != x ? nan : rounded);
}

// Stochastic rounding with `random` uniform in [0, 2^16). NaN as float_to_bfloat16.
ADAMKERN_HD std::uint16_t float_to_bfloat16_stochastic(float x, std::uint32_t random) {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t rounded = (bits + random) >> 16;
  const std::uint32_t nan = (bits >> 16) | 0x40u;
  return static_cast<std::uint16_t>(x != x ? nan : rounded);
}

ADAMKERN_HD float float16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  const std::uint32_t mantissa = h & 0x3FFu;
  const std::uint32_t normal = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  const std::uint32_t special = sign | 0x7F800000u | (mantissa << 13);  // inf, NaN
  // Subnormal (and zero): mantissa * 2^-24, exact in float.
  const std::uint32_t subnormal =
      sign | float_bits(static_cast<float>(static_cast<std::int32_t>(mantissa)) * 0x1p-24f);
  // selected with masks, not branches, so the loops around it vectorize
  const std::uint32_t is_subnormal = 0u - static_cast<std::uint32_t>(exponent == 0u);
  const std::uint32_t is_special = 0u - static_cast<std::uint32_t>(exponent == 31u);
  return bits_float((subnormal & is_subnormal) | (special & is_special) |
                    (normal & ~(is_subnormal | is_special)));
}

// Round to nearest even (F. Giesen's branch-free float_to_half_fast3_rtne): overflow to inf,
// NaN to a quiet NaN, subnormals through a float addition that rounds at the right bit.
ADAMKERN_HD std::uint16_t float_to_float16(float x) {
  const std::uint32_t bits = float_bits(x);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const std::uint32_t magnitude = bits & 0x7FFFFFFFu;
  const std::uint32_t large = magnitude > 0x7F800000u ? 0x7E00u : 0x7C00u;
  constexpr std::uint32_t kHalf = 126u << 23;  // 0.5f: aligns 2^-24 with the last float bit
  const std::uint32_t small = float_bits(bits_float(magnitude) + bits_float(kHalf)) - kHalf;
  const std::uint32_t normal = (magnitude + 0xC8000FFFu + ((magnitude >> 13) & 1u)) >> 13;
  // selected with masks, not branches, so the loops around it vectorize
  const std::uint32_t is_large = 0u - static_cast<std::uint32_t>(magnitude >= 0x47800000u);
  const std::uint32_t is_small =
      ~is_large & (0u - static_cast<std::uint32_t>(magnitude < 0x38800000u));
  const std::uint32_t half =
      (large & is_large) | (small & is_small) | (normal & ~(is_large | is_small));
  return static_cast<std::uint16_t>(half | sign);
}

// SplitMix64's finaliser (Steele, Lea, Flood 2014).
ADAMKERN_HD std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A 32-bit integer hash with full avalanche (C. Wellons' lowbias32).
ADAMKERN_HD std::uint32_t mix32(std::uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// The key of one buffer of one tensor for elements [high * 2^32, (high + 1) * 2^32).
// buffer: 0 for the param, 1 + k for state k.
ADAMKERN_HD std::uint32_t rounding_key(std::uint64_t seed, std::uint64_t tensor,
                                       std::uint64_t buffer, std::uint64_t high) {
  std::uint64_t key = splitmix64(seed);
  key = splitmix64(key ^ tensor);
  key = splitmix64(key ^ (buffer | (high << 3)));
  return static_cast<std::uint32_t>(key >> 32);
}

// 16 random bits for element `index` (its low 32 bits) under `key`.
ADAMKERN_HD std::uint32_t rounding_bits(std::uint32_t key, std::uint32_t index) {
  return mix32(index ^ key) >> 16;
}

// Nearest code of x, already divided by its block's absmax (so in [-1, 1]), in the dynamic
// map, found in magnitude: q = the number of midpoints below |x| among the map's values
// 0 < v_1 < ... < v_top (ties go toward zero), and the code is 127 - q or 127 + q (signed;
// there is no -1, so q <= 127 below zero) or q (unsigned; below zero is 0).
// `midpoints[q - 1]` lies between v_(q-1) and v_q (v_0 = 0): 128 entries (signed) or 255.
//
// The map (bitsandbytes' create_dynamic_map) holds, for decade d = 0..6, the midpoints of
// n_d equal intervals of [0.1, 1] * 10^(d-6), with n_d = 2^d (signed) or 2^(d+1) (unsigned),
// and 1. The decade and the interval give q or q + 1 (a little is added so rounding never
// gives less, and a magnitude just past a decade boundary still counts in the decade it passed);
// one comparison with the midpoint below settles it, and the top value is a special case.
template <bool kSigned>
ADAMKERN_HD float candidate_magnitude(float a) {
  float inv_scale = 1e6f;
  float count = kSigned ? 1.0f : 2.0f;  // values in the decade
  const bool d1 = a >= 1e-6f, d2 = a >= 1e-5f, d3 = a >= 1e-4f, d4 = a >= 1e-3f, d5 = a >= 1e-2f,
             d6 = a >= 1e-1f;
  inv_scale = d1 ? 1e5f : inv_scale;
  inv_scale = d2 ? 1e4f : inv_scale;
  inv_scale = d3 ? 1e3f : inv_scale;
  inv_scale = d4 ? 1e2f : inv_scale;
  inv_scale = d5 ? 1e1f : inv_scale;
  inv_scale = d6 ? 1.0f : inv_scale;
  count = d1 ? count * 2.0f : count;
  count = d2 ? count * 2.0f : count;
  count = d3 ? count * 2.0f : count;
  count = d4 ? count * 2.0f : count;
  count = d5 ? count * 2.0f : count;
  count = d6 ? count * 2.0f : count;
  float interval = (a * inv_scale - 0.1f) * (count * (1.0f / 0.9f)) + (1.0f / 64.0f);
  interval = interval > 0.0f ? interval : 0.0f;  // also NaN -> 0
  interval = interval < count - 1.0f ? interval : count - 1.0f;
  // q of the decade's first value: count (signed: 2^d values before it) or count - 1.
  return static_cast<float>(static_cast<std::int32_t>(interval)) + (kSigned ? count : count - 1.0f);
}

// The code from the candidate q (a float), the midpoint below it, and the top midpoint.
template <bool kSigned>
ADAMKERN_HD std::uint32_t code_from_magnitude(float x, float a, std::int32_t q, float below,
                                              float top_midpoint) {
  constexpr std::int32_t kTop = kSigned ? 128 : 255;
  q -= a <= below ? 1 : 0;
  q = a > top_midpoint ? kTop : q;
  if constexpr (kSigned) {
    const bool negative = x < 0.0f;
    q = negative && q > 127 ? 127 : q;
    return static_cast<std::uint32_t>(negative ? 127 - q : 127 + q);
  } else {
    return static_cast<std::uint32_t>(q);
  }
}

template <bool kSigned>
ADAMKERN_HD float code_magnitude_input(float x) {
  return kSigned ? (x < 0.0f ? -x : x) : (x > 0.0f ? x : 0.0f);
}

template <bool kSigned>
ADAMKERN_HD std::uint32_t nearest_code(float x, const float* midpoints, float top_midpoint) {
  const float a = code_magnitude_input<kSigned>(x);
  const auto q = static_cast<std::int32_t>(candidate_magnitude<kSigned>(a));
  return code_from_magnitude<kSigned>(x, a, q, midpoints[q - 1], top_midpoint);
}

}  // namespace adamkern::math
