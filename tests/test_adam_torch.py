"""adam_/adamw_ against torch.optim.Adam/AdamW: bitwise against fused=True, and close to the
foreach and single-tensor implementations. Skipped when torch is not installed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import DTYPES, SIZES, AdamState, assert_bitwise_equal, assert_close_to_reference

import adamkern

torch = pytest.importorskip("torch")

OPTIONS = [
    dict(weight_decay=wd, decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
    for wd, decoupled, amsgrad, maximize in itertools.product(
        [0.0, 0.1], [False, True], [False, True], [False, True])
    if wd or not decoupled
]
STEPS = 4


@pytest.fixture(autouse=True)
def _torch_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torch_run(state, grads_per_step, *, implementation, lr, betas, weight_decay,
              decoupled_weight_decay, amsgrad, maximize, grad_scales=None, found_infs=None):
    """Steps torch's optimizer over copies of `state`; returns (params, state dicts, grads)."""
    params = [torch.tensor(p.copy(), requires_grad=True) for p in state.params]
    flags = {"fused": implementation == "fused", "foreach": implementation == "foreach"}
    if implementation == "single":
        flags = {"foreach": False}
    cls = torch.optim.AdamW if decoupled_weight_decay else torch.optim.Adam
    opt = cls(params, lr=lr, betas=betas, weight_decay=weight_decay, amsgrad=amsgrad,
              maximize=maximize, **flags)
    seen_grads = []
    for k, grads in enumerate(grads_per_step):
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g.copy())
        if grad_scales is not None:
            opt.grad_scale = torch.tensor(grad_scales[k], dtype=torch.float32)
            opt.found_inf = torch.tensor(found_infs[k], dtype=torch.float32)
        opt.step()
        seen_grads.append([p.grad.numpy().copy() for p in params])
    states = [opt.state[p] for p in params]
    return [p.detach().numpy() for p in params], states, seen_grads


def ours_run(state, grads_per_step, *, lr, betas, weight_decay, decoupled_weight_decay,
             amsgrad, maximize, grad_scales=None, found_infs=None):
    seen_grads = []
    step = 0
    for k, grads in enumerate(grads_per_step):
        grads = [g.copy() for g in grads]
        skip = found_infs is not None and found_infs[k] != 0.0
        step += 1
        adamkern.adam_(state.params, grads, state.exp_avgs, state.exp_avg_sqs, step=step, lr=lr,
                       betas=betas, weight_decay=weight_decay,
                       decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad,
                       max_exp_avg_sqs=state.max_exp_avg_sqs if amsgrad else None,
                       maximize=maximize,
                       grad_scale=None if grad_scales is None else grad_scales[k],
                       found_inf=None if found_infs is None else found_infs[k])
        if skip:
            step -= 1  # torch's AMP path rolls the step count back on a skipped step
        seen_grads.append(grads)
    return seen_grads


def compare(state, torch_params, torch_states, amsgrad, assert_fn):
    for i, tp in enumerate(torch_params):
        assert_fn(state.params[i], tp, f"params[{i}]")
        assert_fn(state.exp_avgs[i], torch_states[i]["exp_avg"].numpy(), f"exp_avgs[{i}]")
        assert_fn(state.exp_avg_sqs[i], torch_states[i]["exp_avg_sq"].numpy(),
                  f"exp_avg_sqs[{i}]")
        if amsgrad:
            assert_fn(state.max_exp_avg_sqs[i], torch_states[i]["max_exp_avg_sq"].numpy(),
                      f"max_exp_avg_sqs[{i}]")


def run_case(shapes, dtype, implementation, assert_fn, lr=1e-2, betas=(0.9, 0.999), **options):
    state = AdamState(shapes, dtype)
    grads_per_step = [state.grads() for _ in range(STEPS)]
    kwargs = dict(lr=lr, betas=betas, **options)
    torch_params, torch_states, _ = torch_run(state, grads_per_step,
                                              implementation=implementation, **kwargs)
    ours_run(state, grads_per_step, **kwargs)
    compare(state, torch_params, torch_states, options["amsgrad"], assert_fn)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", OPTIONS,
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_bitwise_equal_to_torch_fused(options, dtype):
    run_case([(1037,), (3, 5), (64, 33), (1,)], dtype, "fused", assert_bitwise_equal, **options)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [s for s in SIZES if s])
def test_bitwise_equal_to_torch_fused_sizes(size, dtype):
    run_case([(size,)], dtype, "fused", assert_bitwise_equal, weight_decay=0.1,
             decoupled_weight_decay=True, amsgrad=True, maximize=False)


@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.9])
def test_bitwise_equal_to_torch_fused_lerp_branches(beta1):
    run_case([(1037,)], np.float32, "fused", assert_bitwise_equal, betas=(beta1, 0.99),
             weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_equal_to_torch_fused_with_grad_scaling(dtype):
    state = AdamState([(1037,), (17,)], dtype)
    grads_per_step = [state.grads() for _ in range(STEPS)]
    scales = [65536.0, 3.0, 1000.5, 3.0]
    found = [0.0, 0.0, 1.0, 0.0]  # the third step overflowed: skipped
    scaled = [[g * dtype(s) for g in grads] for grads, s in zip(grads_per_step, scales)]
    kwargs = dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.1, decoupled_weight_decay=False,
                  amsgrad=True, maximize=True, grad_scales=scales, found_infs=found)
    torch_params, torch_states, torch_grads = torch_run(state, scaled, implementation="fused",
                                                        **kwargs)
    our_grads = ours_run(state, scaled, **kwargs)
    compare(state, torch_params, torch_states, True, assert_bitwise_equal)
    for ours_step, torch_step in zip(our_grads, torch_grads):  # unscaled in place, or not
        for a, b in zip(ours_step, torch_step):
            assert_bitwise_equal(a, b, "grads")


@pytest.mark.parametrize("implementation", ["foreach", "single"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", OPTIONS,
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_close_to_torch_foreach_and_single_tensor(options, dtype, implementation):
    run_case([(1037,), (64, 33)], dtype, implementation, assert_close_to_reference, **options)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    shapes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 1.0),
    beta1=st.floats(0.0, 0.999),
    beta2=st.floats(0.0, 0.9999),
    weight_decay=st.floats(0.0, 0.5),
    decoupled=st.booleans(),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
)
def test_random_hyperparameters_bitwise_equal_to_torch_fused(shapes, dtype, lr, beta1, beta2,
                                                             weight_decay, decoupled, amsgrad,
                                                             maximize):
    run_case([(s,) for s in shapes], dtype, "fused", assert_bitwise_equal, lr=lr,
             betas=(beta1, beta2), weight_decay=weight_decay, decoupled_weight_decay=decoupled,
             amsgrad=amsgrad, maximize=maximize)
