"""The optimizer step inside a training loop (``python -m adamkern bench --torch``): a
transformer-shaped torch model (about 150 parameter tensors and 10M parameters by default)
trained for a few hundred steps by each optimizer on its own copy of the model, the steps of
all of them interleaved (forward and backward untimed, then ``opt.step()`` timed), at each
thread count. Rows: the median step of each optimizer, its speedup over
``torch.optim.AdamW(fused=True)`` at the same thread count, the fraction of the loop's memory
roofline it reaches, and the bytes of its state. Two rows step the loop's own arrays from
outside any optimizer object: :class:`KernelAlone`, adamkern's AdamW kernel alone (what
``adamkern.torch.AdamW`` costs beyond it is its per-step Python), and :class:`Roofline`, the
bytes of a float32 AdamW step moved in the same loop, on the same kind of memory, with no
math (its speedup over torch fused is the most any float32 AdamW step could reach there).

>>> rows = run(steps=200)            # about a minute on two cores
>>> print(format_rows(rows))

:func:`overhead` measures what a step costs beyond its kernel: the median ``opt.step()`` of
``adamkern.torch.AdamW`` on ``tensors`` small tensors, less the median of the kernel's call
on the same arrays. :func:`thread_pools` times a step right after a torch op (whose OpenMP
threads may still spin), back to back, and after the threads went idle;
:func:`openmp_runtimes` lists the OpenMP runtimes loaded in the process (one, where torch's
and adamkern's share it).

Importing this module does nothing (torch is imported by the functions that need it).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

__all__ = ["KernelAlone", "Overhead", "PoolRow", "Roofline", "Row", "format_overhead",
           "format_rows", "openmp_runtimes", "optimizers", "overhead", "run", "thread_pools",
           "transformer"]

REFERENCE = "torch.optim.AdamW(fused=True)"
KERNEL = "adamkern.adamw_ on the loop's arrays (the kernel alone)"
ROOFLINE = "memory roofline (float32 AdamW's bytes, no math)"


class Row(NamedTuple):
    """One optimizer at one thread count."""

    optimizer: str
    threads: int
    step_us: float  # median opt.step() in the loop, microseconds
    speedup: float  # torch fused's median step / this one's, at the same thread count
    state_bytes: int  # every tensor of opt.state
    of_roofline: float  # the roofline's median step / this one's, at the same thread count


class Overhead(NamedTuple):
    """What ``adamkern.torch.AdamW.step()`` costs beyond its kernel."""

    tensors: int
    elements: int  # of each tensor
    threads: int
    step_us: float  # median opt.step(), microseconds
    kernel_us: float  # median of the kernel's call on the same arrays
    overhead_us: float  # step_us - kernel_us
    per_tensor_us: float  # overhead_us / tensors
    torch_us: float  # median torch.optim.AdamW(fused=True).step() on the same tensors


class PoolRow(NamedTuple):
    """One optimizer's median step (µs) after what ran before it on the thread pool."""

    optimizer: str
    threads: int
    back_to_back_us: float  # right after its own step
    after_torch_op_us: float  # right after a torch op (a matmul) on the same threads
    after_idle_us: float  # after 5 ms without work: the pool's threads asleep


