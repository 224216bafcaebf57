// The entry points of every optimizer: validate, then one parallel region over all tensors.
#include "adamkern/optimizers.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "adamkern/dispatch.hpp"
#include "adamkern/kernels.hpp"
#include "isa_table.hpp"
#include "partition.hpp"
#include "require.hpp"

namespace adamkern {
namespace {

using detail::require;
using detail::require_positive;

void require_non_negative(double value, const char* name) {
  require(std::isfinite(value) && value >= 0.0, name, "a finite number >= 0", value);
}
// A decay rate of a moving average; closed = 1 allowed.
void require_decay(double value, const char* name, bool closed = false) {
  require(value >= 0.0 && (closed ? value <= 1.0 : value < 1.0), name,
          closed ? "in [0, 1]" : "in [0, 1)", value);
}
// A whole number: torch keeps state['step'] as a float tensor, so 3.0 is a step, 1.5 is not.
void require_step(double step) {
  require(std::isfinite(step) && step >= 1.0 && std::floor(step) == step, "step",
          "a whole number >= 1 (the step count after increment)", step);
}

// Throws for the first option of `o` outside its range, as the optimizer's math header
// describes them (math/describe.hpp).
template <class Descriptor>
void validate_options(const typename Descriptor::Options& o) {
  for (const auto& option : Descriptor::kNumbers) {
    const double value = o.*option.member;
    const char* name = option.shown();
    switch (option.range) {
      case math::Range::finite:
        require(std::isfinite(value), name, "a finite number", value);
        break;
      case math::Range::non_negative: require_non_negative(value, name); break;
      case math::Range::positive: require_positive(value, name); break;
      case math::Range::unit_open: require_decay(value, name); break;
      case math::Range::unit_closed: require_decay(value, name, /*closed=*/true); break;
      case math::Range::unit_open_or_unset:
        if (!std::isnan(value)) require_decay(value, name);
        break;
      case math::Range::positive_or_inf:
        require(value > 0.0, name, "a number > 0 (inf allowed)", value);
        break;
    }
  }
}

template <class T>
T grad_scale_of(AmpArgs amp) {
  if (amp.grad_scale == nullptr) return T(1);
  require(std::isfinite(*amp.grad_scale) && *amp.grad_scale > 0.0f, "grad_scale",
          "a finite number > 0", *amp.grad_scale);
  return static_cast<T>(*amp.grad_scale);
}

bool skip_step(AmpArgs amp) { return amp.found_inf != nullptr && *amp.found_inf != 0.0f; }

// The type an update computes in: the element type, or float for mixed precision.
template <class TensorT>
using compute_t = std::conditional_t<std::is_same_v<TensorT, MixedTensor>, float,
                                     std::remove_pointer_t<decltype(TensorT::param)>>;

constexpr bool is_blockwise8(Format format) {
  return format == Format::blockwise8_signed || format == Format::blockwise8_unsigned;
}

constexpr std::int64_t format_bytes(Format format) {
  return format == Format::float32 ? 4 : is_blockwise8(format) ? 1 : 2;
}

// check_tensors for mixed precision: formats, master weights, the absmax of blockwise8 states,
// and no overlap between any two buffers (absmax and master included).
void check_mixed_tensors(const MixedTensor* tensors, std::size_t count, const char* const* names,
                         unsigned state_mask) {
  if (count > 0 && tensors == nullptr) throw std::invalid_argument("tensors is null");
  std::vector<std::string> labels{names[0], names[1]};
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    labels.emplace_back((state_mask >> k) & 1u ? names[2 + k] : "");
  }
  labels.emplace_back("master_params");
  for (int k = 0; k < kMaxStateBuffers; ++k) labels.push_back(labels[2 + k] + ".absmax");
  constexpr std::size_t kMaster = 2 + kMaxStateBuffers;
  std::vector<detail::BufferRange> ranges;
  ranges.reserve(count * (3 + 2 * kMaxStateBuffers));  // params, grads, master, state, absmax
  for (std::size_t i = 0; i < count; ++i) {
    const MixedTensor& tensor = tensors[i];
    const std::string where = "[" + std::to_string(i) + "]";
    if (tensor.size < 0) {
      throw std::invalid_argument("tensor " + std::to_string(i) + " has a negative size");
    }
    if (tensor.param_format != Format::float32 && tensor.param_format != Format::bfloat16 &&
        tensor.param_format != Format::float16) {
      throw std::invalid_argument(labels[0] + where + " must be float32, bfloat16 or float16");
    }
    if (tensor.master != nullptr && tensor.param_format == Format::float32) {
      throw std::invalid_argument("master_params" + where +
                                  " given for float32 params: master "
                                  "weights are for bfloat16 or float16 params");
    }
    const std::int64_t param_bytes = tensor.size * format_bytes(tensor.param_format);
    detail::add_range(ranges, tensor.param, param_bytes, 0, i, labels);
    detail::add_range(ranges, tensor.grad, param_bytes, 1, i, labels);
    if (tensor.master != nullptr) {
      detail::add_range(ranges, tensor.master, tensor.size * 4, kMaster, i, labels);
    }
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((state_mask & (1u << k)) == 0) continue;
      const Format format = tensor.state_format[k];
      detail::add_range(ranges, tensor.state[k], tensor.size * format_bytes(format), 2 + k, i,
                        labels);
      if (is_blockwise8(format)) {
        const std::int64_t blocks = (tensor.size + kBlockwiseSize - 1) / kBlockwiseSize;
        detail::add_range(ranges, tensor.absmax[k], blocks * 4, kMaster + 1 + k, i, labels);
      }
    }
  }
  detail::check_no_overlap(ranges, labels);
}

