"""ademamix_ against the authors' AdEMAMix (apple/ml-ademamix, pytorch/ademamix.py; no package
carries it): its step, restated below as torch tensor ops in the class's order, over 50 steps on
several sizes, with and without the alpha and beta3 warmups, weight decay and beta1 = 0; and
adamkern.torch.AdEMAMix training a model as that step does. Skipped without torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close_to_reference

import adamkern

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

STEPS = 50
SIZES = [1, 7, 1000, 4099]
OPTIONS = [
    {},
    {"weight_decay": 0.1},
    {"alpha_warmup": 20, "beta3_warmup": 30, "alpha": 5.0},
    {"betas": (0.0, 0.999, 0.9999), "beta3_warmup": 10, "weight_decay": 0.01},
    {"betas": (0.8, 0.95, 0.99), "alpha": 8.0, "eps": 1e-6},
]


def _warmed_up(step, options):
    """The class's linear_warmup_scheduler (alpha from 0) and linear_hl_warmup_scheduler
    (beta3's half-life from beta1's)."""
    beta1, _, beta3 = options.get("betas", (0.9, 0.999, 0.9999))
    alpha = options.get("alpha", 2.0)
    alpha_warmup, beta3_warmup = options.get("alpha_warmup"), options.get("beta3_warmup")
    if alpha_warmup is not None and step < alpha_warmup:
        fraction = step / float(alpha_warmup)
        alpha = (1.0 - fraction) * 0 + fraction * alpha
    if beta3_warmup is not None and step < beta3_warmup:
        fraction = step / float(beta3_warmup)

        def half_life(beta):
            return math.log(0.5) / math.log(beta + 1e-8) - 1

        beta3 = math.pow(0.5, 1 / ((1.0 - fraction) * half_life(beta1)
                                   + fraction * half_life(beta3) + 1))
    return alpha, beta3


def authors_step(param, grad, state, step, options, lr):
    """One step of the class on one tensor (state: fast or None for beta1 = 0, slow, sq)."""
    beta1, beta2, _ = options.get("betas", (0.9, 0.999, 0.9999))
    eps, decay = options.get("eps", 1e-8), options.get("weight_decay", 0.0)
    alpha, beta3 = _warmed_up(step, options)
    fast, slow, sq = state
    if beta1 != 0.0:
        fast.mul_(beta1).add_(grad, alpha=1 - beta1)
    else:
        fast = grad
    slow.mul_(beta3).add_(grad, alpha=1 - beta3)
    sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
    update = (fast.div(1 - beta1**step) + alpha * slow) / denom
    update.add_(param, alpha=decay)
    param.add_(-lr * update)


def run(dtype, size, options, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(steps)]
    lr = 1e-2
    theirs = torch.tensor(start.copy())
    state = [torch.zeros_like(theirs) for _ in range(3)]
    ours = start.copy()
    buffers = [np.zeros_like(ours) for _ in range(3)]
    ours_options = {**options}
    for step, grad in enumerate(grads, start=1):
        authors_step(theirs, torch.tensor(grad), state, step, options, lr)
        adamkern.ademamix_([ours], [grad.copy()], *[[b] for b in buffers], step=step, lr=lr,
                           **ours_options)
    return ours, theirs.numpy(), buffers, [s.numpy() for s in state]


def _ulps(actual, expected):
    eps = np.finfo(actual.dtype).eps
    scale = np.abs(expected).max()
    return float(np.max(np.abs(actual.astype(np.float64) - expected) / (eps * scale)))


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_within_4_ulp_of_the_authors_class(dtype, size, options):
    torch.set_num_threads(1)
    ours, theirs, buffers, state = run(dtype, size, options)
    assert_close_to_reference(ours, theirs, "params")
    beta1 = options.get("betas", (0.9,))[0]
    for k, (a, b) in enumerate(zip(buffers, state)):
        if k == 0 and beta1 == 0.0:  # the class keeps no fast EMA then
            continue
        assert_close_to_reference(a, b, f"state {k}")


def test_the_moments_are_the_classs_bits():
    # the moving averages are computed as the class computes them (the same roundings):
    # bitwise over the 50 steps; the param differs only where the division by a scalar does
    ours, theirs, buffers, state = run(np.float32, 4099, {"beta3_warmup": 30})
    for k, (a, b) in enumerate(zip(buffers, state)):
        assert_bitwise_equal(a, b, f"state {k}")
    assert _ulps(ours, theirs) <= 4


def test_warmups():
    # alpha grows linearly from 0; beta3 from beta1 with its half-life growing linearly
    # (1 - beta3 shrinks fast: a tenth of the way, the half-life is ~700 steps, beta3 0.999)
    assert _warmed_up(5, {"alpha_warmup": 10})[0] == 1.0
    assert _warmed_up(10, {"alpha_warmup": 10})[0] == 2.0
    beta3s = [_warmed_up(step, {"beta3_warmup": 10})[1] for step in range(11)]
    assert beta3s[0] == pytest.approx(0.9, abs=1e-7) and beta3s[-1] == 0.9999
    assert all(a < b for a, b in zip(beta3s, beta3s[1:]))
    assert 0.5 ** (1 / 700) == pytest.approx(beta3s[1], rel=1e-5)
    # and the kernel uses them: with the warmups, step 1 differs from the run without
    with_warmup = run(np.float64, 7, {"alpha_warmup": 10, "beta3_warmup": 10}, steps=1)[0]
    without = run(np.float64, 7, {}, steps=1)[0]
    assert not np.array_equal(with_warmup, without)


def test_torch_class_trains_as_the_authors_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    twin = [p.detach().clone() for p in model.parameters()]
    options = {"alpha_warmup": 10, "beta3_warmup": 10, "weight_decay": 0.01}
    opt = akt.AdEMAMix(model.parameters(), lr=1e-2, **options)
    state = [[torch.zeros_like(p) for _ in range(3)] for p in twin]
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for step in range(1, 21):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for p, g, s in zip(twin, grads, state):
            authors_step(p, g, s, step, options, 1e-2)
        for p, t in zip(model.parameters(), twin):
            assert_close_to_reference(p.detach().numpy(), t.numpy(), f"step {step}")
    assert set(opt.state[next(model.parameters())]) == {
        "step", "exp_avg_fast", "exp_avg_slow", "exp_avg_sq"}
