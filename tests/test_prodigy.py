"""prodigy_ against its authors' implementation, prodigyopt 1.1 (``prodigyopt.Prodigy``),
stepped in lockstep for 50 steps on several param lists, every option, float32 and float64.

prodigyopt's operations that are not IEEE-exact or whose order is torch's choice:
``exp_avg_sq.sqrt()`` (MKL's on x86 builds of torch, within 1 ULP, not correctly rounded, see
tests/test_adopt.py) and the two reductions behind d, ``torch.dot(grad, p0 - p)`` and
``s.abs().sum()`` (float32 or float64 accumulations in an order of torch's and MKL's choosing).
adamkern's sqrt is correctly rounded and its reductions add float64 terms in fixed chunks and
lanes (the same bits for any thread count and ISA). So:

1. with those three replaced (a correctly rounded sqrt; the dot and the sum in adamkern's order,
   as adamkern.reference computes them), prodigyopt and prodigy_ are bitwise equal: params,
   exp_avg, exp_avg_sq, s, p0 and the group's d, d_max, d_numerator, k, d_denom, d_hat; where
   torch runs its AVX2 or AVX-512 kernels (fused multiply-adds);
2. prodigyopt as it runs: d within a relative 1e-5 at every one of the 50 steps; and each step,
   taken by both from prodigyopt's state of the step before, within 4 ULP of magnitude
   (helpers.assert_close_to_reference) for the params and the state. Free-running, the params
   drift further apart than one step's bound: d feeds back into the params and the params into
   d (through p0 - p), so the last bits of d's sums (and of torch's sqrt) are amplified over
   the steps (up to 9.3 ULP of magnitude in float32 and 10.4 in float64 after 50 steps of the
   problem below; none with those replaced, as 1. shows).

Skipped when torch or prodigyopt is not installed (the ``test`` extra pins both).
"""

from __future__ import annotations

import copy
import inspect
import re

import numpy as np
import pytest
from family import grid
from helpers import DTYPES, assert_bitwise_equal, assert_close_to_reference, assert_unchanged

import adamkern
import adamkern.optim
from adamkern._reference_common import _chunked_sum

torch = pytest.importorskip("torch")
prodigyopt = pytest.importorskip("prodigyopt")
import adamkern.torch  # noqa: E402 (needs torch)

STEPS = 50
# one tensor; sizes around the SIMD widths; a list with a tensor over two reduction chunks
PARAM_LISTS = {"one": [(1,)], "sizes": [(1,), (7,), (1000,), (4099,)],
               "model": [(64, 33), (3, 7), (20000,), (17,)]}
OPTIONS = grid(weight_decay=[0.0, 0.1], decouple=[True, False],
               use_bias_correction=[False, True], safeguard_warmup=[False, True])
OTHER_HYPERPARAMETERS = [dict(growth_rate=1.02, d_coef=0.5),
                         dict(d_coef=2.0, beta3=0.9, d0=1e-4, lr=0.5, eps=1e-6),
                         dict(betas=(0.5, 0.9), weight_decay=0.05, decouple=False)]
FUSED_CAPABILITIES = {"AVX2", "AVX512"}
GROUP_SCALARS = ("d", "d_max", "d_numerator", "k", "d_denom", "d_hat")


def options_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items())


CASES = [pytest.param(o, id=options_id(o)) for o in OPTIONS + OTHER_HYPERPARAMETERS]


def correctly_rounded_sqrt(tensor):
    return torch.from_numpy(np.sqrt(tensor.numpy()))


def dot_in_kernel_order(a, b):
    terms = a.numpy().astype(np.float64) * b.numpy().astype(np.float64)
    return torch.tensor(_chunked_sum(terms.ravel()), dtype=torch.float64)


def sum_in_kernel_order(tensor, *args, **kwargs):
    assert not args and not kwargs, "prodigyopt sums whole tensors"
    return torch.tensor(_chunked_sum(tensor.numpy().astype(np.float64).ravel()),
                        dtype=torch.float64)


