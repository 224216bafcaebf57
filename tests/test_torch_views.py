"""adamkern.torch's steady steps (the views of the step before, reused: adamkern._torch_views)
give the bits and the errors of full steps, whatever a training loop does between steps:
``p.data = ...``, grads set to None and made again, ``zero_grad(set_to_none=False)``,
``load_state_dict``, ``add_param_group``, edits of ``param_groups`` and of ``opt.state``, and
steps that fail. Each scenario runs twice, reusing views and not (every step a full step),
and the params, grads, state and errors must agree bit for bit; the reusing run must have
reused views (else it proves nothing). Also: the rows of the training-loop benchmark
(adamkern.bench.torchloop) at tiny sizes."""

from __future__ import annotations

import contextlib
import copy
from unittest import mock

import pytest

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

from adamkern.bench import torchloop as _torch_loop_bench  # noqa: E402

STEPS = 6
_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape or a.stride() != b.stride():
        return False
    integer = _INTS[a.element_size()]
    return torch.equal(a.view(integer), b.view(integer))


class Counting:
    """Counts the steps that reused views (or, with ``reuse=False``, makes every step a full
    one)."""

    def __init__(self, reuse: bool):
        self.reuse = reuse
        self.reused = 0

    @contextlib.contextmanager
    def patch(self):
        original = akt._KernelOptimizer._steady_update

        def steady_update(opt, scale):
            if not self.reuse:
                return False
            done = original(opt, scale)
            self.reused += done
            return done

        with mock.patch.object(akt._KernelOptimizer, "_steady_update", steady_update):
            yield self


def model(dtype=torch.float32):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(7, 19), torch.nn.LayerNorm(19), torch.nn.GELU(),
                              torch.nn.Linear(19, 5))
    return net.to(dtype)


def batch(step, dtype=torch.float32):
    generator = torch.Generator().manual_seed(step)
    return torch.randn(9, 7, generator=generator).to(dtype)


def backward(net, step):
    x = batch(step, next(net.parameters()).dtype)
    net(x).float().square().mean().backward()


def run(make_opt, scenario, reuse, dtype=torch.float32, steps=STEPS, after=None):
    """Trains a fresh model ``steps`` steps; ``scenario(step, net, opt)`` runs before each
    step's backward, ``after(step, net, opt)`` after it. Returns the model, the optimizer, the
    errors of the steps (type and message, None where a step succeeded) and the count of
    steps that reused views."""
    net = model(dtype)
    opt = make_opt(net)
    errors = []
    with Counting(reuse).patch() as counting:
        for step in range(steps):
            scenario(step, net, opt)
            backward(net, step)
            if after is not None:
                after(step, net, opt)
            try:
                opt.step()
            except (TypeError, ValueError, RuntimeError) as error:
                errors.append((type(error), str(error)))
            else:
                errors.append(None)
            if getattr(opt, "set_to_none", True):
                opt.zero_grad()
            else:
                opt.zero_grad(set_to_none=False)
    return net, opt, errors, counting.reused


def assert_same_run(make_opt, scenario, dtype=torch.float32, steps=STEPS, min_reused=1,
                    after=None):
    net, opt, errors, reused = run(make_opt, scenario, True, dtype, steps, after)
    net2, opt2, errors2, _ = run(make_opt, scenario, False, dtype, steps, after)
    assert errors == errors2
    assert reused >= min_reused, "no step reused views: the scenario tests nothing"
    for (name, p), p2 in zip(net.named_parameters(), net2.parameters()):
        assert same_bits(p.detach(), p2.detach()), name
        assert (p.grad is None) == (p2.grad is None)
        if p.grad is not None:
            assert same_bits(p.grad, p2.grad), f"{name}.grad"
    state, state2 = opt.state_dict(), opt2.state_dict()
    assert state["param_groups"] == state2["param_groups"]
    assert state["state"].keys() == state2["state"].keys()
    for key, entries in state["state"].items():
        assert entries.keys() == state2["state"][key].keys()
        for name, value in entries.items():
            assert same_bits(value, state2["state"][key][name]), (key, name)
    return errors, reused


