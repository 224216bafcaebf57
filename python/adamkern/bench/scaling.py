"""``python -m adamkern bench --scaling``: adam_ and the roofline kernel from 16K to 64M
elements, and the slope of time against elements in the L2 cache and beyond 256 MB.

>>> from adamkern.bench import format_scaling, run_scaling
>>> rows, slopes = run_scaling([1], [1 << 12, 1 << 13, 1 << 14], budget_s=0.01, progress=False)
>>> print(format_scaling(rows, slopes))
"""

from __future__ import annotations

import numpy as np

import adamkern
from adamkern.bench.cases import STREAMS, Case, size_label
from adamkern.bench.fp32 import build_adamkern, build_roofline
from adamkern.bench.timing import Progress, interleave, medians

__all__ = ["format_scaling", "run_scaling"]


def run_scaling(threads=(1,), sizes=None, dtype="float32", budget_s=1.0, progress=True):
    """adam_ and the roofline kernel from 16K to 64M elements (powers of 2): ns/element per
    size, and the least-squares slope of time against elements over the sizes that fit in the
    L2 cache, and over those beyond 64 MB of traffic."""
    sizes = sizes or [1 << k for k in range(14, 27)]
    rows = []
    cases = [(s, t) for t in threads for s in sizes]
    bar = Progress(len(cases), progress)
    saved = adamkern.get_num_threads()
    try:
        for size, nthreads in cases:
            bar.show(f"scaling, {size_label(size)} {dtype}, {nthreads} thread(s)")
            adamkern.set_num_threads(nthreads)
            case = Case(size, nthreads, dtype)
            params, grads = case.initial()
            methods = [build_adamkern(case, params, grads), build_roofline(case, params, grads)]
            interleave(methods, budget_s, min_reps=7, max_reps=20000)
            rows += [{"size": size, "threads": nthreads, "method": name, "median_s": t,
                      "ns_per_element": t / size * 1e9,
                      "bytes": STREAMS * np.dtype(dtype).itemsize * size}
                     for name, t in medians(methods).items()]
            bar.advance()
    finally:
        adamkern.set_num_threads(saved)
        bar.close()
    return rows, _slopes(rows)


def _slopes(rows):
    """Least-squares time = a + b * elements per (method, threads) over the small (<= 2 MB of
    traffic, in L2) and large (>= 256 MB, beyond every cache that a core has to itself)
    sizes: b in ns/element, a in microseconds."""
    out = []
    for key in sorted({(r["method"], r["threads"]) for r in rows}):
        for regime, keep in (("in L2 (<= 2 MB)", lambda b: b <= 2 << 20),
                             ("beyond 256 MB", lambda b: b >= 256 << 20)):
            pts = [r for r in rows if (r["method"], r["threads"]) == key and keep(r["bytes"])]
            if len(pts) < 2:
                continue
            x = np.array([r["size"] for r in pts], float)
            y = np.array([r["median_s"] for r in pts])
            slope, intercept = np.polyfit(x, y, 1)
            out.append({"method": key[0], "threads": key[1], "regime": regime,
                        "ns_per_element": slope * 1e9, "intercept_us": intercept * 1e6,
                        "points": len(pts)})
    return out


def format_scaling(rows, slopes) -> str:
    threads = sorted({r["threads"] for r in rows})
    columns = [(m, t) for t in threads for m in ("adamkern", "roofline")]
    lines = [f"{'size':>6} {'MB moved':>9} " + " ".join(f"{f'{m} {t}t ns/el':>18}"
                                                        for m, t in columns)]
    for size in sorted({r["size"] for r in rows}):
        cells = {(r["method"], r["threads"]): r for r in rows if r["size"] == size}
        moved = STREAMS * 4 * size / 1e6
        lines.append(f"{size_label(size):>6} {moved:>9.1f} " + " ".join(
            f"{cells[c]['ns_per_element']:>18.3f}" if c in cells else f"{'':>18}"
            for c in columns))
    lines.append("")
    for s in slopes:
        lines.append(f"slope {s['method']:<9} {s['threads']} thread(s) {s['regime']:<17}: "
                     f"{s['ns_per_element']:.3f} ns/element + {s['intercept_us']:.1f} us "
                     f"({s['points']} sizes)")
    return "\n".join(lines)
