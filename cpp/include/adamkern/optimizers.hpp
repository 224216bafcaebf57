// The registry: every optimizer, one line each. Its math header (math/<name>.hpp) describes it
// whole (options with names, defaults and ranges, see math/describe.hpp; state; the inputs of
// a step; variants; coefficients; update); the C++ entry point optimizer_step<math::Name>, the
// CPU and CUDA bindings and the Python metadata (adamkern._core.optimizer_options) are derived
// from these descriptions.
#pragma once

#include <tuple>
#include <type_traits>

#include "adamkern/kernels.hpp"
#include "adamkern/math/adabelief.hpp"
#include "adamkern/math/adadelta.hpp"
#include "adamkern/math/adagrad.hpp"
#include "adamkern/math/adam.hpp"
#include "adamkern/math/adamax.hpp"
#include "adamkern/math/adan.hpp"
#include "adamkern/math/ademamix.hpp"
#include "adamkern/math/adopt.hpp"
#include "adamkern/math/lamb.hpp"
#include "adamkern/math/lion.hpp"
#include "adamkern/math/nadam.hpp"
#include "adamkern/math/prodigy.hpp"
#include "adamkern/math/radam.hpp"
#include "adamkern/math/rmsprop.hpp"
#include "adamkern/math/schedulefree.hpp"
#include "adamkern/math/sgd.hpp"
#include "adamkern/math/yogi.hpp"

// X(descriptor, ...) for every optimizer whose step is one pass of its own update (the extra
// arguments are passed on to X); LAMB (two passes around its trust ratio) and Prodigy (two
// passes around its estimate of d) are added by name where the registry is used.
// clang-format off: one registry line per optimizer
#define ADAMKERN_ONE_PASS_OPTIMIZERS(X, ...) \
  X(Adam, __VA_ARGS__)                       \
  X(Adamax, __VA_ARGS__)                     \
  X(Nadam, __VA_ARGS__)                      \
  X(Radam, __VA_ARGS__)                      \
  X(Rmsprop, __VA_ARGS__)                    \
  X(Adagrad, __VA_ARGS__)                    \
  X(Adadelta, __VA_ARGS__)                   \
  X(Sgd, __VA_ARGS__)                        \
  X(Lion, __VA_ARGS__)                       \
  X(Adabelief, __VA_ARGS__)                  \
  X(Adan, __VA_ARGS__)                       \
  X(Yogi, __VA_ARGS__)                       \
  X(Adopt, __VA_ARGS__)                      \
  X(Ademamix, __VA_ARGS__)                   \
  X(AdamwSchedulefree, __VA_ARGS__)          \
  X(SgdSchedulefree, __VA_ARGS__)
// clang-format on

