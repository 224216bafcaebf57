"""cautious=True (Liang, Chen, Liu, Liu, "Cautious Optimizers: Improving Training with One Line
of Code", 2024): the NumPy reference against a torch transcription of the authors' code
(github.com/kyleliang919/C-Optim at 2c0517c, c_adamw.py's AdamW.step, the path that runs, and
c_lion.py's update_fn), and the properties the mask must have.

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

from adamkern import reference

SHAPES = [1, 15, 17, 1000, (33, 31)]
DTYPES = [np.float32, np.float64]


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_against_c_optim(shape, dtype, weight_decay):
    torch = pytest.importorskip("torch")
    options = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8)
    param, grads = start(shape, dtype, 1, 6)
    m, v = np.zeros_like(param), np.zeros_like(param)
    tp, tm, tv = (torch.from_numpy(a.copy()) for a in (param, m, v))
    for step, grad in enumerate(grads, 1):
        c_adamw_step(torch, tp, torch.from_numpy(grad.copy()), tm, tv, step,
                     weight_decay=weight_decay, **options)
        # c_adamw.py adds eps to sqrt(v) before bias correction: adamkern's epsilon_hat form.
        reference.adam([param], [grad.copy()], [m], [v], step=step, weight_decay=weight_decay,
                       decoupled_weight_decay=True, epsilon_hat=True, cautious=True, **options)
        for ours, theirs, what in ((param, tp, "param"), (m, tm, "exp_avg"), (v, tv, "exp_avg_sq")):
            assert_close_to_reference(ours, theirs.numpy(), f"step {step} {what}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_lion_against_c_optim(shape, dtype, weight_decay):
    torch = pytest.importorskip("torch")
    lr, (beta1, beta2) = 1e-2, (0.9, 0.99)
    param, grads = start(shape, dtype, 2, 6)
    m = np.zeros_like(param)
    tp, tm = torch.from_numpy(param.copy()), torch.from_numpy(m.copy())
    for step, grad in enumerate(grads, 1):
        c_lion_step(torch, tp, torch.from_numpy(grad.copy()), tm, lr, weight_decay, beta1, beta2)
        reference.lion([param], [grad.copy()], [m], lr=lr, betas=(beta1, beta2),
                       weight_decay=weight_decay, cautious=True)
        assert_close_to_reference(param, tp.numpy(), f"step {step} param")
        assert_close_to_reference(m, tm.numpy(), f"step {step} exp_avg")


def run(kind, cautious, param, grads, **options):
    param = param.copy()
    state = [np.zeros_like(param) for _ in range(2 if kind != "lion" else 1)]
    for step, grad in enumerate(grads, 1):
        extra = {} if kind == "lion" else {"step": step}
        getattr(reference, kind)([param], [grad.copy()], *[[s] for s in state],
                                 cautious=cautious, **extra, **options)
    return param


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_agrees_everywhere(dtype):
    # From m = 0 the first moment is (1 - beta1) * g: every component agrees with g, the mean
    # is exactly 1 and the cautious step is bitwise the plain one.
    param, grads = start(1001, dtype, 3, 1)
    assert_bitwise_equal(run("adam", True, param, grads), run("adam", False, param, grads))


@pytest.mark.parametrize("kind", ["adam", "adopt"])
def test_no_agreement_moves_nothing(kind):
    # A small gradient against the moment built up by two steps: no component agrees, the
    # mean clamps at 1e-3 and every masked component is zero, so the third step moves nothing.
    param, grads = start(64, np.float64, 4, 1)
    grads = [grads[0], grads[0], -1e-6 * grads[0]]
    moved = run(kind, True, param, grads[:2])
    assert_bitwise_equal(run(kind, True, param, grads), moved)


def test_rescale_keeps_the_mean_step():
    # Half the components agree: the surviving ones move twice as far as without the mask.
    param = np.zeros(8)
    exp_avg = np.full(8, 1.0)
    grad = np.array([1.0, -1.0] * 4)
    plain, cautious = param.copy(), param.copy()
    for out, flag in ((plain, False), (cautious, True)):
        reference.adam([out], [grad.copy()], [exp_avg.copy()], [np.ones(8)], step=1e9,
                       lr=1.0, betas=(0.75, 0.0), eps=0.0, cautious=flag)
    agree = np.array([True, False] * 4)
    np.testing.assert_array_equal(cautious[agree], 2.0 * plain[agree])
    np.testing.assert_array_equal(cautious[~agree], 0.0)
