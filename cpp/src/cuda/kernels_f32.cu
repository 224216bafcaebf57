// The CUDA kernels for float params (see multi_tensor.cuh).
#include "multi_tensor.cuh"

ADAMKERN_CUDA_INSTANTIATE(float, float)
