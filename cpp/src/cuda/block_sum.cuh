// A fixed-shape block reduction shared by the CUDA kernels that reduce (LAMB's norms, Prodigy's
// sums, the cautious counts, Adafactor's sums of squares): the same tree every time, so a sum
// is the same bits on every run.
#pragma once

namespace adamkern::cuda {

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
