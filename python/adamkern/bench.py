"""``python -m adamkern bench``: the Adam step against the memory roofline, torch, DeepSpeed and
NumPy.

Every method is timed in one process, interleaved (A B C A B C ..., the order rotated each
round), and reported as the median of its repetitions; ratios compare medians of the same run.
Before timing, each method's first step is checked against adamkern's (bitwise for torch's fused
path, a few ULP otherwise) and the roofline kernel's against what it must write.

A row of the table is a method: an entry of :data:`METHODS` (name, bytes moved per element,
builder, check). Adding a method or a storage mode is one :func:`register_method` call.

    python -m adamkern bench                    # 64K..8M and the model list; ~1.5 min, ~2 GB
    python -m adamkern bench --quick            # 64K, 1M, 8M elements; about 15 seconds
    python -m adamkern bench --large            # adds 16M, 64M and torch single; ~12 GB
    python -m adamkern bench --dry-run          # the cases, the expected time and memory
    python -m adamkern bench --json out.json --plot out.png
    python -m adamkern bench --overhead         # Python call overhead
    python -m adamkern bench --placement        # alignment, huge pages, first touch
    python -m adamkern bench --scaling          # time against size, cache boundaries
    python -m adamkern bench --all --json all.json --plot all.png   # everything above
"""

from __future__ import annotations

import math
import mmap
import os
import statistics
import sys
import time
import timeit
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import adamkern
from adamkern import _core, bench_plot, bench_report, lowp, memory, reference
from adamkern.bench_report import speed_words

__all__ = ["FAMILY", "LOWP_MODES", "METHODS", "Case", "FamilyResult", "Method", "MethodSpec",
           "Result", "Unavailable", "case_bytes", "estimate", "family_method", "format_modes",
           "main", "plan", "register_method", "run", "run_cases", "run_family", "run_overhead",
           "run_placement", "run_scaling", "select_methods", "transformer_shapes"]

STREAMS = 7  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 1e-2  # AdamW defaults
K, M = 1 << 10, 1 << 20
DEFAULT_SIZES = [64 * K, 256 * K, M, 4 * M, 8 * M]  # with the model list: ~2.2 GB at most
LARGE_SIZES = [16 * M, 64 * M]  # --large: every method's copies of 64M float32 take ~12 GB
QUICK_SIZES = [64 * K, M, 8 * M]  # the default's ends: no more memory than it
MAX_TENSOR_BYTES = 256 * M  # per array: 64M float32 (float64 stops at 16M)
DEFAULT_MEMORY_LIMIT = 3e9  # the default run's estimated peak stays below (a test checks)
PROCESS_BYTES = 0.45e9  # Python with NumPy, torch and matplotlib loaded, before any case
SETUP_S_PER_BYTE = 2.5e-9  # building, first-touching and checking a case's buffers (2-core VM)


class Unavailable(Exception):
    """A method that cannot run here (library missing, unsupported dtype, failed build)."""


class Method:
    """A named step function over its own buffers, plus the state it leaves after one step
    (params, exp_avgs, exp_avg_sqs, each flattened and concatenated over the tensors)."""

    def __init__(self, name: str, step: Callable[[], None],
                 state: Callable[[], list[np.ndarray] | None] = lambda: None):
        self.name, self.step, self.state = name, step, state
        self.times: list[float] = []


@dataclass(frozen=True)
class Case:
    """One cell of the benchmark: the tensors (one of `size` elements, or the model-shaped
    list), the thread count and the dtype."""

    size: int
    threads: int
    dtype: str
    layout: str = "tensor"  # "tensor": one tensor; "model": transformer_shapes()

    def shapes(self) -> list[tuple[int, ...]]:
        return [(self.size,)] if self.layout == "tensor" else transformer_shapes()

    def initial(self, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(s).astype(self.dtype) for s in self.shapes()]
        grads = [rng.standard_normal(s).astype(self.dtype) for s in self.shapes()]
        return params, grads


@dataclass(frozen=True)
class MethodSpec:
    """A row of the benchmark. `build(case, params, grads)` returns a Method over its own
    copies of the initial arrays (or raises Unavailable with the reason); `check` is how its
    first step is compared with adamkern's: "exact" (bitwise), "ulp" (close_to_reference),
    "self" (the method checks itself while building) or a callable(got, expected) -> bool.
    `bytes_per_element(itemsize)` is the traffic it must move per element (for GB/s);
    `held(itemsize)` the bytes per element its buffers occupy, `scratch(itemsize)` what one
    step allocates on top (for the memory estimate)."""

    name: str
    build: Callable[[Case, list, list], Method]
    check: str | Callable[[list, list], bool] = "ulp"
    bytes_per_element: Callable[[int], int] = lambda itemsize: STREAMS * itemsize
    baseline: bool = True  # gets a "vs" column in the summary
    quick: bool = True  # part of --quick
    large: bool = False  # only with --large (or named in --methods)
    held: Callable[[int], float] = lambda itemsize: 4 * itemsize  # p, g, m, v
    scratch: Callable[[int], float] = lambda itemsize: 0


METHODS: list[MethodSpec] = []


def register_method(spec: MethodSpec, before: str | None = None) -> None:
    """Adds a row (before the named one, else at the end); replaces one of the same name."""
    names = [m.name for m in METHODS]
    if spec.name in names:
        METHODS[names.index(spec.name)] = spec
        return
    METHODS.insert(names.index(before) if before in names else len(METHODS), spec)


