"""adopt_ against its authors' implementation, torch-adopt 0.1.0 (``adopt.ADOPT``, the
single-tensor path it takes on CPU), stepped in lockstep for 50 steps on params of several
sizes, every option combination, float32 and float64.

torch-adopt's one operation that is not IEEE-exact is ``exp_avg_sq.sqrt()``: torch's CPU
sqrt on x86 builds is MKL's vsSqrt/vdSqrt in its high-accuracy mode (aten/src/ATen/cpu/vml.h),
within 1 ULP but not correctly rounded (on torch 2.13.0, about 1 float32 result in 6 and 1
float64 result in 80 is off by one ULP). adamkern's sqrt is correctly rounded, as torch's
fused kernels and CUDA are. So:

1. with that sqrt replaced by a correctly rounded one, torch-adopt and adopt_ are bitwise
   equal (params, exp_avg, exp_avg_sq), on CPUs where torch runs its AVX2 or AVX-512
   kernels;
2. torch-adopt as it runs is within the family's bound of 4 ULP of the arrays' magnitude
   (helpers.assert_close_to_reference) for params and exp_avg, and bitwise for exp_avg_sq
   unless L2 weight decay carries the params into it (no sqrt reaches it otherwise); or
   bitwise throughout where torch's sqrt is correctly rounded.

Both are skipped where torch runs its scalar "default" kernels: they round add and addcmul
without an fma, and where L2 decay cancels (g + wd*p near 0 on step 1, so exp_avg_sq near 0)
an unclipped step divides by it and magnifies that last bit without bound.

Skipped when torch or torch-adopt is not installed (the ``test`` extra pins both).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from family import grid
from helpers import DTYPES, assert_bitwise_equal, assert_close_to_reference

import adamkern

torch = pytest.importorskip("torch")
adopt = pytest.importorskip("adopt")

# torch-adopt calls torch functions that torch 2.13 deprecates
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch._utils.is_compiling` is deprecated:UserWarning"),
    pytest.mark.filterwarnings(
        "ignore:Use _accelerator_graph_capture_health_check instead:DeprecationWarning")]

STEPS = 50
SIZES = [1, 7, 1000, 4099]
OPTIONS = grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
               clip=[True, False], maximize=[False, True])
# beta1 >= 0.5 takes torch's lerp from the other end; a larger lr and eps change the scale
OTHER_HYPERPARAMETERS = [dict(lr=0.05, betas=(0.6, 0.99), eps=1e-3, weight_decay=0.05),
                         dict(lr=1e-2, betas=(0.0, 0.5), eps=1e-8, clip=False)]
FUSED_CAPABILITIES = {"AVX2", "AVX512"}


def options_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items())


CASES = [pytest.param(o, id=options_id(o)) for o in OPTIONS + OTHER_HYPERPARAMETERS]


def torch_adopt_keywords(options):
    """adopt_'s keywords as torch-adopt's constructor spells them."""
    keywords = dict(options)
    keywords["decouple"] = keywords.pop("decoupled_weight_decay", False)
    if not keywords.pop("clip", True):
        keywords["clip_lambda"] = None
    return keywords


def correctly_rounded_sqrt(tensor):
    return torch.from_numpy(np.sqrt(tensor.numpy()))


def torch_sqrt_is_correctly_rounded(dtype):
    values = np.random.default_rng(0).uniform(0.0, 4.0, 4099).astype(dtype)
    return np.array_equal(torch.from_numpy(values).sqrt().numpy(), np.sqrt(values))


def run_lockstep(options, dtype, seed=0):
    """50 steps of torch-adopt and of adopt_ on the same params and grads; returns both
    sides' params, exp_avgs and exp_avg_sqs."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in SIZES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = adopt.ADOPT(tparams, **torch_adopt_keywords(options))
    exp_avgs = [np.zeros_like(p) for p in params]
    exp_avg_sqs = [np.zeros_like(p) for p in params]
    for step in range(1, STEPS + 1):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for tparam, grad in zip(tparams, grads):
            tparam.grad = torch.tensor(grad.copy())
        opt.step()
        adamkern.adopt_(params, grads, exp_avgs, exp_avg_sqs, step=step, **options)
    theirs = {"params": [p.detach().numpy() for p in tparams],
              "exp_avgs": [opt.state[p]["exp_avg"].numpy() for p in tparams],
              "exp_avg_sqs": [opt.state[p]["exp_avg_sq"].numpy() for p in tparams]}
    ours = {"params": params, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs}
    return ours, theirs


