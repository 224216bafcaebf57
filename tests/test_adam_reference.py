"""adam_/adamw_ against the NumPy reference, over several steps and every option."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import DTYPES, SIZES, AdamState, assert_close_to_reference

import adamkern

OPTIONS = [
    dict(weight_decay=wd, decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
    for wd, decoupled, amsgrad, maximize in itertools.product(
        [0.0, 0.1], [False, True], [False, True], [False, True])
    if wd or not decoupled
]


def run_both(shapes, dtype, steps, **options):
    ours = AdamState(shapes, dtype)
    ref = ours.copy()
    amsgrad = options.get("amsgrad", False)
    for step in range(1, steps + 1):
        grads = ours.grads()
        ref_grads = [g.copy() for g in grads]
        kwargs = dict(step=step, lr=1e-2, **options)
        adamkern.adam_(ours.params, grads, ours.exp_avgs, ours.exp_avg_sqs,
                       max_exp_avg_sqs=ours.max_exp_avg_sqs if amsgrad else None, **kwargs)
        adamkern.reference.adam(ref.params, ref_grads, ref.exp_avgs, ref.exp_avg_sqs,
                                max_exp_avg_sqs=ref.max_exp_avg_sqs if amsgrad else None,
                                **kwargs)
        for g, rg in zip(grads, ref_grads):
            np.testing.assert_array_equal(g, rg)
    return ours, ref


def check(ours, ref):
    for name in ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"):
        for i, (a, b) in enumerate(zip(getattr(ours, name), getattr(ref, name))):
            assert_close_to_reference(a, b, f"{name}[{i}]")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_sizes_match_reference(size, dtype):
    ours, ref = run_both([(size,)], dtype, steps=3, weight_decay=0.1)
    check(ours, ref)
    if size:
        assert not np.array_equal(ours.params[0], AdamState([(size,)], dtype).params[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", OPTIONS,
                         ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_options_match_reference(options, dtype):
    ours, ref = run_both([(1037,), (3, 5), (64, 33)], dtype, steps=5, **options)
    check(ours, ref)


@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_both_sides_of_torch_lerp(beta1):
    # 1 - beta1 below and above 0.5 take the two branches of torch's lerp.
    ours, ref = run_both([(4099,)], np.float32, steps=4, betas=(beta1, 0.99))
    check(ours, ref)


def test_adamw_is_adam_with_decoupled_decay():
    a = AdamState([(1000,)], np.float32)
    b = a.copy()
    grads = a.grads()
    adamkern.adamw_(a.params, [g.copy() for g in grads], a.exp_avgs, a.exp_avg_sqs, step=1)
    adamkern.adam_(b.params, [g.copy() for g in grads], b.exp_avgs, b.exp_avg_sqs, step=1,
                   weight_decay=1e-2, decoupled_weight_decay=True)
    np.testing.assert_array_equal(a.params[0], b.params[0])


def test_single_array_equals_list_of_one():
    a = AdamState([(777,)], np.float64)
    b = a.copy()
    grad = a.grads()[0]
    adamkern.adam_(a.params[0], grad.copy(), a.exp_avgs[0], a.exp_avg_sqs[0], step=1)
    adamkern.adam_(b.params, [grad.copy()], b.exp_avgs, b.exp_avg_sqs, step=1)
    np.testing.assert_array_equal(a.params[0], b.params[0])


def test_grad_scale_unscales_grads_in_place():
    ours = AdamState([(1001,)], np.float32)
    ref = ours.copy()
    grads = ours.grads()
    scaled = [g * np.float32(1024.0) for g in grads]
    ref_scaled = [g.copy() for g in scaled]
    adamkern.adam_(ours.params, scaled, ours.exp_avgs, ours.exp_avg_sqs, step=1,
                   grad_scale=np.array([1024.0], np.float32))
    adamkern.reference.adam(ref.params, ref_scaled, ref.exp_avgs, ref.exp_avg_sqs, step=1,
                            grad_scale=1024.0)
    np.testing.assert_array_equal(scaled[0], grads[0])  # 1024 is a power of two: exact
    np.testing.assert_array_equal(ref_scaled[0], grads[0])
    check(ours, ref)


@pytest.mark.parametrize("flag", [1.0, np.array([1.0], np.float32), np.float32(2.0), True])
def test_found_inf_skips_the_step(flag):
    state = AdamState([(100,), (7,)], np.float32)
    grads = state.grads()
    before = [a.copy() for a in state.arrays() + grads]
    adamkern.adam_(state.params, grads, state.exp_avgs, state.exp_avg_sqs, step=1,
                   grad_scale=2.0, found_inf=flag, amsgrad=True,
                   max_exp_avg_sqs=state.max_exp_avg_sqs)
    for a, b in zip(state.arrays() + grads, before):
        np.testing.assert_array_equal(a, b)


def test_found_inf_zero_runs_the_step():
    state = AdamState([(100,)], np.float32)
    before = state.params[0].copy()
    adamkern.adam_(state.params, state.grads(), state.exp_avgs, state.exp_avg_sqs, step=1,
                   found_inf=np.zeros(1, np.float32))
    assert not np.array_equal(state.params[0], before)


def test_multidimensional_and_empty_lists():
    adamkern.adam_([], [], [], [], step=1)  # nothing to do, no error
    ours, ref = run_both([(2, 3, 4), (0,), (1, 1)], np.float64, steps=2)
    check(ours, ref)

