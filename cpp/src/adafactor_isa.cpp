// Adafactor's element loops, compiled once per ISA (CMake passes ADAMKERN_ISA_NS and the ISA's
// flags, as for kernels_isa.cpp). The math is math/adafactor.hpp's; sums are accumulated in
// double in kLanes fixed lanes combined in a fixed order, so every ISA gives the same bits.
#ifndef ADAMKERN_ISA_NS
#error "adafactor_isa.cpp is compiled once per ISA with -DADAMKERN_ISA_NS=isa_<name>"
#endif

#include "adafactor_isa.hpp"

#include <cstdint>
#include <type_traits>

#include "adamkern/math/adafactor.hpp"

namespace adamkern::detail::ADAMKERN_ISA_NS {
namespace {

constexpr std::int64_t kLanes = 16;
constexpr std::int64_t kAhead = 128;   // elements a streaming loop prefetches ahead
constexpr std::int64_t kRowGroup = 8;  // rows read together, when grouped
// Rows are taken in groups (each column's value loaded once per group, the rows read as that
// many streams) when the per-column array a pass reads beside the rows is larger than this;
// smaller ones stay in L1 beside one row's stream, where one stream reads faster than several
// short ones. Measured on 15360 x 1024 .. 960 x 16384 float32 (one thread, 32 KB L1): the sum of
// the updates' squares took 0.17, 0.22 and 0.28 ns/element a row at a time with 8, 16 and 32 KB
// of column factors, 0.23 at 8 KB in groups of four, 0.18 at 16 KB and 0.155 at 64 KB in groups
// of eight; the grads' row and column sums at 1024 columns (8 KB of column sums) 0.29-0.31 in
// groups of four, 0.17-0.20 a row at a time, and at 4096 columns 0.20 in groups of four, 0.185
// in groups of eight.
constexpr std::int64_t kColumnBytesInL1 = 8 << 10;

template <std::int64_t kRows>
using Rows = std::integral_constant<std::int64_t, kRows>;

// Calls group(Rows<k>{}, r) for the rows [r, r + k) of [0, rows): groups of kGroup rows when
// `grouped`, then single rows.
template <std::int64_t kGroup, class Group>
void for_row_groups(std::int64_t rows, bool grouped, Group&& group) {
  std::int64_t r = 0;
  if (grouped) {
    for (; r + kGroup <= rows; r += kGroup) group(Rows<kGroup>{}, r);
  }
  for (; r < rows; ++r) group(Rows<1>{}, r);
}

// Whether a pass reading `cols` values of type Column per column takes its rows in groups.
template <class Column>
bool grouped(std::int64_t cols) {
  return cols * static_cast<std::int64_t>(sizeof(Column)) > kColumnBytesInL1;
}

// Prefetches element i + kAhead of x (never past its n elements).
template <class T>
inline void prefetch_ahead(const T* x, std::int64_t i, std::int64_t n) {
  __builtin_prefetch(x + (i + kAhead < n ? i + kAhead : n - 1));
}

// The total of a sum of squares accumulated as lane i % kLanes over the full groups (lanes),
// then over the tail [full, n) in order: the lanes pairwise, then the tail.
template <class Value>
double lanes_then_tail(double* lanes, std::int64_t full, std::int64_t n, Value value) {
  for (std::int64_t width = kLanes / 2; width > 0; width /= 2) {  // pairwise, fixed
    for (std::int64_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  }
  double sum = lanes[0];
  for (std::int64_t i = full; i < n; ++i) {
    const double x = static_cast<double>(value(i));
    sum += x * x;
  }
  return sum;
}

// The sums of squares of kRows rows of value(r, c), c < cols (a T computed from the row's
// stream), into totals[r]: each row's element c in lane c % kLanes over the full groups of
// lanes, then lanes_then_tail; with kColumnSums also col_sums[c] += value(r, c)^2 for the rows in
// order (one load and store of a column's sum per kRows rows). `stream`: the first row's first
// element, each row's prefetched.
template <std::int64_t kRows, bool kColumnSums, class T, class Value>
void row_group_squares(const T* stream, std::int64_t cols, Value value, double* totals,
                       double* __restrict col_sums) {
  double lanes[kRows][kLanes] = {};
  const std::int64_t full = cols / kLanes * kLanes;
  for (std::int64_t c = 0; c < full; c += kLanes) {
    for (std::int64_t r = 0; r < kRows; ++r) prefetch_ahead(stream + r * cols, c, cols);
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) {
      double column = kColumnSums ? col_sums[c + j] : 0.0;
      for (std::int64_t r = 0; r < kRows; ++r) {
        const double x = static_cast<double>(value(r, c + j));
        lanes[r][j] += x * x;
        column += x * x;
      }
      if constexpr (kColumnSums) col_sums[c + j] = column;
    }
  }
  if constexpr (kColumnSums) {
    for (std::int64_t c = full; c < cols; ++c) {
      for (std::int64_t r = 0; r < kRows; ++r) {
        const double x = static_cast<double>(value(r, c));
        col_sums[c] += x * x;
      }
    }
  }
  for (std::int64_t r = 0; r < kRows; ++r) {
    totals[r] = lanes_then_tail(lanes[r], full, cols, [&](std::int64_t c) { return value(r, c); });
  }
}

// kRows rows from `grad` on, each element read once: row_sums[r] and col_sums[c] += the rows'
// squares (row_group_squares).
template <std::int64_t kRows, class T>
void measure_row_group(const T* __restrict grad, std::int64_t cols, double* __restrict row_sums,
                       double* __restrict col_sums) {
  row_group_squares<kRows, true>(
      grad, cols, [grad, cols](std::int64_t r, std::int64_t c) { return grad[r * cols + c]; },
      row_sums, col_sums);
}

template <class T>
void measure_rows(const T* __restrict grad, std::int64_t rows, std::int64_t cols,
                  double* __restrict row_sums, double* __restrict col_sums) {
  for_row_groups<kRowGroup>(rows, grouped<double>(cols), [&](auto group, std::int64_t r) {
    measure_row_group<group()>(grad + r * cols, cols, row_sums + r, col_sums);
  });
}

template <class T>
void lerp_squares(const T* __restrict grad, T* __restrict variance, std::int64_t n,
                  math::Lerp<T> lerp) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) variance[i] = lerp(variance[i], grad[i] * grad[i]);
}