def _concat(arrays) -> np.ndarray:
    flat = [np.asarray(a).reshape(-1) for a in arrays]
    return flat[0] if len(flat) == 1 else np.concatenate(flat)  # one tensor: a view, no copy


def _counter_step(fn, *arrays, **kwargs):
    counter = [0]

    def step():
        counter[0] += 1
        fn(*arrays, step=counter[0], **kwargs)
    return step


# -- builders -----------------------------------------------------------------------------------

def _build_roofline(case, params, grads):
    p, g = [a.copy() for a in params], [a.copy() for a in grads]
    m, v = [np.ones_like(a) for a in params], [np.full_like(a, 2) for a in params]
    _core.roofline_(p, g, m, v)  # check: p <- m, m <- v, v <- p + g
    for k in range(len(p)):
        if not (np.all(p[k] == 1) and np.all(m[k] == 2)
                and np.array_equal(v[k], params[k] + grads[k])):
            raise RuntimeError("benchmark check failed: the roofline kernel wrote wrong values")
    return Method("roofline", lambda: _core.roofline_(p, g, m, v))


def _build_adamkern(case, params, grads):
    p, g = [a.copy() for a in params], [a.copy() for a in grads]
    m, v = [np.zeros_like(a) for a in params], [np.zeros_like(a) for a in params]
    return Method("adamkern", _counter_step(adamkern.adam_, p, g, m, v, lr=LR, betas=BETAS,
                                            eps=EPS, weight_decay=WEIGHT_DECAY,
                                            decoupled_weight_decay=True),
                  lambda: [_concat(p), _concat(m), _concat(v)])


def _build_adamkern_optim(case, params, grads):
    from adamkern import optim

    opt = optim.AdamW([a.copy() for a in params], lr=LR, betas=BETAS, eps=EPS,
                      weight_decay=WEIGHT_DECAY)
    g = [a.copy() for a in grads]

    def state():
        return [_concat(opt.params), _concat(s["exp_avg"] for s in opt.state),
                _concat(s["exp_avg_sq"] for s in opt.state)]
    return Method("adamkern optim", lambda: opt.step(g), state)


def _build_numpy(case, params, grads):
    p, g = [a.copy() for a in params], [a.copy() for a in grads]
    m, v = [np.zeros_like(a) for a in params], [np.zeros_like(a) for a in params]
    return Method("numpy", _counter_step(reference.adam, p, g, m, v, lr=LR, betas=BETAS, eps=EPS,
                                         weight_decay=WEIGHT_DECAY, decoupled_weight_decay=True),
                  lambda: [_concat(p), _concat(m), _concat(v)])


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise Unavailable("torch is not installed (pip install torch)") from error
    return torch


def _torch_builder(label, flags):
    def build(case, params, grads):
        torch = _import_torch()
        torch.set_num_threads(case.threads)
        tparams = []
        for p0, g0 in zip(params, grads):
            param = torch.tensor(p0, requires_grad=True)  # torch's own allocation
            param.grad = torch.tensor(g0)
            tparams.append(param)
        opt = torch.optim.AdamW(tparams, lr=LR, betas=BETAS, eps=EPS,
                                weight_decay=WEIGHT_DECAY, **flags)

        def state():
            return [_concat(p.detach().numpy() for p in tparams),
                    _concat(opt.state[p]["exp_avg"].numpy() for p in tparams),
                    _concat(opt.state[p]["exp_avg_sq"].numpy() for p in tparams)]
        return Method(label, opt.step, state)
    return build


_DEEPSPEED_REASON: list[str] = []  # the reason it is unavailable, found once per process