def adamw(**kwargs):
    return lambda net: akt.AdamW(net.parameters(), lr=1e-2, **kwargs)


def nothing(step, net, opt):
    return None


# -- the plain loop, every class and storage mode --------------------------------------------

CLASSES = [("AdamW", {}), ("Adam", dict(amsgrad=True, weight_decay=1e-3)),
           ("SGD", dict(lr=0.1, momentum=0.9)), ("NAdam", {}), ("Adagrad", {}),
           ("RMSprop", dict(momentum=0.9, centered=True)), ("Lion", {}), ("Adan", {}),
           ("LAMB", {})]


@pytest.mark.parametrize("name, kwargs", CLASSES, ids=[c[0] for c in CLASSES])
def test_plain_loop(name, kwargs):
    _, reused = assert_same_run(lambda net: getattr(akt, name)(net.parameters(), **kwargs),
                                nothing)
    assert reused == STEPS - 1  # every step after the first


@pytest.mark.parametrize("mode", [dict(state_dtype="bfloat16"), dict(state_dtype="int8"),
                                  dict(master_weights=True, rounding="stochastic", seed=3)],
                         ids=["bf16-state", "int8-state", "master-stochastic"])
def test_storage_modes(mode):
    dtype = torch.bfloat16 if "master_weights" in mode else torch.float32
    _, reused = assert_same_run(adamw(**mode), nothing, dtype=dtype)
    assert reused == STEPS - 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_param_dtypes(dtype):
    assert_same_run(adamw(), nothing, dtype=dtype, min_reused=STEPS - 1)


def test_bitwise_torch_fused():
    """The reusing steps are torch's fused AdamW's, bit for bit."""
    net, _, _, reused = run(adamw(weight_decay=0.1), nothing, True)
    reference = model()
    opt = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, fused=True)
    for step in range(STEPS):
        backward(reference, step)
        opt.step()
        opt.zero_grad()
    assert reused == STEPS - 1
    for p, q in zip(net.parameters(), reference.parameters()):
        assert same_bits(p.detach(), q.detach())


# -- what a training loop does between steps -------------------------------------------------


def test_data_reassigned():
    def scenario(step, net, opt):
        weight = net[0].weight
        if step == 2:
            weight.data = weight.data.clone()  # new memory, same values
        if step == 4:
            weight.data = weight.data * 0.5

    assert_same_run(adamw(), scenario, min_reused=2)


def test_data_reassigned_other_dtype():
    """A param made float64 through .data for one step: the state (float32) does not fit it,
    which a step refuses alike; float32 again, training goes on."""
    def before(step, net, opt):
        if step == 4:
            net[3].bias.data = net[3].bias.data.float()

    def after(step, net, opt):
        bias = net[3].bias
        if step == 3:
            bias.data = bias.data.double()
            bias.grad.data = bias.grad.data.double()

    errors, _ = assert_same_run(adamw(), before, min_reused=2, after=after)
    assert [error is None for error in errors] == [True, True, True, False, True, True]


def test_grads_none_then_again():
    """A param without a grad for two steps (frozen, unused), then with one again: its own
    step count, the others' calls apart from it."""
    def scenario(step, net, opt):
        net[0].weight.requires_grad_(step not in (2, 3))

    assert_same_run(adamw(), scenario, min_reused=2)


def test_grads_kept():
    """zero_grad(set_to_none=False): the same grad tensors every step (their views reused),
    accumulated by autograd in place."""
    def make(net):
        opt = akt.AdamW(net.parameters(), lr=1e-2)
        opt.set_to_none = False
        return opt

    assert_same_run(make, nothing, min_reused=STEPS - 1)


def test_grads_replaced_in_place_storage():
    """A kept grad whose memory changes under it (grad.data = ...)."""
    def make(net):
        opt = akt.AdamW(net.parameters(), lr=1e-2)
        opt.set_to_none = False
        return opt

    def scenario(step, net, opt):
        grad = net[0].weight.grad
        if step == 3 and grad is not None:
            grad.data = grad.data.clone()

    assert_same_run(make, scenario, min_reused=3)


