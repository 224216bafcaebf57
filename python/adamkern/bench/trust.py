"""How far to trust a run of ``python -m adamkern bench``: the signs that the machine was busy
while it ran.

A benchmark on a loaded machine does not fail, it prints wrong figures (a step 400 times slower
at two threads than at one, a method "faster than the roofline"). Four signs are checked, each
from figures the run has anyway, and each becomes a flag on the cases it concerns:

- ``busy``: other processes kept more CPUs busy while a case was timed than the case left idle
  (by more than :data:`BUSY_MARGIN` of a CPU): Linux ``/proc/stat`` against this process's own
  CPU time; the steal time of a virtual machine counts as busy;
- ``noisy``: a method's repetitions spread more than :data:`SPREAD_LIMIT` (upper over lower
  quartile of its interleaved repetitions: a lone outlier does not count), for steps of at least
  :data:`SPREAD_MIN_S` (shorter ones jitter that much on a quiet machine);
- ``threads``: adamkern took more than :data:`THREADS_LIMIT` times its one-thread time with more
  threads on the same arrays;
- ``roofline``: adamkern beat the roofline kernel by more than :data:`ROOFLINE_LIMIT` (the
  roofline's run was disturbed: nothing moves the same bytes faster); a storage mode that
  beats its own roofline so is flagged alone.

The load average at the start and at the end (:func:`os.getloadavg`) is compared with the
usable cores as well.

>>> from adamkern.bench.trust import SPREAD_LIMIT, spread
>>> spread([1.0] * 9 + [100.0]) < SPREAD_LIMIT   # one outlier is not noise
True
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

__all__ = ["BUSY_MARGIN", "FLAGS", "ROOFLINE_LIMIT", "SPREAD_LIMIT", "SPREAD_MIN_S",
           "THREADS_LIMIT", "CpuMeter", "flag_results", "load_average", "peak_rss_bytes",
           "spread", "usable_cores", "verdict"]

BUSY_MARGIN = 0.25  # CPUs other processes may take beyond those a case leaves idle
SPREAD_LIMIT = 1.5  # upper / lower quartile of a method's repetitions
SPREAD_MIN_S = 1e-3  # steps shorter than this are not judged by their spread
THREADS_LIMIT = 1.2  # adamkern's N-thread time / its 1-thread time on the same arrays
ROOFLINE_LIMIT = 1.1  # adamkern's "of roofline"

FLAGS = {
    "busy": "other processes took CPUs the case was using",
    "noisy": f"repetitions spread more than {SPREAD_LIMIT}x (upper / lower quartile)",
    "threads": f"more threads were over {THREADS_LIMIT}x slower than one thread",
    "roofline": f"adamkern (or a storage mode) over {ROOFLINE_LIMIT}x faster than its roofline: "
                f"the roofline's run was disturbed",
}


def spread(times) -> float:
    """Upper over lower quartile of repeated timings (1.0 for fewer than 2)."""
    times = sorted(times)
    if len(times) < 2 or times[0] <= 0:
        return 1.0
    lower, _, upper = statistics.quantiles(times, n=4, method="inclusive")
    return upper / lower


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The one-minute load average, None where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (None where unknown)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    import sys

    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; Linux: KiB


def _cpu_jiffies() -> tuple[float, float] | None:
    """(busy, total) CPU time of the whole machine, in seconds, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / ticks, sum(fields[:8]) / ticks


@dataclass
class CpuMeter:
    """How many CPUs other processes kept busy, on average, between start() and stop():
    (busy time of all the machine's CPUs - this process's CPU time) / wall time."""

    _start: tuple | None = None

    def start(self) -> None:
        times = os.times()
        self._start = (time.perf_counter(), times.user + times.system, _cpu_jiffies())

    def stop(self) -> float | None:
        if self._start is None or self._start[2] is None:
            return None
        wall0, own0, (busy0, _) = self._start
        end = _cpu_jiffies()
        if end is None:
            return None
        times = os.times()
        wall = time.perf_counter() - wall0
        if wall < 0.05:  # below a few clock ticks the figure means nothing
            return None
        others = (end[0] - busy0) - (times.user + times.system - own0)
        return max(0.0, others / wall)


