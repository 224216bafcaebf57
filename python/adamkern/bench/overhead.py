"""``python -m adamkern bench --overhead``: the Python call overhead of adamkern, against the
kernel timed in C++ (``_core.adam_kernel_seconds_``).

>>> from adamkern.bench import format_overhead, run_overhead
>>> print(format_overhead(run_overhead([1], repeat=3, quick=True)))
"""

from __future__ import annotations

import statistics
import timeit

import numpy as np

import adamkern
from adamkern import _core

__all__ = ["format_overhead", "paired_us", "run_overhead"]


def paired_us(calls, kernel, number, repeat):
    """Microseconds per call of each of ``calls`` and of ``kernel`` (a function of a repeat
    count returning the C++-timed seconds of each call), measured in alternating batches of
    ``number`` calls: medians over ``repeat`` rounds, and the median over rounds of each call's
    batch minus the kernel's batch of the same round (a machine that drifts between batches
    moves both alike)."""
    times = [[] for _ in calls]
    kernel_times = []
    for _ in range(repeat):
        for t, fn in zip(times, calls):
            t.append(timeit.timeit(fn, number=number) / number * 1e6)
        kernel_times.append(statistics.median(kernel(number)) * 1e6)
    overheads = [statistics.median(a - k for a, k in zip(t, kernel_times)) for t in times]
    return [statistics.median(t) for t in times], statistics.median(kernel_times), overheads


def _functional_row(nthreads, number, repeat) -> dict:
    p, g, m, v = (np.ones(1024, np.float32) for _ in range(4))
    (fun, bare), kernel, (overhead, _) = paired_us(
        [lambda: adamkern.adam_(p, g, m, v, step=1), lambda: _core.roofline_(p, g, m, v)],
        lambda n: _core.adam_kernel_seconds_(p, g, m, v, n), number * 10, repeat)
    return {"what": "adam_ on 1K float32", "threads": nthreads, "call_us": fun,
            "roofline_call_us": bare, "kernel_us": kernel, "overhead_us": overhead}


def _optimizer_row(nthreads, number, repeat) -> dict:
    from adamkern import optim

    params = [np.ones(1024, np.float32) for _ in range(100)]
    grads = [np.ones(1024, np.float32) for _ in range(100)]
    opt = optim.AdamW(params)
    opt.step(grads)
    ms = [s["exp_avg"] for s in opt.state]
    vs = [s["exp_avg_sq"] for s in opt.state]
    (step, fun), kernel, (overhead, _) = paired_us(
        [lambda: opt.step(grads), lambda: adamkern.adamw_(params, grads, ms, vs, step=2)],
        lambda n: _core.adam_kernel_seconds_(params, grads, ms, vs, n), number, repeat)
    return {"what": "optim.AdamW.step, 100 x 1K float32", "threads": nthreads,
            "call_us": step, "functional_us": fun, "kernel_us": kernel,
            "overhead_us": overhead}


def run_overhead(threads=(1,), repeat=31, quick=False) -> list[dict]:
    """Microseconds per call, interleaved batches (see paired_us):

    - a functional ``adamkern.adam_`` call on one 1K-element float32 tensor (state
      preallocated), the bare ``_core.roofline_`` binding on the same arrays, and the kernel
      alone (timed in C++ around the C++ API call: ``_core.adam_kernel_seconds_``);
    - ``adamkern.optim.AdamW.step`` over 100 tensors of 1K elements, the functional call over
      the same tensors, and the kernel alone. "overhead" is the call's time minus the kernel's
      (the median of the per-round differences).
    """
    out = []
    saved = adamkern.get_num_threads()
    number = 200 if quick else 1000
    try:
        for nthreads in threads:
            adamkern.set_num_threads(nthreads)
            out.append(_functional_row(nthreads, number, repeat))
            out.append(_optimizer_row(nthreads, number, repeat))
    finally:
        adamkern.set_num_threads(saved)
    return out


def format_overhead(rows) -> str:
    lines = [f"{'call':<36} {'threads':>7} {'call us':>8} {'kernel us':>9} {'overhead us':>11}"
             f"  other"]
    for r in rows:
        other = (f"bare roofline_ binding {r['roofline_call_us']:.2f} us"
                 if "roofline_call_us" in r else f"functional adamw_ {r['functional_us']:.2f} us")
        lines.append(f"{r['what']:<36} {r['threads']:>7} {r['call_us']:>8.2f} "
                     f"{r['kernel_us']:>9.2f} {r['overhead_us']:>11.2f}  {other}")
    return "\n".join(lines)
