// Adafactor's driver: checks, the three passes of each tensor, and the per-tensor reductions
// in a fixed order (adamkern/adafactor.hpp). The element loops are adafactor_isa.cpp's.
#include "adamkern/adafactor.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "adafactor_isa.hpp"
#include "adamkern/dispatch.hpp"
#include "adamkern/math/adafactor.hpp"
#include "isa_table.hpp"
#include "partition.hpp"

namespace adamkern {
namespace {

// The most chunks a batch of a factored tensor is cut into (each keeps a partial column sum,
// cols doubles).
constexpr std::int64_t kMaxRowChunks = 32;

// A factored tensor's rows cut into chunks for the parallel passes: whole rows of one batch,
// at most kMaxRowChunks per batch and at least kReductionChunk elements each where the rows
// allow it. Chunk k is chunk k % per_batch of batch k / per_batch; the chunks and their order
// fix the order of every sum.
struct RowChunks {
  std::int64_t rows, rows_per_chunk, per_batch, count;

  RowChunks(std::int64_t batch, std::int64_t rows_in_batch, std::int64_t cols)
      : rows(rows_in_batch),
        rows_per_chunk(
            std::clamp<std::int64_t>(std::max((rows + kMaxRowChunks - 1) / kMaxRowChunks,
                                              (detail::kReductionChunk + cols - 1) / cols),
                                     1, rows)),
        per_batch((rows + rows_per_chunk - 1) / rows_per_chunk),
        count(batch * per_batch) {}

  std::int64_t batch_of(std::int64_t k) const { return k / per_batch; }
  std::int64_t first_row(std::int64_t k) const {
    return batch_of(k) * rows + (k % per_batch) * rows_per_chunk;
  }
  std::int64_t row_count(std::int64_t k) const {
    return std::min(rows_per_chunk, rows - (k % per_batch) * rows_per_chunk);
  }
};

const detail::AdafactorTable& active_adafactor_table() {
  switch (active_isa()) {
#if defined(ADAMKERN_HAVE_AVX512)
    case Isa::avx512: return detail::isa_avx512::adafactor_table();
#endif
#if defined(ADAMKERN_HAVE_AVX2)
    case Isa::avx2: return detail::isa_avx2::adafactor_table();
#endif
    default: return detail::isa_baseline::adafactor_table();
  }
}

template <class T>
const detail::AdafactorLoops<T>& loops_of(const detail::AdafactorTable& table) {
  if constexpr (sizeof(T) == sizeof(float)) {
    return table.f32;
  } else {
    return table.f64;
  }
}

template <class Fn>
void parallel_chunks(std::int64_t chunks, int num_threads, Fn&& fn) {
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(num_threads) if (num_threads > 1)
#endif
  for (std::int64_t k = 0; k < chunks; ++k) fn(k);
}

// Scratch space for the sums of a call, kept per calling thread and reused: allocating (and
// the kernel zeroing) a fresh megabyte of column sums every step cost a tenth of a step on a
// 4096 x 4096 matrix. Returns `count` zeroed doubles.
double* zeroed_scratch(std::vector<double>& buffer, std::size_t count) {
  if (buffer.size() < count) buffer.resize(count);
  std::fill(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(count), 0.0);
  return buffer.data();
}

void check_finite(double value, const char* name) {
  if (!std::isfinite(value)) {
    throw std::invalid_argument(std::string(name) + " must be finite, got " +
                                std::to_string(value));
  }
}

// The work of one step of one tensor.
template <class T>
class TensorStep {
 public:
  TensorStep(const AdafactorTensor<T>& t, const AdafactorOptions& o, double eps1, int max_threads)
      : t_(t),
        o_(o),
        loops_(loops_of<T>(active_adafactor_table())),
        reduce_(detail::typed_table<T>(detail::active_kernel_table()).reduce),
        numel_(t.batch * t.rows * t.cols),
        threads_(detail::threads_for(numel_, max_threads)),
        s_(math::adafactor_scalars(o.lr, o.beta2_decay, o.weight_decay, eps1, t.step)),
        e_(math::adafactor_element<T>(s_, o.maximize)) {}

  void run() {
    if (numel_ == 0) return;
    if (t_.factored) {
      run_factored();
    } else {
      run_vector();
    }
  }

 private:
  static double sum_in_order(const double* partial, std::int64_t count) {
    double sum = 0.0;
    for (std::int64_t k = 0; k < count; ++k) sum += partial[k];
    return sum;
  }

  void set_scale(double param_sum, double update_sum) {
    e_.scale = math::adafactor_step_scale<T>(param_sum, update_sum, numel_, o_.eps2, s_.rho, o_.d);
  }

