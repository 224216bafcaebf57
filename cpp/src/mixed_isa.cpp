// The mixed-precision span driver of one ISA: a tensor in any storage mode (isa_table.hpp's
// MixedTensor) handed whole to a one-pass update loop of kernels_isa.cpp where one serves its
// formats, else stepped a span at a time through float32 copies; and the modes' roofline.
// Compiled once per ISA, as kernels_isa.cpp.
#include <algorithm>
#include <cstdint>

#include "adamkern/kernels.hpp"
#include "adamkern/math/lowp.hpp"
#include "isa_table.hpp"
#include "lowp_isa.hpp"
#include "partition.hpp"

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

constexpr std::int64_t kLanes = kReductionLanes;  // of a measure, as kernels_isa.cpp's
constexpr std::int64_t kBlock = kBlockwiseSize;   // of 8-bit quantization: one absmax each
// Elements per span of the driver: several quantization blocks, so the per-span work (the
// calls, loop set-up) is spread thin, while the span's float32 copies stay in L1 (6 x 4 KB).
constexpr std::int64_t kSpan = 4 * kBlock;
static_assert(kSpan % kLanes == 0, "a measure's lanes go on across spans");

bool is_blockwise8(Format format) {
  return format == Format::blockwise8_signed || format == Format::blockwise8_unsigned;
}

// The roofline of a mixed-precision Adam step: roofline_range's streams in the storage of
// the mode (PS: params and grads; S0, S1: exp_avg and exp_avg_sq; 8-bit codes and their
// absmax; optional float32 master weights), moved as raw bits with no math.
template <class PS, class S0, class S1, bool kMaster>
void mixed_roofline_streams(const MixedTensor& tensor, std::int64_t begin, std::int64_t end) {
  PS* __restrict param = static_cast<PS*>(tensor.param);
  PS* __restrict grad = static_cast<PS*>(tensor.grad);
  S0* __restrict exp_avg = static_cast<S0*>(tensor.state[0]);
  S1* __restrict exp_avg_sq = static_cast<S1*>(tensor.state[1]);
  std::uint32_t* __restrict master = reinterpret_cast<std::uint32_t*>(tensor.master);
#pragma omp simd
  for (std::int64_t i = begin; i < end; ++i) {
    const PS p = param[i];
    if constexpr (kMaster) master[i] = master[i] + p;
    param[i] = static_cast<PS>(p ^ grad[i]);
    const S0 m = exp_avg[i];
    exp_avg[i] = static_cast<S0>(exp_avg_sq[i]);
    exp_avg_sq[i] = static_cast<S1>(m + p);
  }
  for (int k = 0; k < 2; ++k) {
    if (!is_blockwise8(tensor.state_format[k])) continue;
    float* __restrict absmax = tensor.absmax[k];
    for (std::int64_t b = begin / kBlockwiseSize; b < (end + kBlockwiseSize - 1) / kBlockwiseSize;
         ++b) {
      absmax[b] = absmax[b] + 1.0f;
    }
  }
}

// Calls fn(tag) with a value of the unsigned type as wide as `format`'s elements.
template <class Fn>
void with_storage(Format format, Fn&& fn) {
  if (format == Format::float32) return fn(std::uint32_t{});
  if (format == Format::bfloat16 || format == Format::float16) return fn(std::uint16_t{});
  fn(std::uint8_t{});
}

// out[0, n) = elements [begin, begin + n) of a buffer in `format`, as float32.
void decode_block(Format format, const void* data, const float* absmax, std::int64_t begin,
                  std::int64_t n, float* __restrict out) {
  if (format == Format::bfloat16 || format == Format::float16) {
    const std::uint16_t* __restrict in = static_cast<const std::uint16_t*>(data) + begin;
    if (format == Format::bfloat16) {
#pragma omp simd
      for (std::int64_t j = 0; j < n; ++j) out[j] = math::bfloat16_to_float(in[j]);
    } else {
      std::int64_t j = 0;
      if constexpr (LineCodec<F16>::kDecode) {
        for (; j + kLineValues <= n; j += kLineValues) LineCodec<F16>::decode(in + j, out + j);
      }
#pragma omp simd
      for (std::int64_t k = j; k < n; ++k) out[k] = math::float16_to_float(in[k]);
    }
    return;
  }
  if (is_blockwise8(format)) {
    const std::uint8_t* codes = static_cast<const std::uint8_t*>(data) + begin;
    const float* table = dynamic_map(format == Format::blockwise8_signed);
    for (std::int64_t block = 0; block < n; block += kBlock) {
      dequantize_block(table, codes + block, absmax[(begin + block) / kBlock],
                       std::min(kBlock, n - block), out + block);
    }
    return;
  }
  const float* __restrict in = static_cast<const float*>(data) + begin;
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) out[j] = in[j];
}

