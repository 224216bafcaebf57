// Row-sparse steps (adamkern/sparse.hpp): check, group the gradient rows by table row, sum
// duplicates in a canonical order, then update each touched row with the optimizer's loop.
#include "adamkern/sparse.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "adamkern/dispatch.hpp"
#include "isa_table.hpp"
#include "partition.hpp"
#include "require.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace adamkern {
namespace {

using detail::format_number;

// The names messages use: the table, its indices and gradient rows, then state buffer k by
// the op's argument (D::kState[k].argument in the singular: exp_avgs -> exp_avg).
struct Labels {
  std::vector<std::string> names{"param", "grad_rows", "indices"};

  template <class D>
  static Labels of() {
    Labels labels;
    for (const math::StateBuffer& buffer : D::kState) {
      labels.names.push_back(row_state_name(buffer));
    }
    return labels;
  }
};

// ---------------------------------------------------------------------------------------------
// Checks

template <class I>
void check_index_values(const I* indices, std::int64_t count, std::int64_t rows) {
  // One branch-free pass (vectorizes), then the first culprit only when there is one.
  bool bad = false;
  const auto limit = static_cast<std::uint64_t>(rows);
  for (std::int64_t k = 0; k < count; ++k) {
    bad |= static_cast<std::uint64_t>(static_cast<std::int64_t>(indices[k])) >= limit;
  }
  if (!bad) return;
  for (std::int64_t k = 0; k < count; ++k) {
    const auto value = static_cast<std::int64_t>(indices[k]);
    if (value < 0 || value >= rows) {
      throw std::invalid_argument("indices[" + std::to_string(k) + "] = " + std::to_string(value) +
                                  " is out of range for param with " + std::to_string(rows) +
                                  " rows (expected 0 <= " + "index < " + std::to_string(rows) +
                                  ")");
    }
  }
}

// Checks the sizes, the indices and the buffers (`used`: bit k for state buffer k; `state_size`:
// elements per state buffer). Nothing is written.
template <class T>
void check_rows(const SparseRows<T>& rows, unsigned used, std::int64_t state_size,
                const Labels& labels) {
  if (rows.rows < 0 || rows.cols < 0 || rows.count < 0) {
    throw std::invalid_argument("param has " + std::to_string(rows.rows) + " rows and " +
                                std::to_string(rows.cols) + " columns, and there are " +
                                std::to_string(rows.count) +
                                " gradient rows; none may be negative");
  }
  if (rows.index_type != IndexType::int32 && rows.index_type != IndexType::int64) {
    throw std::invalid_argument("indices: index_type must be int32 or int64");
  }
  const std::int64_t index_bytes = rows.index_type == IndexType::int32 ? 4 : 8;
  const auto element = static_cast<std::int64_t>(sizeof(T));
  struct Buffer {
    const void* data;
    std::int64_t bytes;
    const std::string* name;
  };
  std::vector<Buffer> buffers{{rows.param, rows.rows * rows.cols * element, &labels.names[0]},
                              {rows.grad_rows, rows.count * rows.cols * element, &labels.names[1]},
                              {rows.indices, rows.count * index_bytes, &labels.names[2]}};
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    if ((used >> k) & 1u) {
      buffers.push_back({rows.state[k], state_size * element, &labels.names[3 + k]});
    }
  }
  for (std::size_t a = 0; a < buffers.size(); ++a) {
    if (buffers[a].bytes > 0 && buffers[a].data == nullptr) {
      throw std::invalid_argument(*buffers[a].name + " is null");
    }
    for (std::size_t b = 0; b < a; ++b) {
      const auto begin_a = reinterpret_cast<std::uintptr_t>(buffers[a].data);
      const auto begin_b = reinterpret_cast<std::uintptr_t>(buffers[b].data);
      if (buffers[a].bytes > 0 && buffers[b].bytes > 0 &&
          begin_a < begin_b + static_cast<std::uintptr_t>(buffers[b].bytes) &&
          begin_b < begin_a + static_cast<std::uintptr_t>(buffers[a].bytes)) {
        throw std::invalid_argument(*buffers[b].name + " and " + *buffers[a].name +
                                    " overlap in memory; every array of a step must be "
                                    "distinct");
      }
    }
  }
  if (rows.index_type == IndexType::int32) {
    check_index_values(static_cast<const std::int32_t*>(rows.indices), rows.count, rows.rows);
  } else {
    check_index_values(static_cast<const std::int64_t*>(rows.indices), rows.count, rows.rows);
  }
}