def _build_deepspeed(case, params, grads):
    if _DEEPSPEED_REASON:
        raise Unavailable(_DEEPSPEED_REASON[0])
    if case.dtype != "float32":
        raise Unavailable(f"DeepSpeedCPUAdam steps float32, bfloat16 and float16 params, not "
                          f"{case.dtype}")
    torch = _import_torch()
    try:
        import contextlib
        import io
        import logging

        logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # JIT-builds its C++ op once
            probe = torch.nn.Parameter(torch.zeros(16))
            probe.grad = torch.zeros(16)
            DeepSpeedCPUAdam([probe]).step()
    except Exception as error:  # noqa: BLE001 - any failure to import or build means "skip"
        reason = ("deepspeed is not installed" if isinstance(error, ImportError)
                  else f"DeepSpeedCPUAdam could not be built or run here: "
                       f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        _DEEPSPEED_REASON.append(reason)
        raise Unavailable(reason) from error
    torch.set_num_threads(case.threads)
    _set_deepspeed_threads(case.threads)
    tparams = []
    for p0, g0 in zip(params, grads):
        param = torch.nn.Parameter(torch.tensor(p0))
        param.grad = torch.tensor(g0)
        tparams.append(param)
    opt = DeepSpeedCPUAdam(tparams, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY,
                           adamw_mode=True)

    def step():
        _set_deepspeed_threads(case.threads)
        opt.step()

    def state():
        return [_concat(p.detach().numpy() for p in tparams),
                _concat(opt.state[p]["exp_avg"].numpy() for p in tparams),
                _concat(opt.state[p]["exp_avg_sq"].numpy() for p in tparams)]
    return Method("deepspeed", step, state)


def _set_deepspeed_threads(threads):
    """DeepSpeed's op runs `omp parallel for` regions with the default team size of the OpenMP
    runtime it links (the system's libgomp): set that runtime's default."""
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(threads)
    except OSError:
        pass


def _deepspeed_close(got, expected):
    # DeepSpeed computes the AdamW step in its own order of operations (weight decay folded
    # into the update, reciprocal bias corrections): agree to 64 ULP of the array's magnitude.
    return all(close_to_reference(a, b, ulps=64) for a, b in zip(got, expected))


# -- lower-precision storage (adamkern.lowp): the same AdamW step moving fewer bytes ----------

# label: (params and grads, state), and the bytes each element moves (p, g, m, v read; p, m, v
# written; an 8-bit state adds one float32 absmax per 256 elements, not counted)
LOWP_MODES = {
    "adamkern bf16 state": ("float32", "bfloat16", 4 + 4 + 2 + 2 + 4 + 2 + 2),
    "adamkern int8 state": ("float32", "int8", 4 + 4 + 1 + 1 + 4 + 1 + 1),
    "adamkern bf16 params": ("bfloat16", "float32", 2 + 2 + 4 + 4 + 2 + 4 + 4),
}
_ADAMW = dict(lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
_FORMAT_BYTES = {"float32": 4, "bfloat16": 2, "int8": 1 + 4 / 256}  # int8: codes + absmax


def _lowp_buffers(params, grads, param_format, state_format):
    dtype = lowp.bfloat16() if param_format == "bfloat16" else np.float32
    p = [a.astype(dtype) for a in params]
    g = [a.astype(dtype) for a in grads]
    m = [lowp.state_zeros(a, state_format, signed=True) for a in params]
    v = [lowp.state_zeros(a, state_format, signed=False) for a in params]
    return p, g, m, v


def _decoded(buffer):
    return buffer.dequantize() if isinstance(buffer, lowp.Blockwise8) else \
        buffer.astype(np.float32)


def _encoded_equal(buffer, values, signed):
    """Whether ``buffer`` holds float32 ``values`` rounded to its format (to nearest)."""
    if isinstance(buffer, lowp.Blockwise8):
        q = lowp.Blockwise8.quantize(values, signed)
        return np.array_equal(buffer.codes, q.codes) and np.array_equal(buffer.absmax, q.absmax)
    return np.array_equal(buffer.view(np.uint8), values.astype(buffer.dtype).view(np.uint8))


def _check_lowp(params, grads, param_format, state_format):
    """Two steps of the mode on the first (up to) 1M elements of each tensor, against the
    float32 op on the decoded values, rounded back to each format: bit for bit."""
    head = [a.reshape(-1)[:1 << 20].copy() for a in params]
    p, g, m, v = _lowp_buffers(head, [a.reshape(-1)[:1 << 20] for a in grads], param_format,
                               state_format)
    for step in (1, 2):
        expected = [[_decoded(x) for x in xs] for xs in (p, g, m, v)]
        adamkern.adamw_(*expected, step=step, **_ADAMW)
        adamkern.adamw_(p, g, m, v, step=step, **_ADAMW)
        ok = all(_encoded_equal(x, e, signed)
                 for xs, es, signed in zip((p, m, v), expected[:1] + expected[2:],
                                           (True, True, False))
                 for x, e in zip(xs, es))
        if not ok:
            raise RuntimeError(f"benchmark check failed: {param_format} params with "
                               f"{state_format} state disagree with the float32 op")


def _lowp_builder(label):
    param_format, state_format, _ = LOWP_MODES[label]

    def build(case, params, grads):
        if case.dtype != "float32":
            raise Unavailable("the low-precision modes compute in float32 (float32 cases only)")
        _check_lowp(params, grads, param_format, state_format)
        p, g, m, v = _lowp_buffers(params, grads, param_format, state_format)
        return Method(label, _counter_step(adamkern.adamw_, p, g, m, v, **_ADAMW))
    return build


def format_modes(results):
    """The lower-precision rows: bytes moved, ns/element, and the speedup over fp32 adamkern
    (its time in the same run over the mode's)."""
    rows = [r for r in results if r.method in LOWP_MODES]
    if not rows:
        return ""
    width = max(len(case_label(r)) for r in rows)
    lines = [f"{'case':<{width}} {'mode':<21} {'bytes/elem':>10} {'ns/elem':>8} {'GB/s':>6} "
             f"{'vs fp32':>13}"]
    for r in rows:
        lines.append(f"{case_label(r):<{width}} {r.method:<21} {LOWP_MODES[r.method][2]:>10} "
                     f"{r.ns_per_element:>8.3f} {r.gb_per_s:>6.1f} "
                     f"{speed_words(1 / r.adamkern_speedup):>13}{_marker(r)}")
    return "\n".join(lines)


METHODS.extend([
    MethodSpec("roofline", _build_roofline, check="self", baseline=False),
    MethodSpec("adamkern", _build_adamkern, check="exact", baseline=False),
    MethodSpec("adamkern optim", _build_adamkern_optim, check="exact", baseline=False),
    *(MethodSpec(label, _lowp_builder(label), check="self", baseline=False,
                 bytes_per_element=lambda itemsize, b=traffic: b,
                 held=lambda itemsize, b=_FORMAT_BYTES[pf] * 2 + _FORMAT_BYTES[sf] * 2: b)
      for label, (pf, sf, traffic) in LOWP_MODES.items()),
    MethodSpec("torch fused", _torch_builder("torch fused", {"fused": True}), check="exact"),
    MethodSpec("torch foreach", _torch_builder("torch foreach", {"foreach": True}),
               scratch=lambda itemsize: 2 * itemsize),
    MethodSpec("torch single", _torch_builder("torch single", {"foreach": False}), quick=False,
               large=True, scratch=lambda itemsize: 2 * itemsize),
    MethodSpec("deepspeed", _build_deepspeed, check=_deepspeed_close),
    MethodSpec("numpy", _build_numpy, scratch=lambda itemsize: 3 * itemsize),
])


def close_to_reference(actual, expected, ulps=4):
    """|actual - expected| <= ulps * eps * (|expected| + max|expected|): how far an
    implementation without fused multiply-adds may round away from adamkern."""
    eps = np.finfo(expected.dtype).eps
    scale = np.abs(expected) + (np.abs(expected).max() if expected.size else 0)
    return bool(np.all(np.abs(actual - expected) <= ulps * eps * scale))


def _check(methods, specs):
    """Runs one step of each method from the same start and checks it against adamkern's."""
    for m in methods:
        m.step()
    expected = next(m for m in methods if m.name == "adamkern").state()
    for m, spec in zip(methods, specs):
        if spec.check in ("self",) or m.name == "adamkern":
            continue
        got = m.state()
        if spec.check == "exact":
            ok = all(np.array_equal(a.view(np.uint8), b.view(np.uint8))
                     for a, b in zip(got, expected))
        elif spec.check == "ulp":
            ok = all(close_to_reference(a, b) for a, b in zip(got, expected))
        else:
            ok = spec.check(got, expected)
        if not ok:
            raise RuntimeError(f"benchmark check failed: {m.name} disagrees with adamkern")


def _time(methods, budget_s, min_reps, max_reps):
    round_s = 0.0
    for m in methods:  # warm-up round, also sizes the repetitions
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


@dataclass
class Result:
    size: int
    threads: int
    dtype: str
    layout: str
    method: str
    median_s: float
    ns_per_element: float
    gb_per_s: float
    of_roofline: float  # roofline's time / this method's time
    adamkern_speedup: float  # this method's time / adamkern's time
    repetitions: int = 0
    spread: float = 1.0  # upper / lower quartile of the repetitions
    others_cpus: float | None = None  # CPUs other processes kept busy meanwhile
    flags: list = field(default_factory=list)  # bench_report.FLAGS that apply


def case_label(case_or_result) -> str:
    c = case_or_result
    if c.layout == "tensor":
        return f"{_size_label(c.size)} {c.dtype}, 1 tensor, {c.threads} thread(s)"
    return (f"model list: {len(transformer_shapes())} tensors, {c.size / 1e6:.1f}M "
            f"{c.dtype}, {c.threads} thread(s)")


def select_methods(names=None, quick=False, large=False) -> list[MethodSpec]:
    """The rows to run, in table order: the named ones (roofline and adamkern always), else
    the default rows (`quick`: the quick ones; `large`: every row)."""
    if names:
        unknown = [n for n in names if n not in [s.name for s in METHODS]]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; the methods are "
                             f"{', '.join(s.name for s in METHODS)}")
        return [s for s in METHODS if s.name in names or s.name in ("roofline", "adamkern")]
    return [s for s in METHODS if (s.quick if quick else large or not s.large)]


def plan(sizes=QUICK_SIZES, threads=(1,), dtypes=("float32",), layouts=("tensor",)):
    """The cases of a run, in the order they run."""
    cases = []
    for layout in layouts:
        for dtype in dtypes:
            for size in (sizes if layout == "tensor" else [_model_size()]):
                if layout == "tensor" and size * np.dtype(dtype).itemsize > MAX_TENSOR_BYTES:
                    continue  # eight methods' copies of p, g, m, v would not fit in memory
                cases += [Case(size, t, dtype, layout) for t in threads]
    return cases


def case_bytes(case, specs) -> float:
    """The memory a case holds at its peak: every method's buffers, and the larger of the
    initial arrays (freed once the methods are built) and one step's scratch plus the check's
    copies of a tensor list (params, exp_avgs, exp_avg_sqs of two methods)."""
    itemsize = np.dtype(case.dtype).itemsize
    check = 6 * itemsize if case.layout == "model" else 0
    return case.size * (sum(s.held(itemsize) for s in specs)
                        + max(2 * itemsize, max(s.scratch(itemsize) for s in specs) + check))


def estimate(cases, specs, budget_s) -> tuple[float, float]:
    """(peak memory in bytes, seconds) of a run: the process's own memory plus its largest
    case (cases run one after the other); per case the timing budget plus the setup (filling
    fresh memory, the first steps, the checks: SETUP_S_PER_BYTE), on a quiet machine."""
    sizes = [case_bytes(c, specs) for c in cases]
    return (PROCESS_BYTES + max(sizes, default=0),
            3.0 + sum(budget_s + 0.3 + SETUP_S_PER_BYTE * b for b in sizes))


def run(sizes=QUICK_SIZES, threads=(1,), dtypes=("float32",), layouts=("tensor",),
        methods=None, budget_s=2.0, progress=True, quick=False, skipped=None, large=False):
    """Benchmarks every case; returns a list of Result, flagged (Result.flags) where the
    machine looked busy. `methods`: names of METHODS rows (default: see select_methods);
    `skipped` collects {method: reason}."""
    return run_cases(plan(sizes, threads, dtypes, layouts), select_methods(methods, quick, large),
                     budget_s, progress, skipped)


def run_cases(cases, specs, budget_s=2.0, progress=True, skipped=None):
    """Benchmarks each Case of `cases` with the rows `specs` (see run)."""
    skipped = {} if skipped is None else skipped
    results = []
    bar = Progress(len(cases), progress,
                   weights=[budget_s + SETUP_S_PER_BYTE * case_bytes(c, specs) for c in cases])
    saved_threads = adamkern.get_num_threads()
    try:
        for case in cases:
            bar.show(case_label(case))
            results += _run_case(case, specs, budget_s, skipped)
            bar.advance()
    finally:
        adamkern.set_num_threads(saved_threads)
        bar.close()
    bench_report.flag_results(results)
    return results


def _run_case(case, specs, budget_s, skipped):
    """Builds, checks and times every method on one case (its buffers are freed on return)."""
    adamkern.set_num_threads(case.threads)
    params, grads = case.initial()
    methods, specs_here = [], []
    for spec in specs:
        try:
            methods.append(spec.build(case, params, grads))
            specs_here.append(spec)
        except Unavailable as why:
            skipped.setdefault(spec.name, str(why))
    del params, grads
    _check(methods, specs_here)
    meter = bench_report.CpuMeter()
    meter.start()
    _time(methods, budget_s, min_reps=5, max_reps=1000)
    others = meter.stop()
    medians = {m.name: statistics.median(m.times) for m in methods}
    itemsize = np.dtype(case.dtype).itemsize
    return [Result(size=case.size, threads=case.threads, dtype=case.dtype, layout=case.layout,
                   method=m.name, median_s=medians[m.name],
                   ns_per_element=medians[m.name] / case.size * 1e9,
                   gb_per_s=spec.bytes_per_element(itemsize) * case.size / medians[m.name] / 1e9,
                   of_roofline=medians["roofline"] / medians[m.name],
                   adamkern_speedup=medians[m.name] / medians["adamkern"],
                   repetitions=len(m.times), spread=bench_report.spread(m.times),
                   others_cpus=others)
            for m, spec in zip(methods, specs_here)]


def _model_size():
    return sum(math.prod(s) for s in transformer_shapes())


def _marker(result):
    """" ! flag, flag" after a row the machine may have disturbed (bench_report.FLAGS)."""
    return f"  ! {', '.join(result.flags)}" if getattr(result, "flags", None) else ""


def format_table(results):
    """Every method of every case: ns/element, GB/s, fraction of roofline, adamkern's ratio;
    '!' and the flags after a row the machine may have disturbed."""
    lines, last = [], None
    header = (f"{'method':<21} {'ns/elem':>8} {'GB/s':>7} {'of roofline':>12} "
              f"{'adamkern is':>14}")
    for r in results:
        case = (r.size, r.threads, r.dtype, r.layout)
        if case != last:
            lines += ["", case_label(r), header]
            last = case
        ratio = "" if r.method in ("adamkern", "roofline") else speed_words(r.adamkern_speedup)
        lines.append(f"{r.method:<21} {r.ns_per_element:>8.3f} {r.gb_per_s:>7.1f} "
                     f"{r.of_roofline:>12.2f} {ratio:>14}{_marker(r)}")
    return "\n".join(lines)


def summary_rows(results):
    """One row per case: adamkern's figures and its ratio against every baseline present."""
    by_case: dict = {}
    for r in results:
        by_case.setdefault((r.layout, r.dtype, r.size, r.threads), {})[r.method] = r
    baselines = [s.name for s in METHODS if s.baseline
                 and any(r.method == s.name for r in results)]
    rows = []
    for (layout, dtype, size, threads), cells in by_case.items():
        ours = cells["adamkern"]
        row = {"layout": layout, "dtype": dtype, "size": size, "threads": threads,
               "ns_per_element": ours.ns_per_element, "gb_per_s": ours.gb_per_s,
               "of_roofline": ours.of_roofline,
               "flags": sorted({f for r in cells.values() for f in r.flags})}
        if "adamkern optim" in cells:
            row["optim_of_roofline"] = cells["adamkern optim"].of_roofline
        for name in baselines:
            row["vs " + name] = cells[name].adamkern_speedup if name in cells else None
        rows.append(row)
    return rows, baselines


def format_summary(results, markdown=False):
    rows, baselines = summary_rows(results)
    head = ["size", "dtype", "threads", "ns/elem", "GB/s", "of roofline", "optim of roofline"] \
        + ["vs " + b for b in baselines] + ["flags"]
    body = []
    for r in rows:
        size = _size_label(r["size"]) if r["layout"] == "tensor" else \
            f"model {r['size'] / 1e6:.1f}M"
        body.append([size, r["dtype"], str(r["threads"]), f"{r['ns_per_element']:.3f}",
                     f"{r['gb_per_s']:.1f}", f"{r['of_roofline']:.2f}",
                     f"{r['optim_of_roofline']:.2f}" if "optim_of_roofline" in r else ""]
                    + [speed_words(r["vs " + b]) if r["vs " + b] is not None else "-"
                       for b in baselines]
                    + ["! " + ", ".join(r["flags"]) if r["flags"] else ""])
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(row) + " |" for row in body])
    widths = [max(len(h), *(len(row[k]) for row in body)) if body else len(h)
              for k, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths[:-1]) + f"  {{:<{widths[-1]}}}"
    return "\n".join(fmt.format(*row).rstrip() for row in [head] + body)


