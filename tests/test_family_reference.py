"""Every optimizer of the family against its NumPy reference: all option combinations, float32
and float64, several sizes (one tensor and a list, empty and multidimensional arrays) and
several steps; found_inf and grad_scale in every form; and the Keras options against Keras'
update formulas written out literally."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import adamkern
from adamkern import _ops_newest, ops

from family import SPECS, SPECS_BY_NAME, Problem
from helpers import DTYPES, assert_close_to_reference

SHAPES = {
    "one": [(1,)],
    "simd": [(15,), (16,), (17,)],
    "large": [(100003,)],
    "model": [(3, 7), (0,), (64, 33), (1,), (1001,)],
    "multidimensional": [(2, 3, 4), (0,), (1, 1), (0, 5)],
}
STEPS = 4


def run_both(spec, shapes, dtype, options, steps=STEPS, lr=None):
    kernel = Problem(spec, shapes, dtype, seed=1)
    reference = kernel.copy()
    extra = {} if lr is None else {"lr": lr}
    for step in range(1, steps + 1):
        grads = kernel.grads()
        reference_grads = [g.copy() for g in grads]
        kernel.step(spec.op, grads, step, **options, **extra)
        reference.step(spec.reference, reference_grads, step, **options, **extra)
    return kernel, reference


def check(kernel, reference, what):
    for i, (a, b) in enumerate(zip(kernel.arrays(), reference.arrays())):
        assert_close_to_reference(a, b, f"{what}, array {i}")


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_option_against_reference(spec, dtype):
    for options in spec.options:
        kernel, reference = run_both(spec, SHAPES["simd"] + SHAPES["model"], dtype, options)
        check(kernel, reference, f"{spec} {options}")


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("shapes", SHAPES.values(), ids=SHAPES.keys())
def test_sizes_against_reference(spec, shapes):
    kernel, reference = run_both(spec, shapes, np.float32, spec.options[-1], steps=3)
    check(kernel, reference, f"{spec} {shapes}")


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_update_moves_params(spec):
    """A guard against a reference and kernel that agree by both doing nothing: the second
    step moves the params (ADOPT's first only starts its second moment)."""
    kernel, _ = run_both(spec, [(1000,)], np.float64, spec.options[0], steps=2, lr=0.1)
    start = run_both(spec, [(1000,)], np.float64, spec.options[0], steps=1, lr=0.1)[0].params[0]
    assert np.all(np.isfinite(kernel.params[0]))
    assert np.mean(kernel.params[0] != start) > 0.99


@pytest.mark.parametrize("module", [ops, _ops_newest], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    """The ops' examples (their bodies are made by _opcall.kernel_op: doctest must find them
    in their module)."""
    results = doctest.testmod(module, extraglobs={"np": np, "adamkern": adamkern})
    assert results.attempted >= 20 and results.failed == 0


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_empty_lists_do_nothing(spec):
    Problem(spec, [], np.float32).step(spec.op, [], 1)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_single_arrays_equal_lists_of_one(spec):
    lists = Problem(spec, [(777,)], np.float64)
    single = lists.copy()
    grad = lists.grads()[0]
    lists.step(spec.op, [grad.copy()], 1)
    spec.op(single.params[0], grad.copy(), **{k: v[0] for k, v in single.states.items()},
            **single.call_states, **spec.step_kwargs(1))
    for a, b in zip(single.arrays(), lists.arrays()):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("flag", [1.0, np.array([1.0], np.float32), np.float32(2.0), True])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_found_inf_in_every_form_skips(spec, flag):
    problem = Problem(spec, [(100,), (7,)], np.float32)
    grads = problem.grads()
    before = [a.copy() for a in problem.arrays() + grads]
    problem.step(spec.op, grads, 1, grad_scale=2.0, found_inf=flag, **spec.options[-1])
    for a, b in zip(problem.arrays() + grads, before):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_found_inf_skips_and_grad_scale_unscales(spec):
    problem = Problem(spec, [(33,), (5, 5)], np.float32)
    before = [a.copy() for a in problem.arrays()]
    grads = problem.grads()
    grads_before = [g.copy() for g in grads]
    problem.step(spec.op, grads, 1, grad_scale=8.0, found_inf=np.ones(1, np.float32))
    for a, b in zip(problem.arrays() + grads, before + grads_before):
        assert a.tobytes() == b.tobytes()

    scaled = problem.copy()
    scaled_grads = [g * np.float32(1024.0) for g in grads]
    problem.step(spec.op, grads, 1)
    scaled.step(spec.op, scaled_grads, 1, grad_scale=1024.0, found_inf=0.0)
    for a, b in zip(scaled_grads + scaled.arrays(), grads + problem.arrays()):
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_adam_both_sides_of_torch_lerp(beta1):
    # 1 - beta1 below and above 0.5 take the two branches of torch's lerp.
    kernel, reference = run_both(SPECS_BY_NAME["adam"], [(4099,)], np.float32,
                                 {"betas": (beta1, 0.99)})
    check(kernel, reference, f"beta1 {beta1}")


def test_adamw_is_adam_with_decoupled_decay():
    adam = Problem(SPECS_BY_NAME["adam"], [(1000,)], np.float32)
    adamw = adam.copy()
    grads = adam.grads()
    adamw.step(adamkern.adamw_, [g.copy() for g in grads], 1)
    adam.step(adamkern.adam_, [g.copy() for g in grads], 1, weight_decay=1e-2,
              decoupled_weight_decay=True)
    for a, b in zip(adamw.arrays(), adam.arrays()):
        assert a.tobytes() == b.tobytes()


def keras_rmsprop(var, grads, lr, rho, momentum, epsilon, centered):
    """keras/src/optimizers/rmsprop.py update_step, literally (lr inside the momentum)."""
    t = var.dtype.type
    velocity, average_grad, mom = (np.zeros_like(var) for _ in range(3))
    for g in grads:
        velocity[...] = t(rho) * velocity + t(1 - rho) * g * g
        if centered:
            average_grad[...] = t(rho) * average_grad + t(1 - rho) * g
            denominator = velocity - average_grad * average_grad + t(epsilon)
        else:
            denominator = velocity + t(epsilon)
        increment = t(lr) * g / np.sqrt(denominator)
        if momentum > 0:
            mom[...] = t(momentum) * mom + increment
            var -= mom
        else:
            var -= increment


def keras_adagrad(var, grads, lr, initial_accumulator_value, epsilon):
    """keras/src/optimizers/adagrad.py update_step, literally."""
    t = var.dtype.type
    accumulator = np.full_like(var, initial_accumulator_value)
    for g in grads:
        accumulator += g * g
        var -= t(lr) * g / np.sqrt(accumulator + t(epsilon))


def keras_adam(var, grads, lr, beta_1, beta_2, epsilon):
    """keras/src/optimizers/adam.py update_step, literally."""
    t = var.dtype.type
    m, v = np.zeros_like(var), np.zeros_like(var)
    for step, g in enumerate(grads, start=1):
        alpha = t(lr) * np.sqrt(t(1) - t(beta_2) ** step) / (t(1) - t(beta_1) ** step)
        m += (g - m) * t(1 - beta_1)
        v += (g * g - v) * t(1 - beta_2)
        var -= (m * alpha) / (np.sqrt(v) + t(epsilon))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.9, False), (0.9, True)])