def test_load_state_dict():
    saved = {}

    def scenario(step, net, opt):
        if step == 2:
            saved["state"] = copy.deepcopy(opt.state_dict())
        if step == 4:
            opt.load_state_dict(saved["state"])

    assert_same_run(adamw(), scenario, min_reused=3)


def test_load_state_dict_of_torch():
    """A torch.optim.AdamW checkpoint loaded mid-training, converted to 8-bit state."""
    def scenario(step, net, opt):
        if step == 3:
            reference = torch.optim.AdamW(net.parameters(), lr=1e-2)
            reference.step()  # grads of the step before are kept until zero_grad: none here
            state = {i: {"step": torch.tensor(7.0), "exp_avg": torch.full_like(p, 0.01),
                         "exp_avg_sq": torch.full_like(p, 1e-4)}
                     for i, p in enumerate(net.parameters())}
            opt.load_state_dict({"state": state,
                                 "param_groups": reference.state_dict()["param_groups"]})

    assert_same_run(adamw(state_dtype="int8"), scenario, min_reused=3)


def test_add_param_group():
    def make(net):
        return akt.AdamW([*net[0].parameters(), *net[1].parameters()], lr=1e-2)

    def scenario(step, net, opt):
        if step == 2:
            opt.add_param_group({"params": list(net[3].parameters()), "lr": 1e-3})

    assert_same_run(make, scenario, min_reused=3)


def test_param_group_edits():
    def scenario(step, net, opt):
        group = opt.param_groups[0]
        if step == 2:
            group["lr"] = 3e-3
            group["betas"] = (0.8, 0.99)
        if step == 3:
            group["weight_decay"] = 0.5
        if step == 4:
            group["amsgrad"] = True  # a buffer more: made at this step

    assert_same_run(adamw(), scenario, min_reused=2)


def test_param_group_params_edited():
    def make(net):
        params = list(net.parameters())
        return akt.AdamW([{"params": params[:3]}, {"params": params[3:], "lr": 1e-3}], lr=1e-2)

    def scenario(step, net, opt):
        if step == 2:
            opt.param_groups[1]["params"].pop()
        if step == 4:
            opt.param_groups[1]["params"].append(net[3].bias)

    assert_same_run(make, scenario, min_reused=2)


def test_state_edits():
    """opt.state edited between steps: an entry replaced, a param's state dropped, a step count
    reset in place, a state tensor given other memory, a param's state dict replaced."""
    def scenario(step, net, opt):
        weight, bias = net[0].weight, net[0].bias
        if step == 2:
            opt.state[weight]["exp_avg"] = torch.zeros_like(weight)
        if step == 3:
            del opt.state[bias]
        if step == 4:
            opt.state[weight]["step"].fill_(1.0)
        if step == 5:
            exp_avg_sq = opt.state[net[3].weight]["exp_avg_sq"]
            exp_avg_sq.data = exp_avg_sq.data.clone()
        if step == 7:  # a param's state dict replaced by one of copies
            opt.state[bias] = {name: value.clone() for name, value in opt.state[bias].items()}

    assert_same_run(adamw(), scenario, steps=9, min_reused=3)


def test_state_dtype_edited_fails_alike():
    def scenario(step, net, opt):
        if step == 3:
            opt.param_groups[0]["state_dtype"] = "int8"
        if step == 5:
            opt.param_groups[0]["state_dtype"] = None

    errors, _ = assert_same_run(adamw(), scenario, min_reused=2)
    assert errors[3] is not None and errors[4] is not None and errors[5] is None


# -- steps that fail, or that the views cannot take -----------------------------------------


def test_bad_value_fails_alike():
    """A bad value assigned to a group in the steady state: the step raises what a full step
    raises and changes nothing (params, grads, state), then training goes on."""
    def scenario(step, net, opt):
        if step == 3:
            opt.param_groups[0]["lr"] = -1.0
        if step == 4:
            opt.param_groups[0]["lr"] = 1e-2

    errors, _ = assert_same_run(adamw(), scenario, min_reused=3)
    assert errors[3] is not None and "lr" in errors[3][1]


