// Row-sparse updates of embedding tables: only the rows a step's gradient touches are read
// and written.
//
//   #include "adamkern/sparse.hpp"
//   adamkern::SparseRows<float> rows;           // a rows x cols table and its gradient rows
//   rows.param = table; rows.rows = 1000000; rows.cols = 64;
//   rows.indices = ids; rows.index_type = adamkern::IndexType::int64; rows.count = 65536;
//   rows.grad_rows = grads;                     // count x cols: the gradient of row ids[k]
//   rows.state[0] = exp_avg; rows.state[1] = exp_avg_sq;   // rows x cols each
//   adamkern::AdamOptions options;
//   options.epsilon_hat = true;                 // torch.optim.SparseAdam's update
//   adamkern::sparse_step<adamkern::math::Adam>(rows, options, {/*step=*/1.0});
//
// A step (1) checks everything before it writes anything: the options, every index (in
// [0, rows); the message names the first bad position and its value), the buffers (present
// when used, no two overlapping); (2) sums the gradient rows of equal indices; (3) runs the
// registered optimizer's own per-element update (math/<name>.hpp, the loop of the active ISA)
// on each touched row, the rows spread over the threads. Untouched rows, and the state of
// untouched rows, are not read or written ("lazy" updates, as torch's sparse paths).
//
// Determinism: duplicates are summed in the element type, in a canonical order of their rows:
// the positions of equal indices are ordered by the bytes of their gradient rows (memcmp;
// identical rows are interchangeable), then added left to right. The sum, and so the whole
// step, is the same bits for any thread count, any ISA and any order of the input pairs
// (index, gradient row). A row's update depends only on its own data.
#pragma once

#include <cstdint>
#include <string>

#include "adamkern/kernels.hpp"
#include "adamkern/math/rowwise_adagrad.hpp"
#include "adamkern/optimizers.hpp"

namespace adamkern {

enum class IndexType : std::uint8_t { int32, int64 };

// A table, its state and one step's row-sparse gradient. The table and each state table are
// contiguous and row-major: rows x cols elements (the row-wise Adagrad's state: rows values).
// grad_rows holds count x cols elements, row k being the gradient of table row indices[k];
// indices may repeat and come in any order.
template <class T>
struct SparseRows {
  T* param = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  const void* indices = nullptr;
  IndexType index_type = IndexType::int64;
  std::int64_t count = 0;
  const T* grad_rows = nullptr;
  T* state[kMaxStateBuffers] = {};  // in the order of the optimizer's kState; unused: nullptr
};

// The name of a state table of a row-sparse step: the functional op's list argument in the
// singular (exp_avgs -> exp_avg, state_sums -> state_sum), as messages and keywords name it.
inline std::string row_state_name(const math::StateBuffer& buffer) {
  std::string name = buffer.argument;
  if (!name.empty() && name.back() == 's') name.pop_back();
  return name;
}

// One row-sparse step of a registered optimizer D, with its options and step inputs
// (StepArgs::step where D takes one; AMP scaling is not supported and is refused):
//   math::Adam     with epsilon_hat = true, torch.optim.SparseAdam's update:
//                  p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps),
//                  state exp_avg, exp_avg_sq (epsilon_hat = false: torch Adam's formula,
//                  applied to the touched rows only); weight decay and amsgrad refused
//                  (SparseAdam has neither)
//   math::Adagrad  torch.optim.Adagrad's sparse-gradient path (state sum); weight decay
//                  refused, as torch refuses it with sparse gradients
//   math::Sgd      torch.optim.SGD with a sparse gradient and no momentum; momentum refused
//                  (torch's momentum buffer of a sparse gradient is itself sparse and grows
//                  to every row ever touched), weight decay refused (torch adds the whole
//                  table's decay, a dense update)
// Throws std::invalid_argument naming the argument. count = 0 checks and writes nothing.
template <class D, class T>
void sparse_step(const SparseRows<T>& rows, const typename D::Options& options,
                 const StepArgs& args = {});

// Checks D's options and step inputs as sparse_step does (without arrays) and returns the
// values its coefficients come from: bindings call it first, so a refused option is reported
// before any array is looked at.
template <class D>
StepValues prepare_sparse_step(const typename D::Options& options, const StepArgs& args);

// FBGEMM's row-wise Adagrad (math/rowwise_adagrad.hpp) over the touched rows; state[0] holds
// one accumulator per row (rows values).
template <class T>
void rowwise_adagrad_rows(const SparseRows<T>& rows, const RowwiseAdagradOptions& options);

// Checks the options of rowwise_adagrad_rows (throws std::invalid_argument).
void check_rowwise_adagrad_options(const RowwiseAdagradOptions& options);

#define ADAMKERN_DECLARE_SPARSE(name)                                                    \
  extern template void sparse_step<math::name, float>(                                   \
      const SparseRows<float>&, const math::name::Options&, const StepArgs&);            \
  extern template void sparse_step<math::name, double>(                                  \
      const SparseRows<double>&, const math::name::Options&, const StepArgs&);           \
  extern template StepValues prepare_sparse_step<math::name>(const math::name::Options&, \
                                                             const StepArgs&);
ADAMKERN_DECLARE_SPARSE(Adam)
ADAMKERN_DECLARE_SPARSE(Adagrad)
ADAMKERN_DECLARE_SPARSE(Sgd)
#undef ADAMKERN_DECLARE_SPARSE
extern template void rowwise_adagrad_rows<float>(const SparseRows<float>&,
                                                 const RowwiseAdagradOptions&);
extern template void rowwise_adagrad_rows<double>(const SparseRows<double>&,
                                                  const RowwiseAdagradOptions&);

}  // namespace adamkern
