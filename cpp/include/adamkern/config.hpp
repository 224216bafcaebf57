// Portability macros shared by the host and (optional) device builds.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define ADAMKERN_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define ADAMKERN_HD inline __attribute__((always_inline))
#else
#define ADAMKERN_HD inline
#endif

// Host functions the CUDA kernels also call on the device (per-call coefficients computed from
// device-resident scalars). Nothing on the host build.
#if defined(__CUDACC__)
#define ADAMKERN_HOST_DEVICE __host__ __device__
#else
#define ADAMKERN_HOST_DEVICE
#endif

namespace adamkern::math {

// Explicit fused multiply-add: the project builds with -ffp-contract=off, so an fma happens
// exactly where one of these is written, and every ISA (and the device) rounds identically.
ADAMKERN_HD float fused_mul_add(float a, float b, float c) { return fmaf(a, b, c); }
ADAMKERN_HD double fused_mul_add(double a, double b, double c) { return fma(a, b, c); }

ADAMKERN_HD float square_root(float x) { return sqrtf(x); }
ADAMKERN_HD double square_root(double x) { return sqrt(x); }

// NaN-propagating maximum (either operand NaN gives NaN), as torch's vectorized maximum.
template <class T>
ADAMKERN_HD T nan_maximum(T a, T b) {
  return (a < b || b != b) ? b : a;
}

}  // namespace adamkern::math
