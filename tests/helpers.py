"""Shared test helpers: deterministic optimizer state and comparisons."""

from __future__ import annotations

import numpy as np

DTYPES = [np.float32, np.float64]
# The sizes every kernel is checked on: empty, one element, around the SIMD width and a large
# odd size that exercises threading, peeling and the remainder.
SIZES = [0, 1, 15, 16, 17, 1000003]


class AdamState:
    """params/exp_avgs/exp_avg_sqs/max_exp_avg_sqs for a list of shapes, plus a grad stream."""

    def __init__(self, shapes, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.shapes = shapes
        self.dtype = dtype
        self.params = [rng.standard_normal(s).astype(dtype) for s in shapes]
        self.exp_avgs = [np.zeros(s, dtype) for s in shapes]
        self.exp_avg_sqs = [np.zeros(s, dtype) for s in shapes]
        self.max_exp_avg_sqs = [np.zeros(s, dtype) for s in shapes]

    def grads(self):
        return [self.rng.standard_normal(s).astype(self.dtype) for s in self.shapes]

    def arrays(self):
        return self.params + self.exp_avgs + self.exp_avg_sqs + self.max_exp_avg_sqs

    def copy(self):
        other = object.__new__(AdamState)
        other.__dict__.update(self.__dict__)
        other.rng = np.random.default_rng(0)
        for name in ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"):
            setattr(other, name, [a.copy() for a in getattr(self, name)])
        return other


def assert_bitwise_equal(actual, expected, what=""):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    itype = np.uint32 if actual.dtype == np.float32 else np.uint64
    differ = np.flatnonzero(actual.view(itype) != expected.view(itype))
    assert differ.size == 0, (
        f"{what}: {differ.size} of {actual.size} elements differ, first at {differ[0]}: "
        f"{actual.flat[differ[0]]!r} != {expected.flat[differ[0]]!r}"
    )


def assert_close_to_reference(actual, expected, what="", ulps=4):
    """|actual - expected| <= ulps * eps * (|expected| + max|expected|).

    The NumPy reference has no fused multiply-add, so where a step cancels (g - m, a param
    crossing zero) its result differs in the last bits of the *terms*, not of the result: the
    bound is a few ULP relative to the magnitude of the array, plus a few ULP of each element.
    """
    eps = np.finfo(actual.dtype).eps
    if actual.size == 0:
        return
    scale = np.abs(expected) + np.abs(expected).max()
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = ulps * eps * scale
    worst = np.argmax(error - bound)
    assert np.all(error <= bound), (
        f"{what}: element {worst}: {actual.flat[worst]!r} vs reference {expected.flat[worst]!r}"
    )


def snapshot(arrays):
    return [a.copy() for a in arrays]


def assert_unchanged(arrays, before):
    for i, (a, b) in enumerate(zip(arrays, before)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), f"array {i} changed"
