// What the CUDA translation units share: error checks, the current-device scope, and the
// fixed-shape block reduction of the kernels that reduce (LAMB's norms, Prodigy's sums, the
// cautious counts, Adafactor's sums of squares): the same tree every time, so a sum is the
// same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace adamkern::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("adamkern CUDA: ") + what +
                             " failed: " + cudaGetErrorString(status));
  }
}

// Makes `device` current for the scope (the caller's current device is restored).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

// Sums a and b over the kThreads threads of the block (every thread gets the sums); shared
// holds kThreads pairs.
template <int kThreads>
__device__ __forceinline__ void block_sum2(double& a, double& b, double (*shared)[2]) {
  shared[threadIdx.x][0] = a;
  shared[threadIdx.x][1] = b;
  __syncthreads();
  for (int width = kThreads / 2; width >= 1; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width) {
      shared[threadIdx.x][0] += shared[threadIdx.x + width][0];
      shared[threadIdx.x][1] += shared[threadIdx.x + width][1];
    }
    __syncthreads();
  }
  a = shared[0][0];
  b = shared[0][1];
  __syncthreads();
}

}  // namespace adamkern::cuda
