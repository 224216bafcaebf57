"""pytest-benchmark suite (outside the test suite's testpaths):

    pip install ".[bench]" && python -m pytest bench --benchmark-group-by=param:size

Every benchmark first checks that its method computes the right update.
"""

from __future__ import annotations

import numpy as np
import pytest

import adamkern
from adamkern.bench import close_to_reference

SIZES = [1 << 16, 1 << 20, 1 << 24]


def make(size, seed=0):
    rng = np.random.default_rng(seed)
    p, g = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
    return [p, g, np.zeros_like(p), np.zeros_like(p)]


def check_one_step(fn):
    ours, ref = make(4099), make(4099)
    fn(*ours)
    adamkern.reference.adamw(*ref, step=1)
    for a, b in zip(ours, ref):
        assert close_to_reference(a, b)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", ["adamkern", "numpy"])
def test_adamw_step(benchmark, method, size):
    fn = adamkern.adamw_ if method == "adamkern" else adamkern.reference.adamw
    check_one_step(lambda *a: fn(*a, step=1))
    arrays = make(size)
    benchmark(lambda: fn(*arrays, step=10))


@pytest.mark.parametrize("size", SIZES)
def test_torch_fused_adamw_step(benchmark, size):
    torch = pytest.importorskip("torch")
    p, g, _, _ = make(size)
    param = torch.tensor(p, requires_grad=True)
    param.grad = torch.tensor(g)
    opt = torch.optim.AdamW([param], fused=True)

    def torch_step(p, g, m, v):
        tp = torch.tensor(p, requires_grad=True)
        tp.grad = torch.tensor(g)
        o = torch.optim.AdamW([tp], fused=True)
        o.step()
        p[...] = tp.detach().numpy()
        m[...] = o.state[tp]["exp_avg"].numpy()
        v[...] = o.state[tp]["exp_avg_sq"].numpy()

    check_one_step(torch_step)
    benchmark(opt.step)


@pytest.mark.parametrize("size", SIZES)
def test_roofline(benchmark, size):
    arrays = make(size)
    expected = [arrays[2].copy(), arrays[3].copy(), arrays[0] + arrays[1]]
    adamkern._core.roofline_(*arrays)
    for a, b in zip((arrays[0], arrays[2], arrays[3]), expected):
        np.testing.assert_array_equal(a, b)
    benchmark(lambda: adamkern._core.roofline_(*arrays))