  void run_vector() {
    const std::int64_t n = numel_;
    const std::int64_t chunk = detail::kReductionChunk;
    const std::int64_t chunks = (n + chunk - 1) / chunk;
    const auto lerp = math::make_lerp<T>(s_.beta);
    std::vector<double> param_partial(static_cast<std::size_t>(chunks) * 2, 0.0);
    std::vector<double> update_partial(static_cast<std::size_t>(chunks), 0.0);
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t begin = k * chunk, end = std::min(n, begin + chunk);
      reduce_(t_.param, begin, end, &param_partial[2 * k]);
      loops_.lerp_squares(t_.grad + begin, t_.variance + begin, end - begin, lerp);
    });
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t begin = k * chunk, end = std::min(n, begin + chunk);
      loops_.update_sum_vector(t_.grad + begin, t_.variance + begin, end - begin, e_,
                               &update_partial[k]);
    });
    double param_sum = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) param_sum += param_partial[2 * k];
    set_scale(param_sum, sum_in_order(update_partial.data(), chunks));
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t begin = k * chunk, end = std::min(n, begin + chunk);
      loops_.apply_vector(t_.param + begin, t_.grad + begin, t_.variance + begin, end - begin, e_);
    });
  }

  void run_factored() {
    const std::int64_t batch = t_.batch, rows = t_.rows, cols = t_.cols;
    const std::int64_t rows_per_chunk =
        std::clamp<std::int64_t>(std::max((rows + kMaxRowChunks - 1) / kMaxRowChunks,
                                          (detail::kReductionChunk + cols - 1) / cols),
                                 1, rows);
    const std::int64_t per_batch = (rows + rows_per_chunk - 1) / rows_per_chunk;
    const std::int64_t chunks = batch * per_batch;
    const auto first_row = [&](std::int64_t k) {
      return (k / per_batch) * rows + (k % per_batch) * rows_per_chunk;
    };
    const auto row_count = [&](std::int64_t k) {
      return std::min(rows_per_chunk, rows - (k % per_batch) * rows_per_chunk);
    };

    // Pass 1: the params' sum of squares, the grads' per row and per column.
    thread_local std::vector<double> row_scratch, col_scratch, param_scratch;
    double* row_sums = zeroed_scratch(row_scratch, static_cast<std::size_t>(batch * rows));
    double* col_partial = zeroed_scratch(col_scratch, static_cast<std::size_t>(chunks * cols));
    double* param_partial = zeroed_scratch(param_scratch, static_cast<std::size_t>(chunks) * 2);
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t row = first_row(k), count = row_count(k);
      reduce_(t_.param, row * cols, (row + count) * cols, &param_partial[2 * k]);
      loops_.measure_rows(t_.grad + row * cols, count, cols, &row_sums[row],
                          &col_partial[k * cols]);
    });

    // The factors (O(rows + cols) values each) and each batch's clamped mean of row_var.
    const auto lerp = math::make_lerp<T>(s_.beta);
    const T row_length = static_cast<T>(cols), col_length = static_cast<T>(rows);
    // (thread_local: the parallel regions below use the pointers, never these names, which
    // would name each worker thread's own buffers)
    thread_local std::vector<T> row_mean_scratch, col_factor_scratch;
    row_mean_scratch.resize(static_cast<std::size_t>(batch));
    col_factor_scratch.resize(static_cast<std::size_t>(batch * cols));
    T* row_means = row_mean_scratch.data();
    T* col_factors = col_factor_scratch.data();
    for (std::int64_t b = 0; b < batch; ++b) {
      T* row_var = t_.row_var + b * rows;
      double row_var_sum = 0.0;
      for (std::int64_t r = 0; r < rows; ++r) {
        row_var[r] =
            lerp(row_var[r], math::mean_square_from_sum<T>(row_sums[b * rows + r], row_length));
        row_var_sum += static_cast<double>(row_var[r]);
      }
      row_means[b] =
          math::clamp_below(static_cast<T>(row_var_sum) / col_length, static_cast<T>(s_.eps1));
      T* col_var = t_.col_var + b * cols;
      for (std::int64_t c = 0; c < cols; ++c) {
        double col_sum = 0.0;
        for (std::int64_t j = 0; j < per_batch; ++j) {
          col_sum += col_partial[(b * per_batch + j) * cols + c];
        }
        col_var[c] = lerp(col_var[c], math::mean_square_from_sum<T>(col_sum, col_length));
        col_factors[b * cols + c] = math::adafactor_col_factor(col_var[c]);
      }
    }

    // Pass 2: the update's sum of squares; pass 3: the params.
    thread_local std::vector<double> update_scratch;
    double* update_partial = zeroed_scratch(update_scratch, static_cast<std::size_t>(chunks));
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t row = first_row(k), b = k / per_batch;
      loops_.update_sum_rows(t_.grad + row * cols, t_.row_var + row, col_factors + b * cols,
                             row_means[b], row_count(k), cols, e_, &update_partial[k]);
    });
    double param_sum = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) param_sum += param_partial[2 * k];
    set_scale(param_sum, sum_in_order(update_partial, chunks));
    parallel_chunks(chunks, threads_, [&](std::int64_t k) {
      const std::int64_t row = first_row(k), b = k / per_batch;
      loops_.apply_rows(t_.param + row * cols, t_.grad + row * cols, t_.row_var + row,
                        col_factors + b * cols, row_means[b], row_count(k), cols, e_);
    });
  }

  const AdafactorTensor<T>& t_;
  const AdafactorOptions& o_;
  const detail::AdafactorLoops<T>& loops_;
  detail::ReduceRangeFn<T> reduce_;
  std::int64_t numel_;
  int threads_;
  math::AdafactorScalars s_;
  math::AdafactorElement<T> e_;
};