def transformer(width: int = 256, layers: int = 12, vocab: int = 2048, heads: int = 4,
                seed: int = 0) -> Any:
    """A GPT-shaped torch model: token and position embeddings, ``layers`` pre-norm blocks
    (attention with a fused qkv projection, a 4x MLP), a final norm and an untied head; 12
    tensors a block. ``model(tokens)`` returns the next-token loss. The defaults: 149 tensors,
    10.0M parameters."""
    import torch
    from torch import nn
    from torch.nn import functional

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, sequence, _ = x.shape
            q, k, v = (t.view(batch, sequence, heads, -1).transpose(1, 2)
                       for t in self.qkv(self.norm1(x)).chunk(3, dim=-1))
            attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(attended.transpose(1, 2).reshape(batch, sequence, width))
            return x + self.down(functional.gelu(self.up(self.norm2(x))))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tokens = nn.Embedding(vocab, width)
            self.positions = nn.Embedding(1024, width)
            self.blocks = nn.Sequential(*(Block() for _ in range(layers)))
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab, bias=False)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(tokens.shape[1] - 1)
            x = self.tokens(tokens[:, :-1]) + self.positions(positions)
            logits = self.head(self.norm(self.blocks(x)))
            return functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())

    with _seeded(seed):
        return Model()


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def optimizers(deepspeed: bool = True) -> dict[str, Callable[[Any], Any]]:
    """The optimizers compared, by name (torch's fused AdamW first): each a function of a
    model's parameters. DeepSpeedCPUAdam joins them when deepspeed imports."""
    import torch

    import adamkern.torch

    made: dict[str, Callable[[Any], Any]] = {
        REFERENCE: lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True),
        "adamkern.torch.AdamW": lambda params: adamkern.torch.AdamW(params, lr=1e-3),
    }
    for state_dtype in ("bfloat16", "int8"):
        made[f"adamkern.torch.AdamW(state_dtype={state_dtype!r})"] = (
            lambda params, state_dtype=state_dtype: adamkern.torch.AdamW(
                params, lr=1e-3, state_dtype=state_dtype))
    if deepspeed:
        try:
            from deepspeed.ops.adam import DeepSpeedCPUAdam
        except Exception:  # not installed, or its extension does not build here
            pass
        else:
            made["deepspeed.ops.adam.DeepSpeedCPUAdam"] = (
                lambda params: DeepSpeedCPUAdam(params, lr=1e-3, weight_decay=1e-2,
                                                adamw_mode=True))
    return made


class Roofline:
    """The memory roofline of a float32 AdamW step in the training loop, stepped as an
    optimizer: ``adamkern._core.roofline_`` (reads four streams, writes three, one add) over
    its model's params and grads and two state tensors a param made as torch.optim makes its
    state (``torch.zeros_like``). :meth:`prepare` views the new grads before the step is
    timed, so the step is the kernel's call alone. It overwrites the params: its model
    trains for nothing else."""

    def __init__(self, params: list) -> None:
        import torch

        self.params = params
        self.state = {p: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                      for p in params}
        self._arrays = [[p.detach().numpy() for p in params], [],
                        [self.state[p]["exp_avg"].numpy() for p in params],
                        [self.state[p]["exp_avg_sq"].numpy() for p in params]]

    def prepare(self) -> None:
        """Views this step's grads."""
        self._arrays[1] = [p.grad.numpy() for p in self.params]

    def step(self) -> None:
        from adamkern import _core

        _core.roofline_(*self._arrays)

    def zero_grad(self) -> None:
        self._arrays[1] = []
        for p in self.params:
            p.grad = None


class KernelAlone(Roofline):
    """:class:`Roofline`'s arrays stepped by ``adamkern.adamw_`` (lr 1e-3, as the loop's
    optimizers): adamkern's AdamW kernel in the loop, without an optimizer object's Python."""

    _steps = 0

    def step(self) -> None:
        from adamkern import ops

        self._steps += 1
        ops.adamw_(*self._arrays, step=self._steps, lr=1e-3)


def state_bytes(opt: Any) -> int:
    """The bytes of every tensor in an optimizer's state."""
    import torch

    return sum(value.nbytes for entries in opt.state.values() for value in entries.values()
               if isinstance(value, torch.Tensor))


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """torch's and adamkern's threads set to ``count``, restored afterwards."""
    import torch

    import adamkern

    before = torch.get_num_threads(), adamkern.get_num_threads()
    torch.set_num_threads(count)
    adamkern.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        adamkern.set_num_threads(before[1])


