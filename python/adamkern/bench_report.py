"""How far to trust a run of ``python -m adamkern bench``: the wording of ratios, and the signs
that the machine was busy while it ran.

A benchmark on a loaded machine does not fail, it prints wrong figures (a step 400 times slower
at two threads than at one, a method "faster than the roofline"). Four signs are checked, each
from figures the run has anyway, and each becomes a flag on the cases it concerns:

- ``busy``: other processes used more than :data:`BUSY_LIMIT` of the CPUs' time while a case
  was timed (Linux ``/proc/stat`` against this process's own CPU time; steal time of a virtual
  machine counts as busy);
- ``noisy``: a method's repetitions spread more than :data:`SPREAD_LIMIT` (upper over lower
  quartile of its interleaved repetitions: a lone outlier, an interrupt, does not count);
- ``threads``: adamkern took more than :data:`THREADS_LIMIT` times its one-thread time with more
  threads on the same arrays;
- ``roofline``: adamkern beat the roofline kernel by more than :data:`ROOFLINE_LIMIT` (the
  roofline's run was disturbed: nothing moves the same bytes faster).

The load average at the start and at the end (:func:`os.getloadavg`) is compared with the
usable cores as well.

>>> speed_words(1.25), speed_words(0.35)
('1.25x faster', '2.86x slower')
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

__all__ = ["BUSY_LIMIT", "FLAGS", "ROOFLINE_LIMIT", "SPREAD_LIMIT", "THREADS_LIMIT", "CpuMeter",
           "flag_results", "load_average", "peak_rss_bytes", "speed_words", "spread",
           "usable_cores", "verdict"]

BUSY_LIMIT = 0.15  # share of all CPUs' time used by other processes during a case
SPREAD_LIMIT = 1.3  # upper / lower quartile of a method's repetitions
THREADS_LIMIT = 1.2  # adamkern's N-thread time / its 1-thread time on the same arrays
ROOFLINE_LIMIT = 1.1  # adamkern's "of roofline"

FLAGS = {
    "busy": "other processes used the CPUs while the case was timed",
    "noisy": f"repetitions spread more than {SPREAD_LIMIT}x (upper / lower quartile)",
    "threads": f"more threads were over {THREADS_LIMIT}x slower than one thread",
    "roofline": f"adamkern over {ROOFLINE_LIMIT}x faster than the roofline: the roofline's "
                f"run was disturbed",
}


def speed_words(ratio: float) -> str:
    """``ratio`` = the other's time / adamkern's, as words: "1.25x faster", "2.86x slower"."""
    if not ratio > 0 or ratio == float("inf"):
        return "-"
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


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
    """The share of the machine's CPU time that other processes took between start() and
    stop(): (busy time of all CPUs - this process's CPU time) / (wall time * cores)."""

    cores: int = 0
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
        if wall < 0.05:  # below a few clock ticks the share means nothing
            return None
        others = (end[0] - busy0) - (times.user + times.system - own0)
        return max(0.0, others / (wall * (self.cores or usable_cores())))


def flag_results(results) -> None:
    """Sets ``flags`` (a list of names of :data:`FLAGS`) on every result of a bench run
    (:class:`adamkern.bench.Result`: size, threads, dtype, layout, method, median_s,
    of_roofline, spread, others_cpu: the share of the CPUs other processes used while the
    case was timed, from :class:`CpuMeter`). Case flags go on every row of the case; "noisy"
    on the rows whose own repetitions spread."""
    one_thread = {(r.layout, r.dtype, r.size): r.median_s for r in results
                  if r.method == "adamkern" and r.threads == 1}
    case_flags: dict = {}
    for r in results:
        key = (r.layout, r.dtype, r.size, r.threads)
        flags = case_flags.setdefault(key, [])
        if r.method != "adamkern":
            continue
        if (r.others_cpu or 0) > BUSY_LIMIT:
            flags.append("busy")
        base = one_thread.get((r.layout, r.dtype, r.size))
        if r.threads > 1 and base and r.median_s > THREADS_LIMIT * base:
            flags.append("threads")
        if r.of_roofline > ROOFLINE_LIMIT:
            flags.append("roofline")
    for r in results:
        flags = list(case_flags[(r.layout, r.dtype, r.size, r.threads)])
        if r.spread > SPREAD_LIMIT:
            flags.append("noisy")
        r.flags = flags


def verdict(results, cores, load_start=None, load_end=None) -> list[str]:
    """Lines that say whether the run can be trusted, and why not (after flag_results)."""
    cases: dict = {}
    for r in results:
        cases.setdefault((r.layout, r.dtype, r.size, r.threads), set()).update(r.flags)
    flagged = {k: v for k, v in cases.items() if v}
    loads = [x for x in (load_start, load_end) if x is not None]
    overloaded = [x for x in loads if x > cores]
    load_text = (f"load average {load_start:.2f} at the start, {load_end:.2f} at the end, "
                 f"{cores} usable core(s)" if len(loads) == 2 else f"{cores} usable core(s)")
    if not flagged and not overloaded:
        return [(f"No sign of interference: {load_text}; every case's repetitions within "
                 f"{SPREAD_LIMIT}x.")]
    lines = [f"WARNING: these figures are not reliable; the machine was busy. {load_text}."]
    if overloaded:
        lines.append(f"  The load average exceeded the {cores} usable core(s): other programs "
                     f"were running.")
    names = sorted({f for flags in flagged.values() for f in flags})
    for name in names:
        count = sum(name in flags for flags in flagged.values())
        extra = ""
        if name == "busy":
            worst = max(r.others_cpu or 0 for r in results)
            extra = f" (up to {worst:.0%} of the CPUs' time)"
        lines.append(f"  {name}: {count} of {len(cases)} case(s): {FLAGS[name]}{extra}.")
    lines.append("  Rerun when `uptime` shows a load average well below the core count; the "
                 "flagged rows above are marked with '!'.")
    return lines