// Runs `work` over every element of every mixed tensor, in fixed chunks (multiples of the
// blockwise8 block) in one parallel region; coefficients_of(i) gives tensor i's coefficients.
template <std::size_t kSums, class CoefficientsOf>
std::vector<std::array<double, kSums>> run_mixed(const MixedTensor* tensors, std::size_t count,
                                                 const detail::MixedWork& work,
                                                 CoefficientsOf&& coefficients_of) {
  const detail::MixedRangeFn mixed = detail::active_kernel_table().mixed;
  return detail::for_each_chunk<kSums>(
      tensors, count, get_num_threads(),
      [&](std::size_t i, std::int64_t begin, std::int64_t end, double* sums) {
        mixed(tensors[i], i, begin, end, work, coefficients_of(i), sums);
      });
}

// Every buffer of a call: present where used, no two overlapping (see check_tensors).
template <class T>
void check_buffers(const Tensor<T>* tensors, std::size_t count, const char* const* names,
                   unsigned state_mask) {
  detail::check_tensors(tensors, count, names, state_mask);
}
void check_buffers(const MixedTensor* tensors, std::size_t count, const char* const* names,
                   unsigned state_mask) {
  check_mixed_tensors(tensors, count, names, state_mask);
}

// The part every update shares once its options are valid: check the buffers, honour
// found_inf, and run kernel K's loop for `variant` over all tensors, tensor i with the
// coefficients at coefficients_of(i).
template <class K, class T, class CoefficientsOf>
void run_update(const Tensor<T>* tensors, std::size_t count, const char* const* names, int variant,
                CoefficientsOf&& coefficients_of, AmpArgs amp) {
  const T grad_scale = grad_scale_of<T>(amp);
  check_buffers(tensors, count, names, K::reads(variant) | K::writes(variant));
  if (skip_step(amp)) return;
  const detail::UpdateRangeFn<T>(&loops)[2] =
      detail::update_loops<T, K>().fn[variant][amp.grad_scale != nullptr ? 1 : 0];
  const std::int64_t remainder_width = K::kTorchRemainder ? (sizeof(T) == 4 ? 8 : 4) : 0;
  detail::for_each_range(
      tensors, count, get_num_threads(), remainder_width,
      [&](const Tensor<T>& tensor, std::int64_t begin, std::int64_t end, bool remainder) {
        loops[remainder](tensor, begin, end, coefficients_of(&tensor - tensors), grad_scale);
      });
}

