"""The row-sparse step of an embedding table (``python -m adamkern bench --sparse``): a
1M x 64 float32 table (2**20 rows), 64K looked-up rows a step (2**16) drawn from a Zipf
distribution of exponent 1.15 (so with repeats: about 19.5K of them distinct, the most
looked-up row some 4K times), at 1 and 2 threads (or
``threads``). Every method steps the same table, one step of each in turn (interleaved, the
order rotated each round; medians):

- ``adamkern.sparse.adam_rows_`` and ``adamkern.torch.SparseAdam`` against
  ``torch.optim.SparseAdam``, and ``torch.optim.Adam(fused=True)`` stepping the whole table
  with the dense grad the same lookups give;
- ``adamkern.sparse.adagrad_rows_`` and ``adamkern.torch.Adagrad`` against
  ``torch.optim.Adagrad`` with the sparse grad; ``adamkern.sparse.rowwise_adagrad_rows_``
  (one state value a row) for scale.

The touched bytes of a step are those the update must move for its distinct rows, ``U`` of
them, ``C`` columns, 4-byte elements, from ``L`` lookups: each distinct row of the param and
of each state table read and written once (Adam: 3 tables, ``6*U*C*4``; Adagrad: 2 tables,
``4*U*C*4``; row-wise Adagrad: the param, ``4*U*C + 8*U``), every gradient row read once
(``L*C*4``) and the indices read once (``L*8``, int64). Their roofline is that byte count at
the bandwidth ``adamkern._core.roofline_`` reaches on 4 arrays of 8M float32 (32 MB each) at
the same thread count (seven streams, out of the caches): the time a step could take if the
touched bytes streamed at memory speed. Rows above 1 are possible where hot rows stay in the
caches between steps (Zipf's most looked-up rows do).

>>> rows = run(threads=[1, 2])
>>> print(format_rows(rows))

Importing this module does nothing (torch is imported by :func:`run`).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

import adamkern
from adamkern import _core
from adamkern.bench import trust
from adamkern.bench.timing import Method, Progress, interleave, medians

__all__ = ["COLS", "LOOKUPS", "ROWS", "SparseRow", "format_rows", "run", "touched_bytes",
           "verdict"]

ROWS, COLS, LOOKUPS = 1 << 20, 64, 1 << 16
ZIPF_A = 1.15  # the Zipf exponent of the lookups (numpy.random.Generator.zipf)
BATCHES = 4  # distinct batches of lookups, cycled through
ROOFLINE_ELEMENTS = 8 << 20  # of each of the roofline kernel's 4 arrays (32 MB)

# each method: its row-op family (the bytes it must move) and the method its speedup is over
ADAM, ADAGRAD, ROWWISE = "adam", "adagrad", "rowwise"
REFERENCES = {ADAM: "torch.optim.SparseAdam", ADAGRAD: "torch.optim.Adagrad (sparse grad)",
              ROWWISE: "torch.optim.Adagrad (sparse grad)"}


class SparseRow(NamedTuple):
    """One method at one thread count."""

    method: str
    threads: int
    step_ms: float  # median step, milliseconds
    speedup: float  # its reference's median step / this one's (same loop, same threads)
    reference: str
    touched_gbps: float | None  # touched bytes / step (None: a dense step)
    of_roofline: float | None  # touched-bytes roofline time / step time
    spread: float  # upper / lower quartile of its steps
    others_cpus: float | None  # CPUs other processes kept busy while its loop ran


def zipf_lookups(rng: np.random.Generator, count: int | None = None,
                 rows: int | None = None) -> np.ndarray:
    """``count`` row indices (LOOKUPS) of a table of ``rows`` (ROWS), Zipf-distributed (a few
    rows looked up many times, the rank of each row shuffled over the table), int64."""
    count, rows = count or LOOKUPS, rows or ROWS
    ranks = (rng.zipf(ZIPF_A, count) - 1) % rows
    return rng.permutation(rows)[ranks].astype(np.int64)


def touched_bytes(kind: str, distinct: float, lookups: int | None = None,
                  cols: int | None = None, itemsize: int = 4) -> float:
    """The bytes a row-sparse step must move (see the module's docstring)."""
    lookups, cols = lookups or LOOKUPS, cols or COLS
    tables = {ADAM: 3, ADAGRAD: 2}
    if kind == ROWWISE:
        rows = 2 * distinct * cols * itemsize + 2 * distinct * itemsize
    else:
        rows = 2 * tables[kind] * distinct * cols * itemsize
    return rows + lookups * cols * itemsize + lookups * 8


def _roofline_gbps(threads: int) -> float:
    """The bandwidth (GB/s) of the seven-stream roofline kernel on 4 x 32 MB."""
    arrays = [[np.ones(ROOFLINE_ELEMENTS, np.float32)] for _ in range(4)]
    _core.roofline_(*arrays)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        _core.roofline_(*arrays)
        times.append(time.perf_counter() - t0)
    return 7 * ROOFLINE_ELEMENTS * 4 / statistics.median(times) / 1e9


def _methods(torch: Any, table: Any, batches: list, dense_grad: Any) -> list[tuple[Method, str]]:
    """Each method's step over the shared table (a torch Parameter), with its kind."""
    import adamkern.torch as akt
    from adamkern import sparse

    weight = table.detach().numpy()
    turn = {"k": 0}  # the batch of the current round: every method steps the same lookups

    def batch() -> tuple:
        return batches[turn["k"] % len(batches)]

    def kernel(op: Callable, *state: np.ndarray, **options: Any) -> Callable[[], None]:
        count = [0]

        def step() -> None:
            count[0] += 1
            indices, grad_rows, _ = batch()
            op(weight, indices, grad_rows, *state, **options,
               **({"step": count[0]} if op is not sparse.rowwise_adagrad_rows_ else {}))
        return step

    def optimizer_step(optimizer: Any, dense: bool = False) -> Callable[[], None]:
        def step() -> None:
            table.grad = dense_grad if dense else batch()[2]
            optimizer.step()
        return step

    # the row ops step the state of adamkern.torch's optimizers (made by a first step):
    # shared state changes no timing, and saves a table per state buffer
    sparse_adam, adagrad = akt.SparseAdam([table]), akt.Adagrad([table])
    for optimizer in (sparse_adam, adagrad):
        table.grad = batches[0][2]
        optimizer.step()
    adam_state, adagrad_state = sparse_adam.state[table], adagrad.state[table]
    methods = [
        (Method("adamkern.sparse.adam_rows_",
                kernel(sparse.adam_rows_, adam_state["exp_avg"].numpy(),
                       adam_state["exp_avg_sq"].numpy())), ADAM),
        (Method("adamkern.torch.SparseAdam", optimizer_step(sparse_adam)), ADAM),
        (Method("torch.optim.SparseAdam", optimizer_step(torch.optim.SparseAdam([table]))), ADAM),
        (Method("torch.optim.Adam(fused=True), dense grad",
                optimizer_step(torch.optim.Adam([table], fused=True), dense=True)), ADAM),
        (Method("adamkern.sparse.adagrad_rows_",
                kernel(sparse.adagrad_rows_, adagrad_state["sum"].numpy())), ADAGRAD),
        (Method("adamkern.torch.Adagrad (sparse grad)", optimizer_step(adagrad)), ADAGRAD),
        (Method("torch.optim.Adagrad (sparse grad)",
                optimizer_step(torch.optim.Adagrad([table]))), ADAGRAD),
        (Method("adamkern.sparse.rowwise_adagrad_rows_",
                kernel(sparse.rowwise_adagrad_rows_, np.zeros(ROWS, np.float32))), ROWWISE),
    ]
    # the last method of each round moves every method on to the next batch
    first = methods[0][0].step

    def first_and_advance() -> None:
        turn["k"] += 1
        first()
    methods[0][0].step = first_and_advance
    return methods


def run(threads: Sequence[int] = (1, 2), budget_s: float = 6.0, seed: int = 0,
        progress: bool = True) -> tuple[list[SparseRow], dict[str, Any]]:
    """Every method at each thread count (``budget_s`` of interleaved rounds each); the rows
    and the run's facts (distinct rows a step, the roofline bandwidths)."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(ROWS, COLS) * 0.01)
    batches, distinct = [], []
    for _ in range(BATCHES):
        indices = zipf_lookups(rng)
        grad_rows = rng.standard_normal((LOOKUPS, COLS), dtype=np.float32)
        grad = torch.sparse_coo_tensor(torch.from_numpy(indices)[None], torch.from_numpy(grad_rows),
                                       (ROWS, COLS), check_invariants=False)
        batches.append((indices, grad_rows, grad))
        distinct.append(len(np.unique(indices)))
    dense_grad = batches[0][2].to_dense()  # the dense grad of the same lookups
    methods = _methods(torch, table, batches, dense_grad)
    mean_distinct = float(np.mean(distinct))
    facts: dict[str, Any] = {"rows": ROWS, "cols": COLS, "lookups": LOOKUPS, "zipf_a": ZIPF_A,
                             "distinct_rows": mean_distinct, "roofline_gbps": {}}
    rows: list[SparseRow] = []
    shown = Progress(2 * len(threads), progress)
    torch_threads, adamkern_threads = torch.get_num_threads(), adamkern.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            adamkern.set_num_threads(n)
            shown.show(f"roofline, {n} thread(s)")
            gbps = _roofline_gbps(n)
            facts["roofline_gbps"][n] = gbps
            shown.advance()
            shown.show(f"{len(methods)} methods, {n} thread(s)")
            for method, _ in methods:
                method.times = []
            meter = trust.CpuMeter()
            meter.start()
            with warnings.catch_warnings():  # torch's sparse Adagrad: unchecked invariants
                warnings.filterwarnings("ignore", "Sparse invariant checks")
                interleave([m for m, _ in methods], budget_s)
            others = meter.stop()
            shown.advance()
            times = medians([m for m, _ in methods])
            for method, kind in methods:
                dense = "dense" in method.name
                moved = None if dense else touched_bytes(kind, mean_distinct)
                reference = REFERENCES[kind]
                rows.append(SparseRow(
                    method.name, n, times[method.name] * 1e3,
                    times[reference] / times[method.name], reference,
                    None if moved is None else moved / times[method.name] / 1e9,
                    None if moved is None else moved / (gbps * 1e9) / times[method.name],
                    trust.spread(method.times), others))
    finally:
        shown.close()
        torch.set_num_threads(torch_threads)
        adamkern.set_num_threads(adamkern_threads)
    return rows, facts


def format_rows(rows: list[SparseRow], facts: dict[str, Any]) -> str:
    """The table: each method's median step, its speedup over its torch reference, its
    touched bytes a second and their fraction of the roofline."""
    lines = [f"{facts['rows']:,} x {facts['cols']} float32 table, {facts['lookups']:,} Zipf "
             f"lookups a step (a={facts['zipf_a']}), {facts['distinct_rows']:,.0f} distinct rows "
             f"on average; roofline: " + ", ".join(
                 f"{g:.1f} GB/s at {n} thread(s)" for n, g in facts["roofline_gbps"].items()),
             f"{'method':44} {'thr':>3} {'step ms':>8} {'speedup':>8} {'GB/s':>6} "
             f"{'of roof':>7}"]
    for r in rows:
        flag = "!" if r.spread > trust.SPREAD_LIMIT else " "
        gbps = "" if r.touched_gbps is None else f"{r.touched_gbps:.1f}"
        roof = "" if r.of_roofline is None else f"{r.of_roofline:.2f}"
        lines.append(f"{r.method:44} {r.threads:>3} {r.step_ms:>8.2f}{flag}{r.speedup:>7.2f}x "
                     f"{gbps:>6} {roof:>7}")
    lines.append("speedup: over torch.optim.SparseAdam (the Adam rows) or torch.optim.Adagrad "
                 "with the sparse grad (the Adagrad rows), same threads; '!': spread over "
                 f"{trust.SPREAD_LIMIT}x")
    return "\n".join(lines)


def verdict(rows: list[SparseRow], cores: int, load_start: float | None,
            load_end: float | None) -> list[str]:
    """Whether the run can be trusted (the signs of :mod:`adamkern.bench.trust`: CPUs taken
    by other processes while a loop ran, spread repetitions, the load average)."""
    busy = sorted({r.threads for r in rows
                   if (r.others_cpus or 0) > max(cores - r.threads, 0) + trust.BUSY_MARGIN})
    noisy = sorted({r.method for r in rows if r.spread > trust.SPREAD_LIMIT})
    loads = [x for x in (load_start, load_end) if x is not None]
    load_text = (f"load average {load_start:.2f} at the start and {load_end:.2f} at the end "
                 f"on {cores} usable core(s)" if len(loads) == 2 else f"{cores} usable core(s)")
    if not busy and not noisy and not any(x > cores for x in loads):
        return [f"No sign of interference: {load_text}."]
    lines = [f"WARNING: the machine was busy, the figures are not reliable ({load_text})."]
    if busy:
        lines.append(f"  busy: other processes took CPUs while the {busy} thread loop(s) ran.")
    if noisy:
        lines.append(f"  noisy: {len(noisy)} method(s) spread over {trust.SPREAD_LIMIT}x.")
    lines.append(f"  Rerun when `uptime` shows a load average well below {cores}.")
    return lines
