"""``python -m adamkern bench --family``: every optimizer of the family beside adam and the
rooflines, interleaved, each checked first against its NumPy reference. Two yardsticks:
adam's time scaled by bytes (an optimizer moving B bytes per element against adam's time x
B/28) and adam's time scaled by what the host charges for the streams: each stream read priced
at the read roofline (one array read, nothing written) and each stream written at what the
seven-stream copy takes beyond its four reads. Where a core is charged for what it reads and its
writes ride along (measured: BENCHMARKS.md section 12), a pass that only reads (a cautious
count, a norm) costs more per byte than adam's pass, which the first yardstick does not see.

>>> from adamkern.bench import format_family_table, run_family
>>> print(format_family_table(run_family(1 << 16, [1], budget_s=0.1, progress=False)))
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

import adamkern
from adamkern import _core, reference, registry
from adamkern.bench.cases import STREAMS, Case, M, size_label
from adamkern.bench.fp32 import build_roofline
from adamkern.bench.rows import close_to_reference
from adamkern.bench.timing import Method, interleave, medians

__all__ = ["FAMILY", "FAMILY_SIZE", "FamilyResult", "family_method", "format_family_table",
           "run_family"]

# 15M elements, not 16M: NumPy places arrays of 2^k bytes one after another, 2^k bytes + 4 KiB
# apart, and on some CPUs streams that far apart slow each other down (measured on an AMD EPYC,
# one thread: adam 0.70 ns/element on such 16M arrays, 0.56 on the same arrays 64 KiB further
# apart, 0.57 at 15M; LAMB 1.27-1.35 against 0.96-1.02). The placement, not the kernels.
FAMILY_SIZE = 15 * M

# (streams read, streams written) per element over all of a step's passes. A step of one pass
# reads p, g and each state array and writes p and each state array. The optimizers whose step
# is more than one pass:
_MORE_PASSES = {
    # two passes: read p, g, m, v and write m, v; then read p, m, v and write p
    "lamb": (7, 3),
    # two passes: read p, g, m, v, s, p0 and write m, v, s; then read p, m, v and write p
    "prodigy": (9, 4),
}
# Rows beside each optimizer at its defaults: (label, op name, options, (reads, writes)), each
# after its optimizer's row.
_VARIANTS = [
    ("adamw amsgrad", "adamw", {"amsgrad": True}, (5, 4)),
    # two passes: read g, m (the count); then adamw's 7 streams
    ("adamw cautious", "adamw", {"cautious": True}, (6, 3)),
    ("rmsprop centered momentum", "rmsprop", {"momentum": 0.9, "centered": True}, (5, 4)),
    ("sgd momentum", "sgd", {"momentum": 0.9}, (3, 2)),
    ("lion cautious", "lion", {"cautious": True}, (5, 2)),
]


def _initial_states(name, options) -> dict[str, float]:
    """The state arrays op ``name`` uses with ``options`` (the rest at their defaults), each
    with its initial value, as the registry describes them."""
    description = registry.describe(name)
    values = {option: d["default"] for option, d in description.options.items()} | options
    return {b.argument: b.initial for b in description.state if b.is_needed(values)}


def _family_rows() -> list[tuple]:
    """(label, op name, options, state arrays and their initial value, streams read per
    element, streams written): every optimizer of the registry at its defaults, each followed
    by its variants, then Adafactor (outside the registry)."""
    rows = []
    for name in registry.names():
        states = _initial_states(name, {})
        reads, writes = _MORE_PASSES.get(name, (2 + len(states), 1 + len(states)))
        rows.append((name.replace("_", " "), name, {}, states, reads, writes))
        rows += [(label, op, options, _initial_states(op, options), *streams)
                 for label, op, options, streams in _VARIANTS
                 if registry.ALIASES.get(op, op) == name]
    # a (rows, cols) matrix of the same size; three passes: read p and g (rms(p), the factors'
    # row and column sums), read g (rms of the update), read p and g and write p
    return [*rows, ("adafactor", "adafactor", {}, {}, 5, 1)]


FAMILY = _family_rows()


@dataclass
class FamilyResult:
    method: str
    size: int
    threads: int
    dtype: str
    reads: int  # streams read per element, over all passes
    writes: int  # streams written per element
    median_s: float
    ns_per_element: float
    gb_per_s: float
    of_roofline: float  # the rooflines' price of these reads and writes / this time
    of_adam: float  # this time / (adam's time * streams / 7)
    of_adam_priced: float  # this time / (adam's time * price of these streams / adam's)
    read_ns: float  # the price of a stream read, ns/element (the read roofline)
    write_ns: float  # the price of a stream written (the copy's time beyond its four reads)

    @property
    def streams(self) -> int:
        return self.reads + self.writes


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
    methods.append(_read_roofline(size, dtype))
    return methods


def _read_roofline(size, dtype) -> Method:
    """One array read, nothing written: the L2 norm of the grads (adamkern.grad_norm's kernel,
    which reads each element once and adds its square in double)."""
    g = Case(size, 1, np.dtype(dtype).name).initial()[1]
    norm, finite = _core.grad_stats(g)
    if not (finite and np.isclose(norm, np.linalg.norm(g[0].astype(np.float64)), rtol=1e-9)):
        raise RuntimeError("benchmark check failed: the read roofline's norm is wrong")
    return Method("read roofline", lambda: _core.grad_stats(g))


def run_family(size=FAMILY_SIZE, threads=(1,), dtype=np.float32, budget_s=1.0, progress=True):
    """Times every optimizer of the family beside adam and the rooflines, interleaved."""
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


def stream_prices(read_roofline_s, copy_roofline_s) -> tuple[float, float]:
    """(seconds per stream read, per stream written) from the two rooflines' times: the read
    roofline reads one stream; the seven-stream copy reads four and writes three, and what it
    takes beyond its reads is the price of its writes (0 where it takes no more)."""
    read = read_roofline_s
    write = max(0.0, (copy_roofline_s - 4 * read) / 3)
    return read, write


def _family_results(times, size, nthreads, dtype) -> list[FamilyResult]:
    read, write = stream_prices(times["read roofline"], times["roofline"])
    adam_per_stream = times["adam"] / STREAMS
    adam_per_price = times["adam"] / (4 * read + 3 * write)
    itemsize = np.dtype(dtype).itemsize
    results = []
    for label, _, _, _, reads, writes in FAMILY:
        time, price = times[label], reads * read + writes * write
        results.append(FamilyResult(
            method=label, size=size, threads=nthreads, dtype=np.dtype(dtype).name, reads=reads,
            writes=writes, median_s=time, ns_per_element=time / size * 1e9,
            gb_per_s=(reads + writes) * itemsize * size / time / 1e9,
            of_roofline=price / time, of_adam=time / (adam_per_stream * (reads + writes)),
            of_adam_priced=time / (adam_per_price * price), read_ns=read / size * 1e9,
            write_ns=write / size * 1e9))
    return results


def format_family_table(results) -> str:
    lines = []
    last = None
    for r in results:
        if r.threads != last:
            lines += ["", f"{size_label(r.size)} {r.dtype} elements, {r.threads} thread(s): a "
                      f"stream read {r.read_ns:.3f} ns/element, a stream written "
                      f"{r.write_ns:.3f}",
                      f"{'optimizer':<26} {'read+written':>12} {'bytes/elem':>10} {'ns/elem':>8} "
                      f"{'GB/s':>7} {'of roofline':>12} {'vs adam*bytes/28':>17} "
                      f"{'vs adam, priced':>16}"]
            last = r.threads
        lines.append(f"{r.method:<26} {f'{r.reads}+{r.writes}':>12} "
                     f"{r.streams * np.dtype(r.dtype).itemsize:>10} {r.ns_per_element:>8.3f} "
                     f"{r.gb_per_s:>7.1f} {r.of_roofline:>12.2f} {r.of_adam:>17.2f} "
                     f"{r.of_adam_priced:>16.2f}")
    lines += ["", "of roofline: the rooflines' price of the row's streams / its time (a stream "
              "read at the read roofline's time, a stream written at what the copy takes beyond "
              "its four reads); vs adam, priced: the row's time / adam's scaled by that price"]
    return "\n".join(lines)