// run_update for mixed precision: every element through the float32 loop of the same variant.
template <class K, class CoefficientsOf>
void run_update(const MixedTensor* tensors, std::size_t count, const char* const* names,
                int variant, CoefficientsOf&& coefficients_of, AmpArgs amp) {
  detail::MixedWork work;
  work.grad_scale = grad_scale_of<float>(amp);
  check_buffers(tensors, count, names, K::reads(variant) | K::writes(variant));
  if (skip_step(amp)) return;
  work.unscale = amp.grad_scale != nullptr;
  const auto& table = detail::update_loops<float, K>();
  const auto& loops = table.fn[variant][work.unscale ? 1 : 0];
  work.update = loops[0];
  work.update_remainder = loops[1];
  for (int f = 0; f < detail::kFusedFormats; ++f) {
    work.fused[f][0] = table.fused[f][variant][work.unscale ? 1 : 0][0];
    work.fused[f][1] = table.fused[f][variant][work.unscale ? 1 : 0][1];
  }
  work.remainder_width = K::kTorchRemainder ? 8 : 0;  // as run_update for float
  work.reads = K::reads(variant);
  work.writes = K::writes(variant);
  run_mixed<0>(tensors, count, work, coefficients_of);
}

constexpr const char* kAdamNames[] = {"params", "grads", "exp_avgs", "exp_avg_sqs",
                                      "max_exp_avg_sqs"};

// "params", "grads", then D's state lists as the functional op names them (error labels).
template <class D>
struct ArgumentNames {
  const char* names[2 + kMaxStateBuffers] = {"params", "grads"};
  constexpr ArgumentNames() {
    for (std::size_t k = 0; k < std::size(D::kState); ++k) names[2 + k] = D::kState[k].argument;
  }
};
template <class D>
inline constexpr ArgumentNames<D> kArgumentNames{};

// The value of NAdam's mu_product before this step (the one given).
double stored_mu_product(const StepArgs& args) {
  if ((args.mu_product_f32 == nullptr) == (args.mu_product_f64 == nullptr)) {
    throw std::invalid_argument(
        "mu_product: give exactly one of mu_product_f32 and "
        "mu_product_f64 (torch's state['mu_product'])");
  }
  return args.mu_product_f32 != nullptr ? static_cast<double>(*args.mu_product_f32)
                                        : *args.mu_product_f64;
}

// Writes NAdam's mu_product after a step that was not skipped.
void store_mu_product(const StepArgs& args, double value) {
  if (args.mu_product_f32 != nullptr) {
    *args.mu_product_f32 = static_cast<float>(value);
  } else {
    *args.mu_product_f64 = value;
  }
}

// The first pass of a two-pass step: the reduction loop `measure` (with `coefficients`) over
// every tensor in fixed chunks and lanes, and each tensor's two sums. Over float32 or float64
// it writes what its kernel writes (state, unscaled grads); over mixed precision it only reads
// (it works on float32 copies of every buffer: state stored rounded must not be seen by the
// second pass), and `work` is left describing it, state buffers `reads`.
template <class T>
std::vector<std::array<double, 2>> measure_pass(const Tensor<T>* tensors, std::size_t count,
                                                detail::MeasureRangeFn<T> measure,
                                                const void* coefficients, T grad_scale, unsigned,
                                                detail::MixedWork&) {
  return detail::for_each_chunk<2>(
      tensors, count, get_num_threads(),
      [&](std::size_t i, std::int64_t begin, std::int64_t end, double* chunk_sums) {
        double lanes[2 * detail::kReductionLanes] = {};
        measure(tensors[i], begin, end, coefficients, grad_scale, lanes);
        chunk_sums[0] += detail::lane_total(lanes);
        chunk_sums[1] += detail::lane_total(lanes + detail::kReductionLanes);
      });
}
std::vector<std::array<double, 2>> measure_pass(const MixedTensor* tensors, std::size_t count,
                                                detail::MeasureRangeFn<float> measure,
                                                const void* coefficients, float grad_scale,
                                                unsigned reads, detail::MixedWork& work) {
  work.measure = measure;
  work.measure_coefficients = coefficients;
  work.grad_scale = grad_scale;
  work.writes_memory = false;
  work.reads = reads;
  return run_mixed<2>(tensors, count, work, [](std::size_t) { return nullptr; });
}

