"""The Adam table of ``python -m adamkern bench``: every row of every case, built, checked and
timed interleaved, as :class:`Result` rows.

A case runs two timing loops (see :func:`adamkern.bench.rows.groups`): the float32 rows
against the roofline kernel; then, when storage modes are selected, those modes beside
adamkern and torch fused again and beside one roofline per storage (``roofline_`` on arrays
of that storage). Each loop's buffers are freed before the next is built.

>>> from adamkern import bench
>>> results = bench.run([1 << 16], [1], methods=["adamkern bf16 state"], budget_s=0.1)
>>> [(r.method, r.roofline) for r in results][-1]
('adamkern bf16 state', 'roofline, fp32 params, bf16 state')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import adamkern
from adamkern.bench import trust
from adamkern.bench.cases import QUICK_SIZES, case_label, plan
from adamkern.bench.cost import SETUP_S_PER_BYTE, case_bytes
from adamkern.bench.methods import select_methods
from adamkern.bench.rows import Unavailable, check, groups
from adamkern.bench.storage import build_roofline, runs_on
from adamkern.bench.timing import Progress, interleave, medians

__all__ = ["Result", "build_loop", "build_methods", "run", "run_case", "run_cases"]


@dataclass
class Result:
    """One row of one case: its median time, as ns/element, effective bandwidth and ratios
    against the roofline it is judged against and the adamkern of the same loop."""

    size: int
    threads: int
    dtype: str
    layout: str
    method: str
    median_s: float
    ns_per_element: float
    gb_per_s: float
    of_roofline: float  # its roofline's time / this method's time
    adamkern_speedup: float  # this method's time / adamkern's time (float32, same loop)
    repetitions: int = 0
    spread: float = 1.0  # upper / lower quartile of the repetitions
    others_cpus: float | None = None  # CPUs other processes kept busy meanwhile
    flags: list = field(default_factory=list)  # trust.FLAGS that apply
    roofline: str = "roofline"  # the roofline it is judged against (its storage's)
    vs_torch_fused: float | None = None  # torch fused's time / this one's (same loop)


def run(sizes=QUICK_SIZES, threads=(1,), dtypes=("float32",), layouts=("tensor",),
        methods=None, budget_s=2.0, progress=True, quick=False, skipped=None, large=False):
    """Benchmarks every case; returns a list of Result, flagged (Result.flags) where the
    machine looked busy. `methods`: names of METHODS rows (default: see select_methods);
    `skipped` collects {method: reason}."""
    return run_cases(plan(sizes, threads, dtypes, layouts), select_methods(methods, quick, large),
                     budget_s, progress, skipped)


def run_cases(cases, specs, budget_s=2.0, progress=True, skipped=None) -> list[Result]:
    """Benchmarks each Case of `cases` with the rows `specs` (see run)."""
    skipped = {} if skipped is None else skipped
    results = []
    bar = Progress(len(cases), progress,
                   weights=[budget_s + SETUP_S_PER_BYTE * case_bytes(c, specs) for c in cases])
    saved_threads = adamkern.get_num_threads()
    try:
        for case in cases:
            bar.show(case_label(case))
            results += run_case(case, specs, budget_s, skipped)
            bar.advance()
    finally:
        adamkern.set_num_threads(saved_threads)
        bar.close()
    trust.flag_results(results)
    return results


def run_case(case, specs, budget_s, skipped) -> list[Result]:
    """The rows of one case, in the order of `specs`: its two timing loops, the case's budget
    shared between them by the number of methods each times."""
    adamkern.set_num_threads(case.threads)
    main, modes = groups(specs)
    storage_timed = len(modes) + len({s.storage.layout for s in modes if s.storage}) \
        if runs_on(case) else 0  # elsewhere its rows only say why they do not run
    share = len(main) / (len(main) + storage_timed)
    results = _time_loop(case, main, budget_s * share, skipped)
    if modes:
        results += _time_loop(case, modes, budget_s * (1 - share), skipped)
    order = [s.name for s in specs]
    return sorted(results, key=lambda r: order.index(r.method))


def build_methods(case, specs, params, grads, skipped) -> tuple[list, list]:
    """(methods, their specs) of the rows of `specs` that can run here; the others' reasons
    go to `skipped`."""
    methods, built = [], []
    for spec in specs:
        try:
            methods.append(spec.build(case, params, grads))
            built.append(spec)
        except Unavailable as why:
            skipped.setdefault(spec.name, str(why))
    return methods, built


def build_loop(case, specs, skipped) -> tuple[list, list, dict]:
    """The methods of one timing loop, built on the case's initial arrays and checked: (the
    methods, their specs, the roofline of each storage among them by layout). A loop of
    storage rows none of which can run here is empty."""
    params, grads = case.initial()
    modes, mode_specs = build_methods(case, [s for s in specs if s.storage], params, grads,
                                      skipped)
    if any(s.storage for s in specs) and not modes:
        return [], [], {}
    methods, built = build_methods(case, [s for s in specs if not s.storage], params, grads,
                                   skipped)
    rooflines: dict = {}
    for spec in mode_specs:
        if spec.storage.layout not in rooflines:
            rooflines[spec.storage.layout] = build_roofline(spec.storage, case, params, grads)
    del params, grads
    check(methods + modes, built + mode_specs)
    return methods + modes, built + mode_specs, rooflines


def _time_loop(case, specs, budget_s, skipped) -> list[Result]:
    """One loop timed: every row of the float32 loop, or the storage rows of the other (each
    against its storage's roofline; adamkern and torch fused are there for the ratios)."""
    methods, built, rooflines = build_loop(case, specs, skipped)
    if not methods:
        return []
    meter = trust.CpuMeter()
    meter.start()
    interleave(methods + list(rooflines.values()), budget_s, min_reps=5, max_reps=1000)
    others = meter.stop()
    times = medians(methods + list(rooflines.values()))
    return [_result(case, m, spec, times, others,
                    rooflines[spec.storage.layout].name if spec.storage else "roofline")
            for m, spec in zip(methods, built) if spec.storage or not rooflines]


def _result(case, method, spec, times, others, roofline) -> Result:
    t = times[method.name]
    return Result(size=case.size, threads=case.threads, dtype=case.dtype, layout=case.layout,
                  method=method.name, median_s=t, ns_per_element=t / case.size * 1e9,
                  gb_per_s=spec.bytes_per_element(np.dtype(case.dtype).itemsize) * case.size
                  / t / 1e9,
                  of_roofline=times[roofline] / t, adamkern_speedup=t / times["adamkern"],
                  repetitions=len(method.times), spread=trust.spread(method.times),
                  others_cpus=others, roofline=roofline,
                  vs_torch_fused=times["torch fused"] / t
                  if spec.storage and "torch fused" in times else None)
