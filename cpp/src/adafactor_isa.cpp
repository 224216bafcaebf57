// Adafactor's element loops, compiled once per ISA (CMake passes ADAMKERN_ISA_NS and the ISA's
// flags, as for kernels_isa.cpp). The math is math/adafactor.hpp's; sums are accumulated in
// double in kLanes fixed lanes combined in a fixed order, so every ISA gives the same bits.
#ifndef ADAMKERN_ISA_NS
#error "adafactor_isa.cpp is compiled once per ISA with -DADAMKERN_ISA_NS=isa_<name>"
#endif

#include "adafactor_isa.hpp"

#include <cstdint>

#include "adamkern/math/adafactor.hpp"

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

constexpr std::int64_t kLanes = 16;

// The sum of value(i)^2 over i < n, value(i) a T: lane i % kLanes over the full groups, then
// the lanes pairwise, then the tail in order.
template <class T, class Value>
double sum_of_squares(std::int64_t n, Value value) {
  double lanes[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) {
      const double x = static_cast<double>(value(i + j));
      lanes[j] += x * x;
    }
  }
  for (std::int64_t width = kLanes / 2; width > 0; width /= 2) {  // pairwise, fixed
    for (std::int64_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  }
  double sum = lanes[0];
  for (; i < n; ++i) {
    const double x = static_cast<double>(value(i));
    sum += x * x;
  }
  return sum;
}

template <class T>
void measure_rows(const T* __restrict grad, std::int64_t rows, std::int64_t cols,
                  double* __restrict row_sums, double* __restrict col_sums) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* __restrict row = grad + r * cols;
    row_sums[r] = sum_of_squares<T>(cols, [row](std::int64_t c) { return row[c]; });
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) {
      const double x = static_cast<double>(row[c]);
      col_sums[c] += x * x;
    }
  }
}

template <class T>
void lerp_squares(const T* __restrict grad, T* __restrict variance, std::int64_t n,
                  math::Lerp<T> lerp) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) variance[i] = lerp(variance[i], grad[i] * grad[i]);
}

template <class T>
void update_sum_rows(const T* __restrict grad, const T* __restrict row_var,
                     const T* __restrict col_var, T row_mean, std::int64_t rows, std::int64_t cols,
                     const math::AdafactorElement<T>& e, double* sum) {
  const math::AdafactorElement<T> element = e;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* __restrict row = grad + r * cols;
    const T row_value = row_var[r];
    *sum += sum_of_squares<T>(cols, [&](std::int64_t c) {
      return math::adafactor_update(math::factored_variance(row_value, col_var[c], row_mean),
                                    row[c], element);
    });
  }
}

template <class T>
void apply_rows(T* __restrict param, const T* __restrict grad, const T* __restrict row_var,
                const T* __restrict col_var, T row_mean, std::int64_t rows, std::int64_t cols,
                const math::AdafactorElement<T>& e) {
  const math::AdafactorElement<T> element = e;
  for (std::int64_t r = 0; r < rows; ++r) {
    T* __restrict p = param + r * cols;
    const T* __restrict g = grad + r * cols;
    const T row_value = row_var[r];
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) {
      const T update = math::adafactor_update(
          math::factored_variance(row_value, col_var[c], row_mean), g[c], element);
      p[c] = math::adafactor_apply(p[c], update, element);
    }
  }
}

template <class T>
void update_sum_vector(const T* __restrict grad, const T* __restrict variance, std::int64_t n,
                       const math::AdafactorElement<T>& e, double* sum) {
  const math::AdafactorElement<T> element = e;
  *sum += sum_of_squares<T>(
      n, [&](std::int64_t i) { return math::adafactor_update(variance[i], grad[i], element); });
}

template <class T>
void apply_vector(T* __restrict param, const T* __restrict grad, const T* __restrict variance,
                  std::int64_t n, const math::AdafactorElement<T>& e) {
  const math::AdafactorElement<T> element = e;
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T update = math::adafactor_update(variance[i], grad[i], element);
    param[i] = math::adafactor_apply(param[i], update, element);
  }
}

template <class T>
AdafactorLoops<T> loops() {
  return AdafactorLoops<T>{&measure_rows<T>, &lerp_squares<T>,      &update_sum_rows<T>,
                           &apply_rows<T>,   &update_sum_vector<T>, &apply_vector<T>};
}

}  // namespace

const AdafactorTable& adafactor_table() {
  static const AdafactorTable table{loops<float>(), loops<double>()};
  return table;
}

}  // namespace adamkern::detail::ADAMKERN_ISA_NS