// LAMB's two passes: the moments with each tensor's sums of squares, then each tensor's update
// scaled by its trust ratio.
template <class TensorT>
void lamb_update(const TensorT* tensors, std::size_t count, const LambOptions& o, double step,
                 AmpArgs amp) {
  using T = compute_t<TensorT>;
  constexpr bool kMixed = std::is_same_v<TensorT, MixedTensor>;
  const char* const* names = kArgumentNames<math::Lamb>.names;
  const T grad_scale = grad_scale_of<T>(amp);
  check_buffers(tensors, count, names, 0b11u);
  if (skip_step(amp)) return;

  // Pass 1: moments, and the sums of squares of params and directions per tensor.
  const auto coefficients = math::LambMoments::coefficients<T>(o, step);
  const detail::MeasureRangeFn<T> measure =
      detail::measure_loops<T, math::LambMoments>().fn[0][amp.grad_scale != nullptr ? 1 : 0];
  // Mixed precision: pass 1 only reads, since the moments are stored rounded; pass 2 computes
  // them again from the same inputs (the same float32 bits) and applies them before rounding.
  detail::MixedWork moments;
  const auto sums =
      measure_pass(tensors, count, measure, &coefficients, grad_scale, 0b11u, moments);
  // Pass 2: each tensor's update scaled by its trust ratio.
  std::vector<math::LambCoefficients<T>> per_tensor(count);
  for (std::size_t i = 0; i < count; ++i) {
    per_tensor[i] = math::LambApply::with_trust_ratio(coefficients, std::sqrt(sums[i][0]),
                                                      std::sqrt(sums[i][1]));
  }
  const detail::UpdateRangeFn<T> apply = detail::update_loops<T, math::LambApply>().fn[0][0][0];
  if constexpr (kMixed) {
    detail::MixedWork update = moments;
    update.update = update.update_remainder = apply;
    update.unscale = amp.grad_scale != nullptr;
    update.writes_memory = true;
    update.writes = 0b11u;
    // (the sums pass 2's measure adds to are not needed again)
    run_mixed<2>(tensors, count, update, [&](std::size_t i) { return &per_tensor[i]; });
  } else {
    detail::for_each_range(
        tensors, count, get_num_threads(), 0,
        [&](const Tensor<T>& tensor, std::int64_t begin, std::int64_t end, bool) {
          apply(tensor, begin, end, &per_tensor[&tensor - tensors], T(1));
        });
  }
}

// Prodigy's group scalars before a step: finite, d and d_max > 0, k a whole number >= 0.
void check_prodigy_scalars(const double* scalars) {
  if (scalars == nullptr) {
    throw std::invalid_argument(
        "group_scalars: Prodigy needs its group's scalars (d, d_max, "
        "d_numerator, k, d_denom, d_hat)");
  }
  require(std::isfinite(scalars[kD]) && scalars[kD] > 0.0, "group_scalars[0] (d)",
          "a finite number > 0", scalars[kD]);
  require(std::isfinite(scalars[kDMax]) && scalars[kDMax] > 0.0, "group_scalars[1] (d_max)",
          "a finite number > 0", scalars[kDMax]);
  require(std::isfinite(scalars[kDNumerator]), "group_scalars[2] (d_numerator)", "a finite number",
          scalars[kDNumerator]);
  require(
      std::isfinite(scalars[kK]) && scalars[kK] >= 0.0 && std::floor(scalars[kK]) == scalars[kK],
      "group_scalars[3] (k)", "a whole number >= 0 (the group's steps so far)", scalars[kK]);
}