def flag_results(results, cpus=None) -> None:
    """Sets ``flags`` (a list of names of :data:`FLAGS`) on every result of a bench run
    (:class:`adamkern.bench.Result`: size, threads, dtype, layout, method, median_s,
    of_roofline, roofline, adamkern_speedup, spread, others_cpus: the CPUs other processes
    kept busy while its loop was timed, from :class:`CpuMeter`). ``cpus``: the machine's
    (os.cpu_count()). The flags of the case's float32 loop (judged on adamkern's row) go on
    every row of that loop; a storage row has those of its own loop instead (judged on the
    adamkern timed beside it, and on its own roofline); "noisy" goes on the rows whose own
    repetitions spread."""
    cpus = cpus or os.cpu_count() or 1
    one_thread = {(r.layout, r.dtype, r.size): r.median_s for r in results
                  if r.method == "adamkern" and r.threads == 1}
    case_flags = {(r.layout, r.dtype, r.size, r.threads):
                  _loop_flags(r, r.median_s, cpus, one_thread.get((r.layout, r.dtype, r.size)))
                  for r in results if r.method == "adamkern"}
    for r in results:
        if r.roofline == "roofline":
            flags = list(case_flags.get((r.layout, r.dtype, r.size, r.threads), []))
        else:  # a storage row, timed in the case's second loop
            flags = _loop_flags(r, r.median_s / r.adamkern_speedup, cpus,
                                one_thread.get((r.layout, r.dtype, r.size)))
        if r.spread > SPREAD_LIMIT and r.median_s >= SPREAD_MIN_S:
            flags.append("noisy")
        r.flags = flags


def _loop_flags(r, adamkern_s, cpus, one_thread_s) -> list[str]:
    """The flags of the loop that timed `r`, where adamkern took `adamkern_s`."""
    flags = []
    if (r.others_cpus or 0) > max(cpus - r.threads, 0) + BUSY_MARGIN:
        flags.append("busy")
    if r.threads > 1 and one_thread_s and adamkern_s > THREADS_LIMIT * one_thread_s:
        flags.append("threads")
    if r.of_roofline > ROOFLINE_LIMIT:
        flags.append("roofline")
    return flags


def verdict(results, cores, load_start=None, load_end=None) -> list[str]:
    """Lines that say whether the run can be trusted, and why not (after flag_results)."""
    cases: dict = {}
    for r in results:
        cases.setdefault((r.layout, r.dtype, r.size, r.threads), set()).update(r.flags)
    flagged = {k: v for k, v in cases.items() if v}
    loads = [x for x in (load_start, load_end) if x is not None]
    load_text = (f"load average {load_start:.2f} at the start and {load_end:.2f} at the end on "
                 f"{cores} usable core(s)" if len(loads) == 2 else f"{cores} usable core(s)")
    if not flagged and not any(x > cores for x in loads):
        return [f"No sign of interference: {load_text}."]
    lines = [(f"WARNING: {len(flagged)} of {len(cases)} case(s) ran while the machine was "
              f"busy; their figures (marked '!') are not reliable. {load_text[0].upper()}"
              f"{load_text[1:]}.")]
    if any(x > cores for x in loads):
        lines.append("  The load average exceeded the usable cores: other programs were "
                     "running.")
    for name in sorted({f for flags in flagged.values() for f in flags}):
        count = sum(name in flags for flags in flagged.values())
        extra = ""
        if name == "busy":
            worst = max(r.others_cpus or 0 for r in results)
            extra = f" (up to {worst:.1f} CPU(s) on average)"
        lines.append(f"  {name}, {count} case(s): {FLAGS[name]}{extra}.")
    lines.append(f"  Rerun when `uptime` shows a load average well below {cores}.")
    return lines