// Writes in[0, n) to elements [begin, begin + n) of a buffer in `format`. key: the stochastic
// rounding key of this buffer and block, used when `stochastic` (bfloat16 only).
void encode_block(Format format, const float* __restrict in, void* data, float* absmax,
                  std::int64_t begin, std::int64_t n, bool stochastic, std::uint32_t key) {
  if (format == Format::bfloat16 || format == Format::float16) {
    std::uint16_t* __restrict out = static_cast<std::uint16_t*>(data) + begin;
    if (format == Format::float16) {
      encode_values<F16>(in, out, begin, n, key);
    } else if (stochastic) {
      encode_values<Bf16Stochastic>(in, out, begin, n, key);
    } else {
      encode_values<Bf16>(in, out, begin, n, key);
    }
    return;
  }
  if (is_blockwise8(format)) {
    for (std::int64_t block = 0; block < n; block += kBlock) {
      std::uint8_t* codes = static_cast<std::uint8_t*>(data) + begin + block;
      float* block_absmax = absmax + (begin + block) / kBlock;
      const std::int64_t size = std::min(kBlock, n - block);
      quantize_block(format == Format::blockwise8_signed, in + block, codes, block_absmax, size);
    }
    return;
  }
  float* __restrict out = static_cast<float*>(data) + begin;
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) out[j] = in[j];
}

// Which one-pass loop (FusedFormats) runs `work` on `tensor`, or -1 (the span driver): a
// plain update (no measure, writes memory) whose used state buffers share one format, float32
// or bfloat16, in one of the combinations listed in FusedFormats.
int fused_formats(const MixedTensor& tensor, const MixedWork& work, unsigned used) {
  if (work.measure != nullptr || work.update == nullptr || !work.writes_memory) return -1;
  Format state = Format::float32;
  bool first = true;
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    if ((used & (1u << k)) == 0) continue;
    if (!first && tensor.state_format[k] != state) return -1;
    state = tensor.state_format[k];
    first = false;
  }
  const bool bf16_state = state == Format::bfloat16;
  if (!bf16_state && state != Format::float32) return -1;
  const bool master = tensor.master != nullptr;
  // stochastic rounding matters where something is written as bfloat16
  const bool stochastic =
      tensor.stochastic_rounding && (bf16_state || tensor.param_format == Format::bfloat16);
  switch (tensor.param_format) {
    case Format::float32: return bf16_state && !stochastic ? kFusedFloatParamsBf16State : -1;
    case Format::bfloat16:
      if (stochastic) return bf16_state && !master ? kFusedBf16ParamsBf16StateStochastic : -1;
      if (master) return bf16_state ? -1 : kFusedBf16MasterFloatState;
      return bf16_state ? kFusedBf16ParamsBf16State : kFusedBf16ParamsFloatState;
    case Format::float16:
      if (bf16_state) return -1;
      return master ? kFusedF16MasterFloatState : kFusedF16ParamsFloatState;
    default: return -1;
  }
}

// Runs a one-pass loop (fn[0], and fn[1], torch's remainder form, from remainder_start on)
// over [begin, end) with the buffers' stochastic rounding keys, which change every 2^32
// elements (math::rounding_key).
void run_fused(const FusedRangeFn (&fn)[2], const MixedTensor& tensor, std::size_t tensor_index,
               std::int64_t begin, std::int64_t end, std::int64_t remainder_start,
               const MixedWork& work, const void* coefficients) {
  constexpr std::int64_t kKeySpan = std::int64_t{1} << 32;
  for (std::int64_t b = begin; b < end; b = (b / kKeySpan + 1) * kKeySpan) {
    const std::int64_t e = std::min(end, (b / kKeySpan + 1) * kKeySpan);
    std::uint32_t keys[1 + kMaxStateBuffers] = {};
    if (tensor.stochastic_rounding) {
      for (int buffer = 0; buffer <= kMaxStateBuffers; ++buffer) {
        keys[buffer] = math::rounding_key(tensor.rounding_seed, tensor_index, buffer,
                                          static_cast<std::uint64_t>(b) >> 32);
      }
    }
    const std::int64_t split = std::clamp(remainder_start, b, e);
    if (split > b) fn[0](tensor, b, split, coefficients, work.grad_scale, keys);
    if (split < e) fn[1](tensor, split, e, coefficients, work.grad_scale, keys);
  }
}

// The float32 view of a span of a tensor that the span driver works on: the float32 buffers
// in place (unless the pass must not write), the others decoded into the span's own copies
// by load and encoded back by store.
class SpanCopies {
 public:
  SpanCopies(const MixedTensor& tensor, std::size_t tensor_index, const MixedWork& work)
      : tensor_(tensor),
        tensor_index_(tensor_index),
        work_(work),
        in_place_(work.writes_memory),
        param_in_float_(tensor.master == nullptr && tensor.param_format == Format::float32),
        grad_in_float_(tensor.param_format == Format::float32),
        param_in_memory_(tensor.master != nullptr ? tensor.master
                         : param_in_float_        ? static_cast<float*>(tensor.param)
                                                  : nullptr) {}

