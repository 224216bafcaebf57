"""pytest-benchmark of every optimizer of the family (outside the test suite's testpaths):

    pip install ".[bench]" && python -m pytest bench/test_bench_family.py

Each benchmark's method is built by adamkern.bench, which first checks one step against the
NumPy reference (and raises if it disagrees).
"""

from __future__ import annotations

import numpy as np
import pytest

from adamkern.bench import FAMILY, family_method


@pytest.mark.parametrize("size", [1 << 16, 1 << 24])
@pytest.mark.parametrize("case", FAMILY, ids=[case[0] for case in FAMILY])
def test_family_step(benchmark, case, size):
    method = family_method(*case[:4], size, np.float32)
    benchmark.extra_info["bytes_per_element"] = (case[4] + case[5]) * 4
    benchmark(method.step)
