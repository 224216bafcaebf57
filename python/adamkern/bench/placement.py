"""``python -m adamkern bench --placement``: the same step on differently placed memory (NumPy's
allocation, 64-byte aligned, 16 bytes past a line, huge pages or not, first touch by the
kernel's threads, torch's allocator), all variants interleaved in one loop per thread count.

>>> from adamkern.bench import format_placement, run_placement
>>> print(format_placement(run_placement(1 << 14, [1], budget_s=0.02, progress=False)))
"""

from __future__ import annotations

import mmap
import time

import numpy as np

import adamkern
from adamkern import _core, memory
from adamkern.bench.cases import M, Case, size_label
from adamkern.bench.rows import Unavailable, import_torch
from adamkern.bench.timing import Method, Progress, counter_step, interleave, medians

__all__ = ["format_placement", "huge_page_fraction", "run_placement"]


def huge_page_fraction(array: np.ndarray) -> float | None:
    """The fraction of the memory mappings holding `array` that the kernel backs with
    transparent huge pages (AnonHugePages over Size in /proc/self/smaps, summed over every
    mapping the array overlaps: madvise splits one at page boundaries); None if unreadable."""
    try:
        with open("/proc/self/smaps") as f:
            text = f.read()
    except OSError:
        return None
    begin = array.ctypes.data
    end = begin + max(array.nbytes, 1)
    inside, size, huge = False, 0, 0
    for line in text.splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo < end and begin < hi
        elif inside and head == "Size:":
            size += int(line.split()[1])
        elif inside and head == "AnonHugePages:":
            huge += int(line.split()[1])
    return huge / size if size else None


def _mapped(count, dtype, advice, offset=0):
    """`count` elements in a fresh anonymous mapping (untouched), madvised with `advice`."""
    itemsize = np.dtype(dtype).itemsize
    nbytes = count * itemsize + offset
    # private: a shared anonymous mapping is shmem, which anonymous huge pages never back
    region = mmap.mmap(-1, nbytes + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if advice is not None and hasattr(region, "madvise"):
        region.madvise(advice)
    raw = np.frombuffer(region, np.uint8)
    start = -raw.ctypes.data % (2 << 20) + offset  # 2 MB-aligned: whole huge pages
    return raw[start:start + count * itemsize].view(dtype)


def _variants(dtype, threads):
    """name -> (allocate(count) -> array, first touch: "serial" or "kernel")."""
    itemsize = np.dtype(dtype).itemsize
    huge, no_huge = (getattr(mmap, name, None) for name in ("MADV_HUGEPAGE", "MADV_NOHUGEPAGE"))

    def offset(nbytes):
        def allocate(count):
            raw = memory.empty(count * itemsize + nbytes, np.uint8)
            return raw[nbytes:nbytes + count * itemsize].view(dtype)
        return allocate

    variants = {
        "numpy (np.empty)": (lambda n: np.empty(n, dtype), "serial"),
        "64 B aligned (adamkern.empty)": (lambda n: memory.empty(n, dtype), "serial"),
        "16 B past a line": (offset(16), "serial"),
        "huge pages (MADV_HUGEPAGE)": (lambda n: _mapped(n, dtype, huge), "serial"),
        "no huge pages (MADV_NOHUGEPAGE)": (lambda n: _mapped(n, dtype, no_huge), "serial"),
    }
    if threads > 1:
        variants["huge pages, first touch by the kernel's threads"] = (
            lambda n: _mapped(n, dtype, huge), "kernel")
    try:
        torch = import_torch()
        variants["torch allocator (torch.empty)"] = (
            lambda n: torch.empty(n, dtype=getattr(torch, np.dtype(dtype).name)).numpy(),
            "serial")
    except Unavailable:
        pass
    return variants


def _placed(name, allocate, touch, size, first_values, nthreads):
    """The variant's four arrays, first touched, and what their placement turned out to be."""
    arrays = [allocate(size) for _ in range(4)]
    t0 = time.perf_counter()
    if touch == "kernel":  # the partition's threads write each page first
        _core.roofline_(*arrays)
    for a, value in zip(arrays, first_values):
        a[...] = value
    first_touch_s = time.perf_counter() - t0
    p, g, m, v = arrays
    t0 = time.perf_counter()
    adamkern.adamw_(p, g, m, v, step=1)
    return arrays, {"variant": name, "threads": nthreads, "size": size,
                    "offset_in_line": p.ctypes.data % 64, "huge_page_fraction":
                    huge_page_fraction(p), "first_touch_s": first_touch_s,
                    "first_step_s": time.perf_counter() - t0}


def _placement_rows(size, dtype, nthreads, first_values, budget_s) -> list[dict]:
    methods, info = [], {}
    for name, (allocate, touch) in _variants(dtype, nthreads).items():
        arrays, info[name] = _placed(name, allocate, touch, size, first_values, nthreads)
        methods.append(Method(name + "|adamkern", counter_step(adamkern.adamw_, *arrays)))
        methods.append(Method(name + "|roofline", lambda a=arrays: _core.roofline_(*a)))
    interleave(methods, budget_s, min_reps=5, max_reps=400)
    times = medians(methods)
    base = next(iter(info))
    for name, row in info.items():
        for kind in ("adamkern", "roofline"):
            row[f"{kind}_ns_per_element"] = times[f"{name}|{kind}"] / size * 1e9
            row[f"{kind}_vs_numpy"] = times[f"{base}|{kind}"] / times[f"{name}|{kind}"]
    return list(info.values())


def run_placement(size=16 * M, threads=(1,), dtype="float32", budget_s=6.0, progress=True):
    """adam_ and the roofline kernel on the same values in differently placed memory, all
    variants interleaved in one timing loop per thread count. Returns a list of dicts."""
    out = []
    saved = adamkern.get_num_threads()
    bar = Progress(len(threads), progress)
    p0, g0 = Case(size, 1, dtype).initial()
    try:
        for nthreads in threads:
            bar.show(f"placement, {size_label(size)} {dtype}, {nthreads} thread(s)")
            adamkern.set_num_threads(nthreads)
            out += _placement_rows(size, dtype, nthreads, (p0[0], g0[0], 0, 0), budget_s)
            bar.advance()
    finally:
        adamkern.set_num_threads(saved)
        bar.close()
    return out


def format_placement(rows) -> str:
    lines = []
    for nthreads in sorted({r["threads"] for r in rows}):
        sub = [r for r in rows if r["threads"] == nthreads]
        lines += ["", f"{size_label(sub[0]['size'])} elements, {nthreads} thread(s) (speed "
                  "relative to NumPy's allocation: > 1 is faster)",
                  f"{'placement':<48} {'offset':>6} {'THP':>5} {'adamkern ns/el':>14} "
                  f"{'rel':>5} {'roofline ns/el':>14} {'rel':>5} {'first step ms':>13}"]
        for r in sub:
            thp = "-" if r["huge_page_fraction"] is None else f"{r['huge_page_fraction']:.2f}"
            lines.append(f"{r['variant']:<48} {r['offset_in_line']:>6} {thp:>5} "
                         f"{r['adamkern_ns_per_element']:>14.3f} {r['adamkern_vs_numpy']:>5.2f} "
                         f"{r['roofline_ns_per_element']:>14.3f} {r['roofline_vs_numpy']:>5.2f} "
                         f"{r['first_step_s'] * 1e3:>13.1f}")
    return "\n".join(lines)
