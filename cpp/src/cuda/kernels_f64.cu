// The CUDA kernels for double params (see multi_tensor.cuh).
#include "multi_tensor.cuh"

ADAMKERN_CUDA_INSTANTIATE(double, double)