// ---------------------------------------------------------------------------------------------
// Grouping: the positions of the gradient rows, grouped by table row

struct Entry {
  std::uint64_t row;
  std::uint64_t position;
};

// A gradient row's position and its leading bytes (see coalesced_row).
struct KeyedPosition {
  std::uint64_t key;
  std::int64_t position;
};

// Group g is table row rows[g], whose gradient rows are positions[begin[g], begin[g + 1]).
// Kept per calling thread and reused: a training loop calls with the same sizes every step,
// and fresh buffers of that size would be page-faulted in every time.
struct RowGroups {
  std::vector<std::int64_t> positions;
  std::vector<std::int64_t> begin;
  std::vector<std::int64_t> rows;
  std::int64_t largest = 0;  // the most gradient rows of one group
  std::vector<Entry> entries, buffer;
  std::vector<KeyedPosition> keyed;  // the threads' room to order a group's gradient rows

  std::int64_t size() const { return static_cast<std::int64_t>(rows.size()); }
};

// Sorts entries by row with a least-significant-digit radix sort (stable, so positions stay
// in increasing order within a row); max_row bounds the rows.
void radix_sort(std::vector<Entry>& entries, std::vector<Entry>& buffer, std::uint64_t max_row) {
  constexpr int kDigitBits = 11;
  constexpr std::size_t kBuckets = std::size_t{1} << kDigitBits;
  buffer.resize(entries.size());
  std::array<std::size_t, kBuckets> offsets;
  for (int shift = 0; shift < 64 && (max_row >> shift) != 0; shift += kDigitBits) {
    offsets.fill(0);
    for (const Entry& e : entries) ++offsets[(e.row >> shift) & (kBuckets - 1)];
    std::size_t total = 0;
    for (std::size_t& offset : offsets) total += std::exchange(offset, total);
    for (const Entry& e : entries) buffer[offsets[(e.row >> shift) & (kBuckets - 1)]++] = e;
    entries.swap(buffer);
  }
}

template <class I>
void group_rows(const I* indices, std::int64_t count, std::int64_t rows, RowGroups& groups) {
  std::vector<Entry>& entries = groups.entries;
  entries.resize(static_cast<std::size_t>(count));
  for (std::int64_t k = 0; k < count; ++k) {
    entries[k] = {static_cast<std::uint64_t>(indices[k]), static_cast<std::uint64_t>(k)};
  }
  radix_sort(entries, groups.buffer, rows > 0 ? static_cast<std::uint64_t>(rows - 1) : 0);
  groups.positions.resize(entries.size());
  groups.begin.clear();
  groups.rows.clear();
  groups.largest = 0;
  for (std::size_t k = 0; k < entries.size(); ++k) {
    groups.positions[k] = static_cast<std::int64_t>(entries[k].position);
    if (k == 0 || entries[k].row != entries[k - 1].row) {
      if (k > 0) {
        groups.largest =
            std::max(groups.largest, static_cast<std::int64_t>(k) - groups.begin.back());
      }
      groups.begin.push_back(static_cast<std::int64_t>(k));
      groups.rows.push_back(static_cast<std::int64_t>(entries[k].row));
    }
  }
  if (count > 0) groups.largest = std::max(groups.largest, count - groups.begin.back());
  groups.begin.push_back(count);
}