def test_failed_step_changes_nothing():
    net = model()
    opt = akt.AdamW(net.parameters(), lr=1e-2)
    for step in range(3):
        backward(net, step)
        opt.step()
        opt.zero_grad()
    assert opt._steady is not None  # the next step would reuse views
    backward(net, 3)
    bias = net[3].bias
    bias.grad.data = bias.grad.data.double()  # the wrong dtype
    params = [p.detach().clone() for p in net.parameters()]
    grads = [p.grad.clone() for p in net.parameters()]
    state = copy.deepcopy(opt.state_dict()["state"])
    with pytest.raises(TypeError, match=r"param_groups\[0\] param 5's grad has dtype"):
        opt.step()
    for p, before, grad in zip(net.parameters(), params, grads):
        assert same_bits(p.detach(), before) and same_bits(p.grad, grad)
    for key, entries in opt.state_dict()["state"].items():
        for name, value in entries.items():
            assert same_bits(value, state[key][name])


@pytest.mark.parametrize("kind", ["transposed", "requires_grad", "float64", "float16"])
def test_grads_the_views_cannot_take(kind):
    """Grads that are not plain contiguous tensors of the param's dtype, in a steady state:
    stepped (or refused) as a full step does it."""
    def after(step, net, opt):
        if step < 3:
            return
        weight = net[3].weight
        if kind == "transposed":
            weight.grad = weight.grad.t().contiguous().t()
        elif kind == "requires_grad":
            weight.grad = weight.grad.detach().requires_grad_()
        else:
            weight.grad.data = weight.grad.data.to(getattr(torch, kind))

    errors, _ = assert_same_run(adamw(), nothing, min_reused=2, after=after)
    assert (errors[3] is None) == (kind in ("transposed", "requires_grad"))


def test_grad_scale_and_found_inf():
    """AMP's attributes in the steady state: grads unscaled in place, a step skipped."""
    def scenario(step, net, opt):
        opt.grad_scale = torch.tensor(4.0)
        opt.found_inf = torch.tensor(1.0 if step == 3 else 0.0)

    assert_same_run(adamw(), scenario, min_reused=3)


def test_channels_last_is_not_reused():
    """A group with a tensor that is not contiguous takes full steps, as before."""
    def make(net):
        return akt.AdamW(net.parameters(), lr=1e-2)

    def scenario(step, net, opt):
        if step == 0:
            net[0].weight.data = net[0].weight.data.t().contiguous().t()  # transposed memory

    _, _, _, reused = run(make, scenario, True)
    assert reused == 0
    net, _, _, _ = run(make, scenario, True)
    net2, _, _, _ = run(make, scenario, False)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert same_bits(p.detach(), q.detach())


# -- the training-loop benchmark -------------------------------------------------------------


def test_loop_bench_rows():
    rows = _torch_loop_bench.run(steps=3, warmup=1, threads=(1,), width=16, layers=1,
                                 vocab=32, sequence=4, batch=2)
    names = [row.optimizer for row in rows]
    assert names[:4] == ["torch.optim.AdamW(fused=True)", "adamkern.torch.AdamW",
                         "adamkern.torch.AdamW(state_dtype='bfloat16')",
                         "adamkern.torch.AdamW(state_dtype='int8')"]
    reference = rows[0]
    assert reference.speedup == 1.0
    for row in rows:
        assert row.threads == 1 and row.step_us > 0 and row.state_bytes > 0
        assert row.speedup == pytest.approx(reference.step_us / row.step_us)
    by_name = {row.optimizer: row for row in rows}
    fp32 = by_name["adamkern.torch.AdamW"].state_bytes
    assert fp32 == reference.state_bytes
    assert by_name["adamkern.torch.AdamW(state_dtype='bfloat16')"].state_bytes < 0.51 * fp32
    assert by_name["adamkern.torch.AdamW(state_dtype='int8')"].state_bytes < 0.27 * fp32
    assert names[-2:] == [_torch_loop_bench.KERNEL, _torch_loop_bench.ROOFLINE]
    roofline = by_name[_torch_loop_bench.ROOFLINE]
    assert roofline.of_roofline == 1.0
    assert 0.99 * fp32 < roofline.state_bytes <= fp32  # two float32 buffers, no step counts
    for row in rows:
        assert row.of_roofline == pytest.approx(roofline.step_us / row.step_us)


