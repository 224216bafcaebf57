"""``python -m adamkern bench``: the Adam step against the memory roofline, torch and NumPy.

Every method is timed in one process, interleaved (A B C A B C ...), and reported as the median
of its repetitions; ratios compare medians of the same run. Before timing, each method's first
step is checked against adamkern's (bitwise for torch's fused path, a few ULP otherwise).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

import adamkern
from adamkern import _core, reference

__all__ = ["FAMILY", "FamilyResult", "Result", "family_method", "main", "run", "run_family",
           "run_model", "transformer_shapes"]

STREAMS = 7  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 1e-2  # AdamW defaults


@dataclass
class Result:
    size: int
    threads: int
    dtype: str
    method: str
    median_s: float
    ns_per_element: float
    gb_per_s: float
    of_roofline: float  # roofline time / this method's time
    adamkern_speedup: float  # this method's time / adamkern's time


class Method:
    """A named step function over its own buffers, plus the state it leaves after one step."""

    def __init__(self, name: str, step: Callable[[], None], state: Callable[[], list]):
        self.name, self.step, self.state = name, step, state
        self.times: list[float] = []


def _initial(size, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype))


def _numpy_methods(size, dtype):
    p0, g0 = _initial(size, dtype)
    methods = []
    for name, fn in (("adamkern", adamkern.adam_), ("numpy", reference.adam)):
        p, g, m, v = p0.copy(), g0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        counter = [0]

        def step(fn=fn, p=p, g=g, m=m, v=v, counter=counter):
            counter[0] += 1
            fn(p, g, m, v, step=counter[0], lr=LR, betas=BETAS, eps=EPS,
               weight_decay=WEIGHT_DECAY, decoupled_weight_decay=True)

        methods.append(Method(name, step, lambda p=p, m=m, v=v: [p, m, v]))
    bufs = [p0.copy(), g0.copy(), np.zeros_like(p0), np.zeros_like(p0)]
    methods.append(Method("roofline", lambda: _core.roofline_(*bufs), lambda: None))
    return methods


def _torch_methods(size, dtype):
    try:
        import torch
    except ImportError:
        return []
    p0, g0 = _initial(size, dtype)
    methods = []
    for name, flags in (("torch fused", {"fused": True}), ("torch foreach", {"foreach": True}),
                        ("torch single", {"foreach": False})):
        param = torch.empty(size, dtype=getattr(torch, np.dtype(dtype).name))
        param.copy_(torch.from_numpy(p0))
        param.requires_grad_(True)
        param.grad = torch.from_numpy(g0.copy())
        opt = torch.optim.AdamW([param], lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY,
                                **flags)

        def state(opt=opt, param=param):
            s = opt.state[param]
            return [param.detach().numpy(), s["exp_avg"].numpy(), s["exp_avg_sq"].numpy()]

        methods.append(Method(name, opt.step, state))
    return methods


def close_to_reference(actual, expected, ulps=4):
    """|actual - expected| <= ulps * eps * (|expected| + max|expected|): how far an
    implementation without fused multiply-adds may round away from adamkern."""
    eps = np.finfo(expected.dtype).eps
    scale = np.abs(expected) + (np.abs(expected).max() if expected.size else 0)
    return bool(np.all(np.abs(actual - expected) <= ulps * eps * scale))


def _check(methods):
    """Runs one step of each method from the same start and checks it against adamkern's."""
    by_name = {m.name: m for m in methods}
    for m in methods:
        m.step()
    expected = by_name["adamkern"].state()
    for m in methods:
        got = m.state()
        if got is None or m.name == "adamkern":
            continue
        for a, b in zip(got, expected):
            if m.name == "torch fused":
                ok = np.array_equal(a.view(np.uint8), b.view(np.uint8))
            else:
                ok = close_to_reference(a, b)
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


def run(sizes, threads, dtype=np.float32, budget_s=2.0, with_torch=True, progress=True):
    """Benchmarks every (size, threads) case; returns a list of Result."""
    results = []
    cases = [(s, t) for s in sizes for t in threads]
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            torch = None
    saved_threads = adamkern.get_num_threads()
    try:
        for k, (size, nthreads) in enumerate(cases):
            if progress:
                print(f"\r[{k + 1}/{len(cases)}] {_size_label(size)} elements, {nthreads} "
                      f"thread(s)...", end="", file=sys.stderr, flush=True)
            adamkern.set_num_threads(nthreads)
            if torch is not None:
                torch.set_num_threads(nthreads)
            methods = _numpy_methods(size, dtype)
            if torch is not None:
                methods += _torch_methods(size, dtype)
            _check(methods)
            _time(methods, budget_s, min_reps=5, max_reps=500)
            medians = {m.name: statistics.median(m.times) for m in methods}
            itemsize = np.dtype(dtype).itemsize
            for m in methods:
                t = medians[m.name]
                results.append(Result(
                    size=size, threads=nthreads, dtype=np.dtype(dtype).name, method=m.name,
                    median_s=t, ns_per_element=t / size * 1e9,
                    gb_per_s=STREAMS * itemsize * size / t / 1e9,
                    of_roofline=medians["roofline"] / t,
                    adamkern_speedup=t / medians["adamkern"]))
    finally:
        adamkern.set_num_threads(saved_threads)
        if progress:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return results


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


