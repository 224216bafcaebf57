"""adamkern.sparse: the row-sparse steps against torch's sparse paths, against their NumPy
references (adamkern._sparse_reference), against themselves (threads, ISAs, the order of
the input, int32/int64 indices), and the error contract.

Against torch, 20 steps with duplicate-heavy (Zipf) indices, float32 and float64:

- sgd_rows_ is bitwise torch.optim.SGD when every row comes once per step: both compute
  p + (-lr) * g with one fma. With duplicates torch does not sum them first: it adds each
  duplicate into the param, rounding the param once per duplicate, where sgd_rows_ adds the
  summed row once; the two then differ by at most one ULP of the param per addition torch
  made, and that is the bound checked.
- adam_rows_ (torch.optim.SparseAdam) and adagrad_rows_ (torch.optim.Adagrad, sparse grad)
  are within 4 ULP of the magnitude (helpers.assert_close_to_reference), not bitwise: each
  row's update is the dense op's per-element math (m = fma(1 - beta1, g - m, m),
  v = fma((1 - beta2) g, g, beta2 v), p + (-step m) / denom; s = fma(g, g, s),
  p - (clr g) / std), while torch's sparse paths round plain operations in another order
  (m + (g - m)(1 - beta1), v + (g^2 - v)(1 - beta2), p + (-step)(m / denom); s + g^2,
  p + (-clr)(g / std)), and torch sums duplicates in input order, adamkern in a canonical one.
- rowwise_adagrad_rows_ (torch has none) is bitwise its NumPy transcription of FBGEMM's
  reference without weight decay; with it, within 4 ULP (NumPy has no fma).

Torch's tests are skipped when torch is not installed; the others run without it.
"""

from __future__ import annotations

import doctest
import inspect

import numpy as np
import pytest
from helpers import DTYPES, assert_bitwise_equal, assert_close_to_reference

import adamkern
import adamkern._sparse_reference as reference
from adamkern import _core, sparse

try:
    import torch
except ImportError:  # the torch tests skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

STEPS = 20
COLS = [1, 7, 16, 17, 64]


def zipf_indices(rng, count, rows, dtype=np.int64):
    """Row indices with Zipf-distributed repeats (a few rows come many times), shuffled."""
    return rng.permutation(rows)[(rng.zipf(1.5, count) - 1) % rows].astype(dtype)


def gradient_rows(rng, count, cols, dtype):
    """Random gradient rows, a few of them identical (ties of the canonical order)."""
    grad = rng.standard_normal((count, cols)).astype(dtype)
    grad[3:count:5] = grad[1]
    return grad


# name -> the op, its NumPy reference, its state tables for a param, keywords of a step.
OPS = {
    "adam": dict(op=sparse.adam_rows_, reference=reference.adam_rows,
                 state=lambda p: [np.zeros_like(p), np.zeros_like(p)],
                 keywords=lambda step: dict(step=step, lr=1e-2, betas=(0.8, 0.99))),
    "adagrad": dict(op=sparse.adagrad_rows_, reference=reference.adagrad_rows,
                    state=lambda p: [np.full_like(p, 0.1)],
                    keywords=lambda step: dict(step=step, lr=0.1, lr_decay=0.01)),
    "sgd": dict(op=sparse.sgd_rows_, reference=reference.sgd_rows, state=lambda p: [],
                keywords=lambda step: dict(lr=0.1)),
    "rowwise_adagrad": dict(op=sparse.rowwise_adagrad_rows_,
                            reference=reference.rowwise_adagrad_rows,
                            state=lambda p: [np.zeros(len(p), p.dtype)],
                            keywords=lambda step: dict(lr=0.1)),
}


def run_steps(name, param, state, batches, step_keywords=None, function="op", **extra):
    spec = OPS[name]
    for step, (indices, grad) in enumerate(batches, start=1):
        keywords = {**spec["keywords"](step), **extra, **(step_keywords or {})}
        spec[function](param, indices, grad, *state, **keywords)