def _loop(make: dict[str, Callable[[Any], Any]], steps: int, warmup: int, model_args: dict,
          batch: int, sequence: int, vocab: int) -> dict[str, tuple[float, int]]:
    """Each optimizer's median step (µs) and state bytes, trained interleaved."""
    import torch

    names = list(make)
    models = {name: transformer(vocab=vocab, **model_args) for name in names}
    opts = {name: make[name](list(models[name].parameters())) for name in names}
    times: dict[str, list[int]] = {name: [] for name in names}
    generator = torch.Generator().manual_seed(1)
    for step in range(warmup + steps):
        tokens = torch.randint(vocab, (batch, sequence + 1), generator=generator)
        for k in range(len(names)):  # a different one first at each step
            name = names[(step + k) % len(names)]
            models[name](tokens).backward()
            if isinstance(opts[name], Roofline):
                opts[name].prepare()
            start = time.perf_counter_ns()
            opts[name].step()
            elapsed = time.perf_counter_ns() - start
            opts[name].zero_grad()
            if step >= warmup:
                times[name].append(elapsed)
    return {name: (statistics.median(times[name]) / 1e3, state_bytes(opts[name]))
            for name in names}


def run(steps: int = 200, warmup: int = 10, threads: Sequence[int] = (1, 2),
        width: int = 256, layers: int = 12, vocab: int = 2048, heads: int = 4,
        sequence: int = 16, batch: int = 1, deepspeed: bool = True) -> list[Row]:
    """Trains :func:`transformer` ``warmup + steps`` steps with each of :func:`optimizers`,
    interleaved, at each thread count (torch's and adamkern's); a row per optimizer and thread
    count, with the median of the ``steps`` timed steps. Forward and backward run on
    ``batch`` sequences of ``sequence`` tokens: small, as only the step is timed."""
    make = optimizers(deepspeed) | {KERNEL: KernelAlone, ROOFLINE: Roofline}
    model_args = dict(width=width, layers=layers, heads=heads)
    rows = []
    for count in threads:
        with _threads(count):
            medians = _loop(make, steps, warmup, model_args, batch, sequence, vocab)
        reference, roofline = medians[REFERENCE][0], medians[ROOFLINE][0]
        rows += [Row(name, count, step_us, reference / step_us, size, roofline / step_us)
                 for name, (step_us, size) in medians.items()]
    return rows


def overhead(tensors: int = 150, elements: int = 1000, threads: int = 1, steps: int = 400,
             seed: int = 0) -> Overhead:
    """``adamkern.torch.AdamW.step()`` on ``tensors`` tensors of ``elements`` float32 elements
    (new grads before each step, as autograd makes them) against the kernel's own call on
    the same arrays and against ``torch.optim.AdamW(fused=True)``, interleaved medians."""
    import torch

    import adamkern.torch
    from adamkern import ops

    with _threads(threads), _seeded(seed):
        ours = [torch.nn.Parameter(torch.randn(elements)) for _ in range(tensors)]
        theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        grads = [torch.randn(elements) for _ in range(tensors)]
        opt = adamkern.torch.AdamW(ours, lr=1e-3)
        reference = torch.optim.AdamW(theirs, lr=1e-3, fused=True)
        state = [opt.state[p] for p in ours]
        arrays: list[list] = []

        def step_ours() -> int:
            for p, grad in zip(ours, grads):
                p.grad = grad.clone()
            start = time.perf_counter_ns()
            opt.step()
            return time.perf_counter_ns() - start

        def step_kernel() -> int:
            if not arrays:
                arrays.extend([[p.detach().numpy() for p in ours],
                               [p.grad.numpy() for p in ours],
                               [s["exp_avg"].numpy() for s in state],
                               [s["exp_avg_sq"].numpy() for s in state]])
            start = time.perf_counter_ns()
            ops.adamw_(*arrays, step=2.0, lr=1e-3, weight_decay=1e-2)
            return time.perf_counter_ns() - start

        def step_theirs() -> int:
            for p, grad in zip(theirs, grads):
                p.grad = grad.clone()
            start = time.perf_counter_ns()
            reference.step()
            return time.perf_counter_ns() - start

        runs = {"ours": step_ours, "kernel": step_kernel, "theirs": step_theirs}
        step_ours()  # state made
        step_theirs()
        times: dict[str, list[int]] = {name: [] for name in runs}
        for step in range(steps):
            for name in (list(runs) if step % 2 else list(runs)[::-1]):
                times[name].append(runs[name]())
    ours_us, kernel_us, theirs_us = (statistics.median(times[name]) / 1e3 for name in runs)
    return Overhead(tensors, elements, threads, ours_us, kernel_us, ours_us - kernel_us,
                    (ours_us - kernel_us) / tensors, theirs_us)