template <class T>
void check_tensors(const AdafactorTensor<T>* tensors, std::size_t count) {
  static const std::vector<std::string> names = {"params", "grads", "row_vars", "col_vars",
                                                 "variances"};
  std::vector<detail::BufferRange> ranges;
  const auto element_bytes = static_cast<std::int64_t>(sizeof(T));
  for (std::size_t i = 0; i < count; ++i) {
    const AdafactorTensor<T>& t = tensors[i];
    const std::string label = "[" + std::to_string(i) + "]";
    if (!(t.step >= 1.0) || !std::isfinite(t.step)) {
      throw std::invalid_argument("step" + label + " must be a finite number >= 1, got " +
                                  std::to_string(t.step));
    }
    if (t.batch < 0 || t.rows < 0 || t.cols < 0) {
      throw std::invalid_argument("params" + label + ": negative size");
    }
    if (!t.factored && (t.batch != 1 || t.rows != 1)) {
      throw std::invalid_argument("params" + label +
                                  ": a vector is viewed as batch = rows = 1, cols = n");
    }
    const std::int64_t numel = t.batch * t.rows * t.cols;
    if (numel == 0) continue;
    const auto require = [&](const void* data, const char* name) {
      if (data == nullptr) {
        throw std::invalid_argument(
            std::string(name) + label + " is required for a " +
            (t.factored ? "param with two or more dimensions" : "vector param"));
      }
    };
    detail::add_range(ranges, t.param, numel * element_bytes, 0, i, names);
    detail::add_range(ranges, t.grad, numel * element_bytes, 1, i, names);
    if (t.factored) {
      require(t.row_var, "row_vars");
      require(t.col_var, "col_vars");
      detail::add_range(ranges, t.row_var, t.batch * t.rows * element_bytes, 2, i, names);
      detail::add_range(ranges, t.col_var, t.batch * t.cols * element_bytes, 3, i, names);
    } else {
      require(t.variance, "variances");
      detail::add_range(ranges, t.variance, numel * element_bytes, 4, i, names);
    }
  }
  detail::check_no_overlap(ranges, names);
}

}  // namespace

void check_adafactor_options(const AdafactorOptions& o) {
  check_finite(o.lr, "lr");
  check_finite(o.beta2_decay, "beta2_decay");
  check_finite(o.eps2, "eps2");
  check_finite(o.d, "d");
  check_finite(o.weight_decay, "weight_decay");
  if (o.lr < 0.0) throw std::invalid_argument("lr must be >= 0, got " + std::to_string(o.lr));
  if (o.beta2_decay > 0.0) {
    throw std::invalid_argument("beta2_decay must be <= 0, got " + std::to_string(o.beta2_decay));
  }
  if (o.eps1.has_value()) {
    check_finite(*o.eps1, "eps1");
    if (*o.eps1 < 0.0) {
      throw std::invalid_argument("eps1 must be >= 0 (or None), got " + std::to_string(*o.eps1));
    }
  }
  if (o.eps2 < 0.0) throw std::invalid_argument("eps2 must be >= 0, got " + std::to_string(o.eps2));
  if (o.d < 1.0) {
    throw std::invalid_argument("d must be >= 1, got " + std::to_string(o.d));
  }
  if (o.weight_decay < 0.0) {
    throw std::invalid_argument("weight_decay must be >= 0, got " + std::to_string(o.weight_decay));
  }
}

template <class T>
void adafactor_step(const AdafactorTensor<T>* tensors, std::size_t count,
                    const AdafactorOptions& options) {
  check_adafactor_options(options);
  check_tensors(tensors, count);
  const double eps1 = adafactor_eps1<T>(options);
  const int max_threads = get_num_threads();
  for (std::size_t i = 0; i < count; ++i) {
    TensorStep<T>(tensors[i], options, eps1, max_threads).run();
  }
}

template void adafactor_step<float>(const AdafactorTensor<float>*, std::size_t,
                                    const AdafactorOptions&);
template void adafactor_step<double>(const AdafactorTensor<double>*, std::size_t,
                                     const AdafactorOptions&);

}  // namespace adamkern