// Prodigy's two passes: the moments and s with each tensor's sums of g * (p0 - p) and |s|,
// then the new d from those sums (in tensor order, as prodigyopt adds them), then each
// tensor's update.
template <class TensorT>
void prodigy_update(const TensorT* tensors, std::size_t count, const ProdigyOptions& o,
                    double* scalars, AmpArgs amp) {
  using T = compute_t<TensorT>;
  constexpr bool kMixed = std::is_same_v<TensorT, MixedTensor>;
  const char* const* names = kArgumentNames<math::Prodigy>.names;
  const T grad_scale = grad_scale_of<T>(amp);
  check_prodigy_scalars(scalars);
  check_buffers(tensors, count, names, 0b1111u);
  // A group with lr 0 adds nothing to prodigyopt's sums, and a step without sums ends early.
  if (skip_step(amp) || o.lr == 0.0) return;

  const math::ProdigyStep step = math::prodigy_step(o, scalars[kD], scalars[kK]);
  auto coefficients = math::ProdigyMoments::coefficients<T>(o, step);
  const detail::MeasureRangeFn<T> measure =
      detail::measure_loops<T, math::ProdigyMoments>().fn[0][amp.grad_scale != nullptr ? 1 : 0];
  // Mixed precision, as LAMB: pass 1 only reads (the moments would be stored rounded, and
  // pass 2 must see them unrounded); pass 2 computes them again from the same inputs (the
  // same float32 bits) before the update, and rounds each buffer once.
  detail::MixedWork moments;
  const auto sums = measure_pass(tensors, count, measure, &coefficients, grad_scale,
                                 math::ProdigyMoments::reads(0), moments);

  // prodigyopt returns before its update when every s is 0: the scalars stay as they were
  if (!math::prodigy_advance(o, step, sums.data(), count, scalars)) return;
  const auto apply_coefficients = math::ProdigyApply::with_new_d(coefficients, o, scalars[kD]);
  const detail::UpdateRangeFn<T> apply = detail::update_loops<T, math::ProdigyApply>().fn[0][0][0];
  if constexpr (kMixed) {
    detail::MixedWork update = moments;
    update.update = update.update_remainder = apply;
    update.unscale = amp.grad_scale != nullptr;
    update.writes_memory = true;
    update.writes = math::ProdigyMoments::writes(0);
    // (the sums pass 2's measure adds to are not needed again)
    run_mixed<2>(tensors, count, update, [&](std::size_t) { return &apply_coefficients; });
  } else {
    detail::for_each_range(tensors, count, get_num_threads(), 0,
                           [&](const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                               bool) { apply(tensor, begin, end, &apply_coefficients, T(1)); });
  }
}