def test_loop_bench_roofline_moves_adamws_bytes():
    """The loop's roofline row steps roofline_ on its model's params and grads and its own
    zeros_like state: param <- exp_avg, exp_avg <- exp_avg_sq, exp_avg_sq <- param + grad."""
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    roofline = _torch_loop_bench.Roofline(params)
    for p in params:
        p.grad = torch.randn_like(p)
    before = [p.detach().clone() for p in params]
    for k, p in enumerate(params):  # state values to see them move
        roofline.state[p]["exp_avg"].fill_(k + 1.0)
        roofline.state[p]["exp_avg_sq"].fill_(k + 10.0)
    roofline.prepare()
    roofline.step()
    for k, p in enumerate(params):
        state = roofline.state[p]
        assert torch.equal(p.detach(), torch.full_like(p, k + 1.0))
        assert torch.equal(state["exp_avg"], torch.full_like(p, k + 10.0))
        assert torch.equal(state["exp_avg_sq"], before[k] + p.grad)
    roofline.zero_grad()
    assert all(p.grad is None for p in params)


def test_loop_bench_kernel_alone_is_adamw():
    """The loop's kernel row is adamkern.adamw_ on its model's arrays, step after step: the
    bits of torch's fused AdamW."""
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    alone = _torch_loop_bench.KernelAlone(params)
    reference = torch.optim.AdamW(twins, lr=1e-3, fused=True)
    for _ in range(3):
        for p, twin in zip(params, twins):
            p.grad = torch.randn_like(p)
            twin.grad = p.grad.clone()
        alone.prepare()
        alone.step()
        reference.step()
        alone.zero_grad()
    for p, twin in zip(params, twins):
        state, twin_state = alone.state[p], reference.state[twin]
        assert same_bits(p.detach(), twin.detach())
        assert same_bits(state["exp_avg"], twin_state["exp_avg"])
        assert same_bits(state["exp_avg_sq"], twin_state["exp_avg_sq"])


def test_loop_bench_overhead_and_pools():
    row = _torch_loop_bench.overhead(tensors=3, elements=100, steps=5)
    assert row.tensors == 3 and row.step_us > 0 and row.kernel_us > 0 and row.torch_us > 0
    assert row.overhead_us == pytest.approx(row.step_us - row.kernel_us)
    pools = _torch_loop_bench.thread_pools(threads=(1,), elements=3000, tensors=3, steps=2)
    assert [p.optimizer for p in pools] == ["torch.optim.AdamW(fused=True)",
                                            "adamkern.torch.AdamW"]
    assert all(p.back_to_back_us > 0 and p.after_torch_op_us > 0 and p.after_idle_us > 0
               for p in pools)
    runtimes = _torch_loop_bench.openmp_runtimes()
    assert isinstance(runtimes, list)


# -- torch's step wrapper: hooks always, the profiler's range while a profiler runs ---------


def test_step_hooks_as_torch():
    """Step pre- and post-hooks, global and per optimizer, run in torch's order with torch's
    arguments, and a pre-hook's (args, kwargs) replace step's."""
    from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                       register_optimizer_step_pre_hook)

    def trace(make):
        p = torch.nn.Parameter(torch.ones(3))
        p.grad = torch.ones(3)
        opt = make([p])
        calls = []
        opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", len(args))))
        opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", len(args))))
        handles = [register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
                   register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post"))]
        try:
            opt.step()
        finally:
            for handle in handles:
                handle.remove()
        closure_loss = []
        opt.register_step_pre_hook(
            lambda o, args, kwargs: (args, {"closure": lambda: closure_loss.append(1) or 2.0}))
        assert opt.step() == 2.0 and closure_loss == [1]
        return calls

    assert trace(akt.AdamW) == trace(torch.optim.AdamW)
    assert getattr(akt.AdamW.step, "hooked", False)  # torch wraps it no further


def test_profiler_sees_the_step():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = akt.AdamW([p])
    opt.step()
    with torch.profiler.profile() as profile:
        opt.step()
    assert "Optimizer.step#AdamW.step" in {event.name for event in profile.events()}