# -- Python call overhead -----------------------------------------------------------------------

def _paired_us(calls, kernel, number, repeat):
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


def run_overhead(threads=(1,), repeat=31, quick=False):
    """Microseconds per call, interleaved batches (see _paired_us):

    - a functional ``adamkern.adam_`` call on one 1K-element float32 tensor (state
      preallocated), the bare ``_core.roofline_`` binding on the same arrays, and the kernel
      alone (timed in C++ around the C++ API call: ``_core.adam_kernel_seconds_``);
    - ``adamkern.optim.AdamW.step`` over 100 tensors of 1K elements, the functional call over
      the same tensors, and the kernel alone. "overhead" is the call's time minus the kernel's
      (the median of the per-round differences).
    """
    from adamkern import optim

    out = []
    saved = adamkern.get_num_threads()
    number = 200 if quick else 1000
    try:
        for nthreads in threads:
            adamkern.set_num_threads(nthreads)
            p, g, m, v = (np.ones(1024, np.float32) for _ in range(4))
            (fun, bare), kernel, (overhead, _) = _paired_us(
                [lambda: adamkern.adam_(p, g, m, v, step=1), lambda: _core.roofline_(p, g, m, v)],
                lambda n: _core.adam_kernel_seconds_(p, g, m, v, n), number * 10, repeat)
            out.append({"what": "adam_ on 1K float32", "threads": nthreads, "call_us": fun,
                        "roofline_call_us": bare, "kernel_us": kernel,
                        "overhead_us": overhead})
            params = [np.ones(1024, np.float32) for _ in range(100)]
            grads = [np.ones(1024, np.float32) for _ in range(100)]
            opt = optim.AdamW(params)
            opt.step(grads)
            ms = [s["exp_avg"] for s in opt.state]
            vs = [s["exp_avg_sq"] for s in opt.state]
            (step, fun), kernel, (overhead, _) = _paired_us(
                [lambda: opt.step(grads), lambda: adamkern.adamw_(params, grads, ms, vs, step=2)],
                lambda n: _core.adam_kernel_seconds_(params, grads, ms, vs, n), number, repeat)
            out.append({"what": "optim.AdamW.step, 100 x 1K float32", "threads": nthreads,
                        "call_us": step, "functional_us": fun, "kernel_us": kernel,
                        "overhead_us": overhead})
    finally:
        adamkern.set_num_threads(saved)
    return out


