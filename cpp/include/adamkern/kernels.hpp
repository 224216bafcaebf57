// The adamkern C++ API: fused, in-place optimizer updates over raw buffers. No Python needed.
//
//   #include "adamkern/optimizers.hpp"      // every optimizer; this header's types
//   adamkern::AdamOptions options;            // torch.optim.Adam defaults
//   options.lr = 1e-3;
//   adamkern::adam(param, grad, exp_avg, exp_avg_sq, nullptr, n, options, /*step=*/1);
//
// Every optimizer has a math header describing it whole (math/<name>.hpp): its options struct
// (torch's names and defaults where torch has the optimizer, optax's where it does not), state
// and update. The multi-tensor entry point optimizer_step<math::Name> runs one parallel region
// over all tensors of the call (adamkern/optimizers.hpp lists them all). Each tensor is a
// Tensor<T>: the param, its grad, and the optimizer's state buffers in the order its header's
// kState lists them.
//
// Every entry point validates all of its arguments before it writes anything and throws
// std::invalid_argument (naming the argument and the tensor index) on bad input.
#pragma once

#include <cstddef>
#include <cstdint>

namespace adamkern {

inline constexpr int kMaxStateBuffers = 4;

// One tensor of a multi-tensor call: `size` contiguous elements in each buffer. State buffers
// an optimizer does not use with the given options may be nullptr.
template <class T>
struct Tensor {
  T* param = nullptr;
  T* grad = nullptr;
  T* state[kMaxStateBuffers] = {};
  std::int64_t size = 0;
};

// Storage formats of the mixed-precision tensors (MixedTensor): every update computes in
// float32 whatever the storage.
//   float32, bfloat16, float16   plain arrays; bfloat16 is the upper half of a float32
//   blockwise8_signed/unsigned   8-bit codes into bitsandbytes' dynamic quantization map
//                                (create_dynamic_map(signed=True/False)), with one float32
//                                absmax per block of kBlockwiseSize elements: the value of
//                                element i is map[code[i]] * absmax[i / kBlockwiseSize]
enum class Format : std::uint8_t {
  float32,
  bfloat16,
  float16,
  blockwise8_signed,
  blockwise8_unsigned,
};

inline constexpr std::int64_t kBlockwiseSize = 256;

// One tensor of a mixed-precision call. The update reads each buffer in its format, computes
// in float32 and writes each buffer back rounded to its format, in one pass over memory
// (blockwise8 states are dequantized and requantized one block at a time).
//   param, grad   param_format (float32, bfloat16 or float16); grad has the param's format
//   master        optional float32 master weights: read and updated instead of param, and
//                 param is written as their rounded copy (param_format must not be float32)
//   state[k]      state_format[k]; absmax[k] holds ceil(size / kBlockwiseSize) floats for a
//                 blockwise8 state
// Rounding is to nearest even, or stochastic for bfloat16 writes (params and state) when
// stochastic_rounding is set: the random bits are a hash of rounding_seed, the tensor's index
// in the call, the buffer and the element index, so results do not depend on the thread count
// or the ISA (math/lowp.hpp). Grads written back by unscaling always round to nearest.
struct MixedTensor {
  void* param = nullptr;
  void* grad = nullptr;
  float* master = nullptr;
  void* state[kMaxStateBuffers] = {};
  float* absmax[kMaxStateBuffers] = {};
  std::int64_t size = 0;
  Format param_format = Format::float32;
  Format state_format[kMaxStateBuffers] = {Format::float32, Format::float32, Format::float32,
                                           Format::float32};
  bool stochastic_rounding = false;
  std::uint64_t rounding_seed = 0;
};

// AMP-style extras, both optional (nullptr = absent), with torch's semantics:
// grads are divided by *grad_scale in place; a nonzero *found_inf skips the whole update.
struct AmpArgs {
  const float* grad_scale = nullptr;
  const float* found_inf = nullptr;
};

// What one step of an optimizer takes beside its tensors and options. Which fields it reads,
// its math header says (math/describe.hpp): `step` where it takes one, SGD's is_first_step,
// NAdam's mu_product, Prodigy's group_scalars.
struct StepArgs {
  double step = 1.0;           // the step count after increment (1 on the first update)
  bool is_first_step = false;  // SGD: the momentum buffer starts as the gradient (as torch)
  // NAdam: torch's state['mu_product'], the product of the momentum coefficients so far, one
  // float32 (or float64) value in [0, 1]; the step multiplies it by this step's coefficient in
  // its own precision, as torch's tensor arithmetic does (unless found_inf skips the step).
  float* mu_product_f32 = nullptr;
  double* mu_product_f64 = nullptr;
  // Prodigy: the param group's scalars, kProdigyScalars float64 values in the order of
  // math/prodigy.hpp's ProdigyScalar (d, d_max, d_numerator, k, d_denom, d_hat), read and
  // updated in place by a step that moves the params.
  double* group_scalars = nullptr;
  AmpArgs amp;
};

// The values a step's coefficients and variant are computed from, once its StepArgs are
// checked (NAdam: mu_product after this step).
struct StepValues {
  double step = 1.0;
  bool is_first_step = false;
  double mu_product = 1.0;
};

// One step of optimizer Descriptor (math::Adam, math::Lion, ...: the registry in
// adamkern/optimizers.hpp) over `count` tensors: Tensor<float>, Tensor<double> or MixedTensor
// (computed in float). Validates every option, the step arguments and the buffers first and
// throws std::invalid_argument naming the culprit; then one parallel region over all tensors.
template <class Descriptor, class TensorT>
void optimizer_step(const TensorT* tensors, std::size_t count,
                    const typename Descriptor::Options& options, const StepArgs& args = {});

// Checks `options` and `args` as optimizer_step does (without tensors) and returns the values
// its coefficients and variant come from; for front ends that launch the kernels themselves.
template <class Descriptor>
StepValues prepare_step(const typename Descriptor::Options& options, const StepArgs& args);

// Statistics of a list of gradients in one parallel read pass: the global L2 norm (squares
// summed in double in fixed chunks, so the same bits for any thread count and ISA) and whether
// every element is finite (no inf, no NaN). For gradient clipping and AMP loss scaling.
struct GradStats {
  double norm;
  bool finite;
};
template <class T>
GradStats grad_stats(const T* const* arrays, const std::int64_t* sizes, std::size_t count);

// The memory roofline of an Adam step: the same seven streams (read param, grad, exp_avg,
// exp_avg_sq; write param, exp_avg, exp_avg_sq) through the same threading and alignment,
// with no math. Benchmarks time it beside the real update. It overwrites the buffers.
template <class TensorT>
void roofline_step(const TensorT* tensors, std::size_t count);

#define ADAMKERN_DECLARE_FOR(T)                                                 \
  extern template void roofline_step<Tensor<T>>(const Tensor<T>*, std::size_t); \
  extern template GradStats grad_stats<T>(const T* const*, const std::int64_t*, std::size_t);
ADAMKERN_DECLARE_FOR(float)
ADAMKERN_DECLARE_FOR(double)
#undef ADAMKERN_DECLARE_FOR
extern template void roofline_step<MixedTensor>(const MixedTensor*, std::size_t);

// bitsandbytes' dynamic quantization map (create_dynamic_map(signed), 256 sorted values), as
// used by the blockwise8 formats.
const float* dynamic_map(bool is_signed);

}  // namespace adamkern