  // Elements [b, b + n) as float32 (n <= kSpan): what the work reads decoded.
  Tensor<float> load(std::int64_t b, std::int64_t n) {
    Tensor<float> local;
    local.size = n;
    if (param_in_memory_ != nullptr && in_place_) {
      local.param = param_in_memory_ + b;
    } else if (param_in_memory_ != nullptr) {
      decode_block(Format::float32, param_in_memory_, nullptr, b, n, param_);
      local.param = param_;
    } else {
      decode_block(tensor_.param_format, tensor_.param, nullptr, b, n, param_);
      local.param = param_;
    }
    if (grad_in_float_ && in_place_) {
      local.grad = static_cast<float*>(tensor_.grad) + b;
    } else {
      decode_block(tensor_.param_format, tensor_.grad, nullptr, b, n, grad_);
      local.grad = grad_;
    }
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if (((work_.reads | work_.writes) & (1u << k)) == 0) continue;
      if (tensor_.state_format[k] == Format::float32 && in_place_) {
        local.state[k] = static_cast<float*>(tensor_.state[k]) + b;
      } else {
        if ((work_.reads & (1u << k)) != 0) {
          decode_block(tensor_.state_format[k], tensor_.state[k], tensor_.absmax[k], b, n,
                       state_[k]);
        }
        local.state[k] = state_[k];
      }
    }
    return local;
  }

  // Writes back what the work wrote to the copies of elements [b, b + n) (local: load's).
  void store(const Tensor<float>& local, std::int64_t b, std::int64_t n) {
    if (work_.update != nullptr && !param_in_float_) {
      encode_block(tensor_.param_format, local.param, tensor_.param, nullptr, b, n,
                   tensor_.stochastic_rounding, key_of(0, b));
    }
    if (work_.unscale && !grad_in_float_) {
      encode_block(tensor_.param_format, grad_, tensor_.grad, nullptr, b, n, false, 0);
    }
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((work_.writes & (1u << k)) == 0 || tensor_.state_format[k] == Format::float32) continue;
      encode_block(tensor_.state_format[k], state_[k], tensor_.state[k], tensor_.absmax[k], b, n,
                   tensor_.stochastic_rounding, key_of(1 + k, b));
    }
  }

 private:
  // The stochastic rounding key of a buffer (0: the params, 1 + k: state k) at element b.
  std::uint32_t key_of(std::uint64_t buffer, std::int64_t b) const {
    if (!tensor_.stochastic_rounding) return 0;
    return math::rounding_key(tensor_.rounding_seed, tensor_index_, buffer,
                              static_cast<std::uint64_t>(b) >> 32);
  }

  const MixedTensor& tensor_;
  std::size_t tensor_index_;
  const MixedWork& work_;
  bool in_place_, param_in_float_, grad_in_float_;
  float* param_in_memory_;  // float32 params (or master weights) the span can work on
  alignas(64) float param_[kSpan];
  alignas(64) float grad_[kSpan];
  alignas(64) float state_[kMaxStateBuffers][kSpan];
};

}  // namespace

void mixed_roofline(const MixedTensor& tensor, std::int64_t begin, std::int64_t end) {
  with_storage(tensor.param_format, [&](auto p) {
    with_storage(tensor.state_format[0], [&](auto s0) {
      with_storage(tensor.state_format[1], [&](auto s1) {
        using PS = decltype(p);
        using S0 = decltype(s0);
        using S1 = decltype(s1);
        if (tensor.master != nullptr) {
          mixed_roofline_streams<PS, S0, S1, true>(tensor, begin, end);
        } else {
          mixed_roofline_streams<PS, S0, S1, false>(tensor, begin, end);
        }
      });
    });
  });
}

void mixed_range(const MixedTensor& tensor, std::size_t tensor_index, std::int64_t begin,
                 std::int64_t end, const MixedWork& work, const void* coefficients, double* sums) {
  const std::int64_t remainder_start =
      work.remainder_width > 0 ? tensor.size - tensor.size % work.remainder_width : tensor.size;
  if (const int fused = fused_formats(tensor, work, work.reads | work.writes);
      fused >= 0 && work.fused[fused][0] != nullptr) {
    run_fused(work.fused[fused], tensor, tensor_index, begin, end, remainder_start, work,
              coefficients);
    return;
  }
  // A measure's lanes go on from span to span (kSpan is a multiple of them): the chunk's sums
  // are those of the float32 loop over the whole chunk.
  double lanes[2 * kLanes] = {};
  SpanCopies copies(tensor, tensor_index, work);
  for (std::int64_t b = begin; b < end; b += kSpan) {
    const std::int64_t n = std::min(kSpan, end - b);
    const Tensor<float> local = copies.load(b, n);
    if (work.measure != nullptr) {
      work.measure(local, 0, n, work.measure_coefficients, work.grad_scale, lanes);
    }
    if (work.update != nullptr) {
      const std::int64_t split = std::clamp(remainder_start - b, std::int64_t{0}, n);
      if (split > 0) work.update(local, 0, split, coefficients, work.grad_scale);
      if (split < n) work.update_remainder(local, split, n, coefficients, work.grad_scale);
    }
    if (work.writes_memory) copies.store(local, b, n);
  }
  if (work.measure != nullptr) {
    sums[0] += lane_total(lanes);
    sums[1] += lane_total(lanes + kLanes);
  }
}

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
