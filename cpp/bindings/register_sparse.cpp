// adamkern._core.<optimizer>_rows_: check the table, the indices, the gradient rows and the
// state tables, release the GIL, call the row-sparse C++ API (adamkern/sparse.hpp). Defaults
// live in the Python layer (adamkern.sparse); here every argument is a required keyword.
#include <cstdint>
#include <string>
#include <vector>

#include "adamkern/sparse.hpp"
#include "arrays.hpp"
#include "keywords.hpp"
#include "register.hpp"

namespace adamkern::bindings {
namespace {

std::string shape_string(const py::array& array) {
  std::string out = "(";
  for (py::ssize_t d = 0; d < array.ndim(); ++d) {
    out += std::to_string(array.shape(d));
    if (d + 1 < array.ndim()) out += ", ";
  }
  return out + (array.ndim() == 1 ? ",)" : ")");
}

std::string dtype_string(const py::array& array) {
  return py::str(array.dtype()).cast<std::string>();
}

// The native-byte-order dtype T (an equivalent dtype, e.g. 'l' for int64, counts).
template <class T>
bool has_dtype(const py::array& array) {
  return py::isinstance<py::array_t<T, 0>>(array);
}

py::array ndarray(const std::string& op, py::handle object, const char* name) {
  if (!py::isinstance<py::array>(object)) {
    throw py::type_error(op + ": " + name + " must be a numpy.ndarray, got " +
                         py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>());
  }
  return py::reinterpret_borrow<py::array>(object);
}

void check_layout(const std::string& op, const py::array& array, const std::string& name,
                  bool written) {
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(op + ": " + name + " is not C-contiguous; pass a contiguous array" +
                          (written ? " (an in-place update cannot work on a copy)" : ""));
  }
  if ((py::detail::array_proxy(array.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_) ==
      0) {
    throw py::value_error(op + ": " + name + " is not aligned to its element size");
  }
  if (written && !array.writeable()) {
    throw py::value_error(op + ": " + name + " is read-only; it is updated in place");
  }
}

// The arrays of one row-sparse call, checked: the table, its indices and gradient rows, and
// the state tables (state[k] for the optimizer's state buffer k, None where unused).
struct RowsCall {
  std::string op;
  py::array param, indices, grad_rows;
  bool is_double = false;
  IndexType index_type = IndexType::int64;
  std::vector<py::array> state;

  RowsCall(std::string op_name, py::handle param_object, py::handle indices_object,
           py::handle grad_rows_object)
      : op(std::move(op_name)),
        param(ndarray(op, param_object, "param")),
        indices(ndarray(op, indices_object, "indices")),
        grad_rows(ndarray(op, grad_rows_object, "grad_rows")) {
    if (has_dtype<double>(param)) {
      is_double = true;
    } else if (!has_dtype<float>(param)) {
      throw py::type_error(op + ": param has dtype " + dtype_string(param) +
                           "; expected float32 or float64 (native byte order)");
    }
    if (param.ndim() != 2) {
      throw py::value_error(op + ": param must be a 2-D table (rows, cols), got shape " +
                            shape_string(param));
    }
    check_layout(op, param, "param", true);
    if (has_dtype<std::int32_t>(indices)) {
      index_type = IndexType::int32;
    } else if (!has_dtype<std::int64_t>(indices)) {
      throw py::type_error(op + ": indices has dtype " + dtype_string(indices) +
                           "; expected int32 or int64 (native byte order)");
    }
    if (indices.ndim() != 1) {
      throw py::value_error(op +
                            ": indices must be 1-D (one table row per gradient row), got "
                            "shape " +
                            shape_string(indices));
    }
    check_layout(op, indices, "indices", false);
    if (!(is_double ? has_dtype<double>(grad_rows) : has_dtype<float>(grad_rows))) {
      throw py::type_error(op + ": grad_rows has dtype " + dtype_string(grad_rows) +
                           " but param has " + dtype_string(param) + "; they must match");
    }
    if (grad_rows.ndim() != 2 || grad_rows.shape(0) != indices.shape(0) ||
        grad_rows.shape(1) != param.shape(1)) {
      throw py::value_error(op + ": grad_rows has shape " + shape_string(grad_rows) +
                            " but must be (len(indices), param.shape[1]) = (" +
                            std::to_string(indices.shape(0)) + ", " +
                            std::to_string(param.shape(1)) + ")");
    }
    check_layout(op, grad_rows, "grad_rows", false);
  }

  // A state table: param's dtype, and param's shape (per_row: one value per row, (rows,)).
  void add_state(py::handle object, const std::string& name, bool used, bool per_row = false) {
    if (!used) {
      state.emplace_back();
      return;
    }
    if (object.is_none()) {
      throw py::value_error(op + ": " + name + " is required, got None");
    }
    py::array array = ndarray(op, object, name.c_str());
    if (!(is_double ? has_dtype<double>(array) : has_dtype<float>(array))) {
      throw py::type_error(op + ": " + name + " has dtype " + dtype_string(array) +
                           " but param has " + dtype_string(param) + "; they must match");
    }
    const bool shaped = per_row ? array.ndim() == 1 && array.shape(0) == param.shape(0)
                                : array.ndim() == 2 && array.shape(0) == param.shape(0) &&
                                      array.shape(1) == param.shape(1);
    if (!shaped) {
      throw py::value_error(op + ": " + name + " has shape " + shape_string(array) +
                            " but must be " +
                            (per_row ? "(" + std::to_string(param.shape(0)) +
                                           ",) (one value "
                                           "per row of param)"
                                     : "param's shape " + shape_string(param)));
    }
    check_layout(op, array, name, true);
    state.push_back(std::move(array));
  }