def batches_for(seed, rows, cols, dtype, count=60, steps=STEPS, index_dtype=np.int64):
    rng = np.random.default_rng(seed)
    return [(zipf_indices(rng, count, rows, index_dtype), gradient_rows(rng, count, cols, dtype))
            for _ in range(steps)]


# ---------------------------------------------------------------------------------------------
# Against the NumPy references


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_matches_reference(name, dtype, cols, maximize):
    rng = np.random.default_rng(cols)
    param = rng.standard_normal((40, cols)).astype(dtype)
    state = OPS[name]["state"](param)
    expected_param, expected_state = param.copy(), [s.copy() for s in state]
    batches = batches_for(cols, 40, cols, dtype)
    run_steps(name, param, state, batches, maximize=maximize)
    run_steps(name, expected_param, expected_state, batches, function="reference",
              maximize=maximize)
    for actual, expected in zip([param, *state], [expected_param, *expected_state]):
        if name == "rowwise_adagrad":  # FBGEMM's order of operations, bit for bit
            assert_bitwise_equal(actual, expected, name)
        else:
            assert_close_to_reference(actual, expected, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rowwise_adagrad_weight_decay(dtype):
    """FBGEMM's L2 term fma(weight_decay, p, g); NumPy emulates the fma, so within 4 ULP."""
    rng = np.random.default_rng(5)
    param = rng.standard_normal((30, 19)).astype(dtype)
    state, expected_param = np.zeros(30, dtype), param.copy()
    expected_state = state.copy()
    batches = batches_for(5, 30, 19, dtype)
    run_steps("rowwise_adagrad", param, [state], batches, weight_decay=0.1)
    run_steps("rowwise_adagrad", expected_param, [expected_state], batches,
              function="reference", weight_decay=0.1)
    assert_close_to_reference(param, expected_param, "param")
    assert_close_to_reference(state, expected_state, "state_sum")


def test_rowwise_adagrad_is_fbgemm_formula():
    """One row by hand: lanes of squares, their tree, the mean, the accumulator, the step."""
    param = np.ones((2, 10), np.float32)
    grad = np.arange(1, 11, dtype=np.float32)[None, :] / 4
    state = np.array([0.0, 0.5], np.float32)
    sparse.rowwise_adagrad_rows_(param, np.array([1]), grad, state, lr=0.5, eps=1e-8)
    squares = (grad[0] * grad[0]).astype(np.float32)
    lanes = squares[:8].copy()
    lanes[:2] += squares[8:]
    f = np.float32
    total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5])
                                                               + (lanes[6] + lanes[7]))
    accumulated = f(0.5) + total / f(10)
    step = f(-0.5) / (np.sqrt(accumulated) + f(1e-8))
    assert state.tolist() == [0.0, accumulated]
    assert_bitwise_equal(param[1], (f(1) + grad[0] * step).astype(np.float32), "row 1")
    assert param[0].tolist() == [1.0] * 10


# ---------------------------------------------------------------------------------------------
# Against torch


@pytest.fixture(autouse=True)
def _torch_sparse_checks():
    """torch warns when its sparse tensors' checks are left implicitly off; they are on."""
    if torch is None:
        yield
        return
    with torch.sparse.check_sparse_tensor_invariants(enable=True):
        yield


def torch_sparse_grad(indices, grad, shape, coalesce=False):
    tensor = torch.sparse_coo_tensor(torch.from_numpy(indices.astype(np.int64))[None],
                                     torch.from_numpy(grad.copy()), shape,
                                     check_invariants=True)
    return tensor.coalesce() if coalesce else tensor


def torch_steps(name, param, batches, maximize=False, coalesce=False):
    """Steps torch's counterpart of `name` over a copy of param; returns (param, state)."""
    weight = torch.nn.Parameter(torch.from_numpy(param.copy()))
    if name == "adam":
        optimizer = torch.optim.SparseAdam([weight], lr=1e-2, betas=(0.8, 0.99),
                                           maximize=maximize)
    elif name == "adagrad":
        optimizer = torch.optim.Adagrad([weight], lr=0.1, lr_decay=0.01,
                                        initial_accumulator_value=0.1, maximize=maximize)
    else:
        optimizer = torch.optim.SGD([weight], lr=0.1, maximize=maximize)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for indices, grad in batches:
            weight.grad = torch_sparse_grad(indices, grad, param.shape, coalesce)
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    state = optimizer.state[weight]
    names = {"adam": ["exp_avg", "exp_avg_sq"], "adagrad": ["sum"], "sgd": []}[name]
    return weight.detach().numpy(), [state[n].numpy() for n in names]