def run_model(threads, budget_s=2.0, with_torch=True, progress=True):
    """AdamW over the transformer-shaped list: adamkern.optim.AdamW.step (one C++ call for the
    150 tensors) against torch's fused and foreach AdamW.step() and the roofline kernel over
    the same list. Returns {threads: {method: median seconds}}."""
    import math

    from adamkern import optim

    shapes = transformer_shapes()
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    torch = None
    if with_torch:
        try:
            import torch
        except ImportError:
            torch = None
    out = {}
    saved_threads = adamkern.get_num_threads()
    try:
        for nthreads in threads:
            if progress:
                print(f"\r[model] {nthreads} thread(s)...", end="", file=sys.stderr, flush=True)
            adamkern.set_num_threads(nthreads)
            opt = optim.AdamW([p.copy() for p in params])
            methods = [Method("adamkern optim", lambda opt=opt: opt.step(grads),
                              lambda opt=opt: opt.params)]
            # The same with params and grads kept in flat buffers (adamkern.flatten).
            _, flat_params = adamkern.flatten(params)
            _, flat_grads = adamkern.flatten(grads)
            flat_opt = optim.AdamW(flat_params)
            methods.append(Method("  flat params", lambda o=flat_opt, g=flat_grads: o.step(g),
                                  lambda o=flat_opt: o.params))
            buffers = [[p.copy() for p in params], grads,
                       [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]]
            methods.append(Method("roofline", lambda b=buffers: _core.roofline_(*b),
                                  lambda: None))
            if torch is not None:
                torch.set_num_threads(nthreads)
                for name, flags in (("torch fused", {"fused": True}),
                                    ("torch foreach", {"foreach": True})):
                    tparams = [torch.tensor(p, requires_grad=True) for p in params]
                    for p, g in zip(tparams, grads):
                        p.grad = torch.tensor(g)
                    topt = torch.optim.AdamW(tparams, **flags)
                    methods.append(Method(name, topt.step,
                                          lambda t=tparams: [p.detach().numpy() for p in t]))
            for m in methods:  # the check: one step from the same start
                m.step()
            expected = methods[0].state()
            for m in methods[1:]:
                got = m.state()
                if got is None:
                    continue
                exact = m.name == "torch fused"
                for a, b in zip(got, expected):
                    ok = np.array_equal(a, b) if exact else close_to_reference(a, b)
                    if not ok:
                        raise RuntimeError(f"benchmark check failed: {m.name} disagrees with "
                                           "adamkern.optim.AdamW")
            _time(methods, budget_s, min_reps=5, max_reps=200)
            out[nthreads] = {m.name: statistics.median(m.times) for m in methods}
    finally:
        adamkern.set_num_threads(saved_threads)
        if progress:
            print("\r" + " " * 40 + "\r", end="", file=sys.stderr, flush=True)
    total = sum(math.prod(s) for s in shapes)
    return out, len(shapes), total


def format_model_table(out, count, total):
    lines = [f"AdamW over a transformer-shaped list: {count} tensors, {total / 1e6:.1f}M params"]
    for nthreads, medians in out.items():
        lines += ["", f"{nthreads} thread(s)",
                  f"{'method':<16} {'ms/step':>8} {'of roofline':>12} {'vs adamkern':>12}"]
        for name, t in medians.items():
            ratio = "" if name in ("adamkern optim", "roofline") else \
                f"{t / medians['adamkern optim']:.2f}x"
            lines.append(f"{name:<16} {t * 1e3:>8.3f} {medians['roofline'] / t:>12.2f} "
                         f"{ratio:>12}")
    return "\n".join(lines)


def _size_label(size):
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def format_table(results):
    lines = []
    header = (f"{'method':<14} {'ns/elem':>8} {'GB/s':>7} {'of roofline':>12} "
              f"{'adamkern is':>12}")
    last = None
    for r in results:
        case = (r.size, r.threads, r.dtype)
        if case != last:
            lines += ["", f"{_size_label(r.size)} {r.dtype} elements, {r.threads} thread(s)",
                      header]
            last = case
        speedup = "" if r.method in ("adamkern", "roofline") else f"{r.adamkern_speedup:.2f}x faster"
        lines.append(f"{r.method:<14} {r.ns_per_element:>8.3f} {r.gb_per_s:>7.1f} "
                     f"{r.of_roofline:>12.2f} {speedup:>12}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m adamkern bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M and 16M elements, short runs")
    parser.add_argument("--sizes", type=int, nargs="+", help="element counts")
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts (default 1 and all)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--budget", type=float, help="seconds of timing per case")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--model", action="store_true",
                        help="AdamW over a 150-tensor transformer-shaped list (optimizer "
                             "object vs torch) instead of the Adam table")
    parser.add_argument("--family", action="store_true",
                        help="time every optimizer of the family against adam and the "
                             "roofline (16M elements unless --sizes) instead of the Adam table")
    args = parser.parse_args(argv)

    sizes = args.sizes or ([1 << 20, 1 << 24] if args.quick else
                           [1 << 16, 1 << 20, 1 << 24, 1 << 26])
    cores = adamkern.get_num_threads()
    threads = args.threads or sorted({1, cores})
    budget = args.budget or (1.0 if args.quick else 3.0)
    info = adamkern.cpu_info()
    print(f"adamkern {adamkern.__version__}: isa {info['isa']} (available "
          f"{', '.join(info['available_isas'])}), {cores} thread(s), OpenMP "
          f"{'on' if info['openmp'] else 'off'}; AdamW step, {STREAMS} streams per element; "
          f"medians of interleaved runs")
    if args.model:
        print(format_model_table(*run_model(threads, budget, not args.no_torch)))
    elif args.family:
        size = args.sizes[0] if args.sizes else 1 << 24
        results = run_family(size, threads, np.dtype(args.dtype).type, budget / 3)
        print(format_family_table(results))
    else:
        results = run(sizes, threads, np.dtype(args.dtype).type, budget, not args.no_torch)
        print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu_info": info, "results": [asdict(r) for r in results]}, f, indent=1)
    return 0
