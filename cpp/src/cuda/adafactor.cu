// Adafactor on CUDA: the CPU driver's three passes (src/adafactor.cpp) over one tensor at a
// time, with the same per-element math (math/adafactor.hpp) and every reduction done in double
// in a fixed order (fixed pieces, a fixed reduction tree, pieces added in order), so a step is
// the same bits every run. The order differs from the CPU's, so the two agree within a few ULP.
//
// A tensor is cut into pieces: the rows of a factored tensor (batch x rows pieces of cols
// elements), or chunks of kPiece elements of a vector. Per tensor, on the call's stream:
//   1. measure: per piece, the params' sum of squares and (factored) the grads' row sum of
//      squares; a vector's variance is updated here (lerp towards g * g);
//   1b. (factored) column sums of squares over fixed chunks of rows;
//   2. (factored) factors: row_var and col_var updated, and from them and each batch's clamped
//      mean of row_var the row and column factors of the update (math::adafactor_row_factor);
//   3. the update's sum of squares per piece;
//   4. the step's scale (one block: alpha and the update's norm, in double);
//   5. the params.
// Nothing waits for the host: the scale stays in device memory.
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "adamkern/adafactor.hpp"
#include "adamkern/math/adafactor.hpp"
#include "common.cuh"
#include "launch.hpp"

namespace adamkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr std::int64_t kPiece = std::int64_t{1} << 16;  // a vector's piece
constexpr std::int64_t kRowChunk = 64;                  // rows per partial column sum
constexpr int kMaxBlocks = 4096;

// The shape of one tensor as the kernels see it.
struct Shape {
  std::int64_t batch, rows, cols;
  bool factored;
  __host__ __device__ std::int64_t numel() const { return batch * rows * cols; }
  // pieces of `length` elements: rows of a factored tensor, kPiece chunks of a vector
  __host__ __device__ std::int64_t length() const { return factored ? cols : kPiece; }
  __host__ __device__ std::int64_t pieces() const { return (numel() + length() - 1) / length(); }
  __host__ __device__ std::int64_t piece_end(std::int64_t piece) const {
    return (piece + 1) * length() < numel() ? (piece + 1) * length() : numel();
  }
  __host__ __device__ std::int64_t row_chunks() const { return (rows + kRowChunk - 1) / kRowChunk; }
};

// Sums a and b over the block (common.cuh), in this kernel's shared memory.
__device__ __forceinline__ void block_sums(double& a, double& b) {
  __shared__ double shared[kThreads][2];
  block_sum2<kThreads>(a, b, shared);
}

__device__ __forceinline__ double square(double x) { return x * x; }

// Pass 1: per piece, the sums of squares of the params and of the grads (the row sums of a
// factored tensor); a vector's variance moves towards g * g.
template <class T>
__global__ void __launch_bounds__(kThreads)
    measure_kernel(Shape shape, const T* param, const T* grad, T* variance, math::Lerp<T> lerp,
                   double* param_sums, double* grad_sums) {
  for (std::int64_t piece = blockIdx.x; piece < shape.pieces(); piece += gridDim.x) {
    const std::int64_t begin = piece * shape.length(), end = shape.piece_end(piece);
    double param_sq = 0.0, grad_sq = 0.0;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      param_sq += square(static_cast<double>(param[i]));
      if (shape.factored) {
        grad_sq += square(static_cast<double>(grad[i]));
      } else {
        variance[i] = lerp(variance[i], grad[i] * grad[i]);
      }
    }
    block_sums(param_sq, grad_sq);
    if (threadIdx.x == 0) {
      param_sums[piece] = param_sq;
      grad_sums[piece] = grad_sq;
    }
  }
}

// Pass 1b (factored): the grads' column sums of squares over chunks of kRowChunk rows,
// col_partial[(b * row_chunks + j) * cols + c], each summed over its rows in order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    column_kernel(Shape shape, const T* grad, double* col_partial) {
  const std::int64_t chunks = shape.batch * shape.row_chunks();
  const std::int64_t total = chunks * shape.cols;
  for (std::int64_t k = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; k < total;
       k += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t chunk = k / shape.cols, c = k % shape.cols;
    const std::int64_t b = chunk / shape.row_chunks();
    const std::int64_t first = (chunk % shape.row_chunks()) * kRowChunk;
    const std::int64_t last = first + kRowChunk < shape.rows ? first + kRowChunk : shape.rows;
    double sum = 0.0;
    for (std::int64_t r = first; r < last; ++r) {
      sum += square(static_cast<double>(grad[(b * shape.rows + r) * shape.cols + c]));
    }
    col_partial[k] = sum;
  }
}