// A cautious update of D (variant one of its cautious ones): a read-only pass counting, per
// tensor, the components whose update agrees with the gradient (math/common.hpp), then D's
// update with each tensor's mask scale.
template <class D, class TensorT>
void cautious_update(const TensorT* tensors, std::size_t count, int variant,
                     const typename D::template Coefficients<compute_t<TensorT>>& coefficients,
                     AmpArgs amp) {
  using T = compute_t<TensorT>;
  using Count = math::CautiousCount<D>;
  constexpr bool kMixed = std::is_same_v<TensorT, MixedTensor>;
  const char* const* names = kArgumentNames<D>.names;
  const T grad_scale = grad_scale_of<T>(amp);
  check_buffers(tensors, count, names, D::reads(variant) | D::writes(variant));
  if (skip_step(amp)) return;

  const detail::MeasureRangeFn<T> measure =
      detail::measure_loops<T, Count>().fn[variant - Count::kFirst][amp.grad_scale != nullptr];
  detail::MixedWork work;
  const auto sums =
      measure_pass(tensors, count, measure, &coefficients, grad_scale, Count::reads(0), work);
  // Over float32/float64 the count wrote the unscaled grads back: the update reads them as
  // they are. Mixed precision counted on copies: the update unscales again.
  AmpArgs rest = amp;
  if constexpr (!kMixed) rest.grad_scale = nullptr;
  std::vector<typename D::template Coefficients<T>> per_tensor(count, coefficients);
  for (std::size_t i = 0; i < count; ++i) {
    per_tensor[i].cautious.scale =
        math::cautious_scale<T>(D::kCautiousRescale, sums[i][0], tensors[i].size);
  }
  run_update<D>(
      tensors, count, names, variant, [&](std::size_t i) { return &per_tensor[i]; }, rest);
}

}  // namespace

template <class D>
StepValues prepare_step(const typename D::Options& o, const StepArgs& args) {
  validate_options<D>(o);
  if (const char* rule = inconsistency_of<D>(o)) throw std::invalid_argument(rule);
  StepValues values;
  if constexpr (D::kTakesStep) {
    require_step(args.step);
    values.step = args.step;
  }
  if constexpr (kTakesFirstStep<D>) values.is_first_step = args.is_first_step;
  if constexpr (kTakesMuProduct<D>) {
    const double stored = stored_mu_product(args);
    // 0 is reached: a float32 product of coefficients below 1 underflows (torch's too, at
    // step 133 with the defaults) and torch goes on with it
    require(stored >= 0.0 && stored <= 1.0, "mu_product",
            "in [0, 1] (torch's state['mu_product'], 1.0 before the first step)", stored);
    const double mu = math::nadam_momentum(o.beta1, o.momentum_decay, args.step);
    values.mu_product =
        args.mu_product_f32 != nullptr
            ? static_cast<double>(static_cast<float>(stored) * static_cast<float>(mu))
            : stored * mu;
  }
  return values;
}

template <class D, class TensorT>
void optimizer_step(const TensorT* tensors, std::size_t count, const typename D::Options& o,
                    const StepArgs& args) {
  const StepValues values = prepare_step<D>(o, args);
  if constexpr (std::is_same_v<D, math::Lamb>) {
    lamb_update(tensors, count, o, values.step, args.amp);
  } else if constexpr (std::is_same_v<D, math::Prodigy>) {
    prodigy_update(tensors, count, o, args.group_scalars, args.amp);
  } else {
    using T = compute_t<TensorT>;
    const int variant = variant_of<D>(o, values);
    const auto coefficients = coefficients_of<D, T>(o, values);
    if (is_cautious_variant<D>(variant)) {
      if constexpr (kCautiousVariants<D> > 0) {
        cautious_update<D>(tensors, count, variant, coefficients, args.amp);
      }
    } else {
      run_update<D>(
          tensors, count, kArgumentNames<D>.names, variant,
          [&](std::size_t) { return &coefficients; }, args.amp);
    }
  }
  if constexpr (kTakesMuProduct<D>) {
    if (!skip_step(args.amp)) store_mu_product(args, values.mu_product);
  }
}

template <class T>
void adam(T* param, T* grad, T* exp_avg, T* exp_avg_sq, typename same_type<T>::type* max_exp_avg_sq,
          std::int64_t size, const AdamOptions& options, double step, AmpArgs amp) {
  const Tensor<T> tensor{param, grad, {exp_avg, exp_avg_sq, max_exp_avg_sq, nullptr}, size};
  StepArgs args;
  args.step = step;
  args.amp = amp;
  optimizer_step<math::Adam>(&tensor, 1, options, args);
}