@needs_torch
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("cols", [1, 17, 64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["adam", "adagrad"])
def test_close_to_torch(name, dtype, cols, maximize):
    rng = np.random.default_rng(cols + 1)
    param = rng.standard_normal((40, cols)).astype(dtype)
    batches = batches_for(cols + 1, 40, cols, dtype)
    expected_param, expected_state = torch_steps(name, param, batches, maximize)
    state = OPS[name]["state"](param)
    run_steps(name, param, state, batches, maximize=maximize)
    for actual, expected, what in zip([param, *state], [expected_param, *expected_state],
                                      ["param", "state 0", "state 1"]):
        assert_close_to_reference(actual, expected, f"{name} {what}")


@needs_torch
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("cols", COLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_bitwise_torch_without_duplicates(dtype, cols, maximize):
    """Each row once per step (the batches coalesced as adamkern coalesces them)."""
    rng = np.random.default_rng(cols + 2)
    param = rng.standard_normal((40, cols)).astype(dtype)
    batches = [reference.coalesce(*batch) for batch in batches_for(cols + 2, 40, cols, dtype)]
    assert any(len(indices) > 1 for indices, _ in batches)
    expected, _ = torch_steps("sgd", param, batches, maximize)
    run_steps("sgd", param, [], batches, maximize=maximize)
    assert_bitwise_equal(param, expected, "sgd param")


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_with_duplicates_as_torch(dtype):
    """torch rounds the param once per duplicate; adamkern once per row and step."""
    rng = np.random.default_rng(3)
    param = rng.standard_normal((40, 17)).astype(dtype)
    batches = batches_for(3, 40, 17, dtype)
    expected, _ = torch_steps("sgd", param, batches)
    run_steps("sgd", param, [], batches)
    additions = np.zeros(40)
    for indices, _ in batches:
        additions += np.bincount(indices, minlength=40)
    magnitude = np.maximum(np.abs(expected), np.abs(param)).max(axis=1)
    bound = additions[:, None] * np.spacing(magnitude.astype(dtype))[:, None]
    assert np.all(np.abs(param.astype(np.float64) - expected) <= bound)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_close_to_torch_coalesced_gradient(dtype):
    """torch.optim.SGD given torch's own coalesced gradient (duplicates summed in input order,
    where adamkern sums them in a canonical order): within 4 ULP."""
    rng = np.random.default_rng(4)
    param = rng.standard_normal((40, 17)).astype(dtype)
    batches = batches_for(4, 40, 17, dtype)
    expected, _ = torch_steps("sgd", param, batches, coalesce=True)
    run_steps("sgd", param, [], batches)
    assert_close_to_reference(param, expected, "sgd param")


@needs_torch
def test_embedding_model_trained_as_with_sparse_adam():
    """An nn.Embedding(sparse=True) model, 50 steps: adam_rows_ on its weight (the grad's
    _indices()/_values()) ends where torch.optim.SparseAdam does."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows, dim, steps = 300, 16, 50
    weights = torch.randn(rows, dim)
    readout = torch.randn(dim)
    models = [torch.nn.Embedding(rows, dim, sparse=True, _weight=weights.clone())
              for _ in range(2)]
    optimizer = torch.optim.SparseAdam(models[0].parameters(), lr=1e-2)
    table = models[1].weight.detach().numpy()  # the parameter's memory, updated in place
    exp_avg, exp_avg_sq = np.zeros_like(table), np.zeros_like(table)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(1, steps + 1):
            batch = torch.from_numpy(zipf_indices(rng, 64 * 5, rows).reshape(64, 5))
            target = torch.from_numpy(rng.standard_normal(64).astype(np.float32))
            for model in models:
                model.zero_grad(set_to_none=True)
                loss = ((model(batch).sum(dim=1) @ readout - target) ** 2).mean()
                loss.backward()
            optimizer.step()
            grad = models[1].weight.grad
            assert grad.is_sparse
            sparse.adam_rows_(table, grad._indices()[0].numpy(), grad._values().numpy(),
                              exp_avg, exp_avg_sq, step=step, lr=1e-2)
    finally:
        torch.set_num_threads(threads)
    expected = models[0].weight.detach().numpy()
    state = optimizer.state[models[0].weight]
    assert not np.array_equal(expected, weights.numpy())
    assert_close_to_reference(table, expected, "weight")
    assert_close_to_reference(exp_avg, state["exp_avg"].numpy(), "exp_avg")
    assert_close_to_reference(exp_avg_sq, state["exp_avg_sq"].numpy(), "exp_avg_sq")


# ---------------------------------------------------------------------------------------------
# Determinism


def big_case(name, dtype, seed=7):
    """Enough touched elements for two threads (the kernels fork above 32K per thread)."""
    rng = np.random.default_rng(seed)
    cols = 64 if dtype == np.float32 else 33
    param = rng.standard_normal((3000, cols)).astype(dtype)
    return param, OPS[name]["state"](param), batches_for(seed, 3000, cols, dtype, count=6000,
                                                          steps=3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_bitwise_across_threads_and_isas(name, dtype):
    param, state, batches = big_case(name, dtype)
    results = {}
    for isa in adamkern.cpu_info()["available_isas"]:
        for threads in (1, 2):
            adamkern.set_isa(isa)
            adamkern.set_num_threads(threads)
            p, s = param.copy(), [x.copy() for x in state]
            run_steps(name, p, s, batches)
            results[isa, threads] = [p, *s]
    (first_key, first), *others = results.items()
    for key, arrays in others:
        for actual, expected in zip(arrays, first):
            assert_bitwise_equal(actual, expected, f"{name} {key} vs {first_key}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPS)
def test_bitwise_across_input_orders_and_index_types(name, dtype):
    """Permuting the (index, gradient row) pairs, or passing int32 indices, changes no bit."""
    param, state, batches = big_case(name, dtype, seed=8)
    rng = np.random.default_rng(9)
    runs = {
        "given": batches,
        "permuted": [(i[order], g[order]) for i, g in batches
                     for order in [rng.permutation(len(i))]],
        "reversed": [(i[::-1].copy(), g[::-1].copy()) for i, g in batches],
        "int32": [(i.astype(np.int32), g) for i, g in batches],
    }
    results = {}
    for what, run in runs.items():
        p, s = param.copy(), [x.copy() for x in state]
        run_steps(name, p, s, run)
        results[what] = [p, *s]
    for what, arrays in results.items():
        for actual, expected in zip(arrays, results["given"]):
            assert_bitwise_equal(actual, expected, f"{name} {what}")


def test_duplicates_summed_in_canonical_order():
    """Three gradient rows of one table row whose float32 sum depends on the order: every
    order of them gives the sum in the order of their bytes."""
    values = np.array([[1.0], [1e8], [-1e8]], np.float32)
    orders = [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1], [0, 2, 1], [1, 2, 0]]
    sums = {float(((values[o[0]] + values[o[1]]) + values[o[2]])[0]) for o in orders}
    assert len(sums) > 1  # the order matters for these values
    canonical = sorted(range(3), key=lambda k: values[k].tobytes())
    expected = -0.5 * ((values[canonical[0]] + values[canonical[1]]) + values[canonical[2]])
    for order in orders:
        param = np.zeros((2, 1), np.float32)
        sparse.sgd_rows_(param, np.array([1, 1, 1]), values[order], lr=0.5)
        assert param[1].tolist() == expected.tolist() and param[0].tolist() == [0.0]


# ---------------------------------------------------------------------------------------------
# Error contract


def arrays_for(name, dtype=np.float32, rows=6, cols=3, count=4):
    rng = np.random.default_rng(0)
    param = rng.standard_normal((rows, cols)).astype(dtype)
    indices = np.array([5, 0, 5, 2][:count], np.int64)
    grad = rng.standard_normal((count, cols)).astype(dtype)
    return param, indices, grad, OPS[name]["state"](param)


def call(name, param, indices, grad, state, **keywords):
    OPS[name]["op"](param, indices, grad, *state, **{**OPS[name]["keywords"](1), **keywords})


def state_name(name):
    return {"adam": "exp_avg", "adagrad": "state_sum", "rowwise_adagrad": "state_sum"}[name]


# case -> (change the arguments, exception, words the message has)
BAD = {
    "index past the end": (lambda a: a[1].__setitem__(3, 6), ValueError,
                           ["indices[3] = 6", "6 rows"]),
    "negative index": (lambda a: a[1].__setitem__(1, -1), ValueError, ["indices[1] = -1"]),
    "float indices": (lambda a: a.__setitem__(1, a[1].astype(np.float64)), TypeError,
                      ["indices", "int32 or int64"]),
    "uint64 indices": (lambda a: a.__setitem__(1, a[1].astype(np.uint64)), TypeError,
                       ["indices"]),
    "2-D indices": (lambda a: a.__setitem__(1, a[1][None, :]), ValueError,
                    ["indices must be 1-D", "(1, 4)"]),
    "indices a list": (lambda a: a.__setitem__(1, a[1].tolist()), TypeError,
                       ["indices must be a numpy.ndarray"]),
    "1-D table": (lambda a: a.__setitem__(0, a[0].reshape(-1)), ValueError,
                  ["param must be a 2-D table", "(18,)"]),
    "3-D table": (lambda a: a.__setitem__(0, a[0].reshape(6, 3, 1)), ValueError,
                  ["param must be a 2-D table"]),
    "int table": (lambda a: a.__setitem__(0, a[0].astype(np.int32)), TypeError,
                  ["param has dtype int32"]),
    "grad rows too few": (lambda a: a.__setitem__(2, a[2][:3]), ValueError,
                          ["grad_rows has shape (3, 3)", "(4, 3)"]),
    "grad rows too wide": (lambda a: a.__setitem__(2, np.zeros((4, 4), a[0].dtype)), ValueError,
                           ["grad_rows has shape (4, 4)"]),
    "grad rows 1-D": (lambda a: a.__setitem__(2, a[2].reshape(-1)), ValueError,
                      ["grad_rows has shape (12,)"]),
    "grad rows of another dtype": (lambda a: a.__setitem__(2, a[2].astype(np.float64)),
                                   TypeError, ["grad_rows has dtype float64"]),
    "non-contiguous table": (lambda a: a.__setitem__(0, np.zeros((6, 6), np.float32)[:, ::2]),
                             ValueError, ["param is not C-contiguous"]),
    "read-only table": (lambda a: a[0].setflags(write=False), ValueError,
                        ["param is read-only"]),
    "grad rows inside the table": (lambda a: a.__setitem__(2, a[0][:4]), ValueError,
                                   ["overlap"]),
}
STATE_BAD = {
    "state of another shape": (lambda a: a[3].__setitem__(0, np.zeros((7, 3), np.float32)),
                               ValueError, ["has shape (7, 3)"]),
    "state of another dtype": (lambda a: a[3].__setitem__(0, a[3][0].astype(np.float64)),
                               TypeError, ["has dtype float64"]),
    "state is the table": (lambda a: a[3].__setitem__(
        0, a[0].reshape(-1)[:a[3][0].size].reshape(a[3][0].shape)), ValueError, ["overlap"]),
}
OPTION_BAD = {
    "adam": [(dict(lr=-1.0), ValueError, ["lr"]), (dict(step=0), ValueError, ["step"]),
             (dict(betas=(1.0, 0.9)), ValueError, ["betas[0]"]),
             (dict(eps="1e-8"), TypeError, ["eps"])],
    "adagrad": [(dict(weight_decay=0.1), ValueError, ["weight_decay", "sparse"]),
                (dict(lr_decay=-1.0), ValueError, ["lr_decay"]),
                (dict(step=1.5), ValueError, ["step"])],
    "sgd": [(dict(momentum=0.9), ValueError, ["momentum must be 0"]),
            (dict(weight_decay=0.1), ValueError, ["weight_decay must be 0"]),
            (dict(lr=float("nan")), ValueError, ["lr"])],
    "rowwise_adagrad": [(dict(eps=0.0), ValueError, ["eps"]),
                        (dict(weight_decay=-1.0), ValueError, ["weight_decay"]),
                        (dict(maximize=1), TypeError, ["maximize"])],
}


def check_refused(name, change, error, words, **keywords):
    arguments = list(arrays_for(name))
    arguments[3] = list(arguments[3])
    change(arguments)
    everything = [a for a in arguments[:3] + arguments[3] if isinstance(a, np.ndarray)]
    before = [a.copy() for a in everything]
    with pytest.raises(error) as raised:
        call(name, *arguments, **keywords)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))
    for after, was in zip(everything, before):
        assert after.tobytes() == was.tobytes()


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("name", OPS)
def test_bad_arrays_refused_and_nothing_written(name, case):
    check_refused(name, *BAD[case])


@pytest.mark.parametrize("case", STATE_BAD)
@pytest.mark.parametrize("name", ["adam", "adagrad", "rowwise_adagrad"])
def test_bad_state_refused_and_nothing_written(name, case):
    change, error, words = STATE_BAD[case]
    if name == "rowwise_adagrad" and case == "state of another shape":
        words = ["state_sum has shape (7, 3)", "(6,)"]
    check_refused(name, change, error, [state_name(name), *words])


@pytest.mark.parametrize("name, index", [(n, k) for n in OPTION_BAD for k in
                                         range(len(OPTION_BAD[n]))])
def test_bad_options_refused_and_nothing_written(name, index):
    keywords, error, words = OPTION_BAD[name][index]
    check_refused(name, lambda a: None, error, words, **keywords)


def test_missing_state_is_refused():
    param, indices, grad, _ = arrays_for("adam")
    with pytest.raises(ValueError, match="exp_avg is required"):
        _core.adam_rows_(param=param, indices=indices, grad_rows=grad, exp_avg=None,
                         exp_avg_sq=None, step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                         weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
                         maximize=False, epsilon_hat=True, cautious=False)


def test_cautious_is_refused():
    # The cautious mask's scale needs the whole tensor's count, which a row step does not see.
    param, indices, grad, state = arrays_for("adam")
    before = [param.copy(), *[s.copy() for s in state]]
    with pytest.raises(ValueError, match="cautious is not supported"):
        _core.adam_rows_(param=param, indices=indices, grad_rows=grad, exp_avg=state[0],
                         exp_avg_sq=state[1], step=1, lr=1e-3, beta1=0.9, beta2=0.999,
                         eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
                         amsgrad=False, maximize=False, epsilon_hat=True, cautious=True)
    for a, b in zip([param, *state], before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", OPS)
def test_empty_steps_write_nothing(name):
    param, _, _, state = arrays_for(name)
    before = [param.copy(), *[s.copy() for s in state]]
    call(name, param, np.zeros(0, np.int32), np.zeros((0, 3), np.float32), state)
    for after, was in zip([param, *state], before):
        assert_bitwise_equal(after, was, name)
    empty = np.zeros((6, 0), np.float32)
    call(name, empty, np.array([1, 1]), np.zeros((2, 0), np.float32), OPS[name]["state"](empty))


# ---------------------------------------------------------------------------------------------
# The Python layer


def test_docstring_examples_run():
    results = doctest.testmod(sparse, extraglobs={"np": np, "adamkern": adamkern})
    assert results.attempted > 0 and results.failed == 0
    results = doctest.testmod(reference, extraglobs={"np": np})
    assert results.failed == 0


def test_defaults_are_the_cpp_ones():
    options = _core.optimizer_options()
    signature = {name: inspect.signature(OPS[name]["op"]).parameters for name in OPS}
    for name, cpp_name in [("adam", "adam"), ("adagrad", "adagrad"), ("sgd", "sgd")]:
        cpp = options[cpp_name]["options"]
        for keyword, parameter in signature[name].items():
            if keyword in cpp:
                assert parameter.default == cpp[keyword]["default"], (name, keyword)
    assert signature["adam"]["betas"].default == (options["adam"]["options"]["beta1"]["default"],
                                                  options["adam"]["options"]["beta2"]["default"])
    rowwise = _core.rowwise_adagrad_options()
    for keyword, default in rowwise.items():
        assert signature["rowwise_adagrad"][keyword].default == default, keyword


def test_module_lists_the_ops():
    assert sorted(sparse.__all__) == sorted(f"{name}_rows_" for name in OPS)
    for name in sparse.__all__:
        assert getattr(sparse, name).__doc__


# ---------------------------------------------------------------------------------------------
# python -m adamkern bench --sparse (on a small table: the mode end to end)


@needs_torch
def test_bench_sparse_runs_on_a_small_table(monkeypatch):
    from adamkern.bench import sparse as bench_sparse

    monkeypatch.setattr(bench_sparse, "ROWS", 4096)
    monkeypatch.setattr(bench_sparse, "LOOKUPS", 1024)
    monkeypatch.setattr(bench_sparse, "ROOFLINE_ELEMENTS", 1 << 16)
    rng = np.random.default_rng(0)
    lookups = bench_sparse.zipf_lookups(rng, 1024, 4096)
    assert lookups.dtype == np.int64 and 0 <= lookups.min() and lookups.max() < 4096
    assert len(np.unique(lookups)) < len(lookups)  # repeats
    rows, facts = bench_sparse.run(threads=[1], budget_s=0.05, progress=False)
    assert {r.method for r in rows} >= {"adamkern.sparse.adam_rows_", "torch.optim.SparseAdam",
                                        "adamkern.torch.SparseAdam"}
    by_name = {r.method: r for r in rows}
    assert by_name["torch.optim.SparseAdam"].speedup == 1.0
    assert all(r.step_ms > 0 for r in rows)
    adam = by_name["adamkern.sparse.adam_rows_"]
    expected = bench_sparse.touched_bytes("adam", facts["distinct_rows"], 1024)
    assert adam.touched_gbps == pytest.approx(expected / (adam.step_ms * 1e-3) / 1e9)
    assert by_name["torch.optim.Adam(fused=True), dense grad"].of_roofline is None
    text = bench_sparse.format_rows(rows, facts)
    assert "adamkern.sparse.adam_rows_" in text and "of roof" in text
    assert bench_sparse.verdict(rows, 2, 0.0, 0.0)[0].startswith(("No sign", "WARNING"))


def test_touched_bytes_count():
    """Adam: 3 tables read and written per distinct row, every gradient row and index read."""
    from adamkern.bench.sparse import touched_bytes

    assert touched_bytes("adam", 10, lookups=30, cols=4) == 6 * 10 * 16 + 30 * 16 + 30 * 8
    assert touched_bytes("adagrad", 10, lookups=30, cols=4) == 4 * 10 * 16 + 30 * 16 + 30 * 8
    assert touched_bytes("rowwise", 10, lookups=30, cols=4) == (2 * 10 * 16 + 2 * 10 * 4
                                                                + 30 * 16 + 30 * 8)


@needs_torch
def test_bench_cli_sparse_mode(monkeypatch, tmp_path, capsys):
    """python -m adamkern bench --sparse: the table, the verdict and the JSON (small table)."""
    import json

    from adamkern.bench import cli
    from adamkern.bench import sparse as bench_sparse

    monkeypatch.setattr(bench_sparse, "ROWS", 4096)
    monkeypatch.setattr(bench_sparse, "LOOKUPS", 1024)
    monkeypatch.setattr(bench_sparse, "ROOFLINE_ELEMENTS", 1 << 16)
    out = tmp_path / "sparse.json"
    assert cli.main(["--sparse", "--threads", "1", "--budget", "0.05", "--no-progress",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "torch.optim.SparseAdam" in printed and "of roof" in printed
    report = json.loads(out.read_text())["sparse"]
    assert report["lookups"] == 1024 and {r["threads"] for r in report["rows"]} == {1}
    assert report["verdict"] and "family" not in json.loads(out.read_text())
