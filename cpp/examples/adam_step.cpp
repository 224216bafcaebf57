// One AdamW step on a four-element parameter through the adamkern C++ API; prints the result.
#include <cstdio>
#include <vector>

#include "adamkern/dispatch.hpp"
#include "adamkern/optimizers.hpp"

int main() {
  std::vector<float> param{1.0f, -2.0f, 3.0f, -4.0f};
  std::vector<float> grad{0.5f, 0.25f, -1.0f, 2.0f};
  std::vector<float> exp_avg(param.size(), 0.0f);
  std::vector<float> exp_avg_sq(param.size(), 0.0f);

  adamkern::AdamOptions options;  // torch.optim.AdamW defaults, with lr = 0.1
  options.lr = 0.1;
  options.weight_decay = 0.01;
  options.decoupled_weight_decay = true;
  adamkern::adam(param.data(), grad.data(), exp_avg.data(), exp_avg_sq.data(), nullptr,
                 static_cast<std::int64_t>(param.size()), options, /*step=*/1.0);

  std::printf("isa %s\n", adamkern::isa_name(adamkern::active_isa()));
  for (float p : param) std::printf("%.9g\n", p);
  return 0;
}