class Lockstep:
    """prodigyopt's Prodigy and prodigy_ on the same params, fed the same gradients of a
    noisy quadratic (each param pulled towards a target: a descent d can grow on)."""

    def __init__(self, shapes, dtype, options, seed=0):
        self.rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.options = options
        self.params = [self.rng.standard_normal(s).astype(dtype) for s in shapes]
        self.targets = [self.rng.standard_normal(s).astype(dtype) for s in shapes]
        self.tparams = [torch.tensor(p.copy(), requires_grad=True) for p in self.params]
        self.opt = prodigyopt.Prodigy(self.tparams, **options)
        self.state = {name: [np.zeros_like(p) for p in self.params]
                      for name in ("exp_avgs", "exp_avg_sqs", "s")}
        self.state["p0"] = [p.copy() for p in self.params]
        d0 = options.get("d0", 1e-6)
        self.scalars = np.array([d0, d0, 0.0, 0.0, 0.0, 0.0])

    def grads(self):
        return [((p - t) + self.dtype(0.1) * self.rng.standard_normal(p.shape)).astype(self.dtype)
                for p, t in zip(self.params, self.targets)]

    def step(self):
        grads = self.grads()
        for tparam, grad in zip(self.tparams, grads):
            tparam.grad = torch.tensor(grad.copy())
        self.opt.step()
        adamkern.prodigy_(self.params, grads, **self.state, group_scalars=self.scalars,
                          **self.options)

    def theirs(self):
        states = [self.opt.state[p] for p in self.tparams]
        return {"params": [p.detach().numpy() for p in self.tparams],
                "exp_avgs": [s["exp_avg"].numpy() for s in states],
                "exp_avg_sqs": [s["exp_avg_sq"].numpy() for s in states],
                # prodigyopt keeps s and p0 flattened (p.flatten()[::slice_p])
                "s": [s["s"].numpy().reshape(p.shape) for s, p in zip(states, self.params)],
                "p0": [s["p0"].numpy().reshape(p.shape) for s, p in zip(states, self.params)]}

    def ours(self):
        return {"params": self.params, **self.state}

    def their_scalars(self):
        group = self.opt.param_groups[0]
        return np.array([float(group.get(name, 0.0)) for name in GROUP_SCALARS])

    def take_their_state(self):
        """Copies prodigyopt's params, state and group scalars into adamkern's arrays (before
        the first step there is nothing to copy: both start alike)."""
        if not self.opt.state:
            return
        for name, arrays in self.theirs().items():
            for ours, theirs in zip(self.ours()[name], arrays):
                ours[...] = theirs
        self.scalars[...] = self.their_scalars()


@pytest.fixture
def fused_torch():
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in FUSED_CAPABILITIES:
        pytest.skip(f"torch runs its {capability} kernels here, which round without fma")


@pytest.fixture
def quiet(monkeypatch):
    # prodigyopt prints a line when decoupled weight decay is on
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: None)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shapes", PARAM_LISTS.values(), ids=PARAM_LISTS.keys())
@pytest.mark.parametrize("options", CASES)
def test_bitwise_with_exact_sqrt_and_kernel_order_sums(options, shapes, dtype, fused_torch,
                                                       quiet, monkeypatch):
    monkeypatch.setattr(torch.Tensor, "sqrt", correctly_rounded_sqrt)
    monkeypatch.setattr(torch, "dot", dot_in_kernel_order)
    monkeypatch.setattr(torch.Tensor, "sum", sum_in_kernel_order)
    run = Lockstep(shapes, dtype, options)
    for step in range(1, STEPS + 1):
        run.step()
        assert_bitwise_equal(run.scalars, run.their_scalars(), f"group scalars, step {step}")
    theirs = run.theirs()
    for name, arrays in run.ours().items():
        for i, (a, b) in enumerate(zip(arrays, theirs[name])):
            assert_bitwise_equal(a, b, f"{name}[{i}] (size {a.size})")
    assert run.scalars[3] == STEPS


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", CASES)
def test_d_close_to_prodigyopt_as_it_runs(options, dtype, fused_torch, quiet):
    run = Lockstep(PARAM_LISTS["sizes"], dtype, options)
    for step in range(1, STEPS + 1):
        run.step()
        d, theirs = run.scalars[0], run.their_scalars()[0]
        assert abs(d - theirs) <= 1e-5 * theirs, f"step {step}: d {d!r} vs {theirs!r}"
    assert run.scalars[0] > 2 * options.get("d0", 1e-6)  # d did grow (1.02**50 = 2.7 at most)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("options", CASES)
