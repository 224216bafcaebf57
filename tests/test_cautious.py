"""cautious=True (Liang, Chen, Liu, Liu, "Cautious Optimizers: Improving Training with One Line
of Code", 2024): the kernels and the NumPy reference against a torch transcription of the
authors' code (github.com/kyleliang919/C-Optim at 2c0517c, c_adamw.py's AdamW.step, the path
that runs, and c_lion.py's update_fn), the properties the mask must have, and the option
through adamkern.optim and adamkern.torch. (The kernels against the reference for every
option, ISA and thread count: the family spec rows in family.py.)

What the authors' code compares and how it rescales:
  c_adamw.py  mask = exp_avg * grad > 0 (exp_avg after this step's update, grad as given),
              mask /= mask.mean().clamp(min=1e-3)
  c_lion.py   mask = update * grad > 0 (update = sign(beta1 * m + (1 - beta1) * g)),
              mask *= numel / (mask.sum() + 1)
(c_adamw.py's multi-tensor branch, which does not run, compares exp_avg with itself; that slip
is not reproduced.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close_to_reference

import adamkern
from adamkern import reference

SHAPES = [1, 15, 17, 1000, (33, 31)]
DTYPES = [np.float32, np.float64]
# The reference, and the kernels through the functional ops
IMPLS = {"reference": lambda kind: getattr(reference, kind),
         "kernel": lambda kind: getattr(adamkern, kind + "_")}


def c_adamw_step(torch, p, grad, exp_avg, exp_avg_sq, step, lr, betas, eps, weight_decay):
    """One step of c_adamw.py's AdamW (correct_bias=True), transcribed."""
    beta1, beta2 = betas
    if weight_decay > 0.0:
        p.add_(p, alpha=(-lr * weight_decay))
    exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = exp_avg_sq.sqrt().add_(eps)
    step_size = lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    mask = (exp_avg * grad > 0).to(grad.dtype)
    mask.div_(mask.mean().clamp_(min=1e-3))
    p.add_((exp_avg * mask) / denom, alpha=-step_size)


def c_lion_step(torch, p, grad, exp_avg, lr, wd, beta1, beta2):
    """c_lion.py's update_fn, transcribed."""
    p.mul_(1 - lr * wd)
    update = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
    mask = (update * grad > 0).to(grad.dtype)
    mask = mask * (mask.numel() / (mask.sum() + 1))
    p.add_(update * mask, alpha=-lr)
    exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)