def format_overhead(rows):
    lines = [f"{'call':<36} {'threads':>7} {'call us':>8} {'kernel us':>9} {'overhead us':>11}"
             f"  other"]
    for r in rows:
        other = (f"bare roofline_ binding {r['roofline_call_us']:.2f} us"
                 if "roofline_call_us" in r else f"functional adamw_ {r['functional_us']:.2f} us")
        lines.append(f"{r['what']:<36} {r['threads']:>7} {r['call_us']:>8.2f} "
                     f"{r['kernel_us']:>9.2f} {r['overhead_us']:>11.2f}  {other}")
    return "\n".join(lines)


# -- memory placement ---------------------------------------------------------------------------

def _huge_page_fraction(array: np.ndarray) -> float | None:
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


def _placement_variants(size, dtype, threads):
    """name -> (allocate(count) -> array, first touch: "serial" or "kernel")."""
    itemsize = np.dtype(dtype).itemsize

    def offset(nbytes):
        def allocate(count):
            raw = memory.empty(count * itemsize + nbytes, np.uint8)
            return raw[nbytes:nbytes + count * itemsize].view(dtype)
        return allocate

    variants = {
        "numpy (np.empty)": (lambda n: np.empty(n, dtype), "serial"),
        "64 B aligned (adamkern.empty)": (lambda n: memory.empty(n, dtype), "serial"),
        "16 B past a line": (offset(16), "serial"),
        "huge pages (MADV_HUGEPAGE)": (
            lambda n: _mapped(n, dtype, getattr(mmap, "MADV_HUGEPAGE", None)), "serial"),
        "no huge pages (MADV_NOHUGEPAGE)": (
            lambda n: _mapped(n, dtype, getattr(mmap, "MADV_NOHUGEPAGE", None)), "serial"),
    }
    if threads > 1:
        variants["huge pages, first touch by the kernel's threads"] = (
            lambda n: _mapped(n, dtype, getattr(mmap, "MADV_HUGEPAGE", None)), "kernel")
    try:
        torch = _import_torch()
        variants["torch allocator (torch.empty)"] = (
            lambda n: torch.empty(n, dtype=getattr(torch, np.dtype(dtype).name)).numpy(),
            "serial")
    except Unavailable:
        pass
    return variants