def test_rmsprop_eps_inside_sqrt_is_keras_rmsprop(dtype, momentum, centered):
    rng = np.random.default_rng(5)
    param = rng.standard_normal(1001).astype(dtype)
    grads = [rng.standard_normal(1001).astype(dtype) for _ in range(6)]
    expected = param.copy()
    keras_rmsprop(expected, grads, lr=1e-3, rho=0.9, momentum=momentum, epsilon=1e-7,
                  centered=centered)
    square_avg, buf, grad_avg = (np.zeros_like(param) for _ in range(3))
    for g in grads:
        adamkern.rmsprop_(param, g.copy(), square_avg, lr=1e-3, alpha=0.9, eps=1e-7,
                          momentum=momentum, centered=centered, momentum_buffers=buf,
                          grad_avgs=grad_avg, eps_inside_sqrt=True)
    # the momentum buffer is torch's (lr outside), Keras keeps lr inside: the same update at a
    # constant lr
    assert_close_to_reference(param, expected, "rmsprop vs Keras")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_adagrad_eps_inside_sqrt_is_keras_adagrad(dtype):
    rng = np.random.default_rng(6)
    param = rng.standard_normal(1001).astype(dtype)
    grads = [rng.standard_normal(1001).astype(dtype) for _ in range(6)]
    expected = param.copy()
    keras_adagrad(expected, grads, lr=1e-3, initial_accumulator_value=0.1, epsilon=1e-7)
    state_sum = np.full_like(param, 0.1)
    for step, g in enumerate(grads, start=1):
        adamkern.adagrad_(param, g.copy(), state_sum, step=step, lr=1e-3, eps=1e-7,
                          eps_inside_sqrt=True)
    assert_close_to_reference(param, expected, "adagrad vs Keras")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_adam_epsilon_hat_is_keras_adam(dtype):
    rng = np.random.default_rng(7)
    param = rng.standard_normal(1001).astype(dtype)
    grads = [rng.standard_normal(1001).astype(dtype) for _ in range(6)]
    expected = param.copy()
    keras_adam(expected, grads, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    m, v = np.zeros_like(param), np.zeros_like(param)
    for step, g in enumerate(grads, start=1):
        adamkern.adam_(param, g.copy(), m, v, step=step, lr=1e-3, eps=1e-7, epsilon_hat=True)
    assert_close_to_reference(param, expected, "adam vs Keras")