def format_rows(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| optimizer | threads | step (µs) | vs torch fused | of roofline | state (MB) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.optimizer} | {r.threads} | {r.step_us:.0f} | {r.speedup:.2f}x | "
              f"{r.of_roofline:.2f} | {r.state_bytes / 1e6:.1f} |" for r in rows]
    return "\n".join(lines)


def format_overhead(rows: Sequence[Overhead]) -> str:
    """:func:`overhead` rows as a Markdown table."""
    lines = ["| tensors | elements each | step (µs) | kernel (µs) | beyond the kernel (µs) | "
             "per tensor (µs) | torch fused step (µs) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.tensors} | {r.elements} | {r.step_us:.1f} | {r.kernel_us:.1f} | "
              f"{r.overhead_us:.1f} | {r.per_tensor_us:.2f} | {r.torch_us:.1f} |" for r in rows]
    return "\n".join(lines)


def openmp_runtimes() -> list[str]:
    """The OpenMP runtime libraries mapped into this process (Linux; elsewhere an empty list).
    torch's wheels bundle libgomp.so.1, and an adamkern built with GCC links libgomp.so.1: the
    loader maps the first one loaded for both, so one thread pool serves both."""
    import re

    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if len(line.split()) >= 6}
    except OSError:
        return []
    return sorted(p for p in paths if re.search(r"/lib(gomp|iomp\d*|omp)[.-][^/]*$", p))


def thread_pools(threads: Sequence[int] = (1, 2), elements: int = 2_000_000,
                 tensors: int = 10, steps: int = 100, seed: int = 0) -> list[PoolRow]:
    """adamkern.torch.AdamW's and torch fused AdamW's median step on ``tensors`` tensors of
    ``elements`` elements in all, at each thread count (torch's and adamkern's), right after
    each one's own step, right after a torch op (a matmul, on torch's threads), and after
    5 ms idle; interleaved."""
    import torch

    import adamkern.torch

    make = {REFERENCE: lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
            "adamkern.torch.AdamW": lambda ps: adamkern.torch.AdamW(ps, lr=1e-3)}
    rows = []
    for count in threads:
        with _threads(count), _seeded(seed):
            opts = {}
            for name, made in make.items():
                params = [torch.nn.Parameter(torch.randn(elements // tensors))
                          for _ in range(tensors)]
                for p in params:
                    p.grad = torch.randn_like(p)
                opts[name] = made(params)
                opts[name].step()
            x, y = torch.randn(384, 384), torch.randn(384, 384)
            before = {"back to back": lambda opt: opt.step(),
                      "after torch op": lambda opt: torch.mm(x, y),
                      "after idle": lambda opt: time.sleep(0.005)}
            times: dict[tuple[str, str], list[int]] = {}
            for _ in range(steps):
                for name, opt in opts.items():
                    for case, prepare in before.items():
                        prepare(opt)
                        start = time.perf_counter_ns()
                        opt.step()
                        times.setdefault((name, case), []).append(
                            time.perf_counter_ns() - start)
        rows += [PoolRow(name, count,
                         *(statistics.median(times[name, case]) / 1e3 for case in before))
                 for name in opts]
    return rows