def run_placement(size=16 * M, threads=(1,), dtype="float32", budget_s=6.0, progress=True):
    """adam_ and the roofline kernel on the same values in differently placed memory, all
    variants interleaved in one timing loop per thread count. Returns a list of dicts."""
    out = []
    saved = adamkern.get_num_threads()
    bar = Progress(len(threads), progress)
    p0, g0 = Case(size, 1, dtype).initial()
    try:
        for nthreads in threads:
            bar.show(f"placement, {_size_label(size)} {dtype}, {nthreads} thread(s)")
            adamkern.set_num_threads(nthreads)
            methods, info = [], {}
            for name, (allocate, touch) in _placement_variants(size, dtype, nthreads).items():
                arrays = [allocate(size) for _ in range(4)]
                t0 = time.perf_counter()
                if touch == "kernel":  # the partition's threads write each page first
                    _core.roofline_(*arrays)
                for a, value in zip(arrays, (p0[0], g0[0], 0, 0)):
                    a[...] = value
                first_touch_s = time.perf_counter() - t0
                p, g, m, v = arrays
                t0 = time.perf_counter()
                adamkern.adamw_(p, g, m, v, step=1)
                first_step_s = time.perf_counter() - t0
                info[name] = {"variant": name, "threads": nthreads, "size": size,
                              "offset_in_line": p.ctypes.data % 64,
                              "huge_page_fraction": _huge_page_fraction(p),
                              "first_touch_s": first_touch_s, "first_step_s": first_step_s}
                methods.append(Method(name + "|adamkern",
                                      _counter_step(adamkern.adamw_, p, g, m, v)))
                methods.append(Method(name + "|roofline",
                                      lambda arrays=arrays: _core.roofline_(*arrays)))
            _time(methods, budget_s, min_reps=5, max_reps=400)
            medians = {m.name: statistics.median(m.times) for m in methods}
            base = next(iter(info))
            for name, row in info.items():
                row["adamkern_ns_per_element"] = medians[name + "|adamkern"] / size * 1e9
                row["roofline_ns_per_element"] = medians[name + "|roofline"] / size * 1e9
                row["adamkern_vs_numpy"] = (medians[base + "|adamkern"]
                                            / medians[name + "|adamkern"])
                row["roofline_vs_numpy"] = (medians[base + "|roofline"]
                                            / medians[name + "|roofline"])
                out.append(row)
            del methods
            bar.advance()
    finally:
        adamkern.set_num_threads(saved)
        bar.close()
    return out