def start(shape, dtype, seed, count):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(count)]
    return param, grads


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_against_c_optim(shape, dtype, weight_decay, impl):
    torch = pytest.importorskip("torch")
    options = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    param, grads = start(shape, dtype, 1, 6)
    m, v = np.zeros_like(param), np.zeros_like(param)
    tp, tm, tv = (torch.from_numpy(a.copy()) for a in (param, m, v))
    for step, grad in enumerate(grads, 1):
        c_adamw_step(torch, tp, torch.from_numpy(grad.copy()), tm, tv, step,
                     weight_decay=weight_decay, **options)
        # c_adamw.py adds eps to sqrt(v) before bias correction: adamkern's epsilon_hat form.
        IMPLS[impl]("adam")([param], [grad.copy()], [m], [v], step=step,
                            weight_decay=weight_decay, decoupled_weight_decay=True,
                            epsilon_hat=True, cautious=True, **options)
        for ours, theirs, what in ((param, tp, "param"), (m, tm, "exp_avg"), (v, tv, "exp_avg_sq")):
            assert_close_to_reference(ours, theirs.numpy(), f"step {step} {what}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lion_against_c_optim(shape, dtype, weight_decay, impl):
    torch = pytest.importorskip("torch")
    lr, (beta1, beta2) = 1e-2, (0.9, 0.99)
    param, grads = start(shape, dtype, 2, 6)
    m = np.zeros_like(param)
    tp, tm = torch.from_numpy(param.copy()), torch.from_numpy(m.copy())
    for step, grad in enumerate(grads, 1):
        c_lion_step(torch, tp, torch.from_numpy(grad.copy()), tm, lr, weight_decay, beta1, beta2)
        IMPLS[impl]("lion")([param], [grad.copy()], [m], lr=lr, betas=(beta1, beta2),
                            weight_decay=weight_decay, cautious=True)
        assert_close_to_reference(param, tp.numpy(), f"step {step} param")
        assert_close_to_reference(m, tm.numpy(), f"step {step} exp_avg")


def run(kind, cautious, param, grads, impl="reference", **options):
    param = param.copy()
    state = [np.zeros_like(param) for _ in range(2 if kind != "lion" else 1)]
    for step, grad in enumerate(grads, 1):
        extra = {} if kind == "lion" else {"step": step}
        IMPLS[impl](kind)([param], [grad.copy()], *[[s] for s in state], cautious=cautious,
                          **extra, **options)
    return param


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_agrees_everywhere(dtype, impl):
    # From m = 0 the first moment is (1 - beta1) * g: every component agrees with g, the mean
    # is exactly 1 and the cautious step is bitwise the plain one.
    param, grads = start(1001, dtype, 3, 1)
    assert_bitwise_equal(run("adam", True, param, grads, impl),
                         run("adam", False, param, grads, impl))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", ["adam", "adopt"])
def test_no_agreement_moves_nothing(kind, impl):
    # A small gradient against the moment built up by two steps: no component agrees, the
    # mean clamps at 1e-3 and every masked component is zero, so the third step moves nothing.
    param, grads = start(64, np.float64, 4, 1)
    grads = [grads[0], grads[0], -1e-6 * grads[0]]
    moved = run(kind, True, param, grads[:2], impl)
    assert_bitwise_equal(run(kind, True, param, grads, impl), moved)


@pytest.mark.parametrize("impl", IMPLS)
def test_rescale_keeps_the_mean_step(impl):
    # Half the components agree: the surviving ones move twice as far as without the mask.
    param = np.zeros(8)
    exp_avg = np.full(8, 1.0)
    grad = np.array([1.0, -1.0] * 4)
    plain, cautious = param.copy(), param.copy()
    for out, flag in ((plain, False), (cautious, True)):
        IMPLS[impl]("adam")([out], [grad.copy()], [exp_avg.copy()], [np.ones(8)], step=1e9,
                            lr=1.0, betas=(0.75, 0.0), eps=1e-8, cautious=flag)
    agree = np.array([True, False] * 4)
    np.testing.assert_array_equal(cautious[agree], 2.0 * plain[agree])
    np.testing.assert_array_equal(cautious[~agree], 0.0)


def test_each_tensor_has_its_own_scale():
    # The count is per tensor: a list of two steps each tensor as it would be stepped alone.
    rng = np.random.default_rng(6)
    params = [rng.standard_normal(n).astype(np.float32) for n in (300, 70001)]
    alone = [p.copy() for p in params]
    state = [[np.zeros_like(p) for p in params] for _ in range(2)]
    state_alone = [[np.zeros_like(p) for p in params] for _ in range(2)]
    for step in range(1, 5):
        grads = [rng.standard_normal(p.size).astype(np.float32) for p in params]
        adamkern.adamw_(params, [g.copy() for g in grads], *state, step=step, cautious=True)
        for i, g in enumerate(grads):
            adamkern.adamw_([alone[i]], [g.copy()], [state_alone[0][i]], [state_alone[1][i]],
                            step=step, cautious=True)
    for a, b in zip(params, alone):
        assert_bitwise_equal(a, b)


@pytest.mark.parametrize("kind", ["adamw", "lion", "adopt"])
def test_grad_scale_unscales_before_the_count(kind):
    # Scaled grads with grad_scale give the bits of the unscaled grads (a power of two divides
    # exactly), and the grads are written back unscaled, as every op does.
    rng = np.random.default_rng(7)
    param = rng.standard_normal(5000).astype(np.float32)
    results = []
    for scale in (None, 1024.0):
        p = param.copy()
        state = [[np.zeros_like(p)] for _ in range(1 if kind == "lion" else 2)]
        for step in range(1, 5):
            grad = np.random.default_rng(step).standard_normal(5000).astype(np.float32)
            given = grad * np.float32(scale) if scale else grad.copy()
            extra = {} if kind == "lion" else {"step": step}
            getattr(adamkern, kind + "_")([p], [given], *state, cautious=True,
                                          grad_scale=scale, **extra)
            assert_bitwise_equal(given, grad)
        results.append(p)
    assert_bitwise_equal(results[0], results[1])


def test_optim_class_runs_the_op():
    # adamkern.optim.AdamW(cautious=True) steps as the functional op.
    rng = np.random.default_rng(8)
    params = [rng.standard_normal(n).astype(np.float32) for n in (10, 4000)]
    mine = [p.copy() for p in params]
    opt = adamkern.optim.AdamW(mine, lr=1e-2, cautious=True)
    state = [[np.zeros_like(p) for p in params] for _ in range(2)]
    for step in range(1, 6):
        grads = [rng.standard_normal(p.size).astype(np.float32) for p in params]
        opt.step([g.copy() for g in grads])
        adamkern.adamw_(params, grads, *state, step=step, lr=1e-2, cautious=True)
    for a, b in zip(mine, params):
        assert_bitwise_equal(a, b)
    assert opt.param_groups[0]["cautious"] is True


@pytest.mark.parametrize("name", ["AdamW", "Lion"])
def test_torch_class_against_c_optim(name):
    # adamkern.torch's class with cautious=True on a torch param, 6 steps against the
    # transcription (AdamW with epsilon_hat: c_adamw.py's eps placement).
    torch = pytest.importorskip("torch")
    import adamkern.torch as ak_torch

    param, grads = start((33, 31), np.float32, 9, 6)
    ours = torch.nn.Parameter(torch.from_numpy(param.copy()))
    theirs = torch.from_numpy(param.copy())
    if name == "AdamW":
        opt = ak_torch.AdamW([ours], lr=1e-2, weight_decay=0.1, epsilon_hat=True, cautious=True)
        m, v = torch.zeros_like(theirs), torch.zeros_like(theirs)
    else:
        opt = ak_torch.Lion([ours], lr=1e-2, weight_decay=0.1, cautious=True)
        m = torch.zeros_like(theirs)
    for step, grad in enumerate(grads, 1):
        ours.grad = torch.from_numpy(grad.copy())
        opt.step()
        g = torch.from_numpy(grad.copy())
        if name == "AdamW":
            c_adamw_step(torch, theirs, g, m, v, step, lr=1e-2, betas=(0.9, 0.999), eps=1e-8,
                         weight_decay=0.1)
        else:
            c_lion_step(torch, theirs, g, m, 1e-2, 0.1, 0.9, 0.99)
        assert_close_to_reference(ours.detach().numpy(), theirs.numpy(), f"step {step}")
