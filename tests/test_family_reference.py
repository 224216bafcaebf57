"""Every optimizer of the family against its NumPy reference: all option combinations, float32
and float64, several sizes (one tensor and a list) and several steps."""

from __future__ import annotations

import numpy as np
import pytest

from family import SPECS, Problem
from helpers import DTYPES, assert_close_to_reference

SHAPES = {
    "one": [(1,)],
    "simd": [(15,), (16,), (17,)],
    "large": [(100003,)],
    "model": [(3, 7), (0,), (64, 33), (1,), (1001,)],
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
    """A guard against a reference and kernel that agree by both doing nothing."""
    kernel, _ = run_both(spec, [(1000,)], np.float64, spec.options[0], steps=1, lr=0.1)
    start = Problem(spec, [(1000,)], np.float64, seed=1).params[0]
    assert np.all(np.isfinite(kernel.params[0]))
    assert np.mean(kernel.params[0] != start) > 0.99


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