def format_placement(rows):
    lines = []
    for nthreads in sorted({r["threads"] for r in rows}):
        sub = [r for r in rows if r["threads"] == nthreads]
        lines += ["", f"{_size_label(sub[0]['size'])} elements, {nthreads} thread(s) (speed "
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


# -- scaling ------------------------------------------------------------------------------------

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
            bar.show(f"scaling, {_size_label(size)} {dtype}, {nthreads} thread(s)")
            adamkern.set_num_threads(nthreads)
            case = Case(size, nthreads, dtype)
            params, grads = case.initial()
            methods = [_build_adamkern(case, params, grads), _build_roofline(case, params, grads)]
            _time(methods, budget_s, min_reps=7, max_reps=20000)
            for m in methods:
                t = statistics.median(m.times)
                rows.append({"size": size, "threads": nthreads, "method": m.name,
                             "median_s": t, "ns_per_element": t / size * 1e9,
                             "bytes": STREAMS * np.dtype(dtype).itemsize * size})
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


def format_scaling(rows, slopes):
    threads = sorted({r["threads"] for r in rows})
    lines = [f"{'size':>6} {'MB moved':>9} " + " ".join(
        f"{f'{m} {t}t ns/el':>18}" for t in threads for m in ("adamkern", "roofline"))]
    for size in sorted({r["size"] for r in rows}):
        cells = {(r["method"], r["threads"]): r for r in rows if r["size"] == size}
        moved = STREAMS * 4 * size / 1e6
        lines.append(f"{_size_label(size):>6} {moved:>9.1f} " + " ".join(
            f"{cells[(m, t)]['ns_per_element']:>18.3f}" if (m, t) in cells else f"{'':>18}"
            for t in threads for m in ("adamkern", "roofline")))
    lines.append("")
    for s in slopes:
        lines.append(f"slope {s['method']:<9} {s['threads']} thread(s) {s['regime']:<17}: "
                     f"{s['ns_per_element']:.3f} ns/element + {s['intercept_us']:.1f} us "
                     f"({s['points']} sizes)")
    return "\n".join(lines)


# -- plot ---------------------------------------------------------------------------------------

def plot(results, path):
    """Effective bandwidth against size, one line per method, one panel per (dtype, threads)
    (adamkern.bench_plot); returns the path written. Needs matplotlib."""
    return bench_plot.plot(results, path, unavailable=Unavailable)


# The family benchmark: (label, op name, options, state arrays and their initial value, streams
# per element). Streams count every array read and every array written once per element.
FAMILY = [
    ("adam", "adam", {}, {"exp_avgs": 0, "exp_avg_sqs": 0}, 7),
    ("adamw amsgrad", "adamw", {"amsgrad": True},
     {"exp_avgs": 0, "exp_avg_sqs": 0, "max_exp_avg_sqs": 0}, 9),
    ("adamax", "adamax", {}, {"exp_avgs": 0, "exp_infs": 0}, 7),
    ("nadam", "nadam", {}, {"exp_avgs": 0, "exp_avg_sqs": 0}, 7),
    ("radam", "radam", {}, {"exp_avgs": 0, "exp_avg_sqs": 0}, 7),
    ("rmsprop", "rmsprop", {}, {"square_avgs": 0}, 5),
    ("rmsprop centered momentum", "rmsprop", {"momentum": 0.9, "centered": True},
     {"square_avgs": 0, "momentum_buffers": 0, "grad_avgs": 0}, 9),
    ("adagrad", "adagrad", {}, {"state_sums": 0}, 5),
    ("adadelta", "adadelta", {}, {"square_avgs": 0, "acc_deltas": 0}, 7),
    ("sgd", "sgd", {}, {}, 3),
    ("sgd momentum", "sgd", {"momentum": 0.9}, {"momentum_buffers": 0}, 5),
    ("lion", "lion", {}, {"exp_avgs": 0}, 5),
    ("adabelief", "adabelief", {}, {"exp_avgs": 0, "exp_avg_vars": 0}, 7),
    # two passes: read p, g, m, v and write m, v; then read p, m, v and write p
    ("lamb", "lamb", {}, {"exp_avgs": 0, "exp_avg_sqs": 0}, 10),
    ("adan", "adan", {}, {"exp_avgs": 0, "exp_avg_diffs": 0, "exp_avg_sqs": 0,
                          "prev_grads": 0}, 11),
    ("yogi", "yogi", {}, {"exp_avgs": 1e-6, "exp_avg_sqs": 1e-6}, 7),
]


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


def family_method(label, name, options, states, size, dtype):
    """A Method stepping op `name`, and a check of its first step against the reference."""
    p0, g0 = _initial(size, dtype)
    arrays = {"params": p0.copy(), "grads": g0.copy()}
    arrays.update({key: np.full(size, value, dtype) for key, value in states.items()})
    if name == "nadam":
        arrays["mu_product"] = np.ones(1, np.float32)
    op = getattr(adamkern, name + "_")
    takes_step = name not in ("rmsprop", "adadelta", "sgd", "lion")
    counter = [0]

    def step():
        counter[0] += 1
        extra = {"step": counter[0]} if takes_step else {}
        if name == "sgd":
            extra["is_first_step"] = counter[0] == 1
        op(**arrays, **options, **extra)

    # The check: one step from the same start through the NumPy reference.
    expected = {key: a.copy() for key, a in arrays.items()}
    step()
    reference_op = getattr(reference, name)
    extra = {"step": 1} if takes_step else {}
    if name == "sgd":
        extra["is_first_step"] = True
    reference_op(**expected, **options, **extra)
    for key in arrays:
        if not close_to_reference(arrays[key], expected[key]):
            raise RuntimeError(f"benchmark check failed: {label} disagrees with its reference "
                               f"in {key}")
    return Method(label, step, lambda: None)


def run_family(size=1 << 24, threads=(1,), dtype=np.float32, budget_s=1.0, progress=True):
    """Times every optimizer of the family beside adam and the roofline, interleaved."""
    results = []
    saved_threads = adamkern.get_num_threads()
    itemsize = np.dtype(dtype).itemsize
    try:
        for nthreads in threads:
            adamkern.set_num_threads(nthreads)
            methods = []
            for k, case in enumerate(FAMILY):
                if progress:
                    print(f"\r[{nthreads} thread(s)] checking {case[0]:<28}", end="",
                          file=sys.stderr, flush=True)
                methods.append(family_method(*case[:4], size, dtype))
            bufs = [np.ones(size, dtype) for _ in range(4)]
            methods.append(Method("roofline", lambda: _core.roofline_(*bufs), lambda: None))
            if progress:
                print(f"\r[{nthreads} thread(s)] timing {len(methods)} methods" + " " * 20,
                      end="", file=sys.stderr, flush=True)
            _time(methods, budget_s * len(methods), min_reps=5, max_reps=200)
            medians = {m.name: statistics.median(m.times) for m in methods}
            adam_per_stream = medians["adam"] / STREAMS
            roofline_per_stream = medians["roofline"] / STREAMS
            for label, _, _, _, streams in FAMILY:
                t = medians[label]
                results.append(FamilyResult(
                    method=label, size=size, threads=nthreads, dtype=np.dtype(dtype).name,
                    streams=streams, median_s=t, ns_per_element=t / size * 1e9,
                    gb_per_s=streams * itemsize * size / t / 1e9,
                    of_roofline=roofline_per_stream * streams / t,
                    of_adam=t / (adam_per_stream * streams)))
    finally:
        adamkern.set_num_threads(saved_threads)
        if progress:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)
    return results


