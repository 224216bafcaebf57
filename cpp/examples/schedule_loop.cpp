// A C++ training loop's optimizer side: SGD with Nesterov momentum on a list of two tensors,
// its learning rate from a warmup + cosine schedule. Prints each step's lr and the params.
#include <cstdio>
#include <vector>

#include "adamkern/optimizers.hpp"
#include "adamkern/schedules.hpp"

int main() {
  std::vector<double> weight{0.5, -1.5, 2.0}, bias{0.25};
  std::vector<double> weight_grad(3), bias_grad(1), weight_buf(3), bias_buf(1);
  const adamkern::Tensor<double> tensors[] = {
      {weight.data(), weight_grad.data(), {weight_buf.data()}, 3},
      {bias.data(), bias_grad.data(), {bias_buf.data()}, 1}};

  const auto lr = adamkern::schedules::warmup_cosine_decay(0.0, 0.1, 2, 6, 0.01);
  adamkern::SgdOptions options;
  options.momentum = 0.9;
  options.nesterov = true;
  for (std::int64_t step = 0; step < 6; ++step) {
    for (std::size_t i = 0; i < 3; ++i) weight_grad[i] = 2.0 * weight[i];  // d/dw of |w|^2
    bias_grad[0] = 2.0 * bias[0];
    options.lr = lr->value(step);
    adamkern::StepArgs args;
    args.is_first_step = step == 0;
    adamkern::optimizer_step<adamkern::math::Sgd>(tensors, 2, options, args);
    std::printf("%.17g", options.lr);
    for (double w : weight) std::printf(" %.17g", w);
    std::printf(" %.17g\n", bias[0]);
  }
  return 0;
}
