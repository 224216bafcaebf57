"""adamkern.torch's classes for the optimizers torch lacks (Lion, AdaBelief, LAMB, Adan, Yogi,
ADOPT, AdEMAMix):
bitwise adamkern.optim's (the same kernels) over several steps for every option combination of
tests/family.py, float32 and float64, in one param group and with a param whose grad comes
late (its own step count); close to the NumPy reference; constructors that take the
functional op's hyperparameters and defaults; a model trained with an LR scheduler.
Skipped when torch is not installed."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from family import SPECS_BY_NAME
from helpers import assert_bitwise_equal, assert_close_to_reference

import adamkern.reference
from adamkern import optim, registry
from adamkern.groups import op_hyperparameters

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

FAMILY = {"Lion": "lion", "AdaBelief": "adabelief", "LAMB": "lamb", "Adan": "adan",
          "Yogi": "yogi", "ADOPT": "adopt", "AdEMAMix": "ademamix"}
SHAPES = [(1,), (17,), (33, 9), (1000,)]
STEPS = 5
CASES = [pytest.param(cls, options, id=f"{cls}-" + "-".join(f"{k}={v}" for k, v in options.items()))
         for cls, name in FAMILY.items() for options in SPECS_BY_NAME[name].options]


def grads(dtype, shapes, step, seed=0):
    generator = torch.Generator().manual_seed(1000 * seed + step)
    return [torch.randn(shape, generator=generator, dtype=dtype) for shape in shapes]


def make_params(dtype, shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype))
            for shape in shapes]


def assert_tensors_bitwise(actual, expected, what):
    assert_bitwise_equal(actual.detach().numpy(), np.asarray(expected), what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls, options", CASES)
def test_bitwise_adamkern_optim(cls, options, dtype):
    params = make_params(dtype, SHAPES)
    arrays = [p.detach().numpy().copy() for p in params]
    opt = getattr(akt, cls)(params, lr=1e-2, **options)
    reference = getattr(optim, cls)(arrays, lr=1e-2, **options)
    for step in range(STEPS):
        step_grads = grads(dtype, SHAPES, step)
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
        reference.step([g.numpy().copy() for g in step_grads])
    for k, (p, a) in enumerate(zip(params, arrays)):
        assert_tensors_bitwise(p, a, f"param {k}")
        for name, value in reference.state[k].items():
            assert_tensors_bitwise(opt.state[p][name], value, f"param {k} {name}")
        if getattr(akt, cls)._has_step:
            assert float(opt.state[p]["step"]) == STEPS


@pytest.mark.parametrize("cls", FAMILY)
def test_each_param_counts_its_own_steps(cls):
    # param 1's grad comes at the third step: its first step is then, as a lone adamkern.optim
    # optimizer started then steps it, while param 0 goes on
    params = make_params(torch.float32, [(40,), (300,)])
    early = [params[0].detach().numpy().copy()]
    late = [params[1].detach().numpy().copy()]
    opt = getattr(akt, cls)(params, lr=1e-2)
    reference_early = getattr(optim, cls)(early, lr=1e-2)
    reference_late = getattr(optim, cls)(late, lr=1e-2)
    for step in range(6):
        g0, g1 = grads(torch.float32, [(40,), (300,)], step)
        params[0].grad = g0
        params[1].grad = g1 if step >= 2 else None
        opt.step()
        reference_early.step([g0.numpy().copy()])
        if step >= 2:
            reference_late.step([g1.numpy().copy()])
    assert_tensors_bitwise(params[0], early[0], "param 0")
    assert_tensors_bitwise(params[1], late[0], "param 1")


@pytest.mark.parametrize("cls", FAMILY)
def test_close_to_the_numpy_reference(cls):
    name = FAMILY[cls]
    spec = SPECS_BY_NAME[name]
    params = make_params(torch.float64, SHAPES)
    arrays = [p.detach().numpy().copy() for p in params]
    states = {argument: [np.full(shape, initial) for shape in SHAPES]
              for argument, initial in spec.states.items()}
    opt = getattr(akt, cls)(params, lr=1e-2)
    for step in range(1, STEPS + 1):
        step_grads = grads(torch.float64, SHAPES, step)
        for p, g in zip(params, step_grads):
            p.grad = g
        opt.step()
        getattr(adamkern.reference, name)(arrays, [g.numpy() for g in step_grads], **states,
                                          lr=1e-2, **spec.step_kwargs(step))
    for k, (p, a) in enumerate(zip(params, arrays)):
        assert_close_to_reference(p.detach().numpy(), a, f"param {k}")


@pytest.mark.parametrize("cls", FAMILY)
def test_constructor_takes_the_ops_hyperparameters(cls):
    op = getattr(akt, cls)._op
    signature = inspect.signature(getattr(akt, cls))
    expected = {**op_hyperparameters(op), **registry.describe(op.__name__).initial_options}
    parameters = dict(signature.parameters)
    assert list(parameters)[0] == "params"
    for name, default in expected.items():
        assert parameters[name].default == default, name
        keyword_only = parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert keyword_only == isinstance(default, bool), name  # flags keyword-only, as torch
    modes = {"state_dtype": None, "master_weights": False, "rounding": "nearest", "seed": 0}
    assert set(parameters) == {"params", *expected, *modes}
    opt = getattr(akt, cls)([torch.nn.Parameter(torch.zeros(3))])
    assert opt.defaults == {**expected, **modes}
    with pytest.raises(TypeError):
        getattr(akt, cls)([torch.nn.Parameter(torch.zeros(3))], momentum=0.9)


@pytest.mark.parametrize("cls", FAMILY)
def test_trains_a_model_with_a_scheduler(cls):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    lr = 1e-2 if cls == "Lion" else 3e-2
    opt = getattr(akt, cls)(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
    x = torch.randn(64, 8)
    y = x[:, :1] * 2 - x[:, 1:2]
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(x), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        scheduler.step()
    assert losses[-1] < 0.5 * losses[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(lr * 0.125)
