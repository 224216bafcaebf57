"""``python -m adamkern bench --family``: every optimizer of the family beside adam and the
roofline, interleaved, each checked first against its NumPy reference. An optimizer moving B
bytes per element should take about adam's time x B/28.

>>> from adamkern.bench import format_family_table, run_family
>>> print(format_family_table(run_family(1 << 16, [1], budget_s=0.1, progress=False)))
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

import adamkern
from adamkern import reference, registry
from adamkern.bench.cases import STREAMS, Case, size_label
from adamkern.bench.fp32 import build_roofline
from adamkern.bench.rows import close_to_reference
from adamkern.bench.timing import Method, interleave, medians

__all__ = ["FAMILY", "FamilyResult", "family_method", "format_family_table", "run_family"]

# Streams count every array read and every array written once per element. A step of one pass
# reads p, g and each state array and writes p and each state array: 3 + 2 * arrays streams.
# The optimizers whose step is more than one pass:
_MORE_PASSES = {
    # two passes: read p, g, m, v and write m, v; then read p, m, v and write p
    "lamb": 10,
    # two passes: read p, g, m, v, s, p0 and write m, v, s; then read p, m, v and write p
    "prodigy": 13,
}
# Rows beside each optimizer at its defaults: (label, op name, options, streams per element),
# each after its optimizer's row.
_VARIANTS = [
    ("adamw amsgrad", "adamw", {"amsgrad": True}, 9),
    # two passes: read g, m (the count); then adamw's 7 streams
    ("adamw cautious", "adamw", {"cautious": True}, 9),
    ("rmsprop centered momentum", "rmsprop", {"momentum": 0.9, "centered": True}, 9),
    ("sgd momentum", "sgd", {"momentum": 0.9}, 5),
    ("lion cautious", "lion", {"cautious": True}, 7),
]


def _initial_states(name, options) -> dict[str, float]:
    """The state arrays op ``name`` uses with ``options`` (the rest at their defaults), each
    with its initial value, as the registry describes them."""
    description = registry.describe(name)
    values = {option: d["default"] for option, d in description.options.items()} | options
    return {b.argument: b.initial for b in description.state if b.is_needed(values)}


def _family_rows() -> list[tuple]:
    """(label, op name, options, state arrays and their initial value, streams per element):
    every optimizer of the registry at its defaults, each followed by its variants, then
    Adafactor (outside the registry)."""
    rows = []
    for name in registry.names():
        states = _initial_states(name, {})
        rows.append((name.replace("_", " "), name, {}, states,
                     _MORE_PASSES.get(name, 3 + 2 * len(states))))
        rows += [(label, op, options, _initial_states(op, options), streams)
                 for label, op, options, streams in _VARIANTS
                 if registry.ALIASES.get(op, op) == name]
    # a (rows, cols) matrix of the same size; three passes: read p and g (rms(p), the factors'
    # row and column sums), read g (rms of the update), read p and g and write p
    return [*rows, ("adafactor", "adafactor", {}, {}, 6)]


FAMILY = _family_rows()


@dataclass
class FamilyResult:
    method: str
    size: int
    threads: int
    dtype: str
    streams: int
    median_s: float
    ns_per_element: float
    gb_per_s: float
    of_roofline: float  # time of the roofline scaled to these streams / this time
    of_adam: float  # this time / (adam's time * streams / 7): the target is <= 1.1


def _step_options(name, step) -> dict:
    """The per-call arguments of op `name` at `step` (1, 2, ...)."""
    options = {} if name in ("rmsprop", "adadelta", "sgd", "lion", "prodigy") else {"step": step}
    if name in ("sgd", "adamw_schedulefree", "sgd_schedulefree"):
        options["is_first_step"] = step == 1
    if name == "sgd_schedulefree":
        options["step"] = step  # the schedule-free weights take it
    return options


def family_method(label, name, options, states, size, dtype) -> Method:
    """A Method stepping op `name`, and a check of its first step against the reference."""
    p0, g0 = Case(size, 1, np.dtype(dtype).name).initial()
    arrays = {"params": p0[0], "grads": g0[0]}
    arrays.update({key: np.full(size, value, dtype) for key, value in states.items()})
    if name == "nadam":
        arrays["mu_product"] = np.ones(1, np.float32)
    if name.endswith("schedulefree"):
        arrays["weight_sums"] = np.array([-1.0, 0.0])
    if name == "prodigy":
        arrays["p0"] = arrays["params"].copy()
        arrays["group_scalars"] = np.array([1e-6, 1e-6, 0.0, 0.0, 0.0, 0.0])
    if name == "adafactor":
        rows = _matrix_rows(size)
        arrays["params"] = arrays["params"].reshape(rows, size // rows)
        arrays["grads"] = arrays["grads"].reshape(rows, size // rows)
        arrays["row_vars"] = np.zeros((rows, 1), dtype)
        arrays["col_vars"] = np.zeros((1, size // rows), dtype)
        arrays["variances"] = None
    op = getattr(adamkern, name + "_")
    counter = [0]

    def step():
        counter[0] += 1
        op(**arrays, **options, **_step_options(name, counter[0]))

    # The check: one step from the same start through the NumPy reference.
    expected = {key: None if a is None else a.copy() for key, a in arrays.items()}
    step()
    getattr(reference, name)(**expected, **options, **_step_options(name, 1))
    for key in arrays:
        if arrays[key] is not None and not close_to_reference(arrays[key], expected[key]):
            raise RuntimeError(f"benchmark check failed: {label} disagrees with its reference "
                               f"in {key}")
    return Method(label, step, lambda: None)


def _matrix_rows(size) -> int:
    """The rows of the squarest (rows, size // rows) matrix with rows <= cols."""
    rows = int(np.sqrt(size))
    while size % rows:
        rows -= 1
    return rows


def _say(text, progress, end=""):
    if progress:
        print(f"\r{text}", end=end, file=sys.stderr, flush=True)


def _family_methods(size, nthreads, dtype, progress) -> list[Method]:
    methods = []
    for case in FAMILY:
        _say(f"[{nthreads} thread(s)] checking {case[0]:<28}", progress)
        methods.append(family_method(*case[:4], size, dtype))
    case = Case(size, nthreads, np.dtype(dtype).name)
    methods.append(build_roofline(case, *case.initial()))
    return methods


def run_family(size=1 << 24, threads=(1,), dtype=np.float32, budget_s=1.0, progress=True):
    """Times every optimizer of the family beside adam and the roofline, interleaved."""
    results = []
    saved_threads = adamkern.get_num_threads()
    try:
        for nthreads in threads:
            adamkern.set_num_threads(nthreads)
            methods = _family_methods(size, nthreads, dtype, progress)
            _say(f"[{nthreads} thread(s)] timing {len(methods)} methods" + " " * 20, progress)
            interleave(methods, budget_s * len(methods), min_reps=5, max_reps=200)
            results += _family_results(medians(methods), size, nthreads, dtype)
    finally:
        adamkern.set_num_threads(saved_threads)
        _say(" " * 70 + "\r", progress)
    return results


def _family_results(times, size, nthreads, dtype) -> list[FamilyResult]:
    adam_per_stream, roofline_per_stream = times["adam"] / STREAMS, times["roofline"] / STREAMS
    itemsize = np.dtype(dtype).itemsize
    return [FamilyResult(method=label, size=size, threads=nthreads, dtype=np.dtype(dtype).name,
                         streams=streams, median_s=times[label],
                         ns_per_element=times[label] / size * 1e9,
                         gb_per_s=streams * itemsize * size / times[label] / 1e9,
                         of_roofline=roofline_per_stream * streams / times[label],
                         of_adam=times[label] / (adam_per_stream * streams))
            for label, _, _, _, streams in FAMILY]


def format_family_table(results) -> str:
    lines = []
    last = None
    for r in results:
        if r.threads != last:
            lines += ["", f"{size_label(r.size)} {r.dtype} elements, {r.threads} thread(s)",
                      f"{'optimizer':<26} {'bytes/elem':>10} {'ns/elem':>8} {'GB/s':>7} "
                      f"{'of roofline':>12} {'vs adam*bytes/28':>17}"]
            last = r.threads
        lines.append(f"{r.method:<26} {r.streams * np.dtype(r.dtype).itemsize:>10} "
                     f"{r.ns_per_element:>8.3f} {r.gb_per_s:>7.1f} {r.of_roofline:>12.2f} "
                     f"{r.of_adam:>17.2f}")
    return "\n".join(lines)
