// Internal: Adafactor's element loops, compiled once per ISA in adafactor_isa.cpp.
#pragma once

#include <cstdint>

#include "adamkern/math/adafactor.hpp"

namespace adamkern::detail {

template <class T>
struct AdafactorLoops {
  // Rows [0, rows) of a batch x rows x cols view, from `grad` on: row_sums[r] = the sum of the
  // row's squares; col_sums[c] += grad[r][c]^2, the rows in order.
  void (*measure_rows)(const T* grad, std::int64_t rows, std::int64_t cols, double* row_sums,
                       double* col_sums);
  // variance[i] = lerp(variance[i], grad[i]^2), i < n.
  void (*lerp_squares)(const T* grad, T* variance, std::int64_t n, math::Lerp<T> lerp);
  // Adds the sum of the updates' squares of rows [0, rows) (row_var: those rows' values,
  // col_factors: the batch's math::adafactor_col_factor of col_var) to *sum.
  void (*update_sum_rows)(const T* grad, const T* row_var, const T* col_factors, T row_mean,
                          std::int64_t rows, std::int64_t cols, const math::AdafactorElement<T>& e,
                          double* sum);
  void (*apply_rows)(T* param, const T* grad, const T* row_var, const T* col_factors, T row_mean,
                     std::int64_t rows, std::int64_t cols, const math::AdafactorElement<T>& e);
  // The same for a vector's elements [0, n).
  void (*update_sum_vector)(const T* grad, const T* variance, std::int64_t n,
                            const math::AdafactorElement<T>& e, double* sum);
  void (*apply_vector)(T* param, const T* grad, const T* variance, std::int64_t n,
                       const math::AdafactorElement<T>& e);
};

struct AdafactorTable {
  AdafactorLoops<float> f32;
  AdafactorLoops<double> f64;
};

namespace isa_baseline {
const AdafactorTable& adafactor_table();
}
#if defined(ADAMKERN_HAVE_AVX2)
namespace isa_avx2 {
const AdafactorTable& adafactor_table();
}
#endif
#if defined(ADAMKERN_HAVE_AVX512)
namespace isa_avx512 {
const AdafactorTable& adafactor_table();
}
#endif

}  // namespace adamkern::detail
