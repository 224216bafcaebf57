"""adamkern.optim.Adagrad(rowwise=True): FBGEMM's EXACT_ROWWISE_ADAGRAD on dense NumPy grads
(every row stepped), against the NumPy transcription of FBGEMM's formula
(adamkern._sparse_reference.rowwise_adagrad_rows: bit for bit, the same order of operations;
with weight decay within 4 ULP, as tests/test_sparse.py: NumPy emulates FBGEMM's fma);
its state layout, checkpoints (in memory and in files, both layouts kept apart) and the options
and inputs it refuses, with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close_to_reference

import adamkern
from adamkern import _sparse_reference as reference
from adamkern import optim

SHAPES = [(5, 4), (7,), (3, 2, 6), (), (1, 33), (0, 3)]


def params_for(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.standard_normal(shape), dtype) for shape in shapes]


def reference_steps(params, grads_per_step, *, lr, eps, weight_decay=0.0, maximize=False,
                    initial=0.0, scale=None):
    """The FBGEMM transcription over every row of each param, step after step."""
    params = [p.copy() for p in params]
    sums = [np.full(p.shape[0] if p.ndim else 1, initial, p.dtype) for p in params]
    for grads in grads_per_step:
        for p, g, s in zip(params, grads, sums):
            rows = p.shape[0] if p.ndim else 1
            if rows == 0:
                continue
            g = g if scale is None else g / g.dtype.type(scale)
            table, grad = p.reshape(rows, -1), g.reshape(rows, -1)
            reference.rowwise_adagrad_rows(table, np.arange(rows), grad, s, lr=lr, eps=eps,
                                           weight_decay=weight_decay, maximize=maximize)
    return params, sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1, "maximize": True},
                                     {"initial_accumulator_value": 0.5, "eps": 1e-3}])
def test_against_fbgemm_formula(dtype, options):
    start = params_for(dtype)
    params = [p.copy() for p in start]
    opt = optim.Adagrad(params, lr=0.05, rowwise=True, **options)
    rng = np.random.default_rng(1)
    grads_per_step = [[np.asarray(rng.standard_normal(p.shape), dtype) for p in params]
                      for _ in range(20)]
    for grads in grads_per_step:
        opt.step([g.copy() for g in grads])
    expected, sums = reference_steps(
        start, grads_per_step, lr=0.05, eps=options.get("eps", 1e-10),
        weight_decay=options.get("weight_decay", 0.0), maximize=options.get("maximize", False),
        initial=options.get("initial_accumulator_value", 0.0))
    same = assert_close_to_reference if "weight_decay" in options else assert_bitwise_equal
    for i, (p, e, s) in enumerate(zip(params, expected, sums)):
        same(p, e)
        assert opt.state[i].keys() == {"row_sum"}
        assert opt.state[i]["row_sum"].shape == s.shape and opt.state[i]["row_sum"].dtype == dtype
        same(opt.state[i]["row_sum"], s)
    assert np.any(params[0] != start[0])


def test_one_row_per_element_of_a_vector_is_adagrad_without_lr_decay():
    # A vector's rows are its elements: the mean square of a one-element row is its square,
    # so the row-wise step is Adagrad's per-element step (FBGEMM's eps placement as torch's;
    # g * (-lr / d) against torch's -lr * g / d: a few ULP of the params' magnitude).
    rng = np.random.default_rng(2)
    start = rng.standard_normal(1000).astype(np.float32)
    rowwise, plain = start.copy(), start.copy()
    a = optim.Adagrad([rowwise], lr=0.1, rowwise=True)
    b = optim.Adagrad([plain], lr=0.1)
    for _ in range(5):
        g = rng.standard_normal(1000).astype(np.float32)
        a.step([g.copy()])
        b.step([g.copy()])
    assert_close_to_reference(rowwise, plain)
    assert a.state_nbytes() == b.state_nbytes()


def test_groups_mix_layouts_and_loss_scaling_unscales():
    rng = np.random.default_rng(3)
    start = params_for(np.float32, seed=3, shapes=[(6, 5), (9,)])
    params = [p.copy() for p in start]
    opt = optim.Adagrad([{"params": [params[0]], "rowwise": True}, {"params": [params[1]]}],
                        lr=0.1)
    plain = start[1].copy()
    alone = optim.Adagrad([plain], lr=0.1)
    scaler = adamkern.LossScaler(init_scale=1024.0, growth_interval=1000)
    grads_per_step = [[rng.standard_normal(p.shape).astype(np.float32) for p in params]
                      for _ in range(4)]
    for grads in grads_per_step:
        scaled = [g * np.float32(1024.0) for g in grads]
        opt.step(scaled, scaler)
        alone.step([grads[1].copy()])
    expected, _ = reference_steps(start[:1], [g[:1] for g in grads_per_step], lr=0.1, eps=1e-10)
    assert_bitwise_equal(params[0], expected[0])
    assert_bitwise_equal(params[1], plain)
    assert opt.state[0].keys() == {"row_sum"} and opt.state[1].keys() == {"sum"}


@pytest.mark.parametrize("in_file", [False, True])
def test_checkpoint_round_trip(tmp_path, in_file):
    params = params_for(np.float32, seed=4, shapes=[(4, 3), (5,)])
    opt = optim.Adagrad([{"params": [params[0]], "rowwise": True}, {"params": [params[1]]}],
                        lr=0.1)
    rng = np.random.default_rng(5)
    for _ in range(3):
        opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])
    copies = [p.copy() for p in params]
    other = optim.Adagrad([{"params": [copies[0]]}, {"params": [copies[1]]}], lr=0.1)
    if in_file:
        opt.save(tmp_path / "c.npz", params=True)
        other.load(tmp_path / "c.npz")
    else:
        other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["rowwise"] is True  # the checkpoint's options, as torch's
    assert_bitwise_equal(other.state[0]["row_sum"], opt.state[0]["row_sum"])
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    opt.step([g.copy() for g in grads])
    other.step([g.copy() for g in grads])
    for a, b in zip(params, copies):
        assert_bitwise_equal(a, b)


def test_checkpoint_layouts_are_kept_apart():
    params = params_for(np.float32, seed=6, shapes=[(4, 3)])
    rowwise = optim.Adagrad([params[0]], rowwise=True)
    rowwise.step([np.ones((4, 3), np.float32)])
    saved = rowwise.state_dict()
    # a row_sum under a group that is not row-wise (the options and the state disagree)
    saved["param_groups"][0]["rowwise"] = False
    target = optim.Adagrad([params[0].copy()])
    with pytest.raises(ValueError, match="'row_sum', which param_groups\\[0\\]'s options"):
        target.load_state_dict(saved)
    assert target.state == [{}] and target.param_groups[0]["rowwise"] is False
    # a per-element sum under a row-wise group (a checkpoint without the option)
    plain = optim.Adagrad([params[0].copy()])
    plain.step([np.ones((4, 3), np.float32)])
    old = plain.state_dict()
    del old["param_groups"][0]["rowwise"]
    with pytest.raises(ValueError, match="'sum', which param_groups\\[0\\]'s options"):
        optim.Adagrad([params[0].copy()], rowwise=True).load_state_dict(old)
    # a row_sum of the wrong shape
    saved = rowwise.state_dict()
    saved["state"][0]["row_sum"] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"expected float32 \(4,\)"):
        optim.Adagrad([params[0].copy()], rowwise=True).load_state_dict(saved)


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"rowwise": True, "lr_decay": 0.01}, ValueError, "does not take lr_decay"),
    ({"rowwise": True, "eps_inside_sqrt": True}, ValueError, "does not take eps_inside_sqrt"),
    ({"rowwise": True, "decoupled_weight_decay": True, "weight_decay": 0.1}, ValueError,
     "does not take decoupled_weight_decay"),
    ({"rowwise": True, "state_dtype": "bfloat16"}, ValueError, "state_dtype='float32'"),
    ({"rowwise": True, "rounding": "stochastic"}, ValueError, "nearest rounding"),
    ({"rowwise": 1}, TypeError, "rowwise must be True or False"),
])
def test_refused_options(kwargs, error, fragment):
    param = np.ones((3, 2), np.float32)
    with pytest.raises(error, match=fragment):
        optim.Adagrad([param], **kwargs)


def test_refused_params_and_grads_write_nothing():
    bf16 = adamkern.lowp.bfloat16()
    with pytest.raises(ValueError, match="rowwise=True steps float32 and float64"):
        optim.Adagrad([np.ones((3, 2), bf16)], rowwise=True)
    params = [np.ones((3, 2), np.float32), np.ones(4, np.float32)]
    opt = optim.Adagrad(params, rowwise=True)
    opt.step([np.ones((3, 2), np.float32), np.ones(4, np.float32)])
    before = [p.copy() for p in params] + [s["row_sum"].copy() for s in opt.state]
    bad = [np.ones((3, 2), np.float32), np.ones(8, np.float32)[::2]]  # not contiguous
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step(bad)
    for a, b in zip(params + [s["row_sum"] for s in opt.state], before):
        assert_bitwise_equal(a, b)


def test_a_group_made_rowwise_later_is_checked_at_its_step():
    params = [np.ones((3, 2), np.float32)]
    opt = optim.Adagrad(params, lr_decay=0.01)
    opt.param_groups[0]["rowwise"] = True  # one value at a time: the pair is checked at the step
    with pytest.raises(ValueError, match="does not take lr_decay"):
        opt.step([np.ones((3, 2), np.float32)])
    assert_bitwise_equal(params[0], np.ones((3, 2), np.float32))
