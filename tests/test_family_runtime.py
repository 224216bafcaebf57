"""Every optimizer of the family gives the same bits on every ISA and for every thread count
(LAMB's per-tensor norms included: their reduction order is fixed by chunks, not threads)."""

from __future__ import annotations

import numpy as np
import pytest

from family import SPECS, Problem
from helpers import DTYPES, assert_bitwise_equal

import adamkern

ISAS = adamkern.cpu_info()["available_isas"]
# Small, odd, SIMD-width and large tensors: threads split inside and across tensors, and the
# large one spans several reduction chunks.
SHAPES = [(1,), (15,), (17,), (3, 7), (100003,), (0,), (70001,)]


def run(spec, dtype, options, steps=3):
    problem = Problem(spec, SHAPES, dtype, seed=3)
    for step in range(1, steps + 1):
        problem.step(spec.op, problem.grads(), step, lr=1e-2, **options)
    return problem.arrays()


def assert_all_equal(results, what):
    first, *others = results.items()
    for key, arrays in others:
        for i, (a, b) in enumerate(zip(arrays, first[1])):
            assert_bitwise_equal(a, b, f"{what}: {key} vs {first[0]}, array {i}")


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_isas_and_threads_give_identical_bits(spec, dtype):
    options = spec.options[-1]  # the one with every switch on
    results = {}
    for isa in ISAS:
        adamkern.set_isa(isa)
        for threads in (1, 2, 3):
            adamkern.set_num_threads(threads)
            results[(isa, threads)] = run(spec, dtype, options)
    assert_all_equal(results, f"{spec} {options}")
