// Internal: argument checks shared by every multi-tensor entry point, and the work partitions.
//
// Work is split over the concatenation of all tensors of a call: thread t gets the elements
// [B(t), B(t+1)) of that sequence, with every boundary moved onto a cache-line boundary of the
// tensor it falls in, so no two threads write one cache line. Within a tensor, the first few
// elements (the "head") are peeled so the vector loop starts on a 64-byte-aligned param; when
// all streams share one offset modulo 64 (the usual case for NumPy arrays) they all run
// line-aligned. The last `size % remainder_width` elements of a tensor are passed with
// remainder=true (see math/adam.hpp: torch's remainder loop rounds differently). Which code path
// an element takes depends only on its index, never on the split, so results are bitwise
// identical for any thread count.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "adamkern/kernels.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace adamkern::detail {

inline constexpr std::int64_t kCacheLineBytes = 64;
// Below this many elements per extra thread, forking costs more than it saves.
inline constexpr std::int64_t kMinElementsPerThread = std::int64_t{1} << 15;

// One buffer of a call, for the overlap check: its byte range, and which argument and tensor
// it belongs to (`stream` indexes the names of the call).
struct BufferRange {
  std::uintptr_t begin, end;
  std::size_t stream, index;
};

// Throws if two of the buffers overlap; names[stream] names each argument.
inline void check_no_overlap(std::vector<BufferRange>& ranges,
                             const std::vector<std::string>& names) {
  // A training loop passes the same buffers every step: the ranges of the last call that
  // passed (per thread, in the caller's order) are compared first, which is cheaper than the
  // sort (a quarter of a 100-tensor call's checking time, measured).
  thread_local std::vector<BufferRange> last_passed;
  if (ranges.size() == last_passed.size() &&
      std::equal(ranges.begin(), ranges.end(), last_passed.begin(),
                 [](const BufferRange& a, const BufferRange& b) {
                   return a.begin == b.begin && a.end == b.end;
                 })) {
    return;
  }
  std::vector<BufferRange> unsorted = ranges;
  // Sorted by start, two buffers overlap iff one starts before the furthest end seen so far.
  std::sort(ranges.begin(), ranges.end(),
            [](const BufferRange& a, const BufferRange& b) { return a.begin < b.begin; });
  for (std::size_t k = 1, widest = 0; k < ranges.size(); ++k) {
    if (ranges[k].begin < ranges[widest].end) {
      const auto label = [&](const BufferRange& x) {
        return names[x.stream] + "[" + std::to_string(x.index) + "]";
      };
      throw std::invalid_argument(label(ranges[widest]) + " and " + label(ranges[k]) +
                                  " overlap in memory; every buffer of a call must be distinct");
    }
    if (ranges[k].end > ranges[widest].end) widest = k;
  }
  last_passed = std::move(unsorted);
}

// Adds the range of `bytes` bytes at `data` (required when bytes > 0).
inline void add_range(std::vector<BufferRange>& ranges, const void* data, std::int64_t bytes,
                      std::size_t stream, std::size_t index,
                      const std::vector<std::string>& names) {
  if (bytes == 0) return;
  if (data == nullptr) {
    throw std::invalid_argument(names[stream] + "[" + std::to_string(index) + "] is null");
  }
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  ranges.push_back({begin, begin + static_cast<std::uintptr_t>(bytes), stream, index});
}