namespace adamkern {

#define ADAMKERN_DESCRIPTOR_TYPE(name, ...) math::name,
using Optimizers =
    std::tuple<ADAMKERN_ONE_PASS_OPTIMIZERS(ADAMKERN_DESCRIPTOR_TYPE) math::Lamb, math::Prodigy>;
#undef ADAMKERN_DESCRIPTOR_TYPE

namespace detail {

template <class D, class = void>
struct TakesFirstStep : std::false_type {};
template <class D>
struct TakesFirstStep<D, std::void_t<decltype(D::kTakesFirstStep)>>
    : std::bool_constant<D::kTakesFirstStep> {};
template <class D, class = void>
struct TakesMuProduct : std::false_type {};
template <class D>
struct TakesMuProduct<D, std::void_t<decltype(D::kTakesMuProduct)>>
    : std::bool_constant<D::kTakesMuProduct> {};
template <class D, class = void>
struct TakesGroupScalars : std::false_type {};
template <class D>
struct TakesGroupScalars<D, std::void_t<decltype(D::kTakesGroupScalars)>>
    : std::bool_constant<D::kTakesGroupScalars> {};
template <class D, class = void>
struct CautiousVariants : std::integral_constant<int, 0> {};
template <class D>
struct CautiousVariants<D, std::void_t<decltype(D::kCautiousVariants)>>
    : std::integral_constant<int, D::kCautiousVariants> {};
template <class D, class = void>
struct HasVariants : std::false_type {};
template <class D>
struct HasVariants<D, std::void_t<decltype(D::variant(std::declval<const typename D::Options&>(),
                                                      std::declval<const StepValues&>()))>>
    : std::true_type {};
template <class D, class = void>
struct HasRule : std::false_type {};
template <class D>
struct HasRule<D,
               std::void_t<decltype(D::inconsistency(std::declval<const typename D::Options&>()))>>
    : std::true_type {};

}  // namespace detail

// Whether a step of D reads StepArgs::is_first_step (SGD) or StepArgs::mu_product (NAdam).
template <class D>
inline constexpr bool kTakesFirstStep = detail::TakesFirstStep<D>::value;
template <class D>
inline constexpr bool kTakesMuProduct = detail::TakesMuProduct<D>::value;
// Whether a step of D reads and updates StepArgs::group_scalars (Prodigy).
template <class D>
inline constexpr bool kTakesGroupScalars = detail::TakesGroupScalars<D>::value;

// How many of D's variants, its last ones, are cautious updates (math/common.hpp: a count
// pass before the update; Adam, Lion, ADOPT), and whether `variant` is one of them.
template <class D>
inline constexpr int kCautiousVariants = detail::CautiousVariants<D>::value;
template <class D>
constexpr bool is_cautious_variant(int variant) {
  return kCautiousVariants<D> > 0 && variant >= D::kVariants - kCautiousVariants<D>;
}

// The variant of D's update loop for these options and step (0 for optimizers with one).
template <class D>
constexpr int variant_of(const typename D::Options& options, const StepValues& values) {
  if constexpr (detail::HasVariants<D>::value) {
    return D::variant(options, values);
  } else {
    return 0;
  }
}

// Why these options of D are inconsistent beyond each option's range, or nullptr.
template <class D>
constexpr const char* inconsistency_of(const typename D::Options& options) {
  if constexpr (detail::HasRule<D>::value) {
    return D::inconsistency(options);
  } else {
    return nullptr;
  }
}

// D's coefficients in type T for these options and step.
template <class D, class T>
typename D::template Coefficients<T> coefficients_of(const typename D::Options& options,
                                                     const StepValues& values) {
  if constexpr (kTakesMuProduct<D>) {
    return D::template coefficients<T>(options, values.step, values.mu_product);
  } else if constexpr (D::kTakesStep) {
    return D::template coefficients<T>(options, values.step);
  } else {
    return D::template coefficients<T>(options);
  }
}

template <class T>
struct same_type {
  using type = T;
};

// Adam on one tensor over raw pointers and a length (max_exp_avg_sq may be nullptr without
// amsgrad).
template <class T>
void adam(T* param, T* grad, T* exp_avg, T* exp_avg_sq, typename same_type<T>::type* max_exp_avg_sq,
          std::int64_t size, const AdamOptions& options, double step, AmpArgs amp = {});
extern template void adam<float>(float*, float*, float*, float*, float*, std::int64_t,
                                 const AdamOptions&, double, AmpArgs);
extern template void adam<double>(double*, double*, double*, double*, double*, std::int64_t,
                                  const AdamOptions&, double, AmpArgs);

#define ADAMKERN_DECLARE_STEP(name, ...)                                                \
  extern template void optimizer_step<math::name, Tensor<float>>(                       \
      const Tensor<float>*, std::size_t, const math::name::Options&, const StepArgs&);  \
  extern template void optimizer_step<math::name, Tensor<double>>(                      \
      const Tensor<double>*, std::size_t, const math::name::Options&, const StepArgs&); \
  extern template void optimizer_step<math::name, MixedTensor>(                         \
      const MixedTensor*, std::size_t, const math::name::Options&, const StepArgs&);    \
  extern template StepValues prepare_step<math::name>(const math::name::Options&, const StepArgs&);
ADAMKERN_ONE_PASS_OPTIMIZERS(ADAMKERN_DECLARE_STEP)
ADAMKERN_DECLARE_STEP(Lamb)
ADAMKERN_DECLARE_STEP(Prodigy)
#undef ADAMKERN_DECLARE_STEP

}  // namespace adamkern