def test_each_step_close_to_prodigyopt_as_it_runs(options, dtype, fused_torch, quiet):
    """Each of 50 steps from prodigyopt's state of the step before: params and state within
    4 ULP of magnitude, d within a relative 1e-5."""
    run = Lockstep(PARAM_LISTS["sizes"], dtype, options)
    for step in range(1, STEPS + 1):
        run.take_their_state()
        run.step()
        d, their_d = run.scalars[0], run.their_scalars()[0]
        assert abs(d - their_d) <= 1e-5 * their_d, f"step {step}: d {d!r} vs {their_d!r}"
        theirs = run.theirs()
        for name, arrays in run.ours().items():
            assert_close_to_reference(np.concatenate([a.ravel() for a in arrays]),
                                      np.concatenate([a.ravel() for a in theirs[name]]),
                                      f"step {step}: {name}")


def test_defaults_are_prodigyopts():
    theirs = inspect.signature(prodigyopt.Prodigy).parameters
    ours = inspect.signature(adamkern.prodigy_).parameters
    for name in ("lr", "betas", "beta3", "eps", "weight_decay", "decouple",
                 "use_bias_correction", "safeguard_warmup", "d0", "d_coef", "growth_rate"):
        assert ours[name].default == theirs[name].default, name


def test_zero_grads_update_nothing_but_the_moments(quiet):
    """All grads zero: the sum of |s| is 0 and prodigyopt returns before the update; params,
    k and d stay as they were (here after a first real step)."""
    run = Lockstep(PARAM_LISTS["sizes"], np.float64, {})
    run.step()
    before = [p.copy() for p in run.params]
    scalars = run.scalars.copy()
    zeros = [np.zeros_like(p) for p in run.params]
    for tparam, grad in zip(run.tparams, zeros):
        tparam.grad = torch.tensor(grad)
    for _ in range(2):  # s decays towards 0 but stays nonzero: these steps do update
        run.opt.step()
        adamkern.prodigy_(run.params, zeros, **run.state, group_scalars=run.scalars)
    assert run.scalars[3] == scalars[3] + 2
    fresh = Lockstep(PARAM_LISTS["sizes"], np.float64, {}, seed=1)
    start = [p.copy() for p in fresh.params]
    fresh_scalars = fresh.scalars.copy()
    adamkern.prodigy_(fresh.params, [np.zeros_like(p) for p in start], **fresh.state,
                      group_scalars=fresh.scalars)
    for a, b in zip(fresh.params, start):
        assert_bitwise_equal(a, b, "params after a step with zero grads and s = 0")
    assert_bitwise_equal(fresh.scalars, fresh_scalars, "group scalars")
    assert before  # the first run's params moved on a real step
    assert not all(np.array_equal(a, b) for a, b in zip(run.params, before))


def test_lr_zero_writes_nothing():
    param = np.ones(8, np.float32)
    arrays = [param, np.zeros(8, np.float32), np.zeros(8, np.float32), np.zeros(8, np.float32),
              param.copy()]
    scalars = np.array([1e-6, 1e-6, 0.0, 0.0, 0.0, 0.0])
    before = [a.copy() for a in arrays] + [scalars.copy()]
    adamkern.prodigy_(arrays[0], np.ones(8, np.float32), *arrays[1:], group_scalars=scalars,
                      lr=0.0)
    assert_unchanged(arrays + [scalars], before)


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros(6, np.float32), TypeError, "group_scalars must be a float64 array"),
    (np.zeros((2, 6)), ValueError, "group_scalars must be one array of 6"),
    ([np.ones(6), np.ones(6)], ValueError, "group_scalars must be one array of 6"),
    (np.array([1e-6, 1e-6, 0.0, -1.0, 0.0, 0.0]), ValueError, "(k)"),
    (np.array([1e-6, np.inf, 0.0, 0.0, 0.0, 0.0]), ValueError, "(d_max)"),
    (np.array([0.0, 1e-6, 0.0, 0.0, 0.0, 0.0]), ValueError, "group_scalars[0] (d)"),
    (np.array([1e-6, 1e-6, 0.0, 1.5, 0.0, 0.0]), ValueError, "group_scalars[3] (k)"),
    (np.array([1e-6, 1e-6, np.nan, 0.0, 0.0, 0.0]), ValueError, "(d_numerator)"),
    (np.zeros(5), ValueError, "group_scalars must be one array of 6"),
    (np.ones(7)[:6][::-1], ValueError, "contiguous"),
])
def test_bad_group_scalars_change_nothing(bad, error, match):
    rng = np.random.default_rng(2)
    params = [rng.standard_normal(9).astype(np.float32)]
    arrays = {"exp_avgs": [np.zeros(9, np.float32)], "exp_avg_sqs": [np.zeros(9, np.float32)],
              "s": [np.zeros(9, np.float32)], "p0": [params[0].copy()]}
    grads = [rng.standard_normal(9).astype(np.float32)]
    everything = params + grads + [a for v in arrays.values() for a in v]
    before = [a.copy() for a in everything]
    with pytest.raises(error, match=re.escape(match)):
        adamkern.prodigy_(params, grads, **arrays, group_scalars=bad)
    assert_unchanged(everything, before)


