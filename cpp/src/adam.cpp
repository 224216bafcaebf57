// Adam/AdamW entry points: validation, then one parallel region over all tensors of the call.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "adamkern/dispatch.hpp"
#include "adamkern/kernels.hpp"
#include "isa_table.hpp"
#include "partition.hpp"

namespace adamkern {
namespace {

std::string format_number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.9g", value);
  return buffer;
}

void require(bool ok, const char* name, const char* expected, double value) {
  if (!ok) {
    throw std::invalid_argument(std::string(name) + " must be " + expected + ", got " +
                                format_number(value));
  }
}

}  // namespace

void validate_adam_options(const AdamOptions& o, double step) {
  require(std::isfinite(o.lr) && o.lr >= 0.0, "lr", "a finite number >= 0", o.lr);
  require(o.beta1 >= 0.0 && o.beta1 < 1.0, "betas[0]", "in [0, 1)", o.beta1);
  require(o.beta2 >= 0.0 && o.beta2 < 1.0, "betas[1]", "in [0, 1)", o.beta2);
  require(std::isfinite(o.eps) && o.eps > 0.0, "eps", "a finite number > 0", o.eps);
  require(std::isfinite(o.weight_decay) && o.weight_decay >= 0.0, "weight_decay",
          "a finite number >= 0", o.weight_decay);
  require(std::isfinite(step) && step >= 1.0, "step",
          "a finite number >= 1 (the step count after increment)", step);
}

template <class T>
void adam_step(const AdamTensor<T>* tensors, std::size_t count, const AdamOptions& options,
               double step, AmpArgs amp) {
  validate_adam_options(options, step);
  if (amp.grad_scale != nullptr) {
    require(std::isfinite(*amp.grad_scale) && *amp.grad_scale > 0.0f, "grad_scale",
            "a finite number > 0", *amp.grad_scale);
  }
  detail::check_tensors(tensors, count, options.amsgrad);
  if (amp.found_inf != nullptr && *amp.found_inf != 0.0f) return;  // AMP: skip the step

  const auto coefficients = math::adam_coefficients<T>(
      options.lr, options.beta1, options.beta2, options.eps, options.weight_decay,
      options.decoupled_weight_decay, options.maximize, step,
      amp.grad_scale != nullptr ? *amp.grad_scale : 1.0f);
  const int decay = options.weight_decay == 0.0 ? 0 : (options.decoupled_weight_decay ? 2 : 1);
  const detail::AdamRangeFn<T>(&update)[2] =
      detail::loops<T>(detail::active_kernel_table())
          .update[decay][options.amsgrad ? 1 : 0][amp.grad_scale != nullptr ? 1 : 0];

  detail::for_each_range(tensors, count, get_num_threads(), math::torch_remainder_width<T>(),
                         [&](const AdamTensor<T>& tensor, std::int64_t begin, std::int64_t end,
                             bool remainder) { update[remainder](tensor, begin, end, coefficients); });
}

template <class T>
void adam(T* param, T* grad, T* exp_avg, T* exp_avg_sq,
          typename same_type<T>::type* max_exp_avg_sq, std::int64_t size,
          const AdamOptions& options, double step, AmpArgs amp) {
  const AdamTensor<T> tensor{param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, size};
  adam_step(&tensor, 1, options, step, amp);
}

template <class T>
void roofline_step(const AdamTensor<T>* tensors, std::size_t count) {
  detail::check_tensors(tensors, count, /*amsgrad=*/false);
  const detail::RooflineRangeFn<T> copy = detail::loops<T>(detail::active_kernel_table()).roofline;
  detail::for_each_range(
      tensors, count, get_num_threads(), /*remainder_width=*/0,
      [&](const AdamTensor<T>& tensor, std::int64_t begin, std::int64_t end, bool /*remainder*/) {
        copy(tensor, begin, end);
      });
}

template void adam_step<float>(const AdamTensor<float>*, std::size_t, const AdamOptions&, double,
                               AmpArgs);
template void adam_step<double>(const AdamTensor<double>*, std::size_t, const AdamOptions&,
                                double, AmpArgs);
template void adam<float>(float*, float*, float*, float*, float*, std::int64_t,
                          const AdamOptions&, double, AmpArgs);
template void adam<double>(double*, double*, double*, double*, double*, std::int64_t,
                           const AdamOptions&, double, AmpArgs);
template void roofline_step<float>(const AdamTensor<float>*, std::size_t);
template void roofline_step<double>(const AdamTensor<double>*, std::size_t);

}  // namespace adamkern