def format_family_table(results):
    lines = []
    last = None
    for r in results:
        if r.threads != last:
            lines += ["", f"{_size_label(r.size)} {r.dtype} elements, {r.threads} thread(s)",
                      f"{'optimizer':<26} {'bytes/elem':>10} {'ns/elem':>8} {'GB/s':>7} "
                      f"{'of roofline':>12} {'vs adam*bytes/28':>17}"]
            last = r.threads
        lines.append(f"{r.method:<26} {r.streams * np.dtype(r.dtype).itemsize:>10} "
                     f"{r.ns_per_element:>8.3f} {r.gb_per_s:>7.1f} {r.of_roofline:>12.2f} "
                     f"{r.of_adam:>17.2f}")
    return "\n".join(lines)


def transformer_shapes(width=256, layers=12, vocab=2000, context=512):
    """The tensors of a small GPT-style transformer: embeddings, per layer the attention and MLP
    matrices with their biases and two layer norms, a final norm and head: 150 tensors, 10.2M
    parameters with the defaults."""
    shapes = [(vocab, width), (context, width)]
    for _ in range(layers):
        shapes += [(width, 3 * width), (3 * width,), (width, width), (width,),
                   (width, 4 * width), (4 * width,), (4 * width, width), (width,),
                   (width,), (width,), (width,), (width,)]
    return shapes + [(width,), (width,), (vocab,), (width, width)]




def _initial(size, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype))


def _size_label(size):
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def machine() -> dict:
    """What the figures were measured on."""
    import platform

    out = {"python": platform.python_version(), "numpy": np.__version__,
           "adamkern": adamkern.__version__, "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            out["cpu"] = next(line.split(":", 1)[1].strip() for line in f
                              if line.startswith("model name"))
    except (OSError, StopIteration):
        out["cpu"] = platform.processor()
    out["cores"] = os.cpu_count()
    try:
        out["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                  / 2**30, 1)
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            out["transparent_hugepage"] = f.read().strip()
    except (OSError, ValueError):
        pass
    from importlib import metadata

    for name in ("torch", "deepspeed", "matplotlib"):
        try:  # the installed version, without importing the package
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None, prog="python -m adamkern bench"):
    """``python -m adamkern bench``: see :mod:`adamkern.bench_cli`."""
    from adamkern import bench_cli

    return bench_cli.main(argv, prog)
