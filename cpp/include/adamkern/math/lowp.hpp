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
  return bits_float(exponent == 0 ? subnormal : exponent == 31 ? special : normal);
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
  const std::uint32_t half = magnitude >= 0x47800000u   ? large
                             : magnitude < 0x38800000u ? small
                                                       : normal;
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
// map. `bounds` has 257 entries: bounds[c] is the midpoint between map[c - 1] and map[c], with
// bounds[0] = -inf and bounds[256] = +inf, so the code is the number of midpoints below x
// (a tie goes to the lower code).
//
// The map (bitsandbytes' create_dynamic_map) holds, for decade d = 0..6, the midpoints of
// n_d equal intervals of [0.1, 1] * 10^(d-6), with n_d = 2^d (signed, mirrored for negative
// values) or 2^(d+1) (unsigned), plus 0 and 1. The decade and the interval give a code that
// is the nearest one or next to it; one comparison on each side settles it.
template <bool kSigned>
ADAMKERN_HD std::uint32_t nearest_code(float x, const float* bounds) {
  const float a = kSigned ? (x < 0.0f ? -x : x) : (x > 0.0f ? x : 0.0f);
  float inv_scale = 1e6f;
  float count = kSigned ? 1.0f : 2.0f;  // values in the decade
  const bool d1 = a >= 1e-6f, d2 = a >= 1e-5f, d3 = a >= 1e-4f, d4 = a >= 1e-3f,
             d5 = a >= 1e-2f, d6 = a >= 1e-1f;
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
  float interval = (a * inv_scale - 0.1f) * (count * (1.0f / 0.9f));
  interval = interval > 0.0f ? interval : 0.0f;  // also NaN -> 0
  interval = interval < count - 1.0f ? interval : count - 1.0f;
  // Index among the positive values: the decade's first is count - 1 (signed) or count - 2.
  const std::int32_t positive =
      static_cast<std::int32_t>(interval) + static_cast<std::int32_t>(count) - (kSigned ? 1 : 2);
  std::int32_t code = kSigned ? (x < 0.0f ? 126 - positive : 128 + positive) : 1 + positive;
  code -= x <= bounds[code] ? 1 : 0;
  code += x > bounds[code + 1] ? 1 : 0;
  return static_cast<std::uint32_t>(code);
}

}  // namespace adamkern::math