// The rows of this step, grouped, in the calling thread's reused buffers.
template <class T>
RowGroups& group_rows(const SparseRows<T>& rows) {
  thread_local RowGroups groups;
  if (rows.index_type == IndexType::int32) {
    group_rows(static_cast<const std::int32_t*>(rows.indices), rows.count, rows.rows, groups);
  } else {
    group_rows(static_cast<const std::int64_t*>(rows.indices), rows.count, rows.rows, groups);
  }
  return groups;
}

// ---------------------------------------------------------------------------------------------
// The parallel pass over the touched rows

// Prefetches the first lines of a row about to be updated (the update loop prefetches ahead
// within longer rows itself). Inlined on purpose: GCC finds a function that only prefetches
// free of side effects and deletes the calls to it.
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline void prefetch_row(const void* row, std::int64_t bytes, bool write) {
  constexpr std::int64_t kMaxLines = 8;
  const char* p = static_cast<const char*>(row);
  const std::int64_t lines =
      std::min(kMaxLines, (bytes + detail::kCacheLineBytes - 1) / detail::kCacheLineBytes);
  for (std::int64_t l = 0; l < lines; ++l) {
    if (write) {
      __builtin_prefetch(p + l * detail::kCacheLineBytes, 1);
    } else {
      __builtin_prefetch(p + l * detail::kCacheLineBytes, 0);
    }
  }
}

// A row's first 8 bytes (zero-padded if it has fewer) as a big-endian number: comparing
// two of these compares the rows' leading bytes as memcmp does.
inline std::uint64_t leading_bytes(const void* row, std::size_t bytes) {
  unsigned char head[8] = {};
  std::memcpy(head, row, std::min<std::size_t>(sizeof head, bytes));
  std::uint64_t key = 0;
  for (const unsigned char byte : head) key = (key << 8) | byte;
  return key;
}

// Sorts n keyed positions by key with a least-significant-digit radix sort (8-bit digits,
// a pass skipped where every key has the same digit), through `buffer` (room for n).
inline void radix_sort_keys(KeyedPosition* keyed, KeyedPosition* buffer, std::int64_t n) {
  std::array<std::int64_t, 256> offsets;
  KeyedPosition* from = keyed;
  KeyedPosition* to = buffer;
  for (int shift = 0; shift < 64; shift += 8) {
    offsets.fill(0);
    for (std::int64_t k = 0; k < n; ++k) ++offsets[(from[k].key >> shift) & 0xff];
    if (offsets[(from[0].key >> shift) & 0xff] == n) continue;  // one digit: nothing to do
    std::int64_t total = 0;
    for (std::int64_t& offset : offsets) total += std::exchange(offset, total);
    for (std::int64_t k = 0; k < n; ++k) to[offsets[(from[k].key >> shift) & 0xff]++] = from[k];
    std::swap(from, to);
  }
  if (from != keyed) std::copy(from, from + n, keyed);
}

