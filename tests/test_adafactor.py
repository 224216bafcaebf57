"""adafactor_ against torch 2.13's torch.optim.Adafactor (its single-tensor path, the one it
takes by default) over 50 steps, against reference.adafactor, across ISAs and thread counts,
and its error contract; optim.Adafactor and adamkern.torch.Adafactor (state and checkpoints
as torch's).

torch sums its norms (of the params, of each row and column of the grads, of the update) in
float32 in its own order; adamkern sums them in double in a fixed order and rounds once, and
takes a factored param's 1 / sqrt(v) as a row factor times a column factor. So the factors and
the update differ from torch's in their last bits, and the params stay within
the family's bound of 4 ULP of their magnitude (helpers.assert_close_to_reference). A vector's
``variance`` has no sum in it: it is bitwise torch's where torch runs its AVX2 or AVX-512
kernels (fma in lerp).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from helpers import DTYPES, assert_bitwise_equal, assert_close_to_reference
from hypothesis import given, settings
from hypothesis import strategies as st

import adamkern
import adamkern.reference as reference
from adamkern import _core

STEPS = 50
# (10, 2100): rows long enough to be read eight at a time (then two alone), see adafactor_isa.cpp
SHAPES = [(1,), (7,), (1000,), (4099,), (1, 1), (16, 33), (128, 257), (10, 2100), (3, 17, 9),
          (2, 3, 5, 7)]
OPTIONS = [{}, {"weight_decay": 0.1}, {"maximize": True}, {"eps": (1e-3, 1e-3)},
           {"eps": (0.0, 1e-2), "d": 2.0, "lr": 0.5}, {"beta2_decay": -0.5, "lr": 0.1},
           {"weight_decay": 0.05, "maximize": True, "d": 1.5, "eps": (None, 0.0)}]
FUSED_CAPABILITIES = {"AVX2", "AVX512"}


def state_for(shape, dtype):
    if len(shape) >= 2:
        return (np.zeros(shape[:-1] + (1,), dtype), np.zeros(shape[:-2] + (1, shape[-1]), dtype),
                None)
    return None, None, np.zeros(shape, dtype)


def options_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def test_defaults_match_cpp_and_torch():
    signature = inspect.signature(adamkern.adafactor_).parameters
    cpp = _core.adafactor_options()
    assert signature["eps"].default == (cpp["eps1"], cpp["eps2"])
    for name in ("lr", "beta2_decay", "d", "weight_decay", "maximize"):
        assert signature[name].default == cpp[name], name
    torch = pytest.importorskip("torch")
    torch_signature = inspect.signature(torch.optim.Adafactor).parameters
    for name in ("lr", "beta2_decay", "eps", "d", "weight_decay", "maximize"):
        assert torch_signature[name].default == signature[name].default, name


@pytest.mark.parametrize("options", OPTIONS, ids=options_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_against_torch(shape, dtype, options):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(shape) * 1000 + int(np.prod(shape)))
    param = rng.standard_normal(shape).astype(dtype)
    ours = param.copy()
    row_var, col_var, variance = state_for(shape, dtype)
    tensor = torch.tensor(param.copy(), requires_grad=True)
    opt = torch.optim.Adafactor([tensor], **options)
    for step in range(1, STEPS + 1):
        grad = rng.standard_normal(shape).astype(dtype)
        tensor.grad = torch.from_numpy(grad.copy())
        opt.step()
        adamkern.adafactor_(ours, grad, row_var, col_var, variance, step=step, **options)
        assert_close_to_reference(ours, tensor.detach().numpy(), f"params, step {step}")
    state = opt.state[tensor]
    assert state["step"].item() == STEPS
    if variance is None:
        assert_close_to_reference(row_var, state["row_var"].numpy(), "row_var")
        assert_close_to_reference(col_var, state["col_var"].numpy(), "col_var")
    elif torch.backends.cpu.get_cpu_capability() in FUSED_CAPABILITIES:
        assert_bitwise_equal(variance, state["variance"].numpy(), "variance")
    else:
        assert_close_to_reference(variance, state["variance"].numpy(), "variance")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_against_reference_multi_tensor(dtype):
    """One call over several params with their own steps, against the NumPy reference."""
    rng = np.random.default_rng(7)
    shapes = [(0,), (5,), (17, 3), (64, 65), (2, 9, 31), (100003,), (300, 301), (10, 2100)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    expected = [p.copy() for p in params]
    start = [p.copy() for p in params]
    states = [state_for(s, dtype) for s in shapes]
    expected_states = [tuple(None if a is None else a.copy() for a in s) for s in states]
    first_steps = [1, 3, 1, 2, 5, 1, 4, 2]
    options = {"weight_decay": 0.02, "maximize": True, "d": 1.2}
    for k in range(10):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        steps = [s + k for s in first_steps]
        adamkern.adafactor_(params, grads, *[[s[j] for s in states] for j in range(3)],
                            step=steps, **options)
        reference.adafactor(expected, grads, *[[s[j] for s in expected_states] for j in range(3)],
                            step=steps, **options)
    for i, (p, e) in enumerate(zip(params, expected)):
        assert_close_to_reference(p, e, f"params[{i}]")
        for a, b in zip(states[i], expected_states[i]):
            if a is not None:
                assert_close_to_reference(a, b, f"state of params[{i}]")
    for p, s in zip(params[1:], start[1:]):  # a guard against both doing nothing
        assert np.mean(p != s) > 0.99


def run_three_steps(dtype):
    rng = np.random.default_rng(3)
    shapes = [(300, 301), (3, 64, 700), (100003,), (40, 7), (2, 10, 2100)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    states = [state_for(s, dtype) for s in shapes]
    for step in (1, 2, 3):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        adamkern.adafactor_(params, grads, *[[s[j] for s in states] for j in range(3)],
                            step=step, weight_decay=0.1)
    return params + [a for s in states for a in s if a is not None]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_isas_and_threads_give_identical_bits(dtype):
    results = {}
    for isa in adamkern.cpu_info()["available_isas"]:
        adamkern.set_isa(isa)
        for threads in (1, 2, 3):
            adamkern.set_num_threads(threads)
            results[(isa, threads)] = run_three_steps(dtype)
    (first_key, first), *others = results.items()
    for key, arrays in others:
        for i, (a, b) in enumerate(zip(arrays, first)):
            assert_bitwise_equal(a, b, f"{key} vs {first_key}, array {i}")


def test_first_step_moves_params_as_the_formula_says():
    """Step 1 with constant grads: every row/column mean is g**2, the update is sign(g), its
    RMS 1, so p -= max(eps2, rms(p)) * min(lr, 1) * sign(g)."""
    p = np.full((4, 6), 2.0)
    g = np.full((4, 6), -3.0)
    row_var, col_var, _ = state_for(p.shape, np.float64)
    adamkern.adafactor_(p, g, row_var, col_var, None, step=1)
    np.testing.assert_allclose(p, 2.0 + 2.0 * 1e-2, rtol=1e-15)
    np.testing.assert_allclose(row_var, 9.0, rtol=1e-15)
    np.testing.assert_allclose(col_var, 9.0, rtol=1e-15)


# -- the error contract --------------------------------------------------------------------


def arrays_of(shape=(8, 5), dtype=np.float32):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    return [p, g, *state_for(shape, dtype)]


def bad_calls():
    """(id, arrays of the call, call(arrays) that must raise, the exception)."""

    def call(arrays, **kwargs):
        p, g, r, c, v = arrays
        good_p = np.ones(4, np.float32)
        good = [good_p, np.ones(4, np.float32), None, None, np.zeros(4, np.float32)]
        adamkern.adafactor_([good_p, p], [good[1], g], [None, r], [None, c], [good[4], v],
                            **{"step": 1, **kwargs})

    def mutate(fn):
        def apply(arrays):
            fn(arrays)
            return arrays
        return apply

    cases = [
        ("row_var shape", mutate(lambda a: a.__setitem__(2, np.zeros((8, 2), np.float32))),
         ValueError),
        ("col_var shape", mutate(lambda a: a.__setitem__(3, np.zeros((5,), np.float32))),
         ValueError),
        ("col_var missing", mutate(lambda a: a.__setitem__(3, None)), ValueError),
        ("variance for a matrix", mutate(lambda a: a.__setitem__(4, np.zeros((8, 5),
                                                                             np.float32))),
         ValueError),
        ("grad dtype", mutate(lambda a: a.__setitem__(1, a[1].astype(np.float64))), TypeError),
        ("row_var dtype", mutate(lambda a: a.__setitem__(2, a[2].astype(np.float64))),
         TypeError),
        ("grad shape", mutate(lambda a: a.__setitem__(1, np.ones((5, 8), np.float32))),
         ValueError),
        ("grad not contiguous",
         mutate(lambda a: a.__setitem__(1, np.ones((8, 10), np.float32)[:, ::2])), ValueError),
        ("row_var read-only", mutate(lambda a: a[2].setflags(write=False)), ValueError),
        ("grad aliases param", mutate(lambda a: a.__setitem__(1, a[0])), ValueError),
        ("col_var aliases row_var",
         mutate(lambda a: a.__setitem__(3, a[2].reshape(1, 8)[:, :5])), ValueError),
    ]
    out = [(name, fn, call, error) for name, fn, error in cases]
    for name, kwargs in [("lr", {"lr": -1.0}), ("beta2_decay", {"beta2_decay": 0.5}),
                         ("eps1", {"eps": (-1.0, 1e-3)}), ("eps2", {"eps": (None, -1.0)}),
                         ("d", {"d": 0.5}), ("weight_decay", {"weight_decay": -0.1}),
                         ("step 0", {"step": 0}), ("nan lr", {"lr": float("nan")})]:
        out.append((name, lambda a: a, lambda arrays, kw=kwargs: call(arrays, **kw),
                    ValueError))
    return out


@pytest.mark.parametrize("name, prepare, call, error", bad_calls(), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_bad_input_raises_and_changes_nothing(name, prepare, call, error):
    arrays = prepare(arrays_of())
    before = [None if a is None else a.copy() for a in arrays]
    with pytest.raises(error):
        call(arrays)
    for a, b in zip(arrays, before):
        if a is not None:
            assert_bitwise_equal(a, b, name)


def test_zero_dim_param_and_mixed_dtypes_refused():
    p, g = np.ones((), np.float32), np.ones((), np.float32)
    with pytest.raises(ValueError, match="0-d"):
        adamkern.adafactor_(p, g, None, None, np.zeros((), np.float32), step=1)
    q = np.ones(3, np.float32)
    r = np.ones(3, np.float64)
    with pytest.raises(TypeError, match=r"params\[1\]"):
        adamkern.adafactor_([q, r], [q.copy(), r.copy()], None, None,
                            [np.zeros(3, np.float32), np.zeros(3, np.float64)], step=1)
    assert np.all(q == 1.0)
    with pytest.raises(TypeError):
        adamkern.adafactor_(np.ones(3, np.int32), np.ones(3, np.int32), None, None,
                            np.zeros(3, np.int32), step=1)
    with pytest.raises(ValueError, match="variances"):
        adamkern.adafactor_(q, q.copy(), None, None, [], step=1)


# -- optim.Adafactor and adamkern.torch.Adafactor ------------------------------------------


def test_optim_state_shapes_and_size():
    w, b, k = np.ones((1024, 1024), np.float32), np.ones(1024, np.float32), np.ones(
        (4, 3, 5, 5), np.float32)
    opt = adamkern.optim.Adafactor([w, b, k])
    opt.step([np.ones_like(w), np.ones_like(b), np.ones_like(k)])
    assert opt.state[0]["row_var"].shape == (1024, 1) and opt.state[0]["col_var"].shape == (
        1, 1024)
    assert opt.state[1]["variance"].shape == (1024,)
    assert opt.state[2]["row_var"].shape == (4, 3, 5, 1)
    assert opt.state[2]["col_var"].shape == (4, 3, 1, 5)
    assert [s["step"] for s in opt.state] == [1.0, 1.0, 1.0]
    matrix_state = opt.state[0]["row_var"].nbytes + opt.state[0]["col_var"].nbytes
    assert matrix_state < 0.01 * 2 * w.nbytes  # Adam keeps 2 * 4 bytes per element


def test_optim_matches_functional_and_round_trips():
    rng = np.random.default_rng(5)
    shapes = [(20, 30), (30,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    copies = [p.copy() for p in params]
    states = [state_for(s, np.float32) for s in shapes]
    opt = adamkern.optim.Adafactor([{"params": [params[0]], "weight_decay": 0.1},
                                    {"params": [params[1]]}], lr=0.05)
    for step in range(1, 6):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt.step(grads)
        adamkern.adafactor_(copies[0], grads[0], *states[0], step=step, lr=0.05,
                            weight_decay=0.1)
        adamkern.adafactor_(copies[1], grads[1], *states[1], step=step, lr=0.05)
    for p, c in zip(params, copies):
        assert_bitwise_equal(p, c, "optim vs functional")
    again = adamkern.optim.Adafactor([{"params": [p.copy()]} for p in params])
    again.load_state_dict(opt.state_dict())
    assert again.param_groups[0]["weight_decay"] == 0.1
    assert_bitwise_equal(again.state[0]["col_var"], opt.state[0]["col_var"], "loaded")
    with pytest.raises(ValueError):
        adamkern.optim.Adafactor([params[0]], d=0.5)
    before = [p.copy() for p in params]
    with pytest.raises(ValueError):
        opt.step([np.ones((2, 2), np.float32), np.ones(30, np.float32)])
    for p, b in zip(params, before):
        assert_bitwise_equal(p, b, "after a refused step")


def test_torch_adapter_matches_torch_and_checkpoints_move_both_ways():
    torch = pytest.importorskip("torch")
    import adamkern.torch as akt

    torch.manual_seed(0)

    def model():
        return [torch.nn.Parameter(torch.randn(32, 48)), torch.nn.Parameter(torch.randn(48)),
                torch.nn.Parameter(torch.randn(2, 8, 6, dtype=torch.float64))]

    ours, theirs = model(), model()
    for a, b in zip(ours, theirs):
        b.data.copy_(a.data)
    options = {"lr": 0.05, "weight_decay": 0.01, "maximize": True}
    opt = akt.Adafactor(ours, **options)
    ref = torch.optim.Adafactor(theirs, **options)
    for _ in range(20):
        for a, b in zip(ours, theirs):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs):
        assert_close_to_reference(a.detach().numpy(), b.detach().numpy(), "params")
    # torch's eps1=None takes the first param's dtype: float32's epsilon for the float64 one
    mine = opt.state_dict()
    assert set(mine["state"][0]) == {"step", "row_var", "col_var"}
    assert set(mine["state"][1]) == {"step", "variance"}
    loaded = torch.optim.Adafactor(model(), **options)
    loaded.load_state_dict(mine)
    back = akt.Adafactor(model(), **options)
    back.load_state_dict(ref.state_dict())
    assert back.state_dict()["state"][2]["step"].item() == 20
    assert torch.equal(back.state_dict()["state"][0]["col_var"], ref.state[theirs[0]]["col_var"])
    p = torch.nn.Parameter(torch.randn(4, 4).t())  # not contiguous: refused, nothing created
    bad = akt.Adafactor([p])
    p.grad = torch.randn(4, 4)
    with pytest.raises(ValueError, match="contiguous"):
        bad.step()
    assert len(bad.state) == 0


# -- random shapes and hyperparameters -----------------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 1.0), beta2_decay=st.floats(-1.0, 0.0), d=st.floats(1.0, 3.0),
    weight_decay=st.floats(0.0, 0.5), maximize=st.booleans(),
    eps1=st.one_of(st.none(), st.floats(0.0, 1e-2)), eps2=st.floats(0.0, 1e-1),
    steps=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_random_shapes_against_reference(shape, dtype, lr, beta2_decay, d, weight_decay,
                                         maximize, eps1, eps2, steps, seed):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(dtype)
    expected = param.copy()
    state, expected_state = state_for(shape, dtype), state_for(shape, dtype)
    options = dict(lr=lr, beta2_decay=beta2_decay, d=d, weight_decay=weight_decay,
                   maximize=maximize, eps=(eps1, eps2))
    for step in range(1, steps + 1):
        grad = rng.standard_normal(shape).astype(dtype)
        adamkern.adafactor_(param, grad, *state, step=step, **options)
        reference.adafactor(expected, grad, *expected_state, step=step, **options)
    assert_close_to_reference(param, expected, f"params {shape}")
    for a, b in zip(state, expected_state):
        if a is not None:
            assert_close_to_reference(a, b, "state")
