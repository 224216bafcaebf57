// adamkern._core.adam_ / roofline_: check the arrays, release the GIL, call the C++ API.
#include <vector>

#include "adamkern/kernels.hpp"
#include "arrays.hpp"
#include "register.hpp"

namespace adamkern::bindings {
namespace {

struct AdamArrays {
  ArrayList params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
  bool amsgrad;

  std::vector<const ArrayList*> lists() const {
    std::vector<const ArrayList*> all{&params, &grads, &exp_avgs, &exp_avg_sqs};
    if (amsgrad) all.push_back(&max_exp_avg_sqs);
    return all;
  }

  template <class T>
  std::vector<AdamTensor<T>> tensors() const {
    std::vector<AdamTensor<T>> out(params.arrays.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i].param = data_of<T>(params.arrays[i]);
      out[i].grad = data_of<T>(grads.arrays[i]);
      out[i].exp_avg = data_of<T>(exp_avgs.arrays[i]);
      out[i].exp_avg_sq = data_of<T>(exp_avg_sqs.arrays[i]);
      out[i].max_exp_avg_sq = amsgrad ? data_of<T>(max_exp_avg_sqs.arrays[i]) : nullptr;
      out[i].size = static_cast<std::int64_t>(params.arrays[i].size());
    }
    return out;
  }
};

template <class T>
void adam_typed(const AdamArrays& arrays, const AdamOptions& options, double step, AmpArgs amp) {
  const std::vector<AdamTensor<T>> tensors = arrays.tensors<T>();
  py::gil_scoped_release release;
  adam_step<T>(tensors.data(), tensors.size(), options, step, amp);
}

void adam_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                  py::handle exp_avg_sqs, py::handle max_exp_avg_sqs, double step, double lr,
                  double beta1, double beta2, double eps, double weight_decay,
                  bool decoupled_weight_decay, bool amsgrad, bool maximize,
                  py::handle grad_scale, py::handle found_inf) {
  float grad_scale_value = 1.0f;
  float found_inf_value = 0.0f;
  AmpArgs amp;
  if (optional_scalar(grad_scale, "grad_scale", grad_scale_value)) amp.grad_scale = &grad_scale_value;
  if (optional_scalar(found_inf, "found_inf", found_inf_value)) amp.found_inf = &found_inf_value;
  if (amsgrad && max_exp_avg_sqs.is_none()) {
    throw py::value_error("amsgrad=True needs max_exp_avg_sqs (one array per param)");
  }
  const bool unscale = amp.grad_scale != nullptr;
  const AdamArrays arrays{
      array_list(params, "params", true),
      array_list(grads, "grads", unscale),
      array_list(exp_avgs, "exp_avgs", true),
      array_list(exp_avg_sqs, "exp_avg_sqs", true),
      amsgrad ? array_list(max_exp_avg_sqs, "max_exp_avg_sqs", true) : ArrayList{"max_exp_avg_sqs", {}, true},
      amsgrad};
  const DType dtype = check_array_lists(arrays.lists());

  AdamOptions options;
  options.lr = lr;
  options.beta1 = beta1;
  options.beta2 = beta2;
  options.eps = eps;
  options.weight_decay = weight_decay;
  options.decoupled_weight_decay = decoupled_weight_decay;
  options.amsgrad = amsgrad;
  options.maximize = maximize;
  if (dtype == DType::float32) {
    adam_typed<float>(arrays, options, step, amp);
  } else {
    adam_typed<double>(arrays, options, step, amp);
  }
}

template <class T>
void roofline_typed(const AdamArrays& arrays) {
  const std::vector<AdamTensor<T>> tensors = arrays.tensors<T>();
  py::gil_scoped_release release;
  roofline_step<T>(tensors.data(), tensors.size());
}

void roofline_binding(py::handle params, py::handle grads, py::handle exp_avgs,
                      py::handle exp_avg_sqs) {
  const AdamArrays arrays{array_list(params, "params", true),
                          array_list(grads, "grads", false),
                          array_list(exp_avgs, "exp_avgs", true),
                          array_list(exp_avg_sqs, "exp_avg_sqs", true),
                          ArrayList{"max_exp_avg_sqs", {}, true},
                          false};
  if (check_array_lists(arrays.lists()) == DType::float32) {
    roofline_typed<float>(arrays);
  } else {
    roofline_typed<double>(arrays);
  }
}

}  // namespace

void register_adam(py::module_& m) {
  m.def("adam_", &adam_binding, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
        py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("step"), py::arg("lr"),
        py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
        py::arg("decoupled_weight_decay"), py::arg("amsgrad"), py::arg("maximize"),
        py::arg("grad_scale"), py::arg("found_inf"),
        R"doc(Fused in-place Adam/AdamW step (all arguments required; see adamkern.adam_).)doc");
  m.def("roofline_", &roofline_binding, py::arg("params"), py::arg("grads"),
        py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        R"doc(Seven-stream memory roofline of an Adam step: reads params, grads, exp_avgs and
exp_avg_sqs and writes params, exp_avgs and exp_avg_sqs, with no math (it overwrites them).
Same threading and alignment as adam_; used by the benchmarks as the bandwidth limit.)doc");
}

}  // namespace adamkern::bindings