// Checks every buffer of every tensor of a call: present when used, and no two overlapping.
// names[0] and names[1] name the params and grads, names[2 + k] state buffer k, as the Python
// API does; state_mask has bit k set for the state buffers the call uses. Without
// `with_grads`, only the params (and state) are checked.
template <class T>
void check_tensors(const Tensor<T>* tensors, std::size_t count, const char* const* names,
                   unsigned state_mask, bool with_grads = true) {
  if (count > 0 && tensors == nullptr) throw std::invalid_argument("tensors is null");
  std::vector<std::string> labels;
  for (std::size_t s = 0; s < 2 + kMaxStateBuffers; ++s) {
    const bool used = s == 0 || (s == 1 && with_grads) || (s >= 2 && (state_mask >> (s - 2)) & 1u);
    labels.emplace_back(used ? names[s] : "");
  }
  std::vector<BufferRange> ranges;
  ranges.reserve(count * (2 + kMaxStateBuffers));
  for (std::size_t i = 0; i < count; ++i) {
    const Tensor<T>& tensor = tensors[i];
    if (tensor.size < 0) {
      throw std::invalid_argument("tensor " + std::to_string(i) + " has a negative size");
    }
    const std::int64_t bytes = tensor.size * static_cast<std::int64_t>(sizeof(T));
    add_range(ranges, tensor.param, bytes, 0, i, labels);
    if (with_grads) add_range(ranges, tensor.grad, bytes, 1, i, labels);
    for (std::size_t k = 0; k < kMaxStateBuffers; ++k) {
      if ((state_mask & (1u << k)) != 0)
        add_range(ranges, tensor.state[k], bytes, 2 + k, i, labels);
    }
  }
  check_no_overlap(ranges, labels);
}

// Elements to peel so that &param[head] is 64-byte aligned.
template <class T>
std::int64_t alignment_head(const Tensor<T>& tensor) {
  const auto offset =
      static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(tensor.param) % kCacheLineBytes);
  if (offset % static_cast<std::int64_t>(sizeof(T)) != 0) return 0;
  const std::int64_t head =
      ((kCacheLineBytes - offset) % kCacheLineBytes) / static_cast<std::int64_t>(sizeof(T));
  return std::min(head, tensor.size);
}

inline int threads_for(std::int64_t total, int max_threads) {
  const std::int64_t useful = std::max<std::int64_t>(1, total / kMinElementsPerThread);
  return static_cast<int>(std::min<std::int64_t>(max_threads, useful));
}

// Calls fn(tensor, begin, end, remainder) over every element of every tensor, in one parallel
// region. remainder_width = 0: no remainder pieces.
template <class T, class Fn>
void for_each_range(const Tensor<T>* tensors, std::size_t count, int max_threads,
                    std::int64_t remainder_width, Fn&& fn) {
  constexpr std::int64_t line = kCacheLineBytes / static_cast<std::int64_t>(sizeof(T));
  std::vector<std::int64_t> offsets(count + 1, 0);  // prefix sums of the sizes
  std::vector<std::int64_t> heads(count, 0);
  for (std::size_t i = 0; i < count; ++i) {
    offsets[i + 1] = offsets[i] + tensors[i].size;
    heads[i] = alignment_head(tensors[i]);
  }
  const std::int64_t total = offsets[count];
  if (total == 0) return;

  // Runs local elements [lo, hi) of tensor i, split where the aligned part begins and where
  // the remainder begins.
  const auto run_piece = [&](std::size_t i, std::int64_t lo, std::int64_t hi) {
    const std::int64_t size = tensors[i].size;
    const std::int64_t remainder = remainder_width > 0 ? size - size % remainder_width : size;
    const std::int64_t head = std::min(heads[i], remainder);
    const std::int64_t cuts[] = {lo, std::clamp(head, lo, hi), std::clamp(remainder, lo, hi), hi};
    for (int k = 0; k < 3; ++k) {
      if (cuts[k] < cuts[k + 1]) fn(tensors[i], cuts[k], cuts[k + 1], k == 2);
    }
  };
  const auto tensor_at = [&](std::int64_t global) {  // the nonempty tensor holding `global`
    return static_cast<std::size_t>(std::upper_bound(offsets.begin(), offsets.end(), global) -
                                    offsets.begin() - 1);
  };
  const auto run_global = [&](std::int64_t begin, std::int64_t end) {
    std::size_t i = tensor_at(begin);
    while (begin < end) {
      const std::int64_t hi = std::min(end, offsets[i + 1]);
      if (hi > begin) run_piece(i, begin - offsets[i], hi - offsets[i]);
      begin = hi;
      ++i;
    }
  };

  const int num_threads = threads_for(total, max_threads);
  if (num_threads <= 1) {
    run_global(0, total);
    return;
  }
#if defined(_OPENMP)
  // Boundary of thread t's share, moved up onto the aligned cache-line grid of its tensor.
  const auto boundary = [&](int t, int n) -> std::int64_t {
    if (t >= n) return total;
    const std::int64_t target = total / n * t + total % n * t / n;
    const std::size_t i = tensor_at(target);
    const std::int64_t local = target - offsets[i];
    const std::int64_t head = heads[i];
    std::int64_t snapped = local <= head ? head : head + (local - head + line - 1) / line * line;
    snapped = std::min(snapped, tensors[i].size);
    return offsets[i] + snapped;
  };
#pragma omp parallel num_threads(num_threads)
  {
    const int t = omp_get_thread_num();
    const int n = omp_get_num_threads();
    run_global(t == 0 ? 0 : boundary(t, n), boundary(t + 1, n));
  }
#else
  run_global(0, total);
#endif
}