// Adds the sums of the updates' squares of kRows rows from `grad` on to *sum, the rows in order
// (row_group_squares; each column factor loaded once per kRows rows).
template <std::int64_t kRows, class T>
void update_sum_row_group(const T* __restrict grad, const T* __restrict row_var,
                          const T* __restrict col_factors, T row_mean, std::int64_t cols,
                          const math::AdafactorElement<T>& element, double* sum) {
  T row_factors[kRows];
  for (std::int64_t r = 0; r < kRows; ++r) {
    row_factors[r] = math::adafactor_row_factor(row_var[r], row_mean);
  }
  double totals[kRows];
  row_group_squares<kRows, false>(
      grad, cols,
      [&](std::int64_t r, std::int64_t c) {
        return math::factored_update(row_factors[r], col_factors[c], grad[r * cols + c], element);
      },
      totals, nullptr);
  for (std::int64_t r = 0; r < kRows; ++r) *sum += totals[r];
}

template <class T>
void update_sum_rows(const T* __restrict grad, const T* __restrict row_var,
                     const T* __restrict col_factors, T row_mean, std::int64_t rows,
                     std::int64_t cols, const math::AdafactorElement<T>& e, double* sum) {
  const math::AdafactorElement<T> element = e;
  for_row_groups<kRowGroup>(rows, grouped<T>(cols), [&](auto group, std::int64_t r) {
    update_sum_row_group<group()>(grad + r * cols, row_var + r, col_factors, row_mean, cols,
                                  element, sum);
  });
}

template <class T>
void apply_rows(T* __restrict param, const T* __restrict grad, const T* __restrict row_var,
                const T* __restrict col_factors, T row_mean, std::int64_t rows, std::int64_t cols,
                const math::AdafactorElement<T>& e) {
  const math::AdafactorElement<T> element = e;
  for (std::int64_t r = 0; r < rows; ++r) {
    T* __restrict p = param + r * cols;
    const T* __restrict g = grad + r * cols;
    const T row_factor = math::adafactor_row_factor(row_var[r], row_mean);
    const auto element_at = [&](std::int64_t c) {
      const T update = math::factored_update(row_factor, col_factors[c], g[c], element);
      p[c] = math::adafactor_apply(p[c], update, element);
    };
    const std::int64_t full = cols / kLanes * kLanes;
    for (std::int64_t block = 0; block < full; block += kLanes) {
      prefetch_ahead(p, block, cols);
      prefetch_ahead(g, block, cols);
#pragma omp simd
      for (std::int64_t j = 0; j < kLanes; ++j) element_at(block + j);
    }
    for (std::int64_t c = full; c < cols; ++c) element_at(c);
  }
}

template <class T>
void update_sum_vector(const T* __restrict grad, const T* __restrict variance, std::int64_t n,
                       const math::AdafactorElement<T>& e, double* sum) {
  const math::AdafactorElement<T> element = e;
  double total;
  row_group_squares<1, false>(
      grad, n,
      [&](std::int64_t, std::int64_t i) {
        return math::adafactor_update(variance[i], grad[i], element);
      },
      &total, nullptr);
  *sum += total;
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
