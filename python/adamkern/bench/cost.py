"""What a run of ``python -m adamkern bench`` costs, printed before it starts: the memory a case
holds at its peak and the seconds a run takes, from the bytes each row holds per element.

>>> from adamkern import bench
>>> cases = bench.plan(bench.DEFAULT_SIZES, [1, 2], ["float32"], ["tensor", "model"])
>>> peak, seconds = bench.estimate(cases, bench.select_methods(), budget_s=3.0)  # < 3 GB
"""

from __future__ import annotations

import numpy as np

from adamkern.bench.rows import groups
from adamkern.bench.storage import runs_on

__all__ = ["CHECK_S_PER_MODE", "DEFAULT_MEMORY_LIMIT", "PROCESS_BYTES", "SETUP_S_PER_BYTE",
           "case_bytes", "estimate", "loop_bytes"]

DEFAULT_MEMORY_LIMIT = 3e9  # the default run's estimated peak stays below (a test checks)
# Python with NumPy, torch and matplotlib loaded, and what earlier cases leave in the allocator
PROCESS_BYTES = 0.65e9
SETUP_S_PER_BYTE = 1.8e-9  # building, first-touching and checking a case's buffers (2-core VM)
CHECK_S_PER_MODE = 0.05  # a storage mode's bitwise check against NumPy, and its roofline's


def _bytes(case, specs, extra_held=0.0) -> float:
    """The peak of one timing loop: every method's buffers, and the larger of the initial
    arrays (freed once the methods are built) and one step's scratch plus the check's copies
    of a tensor list (params, exp_avgs, exp_avg_sqs of two methods)."""
    if not specs:
        return 0.0
    itemsize = np.dtype(case.dtype).itemsize
    check = 6 * itemsize if case.layout == "model" else 0
    return case.size * (sum(s.held(itemsize) for s in specs) + extra_held
                        + max(2 * itemsize, max(s.scratch(itemsize) for s in specs) + check))


def loop_bytes(case, specs) -> list[float]:
    """The peak memory of each of the case's timing loops (the storage modes' loop holds one
    roofline per storage as well, and runs on float32 cases only)."""
    main, modes = groups(specs)
    if not runs_on(case):
        modes = []
    layouts = {s.storage.layout: s.storage.bytes_held() for s in modes if s.storage}
    return [_bytes(case, main), _bytes(case, modes, sum(layouts.values()))]


def case_bytes(case, specs) -> float:
    """The memory a case holds at its peak: the larger of its two loops."""
    return max(loop_bytes(case, specs))


def estimate(cases, specs, budget_s) -> tuple[float, float]:
    """(peak memory in bytes, seconds) of a run: the process's own memory plus its largest
    case (cases run one after the other); per case the timing budget plus the setup (filling
    fresh memory, the first steps, the checks: SETUP_S_PER_BYTE, CHECK_S_PER_MODE), on a
    quiet machine."""
    modes = sum(1 for s in specs if s.storage)
    seconds = 3.0 + sum(budget_s + 0.3 + SETUP_S_PER_BYTE * sum(loop_bytes(c, specs))
                        + CHECK_S_PER_MODE * modes * runs_on(c) for c in cases)
    return PROCESS_BYTES + max((case_bytes(c, specs) for c in cases), default=0), seconds