// Pass 2 (factored), one block per batch: row_var and col_var towards the grads' mean squares;
// the update's factors per row (with the batch's mean of row_var clamped below by eps1) and per
// column.
template <class T>
__global__ void __launch_bounds__(kThreads)
    factors_kernel(Shape shape, const double* row_sums, const double* col_partial, T* row_var,
                   T* col_var, math::Lerp<T> lerp, T eps1, T* row_factors, T* col_factors) {
  const T row_length = static_cast<T>(shape.cols), col_length = static_cast<T>(shape.rows);
  for (std::int64_t b = blockIdx.x; b < shape.batch; b += gridDim.x) {
    double row_var_sum = 0.0, unused = 0.0;
    for (std::int64_t r = threadIdx.x; r < shape.rows; r += blockDim.x) {
      const std::int64_t row = b * shape.rows + r;
      row_var[row] = lerp(row_var[row], math::mean_square_from_sum<T>(row_sums[row], row_length));
      row_var_sum += static_cast<double>(row_var[row]);
    }
    block_sums(row_var_sum, unused);  // every thread gets the batch's total
    const T row_mean = math::clamp_below(static_cast<T>(row_var_sum) / col_length, eps1);
    for (std::int64_t r = threadIdx.x; r < shape.rows; r += blockDim.x) {
      const std::int64_t row = b * shape.rows + r;
      row_factors[row] = math::adafactor_row_factor(row_var[row], row_mean);
    }
    for (std::int64_t c = threadIdx.x; c < shape.cols; c += blockDim.x) {
      double col_sum = 0.0;
      for (std::int64_t j = 0; j < shape.row_chunks(); ++j) {
        col_sum += col_partial[(b * shape.row_chunks() + j) * shape.cols + c];
      }
      T& col = col_var[b * shape.cols + c];
      col = lerp(col, math::mean_square_from_sum<T>(col_sum, col_length));
      col_factors[b * shape.cols + c] = math::adafactor_col_factor(col);
    }
  }
}

// The update of element i (after the factors pass), of the grad as given (math/adafactor.hpp).
template <class T>
__device__ __forceinline__ T update_of(const Shape& shape, std::int64_t i, const T* grad,
                                       const T* row_factors, const T* col_factors,
                                       const T* variance, const math::AdafactorElement<T>& e) {
  if (!shape.factored) return math::adafactor_update(variance[i], grad[i], e);
  const std::int64_t row = i / shape.cols;
  const std::int64_t b = row / shape.rows;
  return math::factored_update(row_factors[row], col_factors[b * shape.cols + i % shape.cols],
                               grad[i], e);
}

// Pass 3: per piece, the update's sum of squares.
template <class T>
__global__ void __launch_bounds__(kThreads)
    update_sum_kernel(Shape shape, const T* grad, const T* row_factors, const T* col_factors,
                      const T* variance, math::AdafactorElement<T> e, double* update_sums) {
  for (std::int64_t piece = blockIdx.x; piece < shape.pieces(); piece += gridDim.x) {
    const std::int64_t begin = piece * shape.length(), end = shape.piece_end(piece);
    double sum = 0.0, unused = 0.0;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      sum += square(
          static_cast<double>(update_of(shape, i, grad, row_factors, col_factors, variance, e)));
    }
    block_sums(sum, unused);
    if (threadIdx.x == 0) update_sums[piece] = sum;
  }
}

// Pass 4, one block: the step's scale from the pieces' sums (added in a fixed tree).
template <class T>
__global__ void __launch_bounds__(kThreads)
    scale_kernel(Shape shape, const double* param_sums, const double* update_sums,
                 math::AdafactorScalars s, double eps2, double d, T* scale) {
  double param_sum = 0.0, update_sum = 0.0;
  for (std::int64_t k = threadIdx.x; k < shape.pieces(); k += blockDim.x) {
    param_sum += param_sums[k];
    update_sum += update_sums[k];
  }
  block_sums(param_sum, update_sum);
  if (threadIdx.x == 0) {
    *scale = math::adafactor_step_scale<T>(param_sum, update_sum, shape.numel(), eps2, s.rho, d);
  }
}

