"""How ``python -m adamkern bench`` times: every method of a case in one loop, interleaved
(A B C A B C ..., the order rotated each round), and the median of each method's repetitions.
Drift of the machine hits every method alike, so ratios of medians of the same loop hold.

>>> from adamkern.bench.timing import Method, interleave, medians
>>> methods = [Method("a", lambda: None), Method("b", lambda: None)]
>>> interleave(methods, budget_s=0.01); sorted(medians(methods))
['a', 'b']
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable

import numpy as np

__all__ = ["Method", "Progress", "concat", "counter_step", "interleave", "medians"]


class Method:
    """A named step function over its own buffers, plus the state it leaves after one step
    (params, exp_avgs, exp_avg_sqs, each flattened and concatenated over the tensors)."""

    def __init__(self, name: str, step: Callable[[], None],
                 state: Callable[[], list[np.ndarray] | None] = lambda: None):
        self.name, self.step, self.state = name, step, state
        self.times: list[float] = []


def concat(arrays) -> np.ndarray:
    """The arrays flattened end to end (one array: a view, no copy)."""
    flat = [np.asarray(a).reshape(-1) for a in arrays]
    return flat[0] if len(flat) == 1 else np.concatenate(flat)


def counter_step(fn, *arrays, **kwargs) -> Callable[[], None]:
    """A step function calling ``fn(*arrays, step=n, **kwargs)`` with n = 1, 2, ..."""
    counter = [0]

    def step():
        counter[0] += 1
        fn(*arrays, step=counter[0], **kwargs)
    return step


def interleave(methods: list[Method], budget_s: float, min_reps: int = 5,
               max_reps: int = 1000) -> None:
    """One warm-up round (which also sizes the repetitions to ``budget_s``), then rounds of
    every method, the order rotated each round; each step's time goes to ``Method.times``."""
    round_s = 0.0
    for m in methods:
        t0 = time.perf_counter()
        m.step()
        round_s += time.perf_counter() - t0
    reps = int(min(max_reps, max(min_reps, budget_s / max(round_s, 1e-9))))
    for r in range(reps):
        order = methods[r % len(methods):] + methods[:r % len(methods)]
        for m in order:
            t0 = time.perf_counter()
            m.step()
            m.times.append(time.perf_counter() - t0)


def medians(methods: list[Method]) -> dict[str, float]:
    return {m.name: statistics.median(m.times) for m in methods}


class Progress:
    """Progress on stderr: done/total, the current case, time left (from each step's
    expected weight, if given). A bar redrawn in place on a terminal, a line per step
    otherwise (a log file)."""

    def __init__(self, total: int, enabled: bool = True, width: int = 24, weights=None):
        self.total, self.enabled, self.width = max(total, 1), enabled, width
        self.weights = list(weights) if weights else [1.0] * self.total
        self.done, self.start = 0, time.perf_counter()
        self.redraw = enabled and sys.stderr.isatty()

    def show(self, label: str) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        done_weight = sum(self.weights[:self.done])
        left = f"~{elapsed / done_weight * sum(self.weights[self.done:]):.0f}s left " \
            if self.done and done_weight > 0 else ""
        if not self.redraw:
            print(f"[{self.done + 1}/{self.total}] {left}{label}", file=sys.stderr, flush=True)
            return
        filled = self.width * self.done // self.total
        print(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
              f"{left}{label}".ljust(78)[:78], end="", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.redraw:
            print("\r" + " " * 78 + "\r", end="", file=sys.stderr, flush=True)