// Elements per chunk of a reduction: a multiple of every SIMD width, so each chunk's sums are
// the same bits on every ISA; the chunks (not the threads) fix the order of summation.
inline constexpr std::int64_t kReductionChunk = std::int64_t{1} << 14;

// Lanes of a reduction within a chunk: element i of the chunk goes to lane i % kReductionLanes,
// each lane adds in index order, and the chunk's sum is the lanes' total by a fixed pairwise
// tree; so a chunk's sum is the same bits on every ISA, and whether the chunk is reduced in
// one call or in several (the mixed-precision driver's spans, multiples of the lanes).
inline constexpr std::int64_t kReductionLanes = 16;

// The total of kReductionLanes lanes by that tree (in place).
inline double lane_total(double* lanes) {
  for (std::int64_t width = kReductionLanes / 2; width >= 1; width /= 2) {
    for (std::int64_t j = 0; j < width; ++j) lanes[j] += lanes[j + width];
  }
  return lanes[0];
}

// Calls fn(tensor_index, begin, end, sums) once per fixed chunk of every tensor, in parallel,
// where sums points to kSums doubles of that chunk (zeroed first), and returns the per-tensor
// totals, adding the chunks of a tensor in order: the result does not depend on the threads.
template <std::size_t kSums, class TensorT, class Fn>
std::vector<std::array<double, kSums>> for_each_chunk(const TensorT* tensors, std::size_t count,
                                                      int max_threads, Fn&& fn) {
  struct Chunk {
    std::size_t tensor;
    std::int64_t begin, end;
  };
  std::vector<Chunk> chunks;
  std::int64_t total = 0;
  for (std::size_t i = 0; i < count; ++i) {
    for (std::int64_t b = 0; b < tensors[i].size; b += kReductionChunk) {
      chunks.push_back({i, b, std::min(tensors[i].size, b + kReductionChunk)});
    }
    total += tensors[i].size;
  }
  std::vector<std::array<double, kSums>> partial(chunks.size(), std::array<double, kSums>{});
  const auto n = static_cast<std::int64_t>(chunks.size());
  const int num_threads = threads_for(total, max_threads);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(num_threads) if (num_threads > 1)
#endif
  for (std::int64_t k = 0; k < n; ++k) {
    fn(chunks[k].tensor, chunks[k].begin, chunks[k].end, partial[k].data());
  }
  std::vector<std::array<double, kSums>> sums(count, std::array<double, kSums>{});
  for (std::int64_t k = 0; k < n; ++k) {
    for (std::size_t s = 0; s < kSums; ++s) sums[chunks[k].tensor][s] += partial[k][s];
  }
  return sums;
}

}  // namespace adamkern::detail