// The gradient of a group's row: its one gradient row, or the sum of its gradient rows in
// canonical order (by their bytes, as memcmp orders them, then added left to right) written
// to `scratch`; `keyed` holds room for 2n entries.
template <class T>
const T* coalesced_row(const T* grad_rows, std::int64_t cols, std::int64_t* positions,
                       std::int64_t n, T* scratch, KeyedPosition* keyed) {
  const auto row = [&](std::int64_t position) { return grad_rows + position * cols; };
  if (n == 1) return row(positions[0]);
  const std::size_t bytes = static_cast<std::size_t>(cols) * sizeof(T);
  // Addition commutes, so only groups of three or more need an order (a + b == b + a). The
  // leading bytes decide almost every comparison without touching the rest of the rows.
  if (n >= 3) {
    for (std::int64_t k = 0; k < n; ++k) {
      keyed[k] = {leading_bytes(row(positions[k]), bytes), positions[k]};
    }
    // By the leading bytes first (a radix sort for large groups: through std::sort a
    // Zipf-hot row's thousands of rows took most of a step; 1M x 64 float32, 64K lookups of
    // a = 1.15, one thread: adam_rows_ 5.7 -> 4.8 ms), then rows of equal leading bytes by
    // all their bytes: the order of (key, memcmp) as before.
    constexpr std::int64_t kRadixFrom = 256;
    if (n >= kRadixFrom) {
      radix_sort_keys(keyed, keyed + n, n);
    } else {
      std::sort(keyed, keyed + n,
                [](const KeyedPosition& a, const KeyedPosition& b) { return a.key < b.key; });
    }
    for (std::int64_t i = 0; i < n;) {
      std::int64_t j = i + 1;
      while (j < n && keyed[j].key == keyed[i].key) ++j;
      if (j - i > 1) {
        std::sort(keyed + i, keyed + j, [&](const KeyedPosition& a, const KeyedPosition& b) {
          return std::memcmp(row(a.position), row(b.position), bytes) < 0;
        });
      }
      i = j;
    }
    for (std::int64_t k = 0; k < n; ++k) positions[k] = keyed[k].position;
  }
  constexpr std::int64_t kAhead = 8;  // gradient rows prefetched ahead of the one added
  if (n >= 3) {  // (the rows prefetched with the group were the first before the sort)
    for (std::int64_t k = 0; k < std::min(n, kAhead); ++k) {
      prefetch_row(row(positions[k]), static_cast<std::int64_t>(bytes), false);
    }
  }
  const T* __restrict first = row(positions[0]);
  const T* __restrict second = row(positions[1]);
  T* __restrict sum = scratch;
  for (std::int64_t c = 0; c < cols; ++c) sum[c] = first[c] + second[c];
  for (std::int64_t k = 2; k < n; ++k) {
    if (k + kAhead < n) {
      prefetch_row(row(positions[k + kAhead]), static_cast<std::int64_t>(bytes), false);
    }
    const T* __restrict next = row(positions[k]);
    for (std::int64_t c = 0; c < cols; ++c) sum[c] = sum[c] + next[c];
  }
  return scratch;
}

// Calls update(row, grad) once per touched row, grad being that row's coalesced gradient,
// with the rows spread over the threads; `streams`: the table and used state buffers of
// each row (prefetched ahead), row_bytes their bytes per row.
template <class T, class Update>
void for_each_touched_row(const SparseRows<T>& rows, RowGroups& groups,
                          const std::vector<std::pair<const void*, std::int64_t>>& streams,
                          Update&& update) {
  const std::int64_t cols = rows.cols;
  const std::int64_t n = groups.size();
  // Every element of every touched row is written, and every gradient row read.
  const int num_threads = detail::threads_for((n + rows.count) * cols, get_num_threads());
  // One coalescing buffer per thread, each on its own cache lines.
  constexpr std::int64_t kLine = detail::kCacheLineBytes / static_cast<std::int64_t>(sizeof(T));
  const std::int64_t stride = (cols + kLine - 1) / kLine * kLine;
  std::vector<T> scratch(static_cast<std::size_t>(stride * num_threads));
  const std::int64_t keyed_size = groups.largest >= 3 ? 2 * groups.largest : 0;
  std::vector<KeyedPosition>& keyed = groups.keyed;
  keyed.resize(static_cast<std::size_t>(keyed_size * num_threads));
  // Rows prefetched ahead of the one updated: 4 to 16 measured alike on a 1M x 64 float32
  // table (one thread: 11.5 ms per 64K random rows without prefetching, 6.5 ms with).
  constexpr std::int64_t kAhead = 8;
  const auto run = [&](std::int64_t g, T* buffer, KeyedPosition* keys) {
    if (g + kAhead < n) {  // (inline: GCC deletes a lambda that only prefetches)
      const std::int64_t ahead = groups.rows[g + kAhead];
      for (const auto& [base, row_bytes] : streams) {
        prefetch_row(static_cast<const char*>(base) + ahead * row_bytes, row_bytes, true);
      }
      // and its first gradient rows (coalesced_row prefetches further ones itself)
      const std::int64_t first = groups.begin[g + kAhead];
      const std::int64_t last = std::min(groups.begin[g + kAhead + 1], first + 4);
      for (std::int64_t k = first; k < last; ++k) {
        prefetch_row(rows.grad_rows + groups.positions[k] * cols,
                     cols * static_cast<std::int64_t>(sizeof(T)), false);
      }
    }
    const std::int64_t begin = groups.begin[g];
    const T* grad = coalesced_row(rows.grad_rows, cols, groups.positions.data() + begin,
                                  groups.begin[g + 1] - begin, buffer, keys);
    update(groups.rows[g], grad);
  };
  if (num_threads <= 1) {
    for (std::int64_t g = 0; g < n; ++g) run(g, scratch.data(), keyed.data());
    return;
  }
#if defined(_OPENMP)
#pragma omp parallel num_threads(num_threads)
  {
    const int thread = omp_get_thread_num();
    T* buffer = scratch.data() + stride * thread;
    KeyedPosition* keys = keyed.data() + keyed_size * thread;
    // Dynamic: a Zipf-hot row may carry thousands of duplicates. Which thread runs a row does
    // not change its bits.
#pragma omp for schedule(dynamic, 64)
    for (std::int64_t g = 0; g < n; ++g) run(g, buffer, keys);
  }
#else
  for (std::int64_t g = 0; g < n; ++g) run(g, scratch.data(), keyed.data());
#endif
}

