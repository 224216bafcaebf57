// The CUDA kernels for bfloat16 params, with bfloat16 or float32 state (see multi_tensor.cuh).
#include "multi_tensor.cuh"

ADAMKERN_CUDA_INSTANTIATE(BFloat16, BFloat16)
ADAMKERN_CUDA_INSTANTIATE(BFloat16, float)