  template <class T>
  SparseRows<T> rows() const {
    SparseRows<T> out;
    out.param = data_of<T>(param);
    out.rows = static_cast<std::int64_t>(param.shape(0));
    out.cols = static_cast<std::int64_t>(param.shape(1));
    out.indices = indices.data();
    out.index_type = index_type;
    out.count = static_cast<std::int64_t>(indices.shape(0));
    out.grad_rows = data_of<const T>(grad_rows);
    for (std::size_t k = 0; k < state.size(); ++k) {
      out.state[k] = state[k] ? data_of<T>(state[k]) : nullptr;
    }
    return out;
  }

  // Calls fn(rows) with SparseRows<float> or SparseRows<double>, without the GIL.
  template <class Fn>
  void run(Fn&& fn) const {
    if (is_double) {
      const SparseRows<double> typed = rows<double>();
      py::gil_scoped_release release;
      fn(typed);
    } else {
      const SparseRows<float> typed = rows<float>();
      py::gil_scoped_release release;
      fn(typed);
    }
  }
};

// adamkern._core.<name>_rows_ for the registered optimizer D: keywords param, indices,
// grad_rows, the state tables by row_state_name, D's options, and step where D takes one.
template <class D>
void rows_binding(const py::kwargs& kwargs) {
  const std::string op = std::string(D::kName) + "_rows_";
  Keywords keywords(op, kwargs);
  const py::handle param = keywords.required("param"), indices = keywords.required("indices"),
                   grad_rows = keywords.required("grad_rows");
  std::vector<std::string> state_names;
  std::vector<py::handle> state_objects;
  for (const math::StateBuffer& buffer : D::kState) {
    state_names.push_back(row_state_name(buffer));
    state_objects.push_back(keywords.optional(state_names.back().c_str()));
  }
  const auto options = options_from<D>(keywords);
  StepArgs args;
  if constexpr (D::kTakesStep) args.step = keywords.real("step");
  keywords.finish();

  // Options first: a refused option is reported before any array is looked at.
  const StepValues values = prepare_sparse_step<D>(options, args);
  const int variant = variant_of<D>(options, values);
  const unsigned used = D::reads(variant) | D::writes(variant);
  RowsCall call(op, param, indices, grad_rows);
  for (std::size_t k = 0; k < state_objects.size(); ++k) {
    call.add_state(state_objects[k], state_names[k], ((used >> k) & 1u) != 0);
  }
  call.run([&](const auto& rows) { sparse_step<D>(rows, options, args); });
}

void rowwise_adagrad_binding(const py::kwargs& kwargs) {
  using K = math::RowwiseAdagrad;
  const std::string op = std::string(K::kName) + "_rows_";
  Keywords keywords(op, kwargs);
  const py::handle param = keywords.required("param"), indices = keywords.required("indices"),
                   grad_rows = keywords.required("grad_rows");
  const std::string state_name = row_state_name(K::kState[0]);
  const py::handle state_sum = keywords.required(state_name.c_str());
  const auto options = options_from<K>(keywords);
  keywords.finish();

  check_rowwise_adagrad_options(options);
  RowsCall call(op, param, indices, grad_rows);
  call.add_state(state_sum, state_name, true, /*per_row=*/true);
  call.run([&](const auto& rows) { rowwise_adagrad_rows(rows, options); });
}

template <class D>
void define_rows(py::module_& m, const char* torch_counterpart) {
  const std::string name = std::string(D::kName) + "_rows_";
  m.def(name.c_str(), &rows_binding<D>,
        ("Row-sparse in-place " + std::string(D::kName) + " step (" + torch_counterpart +
         "); every argument a keyword (see adamkern.sparse." + name + ")")
            .c_str());
}

}  // namespace

void register_sparse(py::module_& m) {
  define_rows<math::Adam>(m, "torch.optim.SparseAdam with epsilon_hat=True");
  define_rows<math::Adagrad>(m, "torch.optim.Adagrad's sparse-gradient path");
  define_rows<math::Sgd>(m, "torch.optim.SGD with a sparse gradient, no momentum");
  m.def(
      "rowwise_adagrad_options",
      [] {
        using K = math::RowwiseAdagrad;
        const K::Options defaults{};
        py::dict out;
        for (const auto& option : K::kNumbers) out[option.name] = defaults.*option.member;
        for (const auto& flag : K::kFlags) out[flag.name] = defaults.*flag.member;
        return out;
      },
      "The defaults of the row-wise Adagrad's options, as its C++ header sets them "
      "(RowwiseAdagradOptions, math/rowwise_adagrad.hpp).");
  m.def("rowwise_adagrad_rows_", &rowwise_adagrad_binding,
        "Row-sparse in-place row-wise Adagrad step (FBGEMM's EXACT_ROWWISE_ADAGRAD); every "
        "argument a keyword (see adamkern.sparse.rowwise_adagrad_rows_)");
}

}  // namespace adamkern::bindings