// ---------------------------------------------------------------------------------------------
// Options

void refuse_if(bool refused, const std::string& message) {
  if (refused) throw std::invalid_argument(message);
}

// What a row-sparse step of each optimizer does not take (see sparse.hpp).
void check_sparse_options(const AdamOptions& o) {
  refuse_if(o.weight_decay != 0.0,
            "weight_decay must be 0 for a row-sparse Adam step (torch.optim.SparseAdam has no "
            "weight decay), got " +
                format_number(o.weight_decay));
  refuse_if(o.amsgrad,
            "amsgrad is not supported by a row-sparse Adam step "
            "(torch.optim.SparseAdam has no amsgrad)");
  refuse_if(o.cautious, "cautious is not supported by a row-sparse Adam step");
}
void check_sparse_options(const AdagradOptions& o) {
  refuse_if(o.weight_decay != 0.0,
            "weight_decay must be 0 for a row-sparse Adagrad step (torch.optim.Adagrad "
            "refuses weight decay with sparse gradients), got " +
                format_number(o.weight_decay));
}
void check_sparse_options(const SgdOptions& o) {
  refuse_if(o.momentum != 0.0,
            "momentum must be 0 for a row-sparse SGD step, got " + format_number(o.momentum) +
                " (torch's momentum buffer of a sparse gradient is sparse itself and grows to "
                "every row ever touched; not supported)");
  refuse_if(o.weight_decay != 0.0,
            "weight_decay must be 0 for a row-sparse SGD step, got " +
                format_number(o.weight_decay) +
                " (torch adds the decay of the whole table, a dense update)");
}

void require_option(bool ok, const char* name, const char* expected, double value) {
  refuse_if(!ok, std::string(name) + " must be " + expected + ", got " + format_number(value));
}

}  // namespace

template <class D>
StepValues prepare_sparse_step(const typename D::Options& options, const StepArgs& args) {
  refuse_if(args.amp.grad_scale != nullptr || args.amp.found_inf != nullptr,
            "grad_scale and found_inf are not supported by the row-sparse steps");
  const StepValues values = prepare_step<D>(options, args);
  check_sparse_options(options);
  return values;
}