def compare(ours, theirs, what, close=()):
    """Bitwise, except the lists in ``close``: within 4 ULP of the magnitude of the list's
    arrays together. An exp_avg is an average of normalised gradients, and its error is that
    of those terms, also where they cancel: a 1-element array has no other element to show
    the terms' magnitude."""
    for name in ours:
        if name in close:
            assert_close_to_reference(np.concatenate(ours[name]),
                                      np.concatenate(theirs[name]), f"{what}: {name}")
            continue
        for i, (a, b) in enumerate(zip(ours[name], theirs[name])):
            assert_bitwise_equal(a, b, f"{what}: {name}[{i}] (size {a.size})")


@pytest.fixture
def fused_torch():
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in FUSED_CAPABILITIES:
        pytest.skip(f"torch runs its {capability} kernels here, which round without fma")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", CASES)
def test_bitwise_with_a_correctly_rounded_sqrt(options, dtype, fused_torch, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "sqrt", correctly_rounded_sqrt)
    ours, theirs = run_lockstep(options, dtype)
    compare(ours, theirs, f"{options} {np.dtype(dtype).name}", close=())


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", CASES)
def test_close_to_torch_adopt_as_it_runs(options, dtype, fused_torch):
    ours, theirs = run_lockstep(options, dtype)
    close = ()
    if not torch_sqrt_is_correctly_rounded(dtype):
        close = ("params", "exp_avgs")
        if options.get("weight_decay") and not options.get("decoupled_weight_decay"):
            close += ("exp_avg_sqs",)  # L2 decay: the params reach g, and g the second moment
    compare(ours, theirs, f"{options} {np.dtype(dtype).name}", close=close)


def test_defaults_are_torch_adopts():
    """lr, betas, eps, weight_decay, decouple and maximize default as in ADOPT's constructor;
    its default clip_lambda is step**0.25 (clip=True), None is clip=False."""
    theirs = inspect.signature(adopt.ADOPT).parameters
    ours = inspect.signature(adamkern.adopt_).parameters
    for name in ("lr", "betas", "eps", "weight_decay", "maximize"):
        assert ours[name].default == theirs[name].default, name
    assert ours["decoupled_weight_decay"].default is theirs["decouple"].default is False
    assert ours["clip"].default is True
    clip_lambda = theirs["clip_lambda"].default
    assert [clip_lambda(s) for s in (0.0, 1.0, 16.0)] == [0.0, 1.0, 2.0]


def test_first_step_only_starts_the_second_moment():
    """Step 1 is torch-adopt's step 0: exp_avg_sq += g*g (L2 decay included), params and
    exp_avg unchanged (whatever they hold)."""
    rng = np.random.default_rng(1)
    param = rng.standard_normal(33).astype(np.float32)
    grad = rng.standard_normal(33).astype(np.float32)
    exp_avg = rng.standard_normal(33).astype(np.float32)
    exp_avg_sq = np.abs(rng.standard_normal(33)).astype(np.float32)
    before = param.copy(), exp_avg.copy(), exp_avg_sq.copy()
    adamkern.adopt_(param, grad, exp_avg, exp_avg_sq, step=1, weight_decay=0.1, lr=0.5)
    assert_bitwise_equal(param, before[0], "param")
    assert_bitwise_equal(exp_avg, before[1], "exp_avg")
    decayed = grad.astype(np.float64) + param.astype(np.float64) * np.float32(0.1)
    assert_close_to_reference(exp_avg_sq, before[2] + (decayed * decayed).astype(np.float32),
                              "exp_avg_sq")


def test_first_step_checks_every_buffer():
    """Step 1 does not change exp_avgs, but an exp_avgs aliasing a param is refused there as
    on every later step, and nothing is written."""
    param = np.ones(8, np.float32)
    grad, exp_avg_sq = np.ones(8, np.float32), np.zeros(8, np.float32)
    for step in (1, 2):
        with pytest.raises(ValueError, match="overlap"):
            adamkern.adopt_(param, grad, param, exp_avg_sq, step=step)
        assert_bitwise_equal(param, np.ones(8, np.float32), f"param, step {step}")
        assert_bitwise_equal(exp_avg_sq, np.zeros(8, np.float32), f"exp_avg_sq, step {step}")