// Pass 5: the params, with the scale from device memory.
template <class T>
__global__ void __launch_bounds__(kThreads)
    apply_kernel(Shape shape, T* param, const T* grad, const T* row_factors, const T* col_factors,
                 const T* variance, math::AdafactorElement<T> e, const T* scale) {
  e.scale = *scale;
  const std::int64_t n = shape.numel();
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < n;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    param[i] = math::adafactor_apply(
        param[i], update_of(shape, i, grad, row_factors, col_factors, variance, e), e);
  }
}

int blocks_for(std::int64_t work) {
  return static_cast<int>(work < kMaxBlocks ? (work > 0 ? work : 1) : kMaxBlocks);
}

template <class T>
T* as(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

// One tensor's step; scratch is carved from one stream-ordered allocation.
template <class T>
void step_tensor(const AdafactorDeviceTensor& t, const AdafactorOptions& o, double eps1,
                 cudaStream_t stream) {
  const Shape shape{t.batch, t.rows, t.cols, t.factored};
  if (shape.numel() == 0) return;
  const auto s = math::adafactor_scalars(o.lr, o.beta2_decay, o.weight_decay, eps1, t.step);
  const auto e = math::adafactor_element<T>(s, o.maximize);
  const auto lerp = math::make_lerp<T>(s.beta);
  const std::int64_t pieces = shape.pieces();
  const std::int64_t columns = t.factored ? shape.batch * shape.row_chunks() * shape.cols : 0;
  const std::int64_t doubles = 3 * pieces + columns;
  const std::int64_t factors = t.factored ? shape.batch * (shape.rows + shape.cols) : 0;
  const std::size_t bytes = sizeof(double) * doubles + sizeof(T) * (factors + 1);
  char* scratch = nullptr;
  check(cudaMallocAsync(reinterpret_cast<void**>(&scratch), bytes, stream), "cudaMallocAsync");
  double* param_sums = reinterpret_cast<double*>(scratch);
  double* grad_sums = param_sums + pieces;
  double* update_sums = grad_sums + pieces;
  double* col_partial = update_sums + pieces;
  T* row_factors = reinterpret_cast<T*>(scratch + sizeof(double) * doubles);
  T* col_factors = row_factors + (t.factored ? shape.batch * shape.rows : 0);
  T* scale = row_factors + factors;

  T* param = as<T>(t.param);
  const T* grad = as<const T>(t.grad);
  T* row_var = as<T>(t.row_var);
  T* col_var = as<T>(t.col_var);
  T* variance = as<T>(t.variance);
  measure_kernel<T><<<blocks_for(pieces), kThreads, 0, stream>>>(shape, param, grad, variance, lerp,
                                                                 param_sums, grad_sums);
  if (t.factored) {
    column_kernel<T><<<blocks_for((columns + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        shape, grad, col_partial);
    factors_kernel<T><<<blocks_for(shape.batch), kThreads, 0, stream>>>(
        shape, grad_sums, col_partial, row_var, col_var, lerp, static_cast<T>(s.eps1), row_factors,
        col_factors);
  }
  update_sum_kernel<T><<<blocks_for(pieces), kThreads, 0, stream>>>(
      shape, grad, row_factors, col_factors, variance, e, update_sums);
  scale_kernel<T>
      <<<1, kThreads, 0, stream>>>(shape, param_sums, update_sums, s, o.eps2, o.d, scale);
  apply_kernel<T><<<blocks_for((shape.numel() + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      shape, param, grad, row_factors, col_factors, variance, e, scale);
  check(cudaGetLastError(), "kernel launch");
  check(cudaFreeAsync(scratch, stream), "cudaFreeAsync");
}

}  // namespace

template <class T>
void launch_adafactor(const std::vector<AdafactorDeviceTensor>& tensors,
                      const AdafactorOptions& options, std::uintptr_t stream, int device) {
  DeviceScope scope(device);
  const double eps1 = adafactor_eps1<T>(options);
  for (const AdafactorDeviceTensor& t : tensors) {
    step_tensor<T>(t, options, eps1, reinterpret_cast<cudaStream_t>(stream));
  }
}

template void launch_adafactor<float>(const std::vector<AdafactorDeviceTensor>&,
                                      const AdafactorOptions&, std::uintptr_t, int);
template void launch_adafactor<double>(const std::vector<AdafactorDeviceTensor>&,
                                       const AdafactorOptions&, std::uintptr_t, int);

}  // namespace adamkern::cuda