template <class TensorT>
void roofline_step(const TensorT* tensors, std::size_t count) {
  if constexpr (std::is_same_v<TensorT, MixedTensor>) {
    check_mixed_tensors(tensors, count, kAdamNames, 0b11u);
    const detail::MixedRooflineFn copy = detail::active_kernel_table().mixed_roofline;
    detail::for_each_chunk<0>(tensors, count, get_num_threads(),
                              [&](std::size_t i, std::int64_t begin, std::int64_t end, double*) {
                                copy(tensors[i], begin, end);
                              });
  } else {
    using T = compute_t<TensorT>;
    detail::check_tensors(tensors, count, kAdamNames, 0b11u);
    const detail::RooflineRangeFn<T> copy =
        detail::typed_table<T>(detail::active_kernel_table()).roofline;
    detail::for_each_range(tensors, count, get_num_threads(), /*remainder_width=*/0,
                           [&](const Tensor<T>& tensor, std::int64_t begin, std::int64_t end,
                               bool /*remainder*/) { copy(tensor, begin, end); });
  }
}

template <class T>
GradStats grad_stats(const T* const* arrays, const std::int64_t* sizes, std::size_t count) {
  std::vector<Tensor<T>> tensors(count);
  for (std::size_t i = 0; i < count; ++i) {
    tensors[i].param = const_cast<T*>(arrays[i]);
    tensors[i].size = sizes[i];
  }
  static constexpr const char* names[] = {"grads"};
  detail::check_tensors(tensors.data(), count, names, 0u, /*with_grads=*/false);
  const detail::ReduceRangeFn<T> reduce =
      detail::typed_table<T>(detail::active_kernel_table()).reduce;
  const auto sums = detail::for_each_chunk<2>(
      tensors.data(), count, get_num_threads(),
      [&](std::size_t i, std::int64_t begin, std::int64_t end, double* chunk_sums) {
        reduce(tensors[i].param, begin, end, chunk_sums);
      });
  double squares = 0.0, flags = 0.0;
  for (const auto& s : sums) {
    squares += s[0];
    flags += s[1];
  }
  return {std::sqrt(squares), flags == 0.0};
}

#define ADAMKERN_INSTANTIATE_FOR(T)                                                             \
  template void adam<T>(T*, T*, T*, T*, T*, std::int64_t, const AdamOptions&, double, AmpArgs); \
  template void roofline_step<Tensor<T>>(const Tensor<T>*, std::size_t);                        \
  template GradStats grad_stats<T>(const T* const*, const std::int64_t*, std::size_t);
ADAMKERN_INSTANTIATE_FOR(float)
ADAMKERN_INSTANTIATE_FOR(double)
#undef ADAMKERN_INSTANTIATE_FOR
template void roofline_step<MixedTensor>(const MixedTensor*, std::size_t);

#define ADAMKERN_INSTANTIATE_STEP(name, ...)                                            \
  template void optimizer_step<math::name, Tensor<float>>(                              \
      const Tensor<float>*, std::size_t, const math::name::Options&, const StepArgs&);  \
  template void optimizer_step<math::name, Tensor<double>>(                             \
      const Tensor<double>*, std::size_t, const math::name::Options&, const StepArgs&); \
  template void optimizer_step<math::name, MixedTensor>(                                \
      const MixedTensor*, std::size_t, const math::name::Options&, const StepArgs&);    \
  template StepValues prepare_step<math::name>(const math::name::Options&, const StepArgs&);
ADAMKERN_ONE_PASS_OPTIMIZERS(ADAMKERN_INSTANTIATE_STEP)
ADAMKERN_INSTANTIATE_STEP(Lamb)
ADAMKERN_INSTANTIATE_STEP(Prodigy)
#undef ADAMKERN_INSTANTIATE_STEP

}  // namespace adamkern