template <class D, class T>
void sparse_step(const SparseRows<T>& rows, const typename D::Options& options,
                 const StepArgs& args) {
  const StepValues values = prepare_sparse_step<D>(options, args);
  const int variant = variant_of<D>(options, values);
  const unsigned used = D::reads(variant) | D::writes(variant);
  check_rows(rows, used, rows.rows * rows.cols, Labels::of<D>());
  if (rows.count == 0 || rows.cols == 0) return;

  RowGroups& groups = group_rows(rows);
  const auto coefficients = coefficients_of<D, T>(options, values);
  // Every element through the loop's main form: the remainder form reproduces a quirk of
  // torch's fused kernels at the end of a whole tensor, which a row is not.
  const detail::UpdateRangeFn<T> loop = detail::update_loops<T, D>().fn[variant][0][0];
  const std::int64_t cols = rows.cols;
  const std::int64_t row_bytes = cols * static_cast<std::int64_t>(sizeof(T));
  std::vector<std::pair<const void*, std::int64_t>> streams{{rows.param, row_bytes}};
  for (int k = 0; k < kMaxStateBuffers; ++k) {
    if ((used >> k) & 1u) streams.emplace_back(rows.state[k], row_bytes);
  }
  for_each_touched_row(rows, groups, streams, [&](std::int64_t row, const T* grad) {
    Tensor<T> tensor;
    tensor.param = rows.param + row * cols;
    tensor.grad = const_cast<T*>(grad);  // read only: the loop without unscaling
    for (int k = 0; k < kMaxStateBuffers; ++k) {
      if ((used >> k) & 1u) tensor.state[k] = rows.state[k] + row * cols;
    }
    tensor.size = cols;
    loop(tensor, 0, cols, &coefficients, T(1));
  });
}

void check_rowwise_adagrad_options(const RowwiseAdagradOptions& o) {
  for (const auto& option : math::RowwiseAdagrad::kNumbers) {
    const double value = o.*option.member;
    if (option.range == math::Range::positive) {
      require_option(std::isfinite(value) && value > 0.0, option.shown(), "a finite number > 0",
                     value);
    } else {
      require_option(std::isfinite(value) && value >= 0.0, option.shown(), "a finite number >= 0",
                     value);
    }
  }
}

template <class T>
void rowwise_adagrad_rows(const SparseRows<T>& rows, const RowwiseAdagradOptions& options) {
  using K = math::RowwiseAdagrad;
  check_rowwise_adagrad_options(options);
  check_rows(rows, 0b1u, rows.rows, Labels::of<K>());
  // No columns: nothing to update (and no mean square to take).
  if (rows.count == 0 || rows.cols == 0) return;

  RowGroups& groups = group_rows(rows);
  const auto c = K::coefficients<T>(options);
  const std::int64_t cols = rows.cols;
  T* const state_sums = rows.state[0];
  const auto run = [&](auto decay) {
    constexpr bool kDecay = decltype(decay)::value;
    for_each_touched_row(rows, groups,
                         {{rows.param, cols * static_cast<std::int64_t>(sizeof(T))},
                          {state_sums, static_cast<std::int64_t>(sizeof(T))}},
                         [&](std::int64_t row, const T* __restrict grad) {
                           T* __restrict param = rows.param + row * cols;
                           T lanes[K::kLanes] = {};
                           K::add_squares<kDecay>(param, grad, cols, c, lanes);
                           const T step =
                               K::accumulate(state_sums[row], K::mean_square(lanes, cols), c);
                           for (std::int64_t j = 0; j < cols; ++j)
                             K::update<kDecay>(param[j], grad[j], step, c);
                         });
  };
  if (options.weight_decay != 0.0) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
}

#define ADAMKERN_INSTANTIATE_SPARSE(name)                                                     \
  template void sparse_step<math::name, float>(const SparseRows<float>&,                      \
                                               const math::name::Options&, const StepArgs&);  \
  template void sparse_step<math::name, double>(const SparseRows<double>&,                    \
                                                const math::name::Options&, const StepArgs&); \
  template StepValues prepare_sparse_step<math::name>(const math::name::Options&, const StepArgs&);
ADAMKERN_INSTANTIATE_SPARSE(Adam)
ADAMKERN_INSTANTIATE_SPARSE(Adagrad)
ADAMKERN_INSTANTIATE_SPARSE(Sgd)
#undef ADAMKERN_INSTANTIATE_SPARSE
template void rowwise_adagrad_rows<float>(const SparseRows<float>&, const RowwiseAdagradOptions&);
template void rowwise_adagrad_rows<double>(const SparseRows<double>&, const RowwiseAdagradOptions&);

}  // namespace adamkern