def test_group_scalars_may_not_alias_a_buffer():
    buffer = np.zeros(12)
    param = buffer[:6]
    param[:] = 1.0
    arrays = [np.zeros(6) for _ in range(3)] + [param.copy()]
    before = buffer.copy()
    with pytest.raises(ValueError, match="group_scalars"):
        adamkern.prodigy_(param, np.ones(6), *arrays, group_scalars=buffer[6:])
    with pytest.raises(ValueError, match="group_scalars"):
        adamkern.prodigy_(param, np.ones(6), *arrays, group_scalars=param)
    assert_bitwise_equal(buffer, before, "buffer")


# ---------------------------------------------------------------------------------------------
# adamkern.optim.Prodigy


def _grads_of(params, rng):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_optim_prodigy_is_the_op_on_all_groups(dtype):
    """Two groups with the same hyperparameters: one estimate of d over both, bitwise the op
    on all params (p0 the params before the first step), every group holding the scalars."""
    rng = np.random.default_rng(4)
    shapes = [(3, 7), (1,), (257,), (20000,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    mine = [p.copy() for p in params]
    opt = adamkern.optim.Prodigy([{"params": mine[:2]}, {"params": mine[2:]}],
                                 weight_decay=0.1, use_bias_correction=True)
    state = {name: [np.zeros_like(p) for p in params]
             for name in ("exp_avgs", "exp_avg_sqs", "s")}
    state["p0"] = [p.copy() for p in params]
    scalars = np.array([1e-6, 1e-6, 0.0, 0.0, 0.0, 0.0])
    for _ in range(5):
        grads = _grads_of(params, rng)
        opt.step([g.copy() for g in grads])
        adamkern.prodigy_(params, grads, **state, group_scalars=scalars, weight_decay=0.1,
                          use_bias_correction=True)
    for i, (a, b) in enumerate(zip(mine, params)):
        assert_bitwise_equal(a, b, f"params[{i}]")
    for g in range(2):
        assert_bitwise_equal(opt.group_state[g]["group_scalars"], scalars, f"group {g}")
    for i, s in enumerate(opt.state):
        assert_bitwise_equal(s["p0"], state["p0"][i], f"p0[{i}]")
        assert_bitwise_equal(s["s"], state["s"][i], f"s[{i}]")


def test_optim_prodigy_groups_that_differ_are_refused():
    params = [np.ones(4, np.float32), np.ones(3, np.float32)]
    opt = adamkern.optim.Prodigy([{"params": params[:1]},
                                  {"params": params[1:], "weight_decay": 0.1}])
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"param_groups\[1\] differs .*weight_decay"):
        opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    assert_unchanged(params, before)
    assert opt.state == [{}, {}] and opt.step_count == 0


def test_optim_prodigy_resumes_bit_for_bit(tmp_path):
    rng = np.random.default_rng(5)
    params = [rng.standard_normal(s).astype(np.float32) for s in [(33,), (4, 4)]]
    grads = [_grads_of(params, rng) for _ in range(6)]
    opt = adamkern.optim.Prodigy(params)
    for g in grads[:3]:
        opt.step([a.copy() for a in g])
    opt.save(tmp_path / "prodigy.npz", params=True)
    for g in grads[3:]:
        opt.step([a.copy() for a in g])
    expected = [p.copy() for p in params]
    resumed = adamkern.optim.Prodigy([np.zeros_like(p) for p in params])
    resumed.load(tmp_path / "prodigy.npz")
    for g in grads[3:]:
        resumed.step([a.copy() for a in g])
    for i, (a, b) in enumerate(zip(resumed.params, expected)):
        assert_bitwise_equal(a, b, f"params[{i}]")
    assert_bitwise_equal(resumed.group_state[0]["group_scalars"],
                         opt.group_state[0]["group_scalars"], "group scalars")


# ---------------------------------------------------------------------------------------------
# adamkern.torch.Prodigy


def _model(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 33), torch.nn.Tanh(), torch.nn.Linear(33, 3))
    with torch.no_grad():
        model[2].bias.zero_()  # prodigyopt keeps the p0 of an all-zero param as a scalar 0
    return model


