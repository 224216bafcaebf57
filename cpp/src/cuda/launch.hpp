// The CUDA target's host-side interface: what the pybind11 module (compiled by the host
// compiler, no CUDA headers) calls, and what the .cu files instantiate.
//
// A call is a list of tensors in device memory, given as raw device addresses (the Python
// layer has read them from __cuda_array_interface__ / DLPack and validated every argument).
// The coefficients are computed on the host by the kernel's own K::coefficients (math/*.hpp),
// exactly as the CPU entry points do, and passed by value to the kernel.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "adamkern/adafactor.hpp"
#include "adamkern/optimizers.hpp"

namespace adamkern::cuda {

enum class DType : int { float32 = 0, float64 = 1, float16 = 2, bfloat16 = 3 };

// Storage tags for the 16-bit float types (the .cu files map them to __half/__nv_bfloat16).
struct Half {};
struct BFloat16 {};

// The type the math runs in for params of storage type P: float for the 16-bit types.
template <class P>
using Math = std::conditional_t<std::is_same_v<P, double>, double, float>;

struct DeviceCall {
  std::vector<std::uintptr_t> params, grads;
  std::vector<std::uintptr_t> states[kMaxStateBuffers];  // empty when the variant does not use it
  std::vector<std::int64_t> sizes;
  DType dtype = DType::float32;        // params and grads
  DType state_dtype = DType::float32;  // the dtype, or float32 with 16-bit params
  std::uintptr_t stream = 0;           // cudaStream_t
  int device = 0;
  // AMP, with torch's semantics; a device pointer to one float32, or 0 (then host_grad_scale
  // is used when unscale is set).
  std::uintptr_t grad_scale = 0;
  std::uintptr_t found_inf = 0;
  float host_grad_scale = 1.0f;
  bool unscale = false;
  // Device-resident lr and step (one float32 each, 0: absent), for adam only: the coefficients
  // are then computed on the device from them, so the step never waits for the host.
  std::uintptr_t lr = 0;
  std::uintptr_t step = 0;
};

// Runs kernel K (variant `variant`) over every tensor of the call on the call's stream.
template <class K, class P, class S>
void launch_update(const DeviceCall& call, int variant,
                   const typename K::template Coefficients<Math<P>>& coefficients);

// A cautious update of K (`variant` one of its cautious variants, math/common.hpp): a count
// pass with per-chunk counts (exact), then the update with each tensor's mask scale, computed
// on the device as the CPU computes it. Throws for a K without cautious variants.
template <class K, class P, class S>
void launch_cautious(const DeviceCall& call, int variant,
                     const typename K::template Coefficients<Math<P>>& coefficients);

// Adam with lr and/or step read from device memory (call.lr, call.step).
template <class P, class S>
void launch_adam_device_scalars(const DeviceCall& call, int variant, const AdamOptions& options);

// LAMB: the moments pass with per-tensor sums of squares (deterministic: fixed chunks, fixed
// reduction tree), then the apply pass with each tensor's trust ratio, computed on the device.
template <class P, class S>
void launch_lamb(const DeviceCall& call, const LambOptions& options, double step);

// Prodigy: the moments pass with per-chunk sums (fixed chunks, fixed reduction tree), the new
// d on the host from each tensor's sums (math::prodigy_advance, as the CPU; scalars is the
// group's host array, updated in place: the call waits for pass 1), then the update pass.
template <class P, class S>
void launch_prodigy(const DeviceCall& call, const ProdigyOptions& options, double* scalars);

// Adafactor (adafactor.cu): one tensor as the CPU's AdafactorTensor describes it, by device
// address (0 for the state its layout does not keep).
struct AdafactorDeviceTensor {
  std::uintptr_t param = 0, grad = 0, row_var = 0, col_var = 0, variance = 0;
  std::int64_t batch = 1, rows = 1, cols = 0;
  bool factored = false;
  double step = 1.0;  // after the increment
};

// Every tensor's step, one after the other, on `stream` (T: float or double; the options
// checked by the caller).
template <class T>
void launch_adafactor(const std::vector<AdafactorDeviceTensor>& tensors,
                      const AdafactorOptions& options, std::uintptr_t stream, int device);

// Runtime helpers (runtime.cu). device_count() is 0 (never an error) without a driver or GPU.
int device_count();
int pointer_device(std::uintptr_t pointer);  // -1 for host or unknown memory
void copy_async(std::uintptr_t destination, std::uintptr_t source, std::int64_t bytes,
                std::uintptr_t stream, int device);
void synchronize(int device);
const char* runtime_version_string();

}  // namespace adamkern::cuda
