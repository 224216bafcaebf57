"""pytest-benchmark suite of the Adam step (outside the test suite's testpaths):

    pip install ".[bench]"
    python -m pytest bench/test_bench_adam.py --benchmark-group-by=param:size

Every row of ``adamkern.bench.METHODS`` (roofline kernel, adamkern functional and optimizer
object, torch fused/foreach/single, DeepSpeedCPUAdam, the NumPy reference), built by the same
code as ``python -m adamkern bench``, and first checked against adamkern's step (bitwise for
torch's fused path); a method that cannot run here is skipped with its reason.
"""

from __future__ import annotations

import pytest

import adamkern
from adamkern import bench

SIZES = [1 << 16, 1 << 20, 1 << 24]
SPECS = {spec.name: spec for spec in bench.METHODS}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(SPECS))
def test_adamw_step(benchmark, name, size):
    spec = SPECS[name]
    case = bench.Case(size, adamkern.get_num_threads(), "float32")
    params, grads = case.initial()
    try:
        method = spec.build(case, params, grads)
    except bench.Unavailable as why:
        pytest.skip(str(why))
    if name == "adamkern":
        bench._check([method], [spec])
    else:
        bench._check([SPECS["adamkern"].build(case, params, grads), method],
                     [SPECS["adamkern"], spec])  # raises if the step is wrong
    benchmark.extra_info["bytes_per_element"] = spec.bytes_per_element(4)
    benchmark(method.step)


@pytest.mark.parametrize("layout", ["model"])
@pytest.mark.parametrize("name", ["roofline", "adamkern", "adamkern optim", "torch fused"])
def test_model_step(benchmark, name, layout):
    """AdamW over the 150-tensor transformer-shaped list (10.2M parameters)."""
    spec = SPECS[name]
    case = bench.Case(0, adamkern.get_num_threads(), "float32", layout)
    params, grads = case.initial()
    try:
        method = spec.build(case, params, grads)
    except bench.Unavailable as why:
        pytest.skip(str(why))
    bench._check([SPECS["adamkern"].build(case, params, grads), method],
                 [SPECS["adamkern"], spec])
    benchmark(method.step)