def _train(model, opt, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(64, 16, generator=generator)
        y = torch.randn(64, 3, generator=generator)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _exact_reductions(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "sqrt", correctly_rounded_sqrt)
    monkeypatch.setattr(torch, "dot", dot_in_kernel_order)
    monkeypatch.setattr(torch.Tensor, "sum", sum_in_kernel_order)


def _assert_same_training(ours, theirs, what):
    for (name, a), b in zip(ours[0].named_parameters(), theirs[0].parameters()):
        assert_bitwise_equal(a.detach().numpy(), b.detach().numpy(), f"{what}: {name}")
    group, their_group = ours[1].param_groups[0], theirs[1].param_groups[0]
    for key in GROUP_SCALARS:
        assert group[key] == their_group[key], f"{what}: {key}"


KEYWORDS = [dict(), dict(weight_decay=0.05, decouple=False, use_bias_correction=True),
            dict(weight_decay=0.1, safeguard_warmup=True, growth_rate=1.05)]


@pytest.mark.parametrize("keywords", KEYWORDS, ids=options_id)
def test_torch_prodigy_trains_as_prodigyopt(keywords, fused_torch, quiet, monkeypatch):
    """A small model trained 30 steps: bitwise prodigyopt's params and group keys with the
    reductions replaced as above; as it runs, d within a relative 1e-5."""
    runs = []
    for cls in (adamkern.torch.Prodigy, prodigyopt.Prodigy):
        model = _model(0)
        opt = cls(model.parameters(), **keywords)
        with monkeypatch.context() as patch:
            _exact_reductions(patch)
            _train(model, opt, 30, seed=1)
        runs.append((model, opt))
    _assert_same_training(*runs, "30 steps")
    ds = []
    for cls in (adamkern.torch.Prodigy, prodigyopt.Prodigy):
        model = _model(0)
        opt = cls(model.parameters(), **keywords)
        _train(model, opt, 30, seed=1)
        ds.append(opt.param_groups[0]["d"])
    assert abs(ds[0] - ds[1]) <= 1e-5 * ds[1]
    assert ds[1] > keywords.get("d0", 1e-6)


@pytest.mark.parametrize("direction", ["prodigyopt to adamkern", "adamkern to prodigyopt"])
def test_torch_prodigy_state_dict_moves_both_ways(direction, fused_torch, quiet, monkeypatch):
    """10 steps with one, a state_dict loaded into the other, 10 more steps: bitwise the
    run that stayed with the first (reductions replaced, as above)."""
    _exact_reductions(monkeypatch)
    first, second = ((prodigyopt.Prodigy, adamkern.torch.Prodigy)
                     if direction.startswith("prodigyopt") else
                     (adamkern.torch.Prodigy, prodigyopt.Prodigy))
    keywords = dict(weight_decay=0.01, use_bias_correction=True)
    model = _model(0)
    opt = first(model.parameters(), **keywords)
    _train(model, opt, 10, seed=1)
    moved = _model(1)
    moved.load_state_dict(model.state_dict())
    moved_opt = second(moved.parameters(), **keywords)
    moved_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # (load keeps the tensors)
    _train(model, opt, 10, seed=2)
    _train(moved, moved_opt, 10, seed=2)
    _assert_same_training((moved, moved_opt), (model, opt), direction)
    assert sorted(moved_opt.state_dict()["state"][0]) == ["exp_avg", "exp_avg_sq", "p0", "s",
                                                          "step"]
    if first is prodigyopt.Prodigy:  # the scalar p0 of the zero bias came across and was used
        assert opt.state[list(model.parameters())[3]]["p0"].dim() == 0


def test_torch_prodigy_refuses_what_it_does_not_build():
    params = [torch.nn.Parameter(torch.ones(3))]
    for keywords, match in ((dict(fsdp_in_use=True), "fsdp_in_use"), (dict(slice_p=11), "slice_p"),
                            (dict(lr=0.0), "Invalid learning rate"), (dict(d0=0.0), "d0")):
        with pytest.raises(ValueError, match=match):
            adamkern.torch.Prodigy(params, **keywords)
    opt = adamkern.torch.Prodigy([{"params": params}, {"params": [torch.nn.Parameter(
        torch.ones(2))], "eps": 1e-6}])
    for p in opt.param_groups[0]["params"] + opt.param_groups[1]["params"]:
        p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"differs from param_groups\[0\] in \['eps'\]"):
        opt.step()
    assert not opt.state and torch.equal(params[0].detach(), torch.ones(3))
