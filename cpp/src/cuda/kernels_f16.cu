// The CUDA kernels for float16 params, with float16 or float32 state (see multi_tensor.cuh).
#include "multi_tensor.cuh"

ADAMKERN_CUDA_INSTANTIATE(Half, Half)
ADAMKERN_CUDA_INSTANTIATE(Half, float)
