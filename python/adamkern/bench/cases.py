"""The cases of ``python -m adamkern bench``: the tensors (one of a given size, or the list of a
small transformer), the thread count and the dtype; the AdamW step every row takes; the labels
the tables print.

>>> from adamkern.bench import cases
>>> [cases.case_label(c) for c in cases.plan([1 << 20], threads=[1, 2])]
['1M float32, 1 tensor, 1 thread(s)', '1M float32, 1 tensor, 2 thread(s)']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ADAMW", "DEFAULT_SIZES", "K", "LARGE_SIZES", "M", "MAX_TENSOR_BYTES", "QUICK_SIZES",
           "STREAMS", "Case", "case_label", "model_size", "plan", "size_label",
           "transformer_shapes"]

STREAMS = 7  # read param, grad, exp_avg, exp_avg_sq; write param, exp_avg, exp_avg_sq
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)  # torch's defaults
K, M = 1 << 10, 1 << 20
DEFAULT_SIZES = [64 * K, 256 * K, M, 4 * M, 8 * M]  # with the model list: under 3 GB
LARGE_SIZES = [16 * M, 64 * M]  # --large: every method's copies of 64M float32 take ~12 GB
QUICK_SIZES = [64 * K, M, 8 * M]  # the default's ends: no more memory than it
MAX_TENSOR_BYTES = 256 * M  # per array: 64M float32 (float64 stops at 16M)


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
        """Random params and grads (standard normal), the same for every row."""
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(s, dtype=self.dtype) for s in self.shapes()]
        grads = [rng.standard_normal(s, dtype=self.dtype) for s in self.shapes()]
        return params, grads


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


def model_size() -> int:
    return sum(math.prod(s) for s in transformer_shapes())


def size_label(size: int) -> str:
    """4096 -> "4K", 8388608 -> "8M", 1000 -> "1000"."""
    for unit, scale in (("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def case_label(case_or_result) -> str:
    c = case_or_result
    if c.layout == "tensor":
        return f"{size_label(c.size)} {c.dtype}, 1 tensor, {c.threads} thread(s)"
    return (f"model list: {len(transformer_shapes())} tensors, {c.size / 1e6:.1f}M "
            f"{c.dtype}, {c.threads} thread(s)")


def plan(sizes=QUICK_SIZES, threads=(1,), dtypes=("float32",), layouts=("tensor",)) -> list[Case]:
    """The cases of a run, in the order they run."""
    cases = []
    for layout in layouts:
        for dtype in dtypes:
            for size in (sizes if layout == "tensor" else [model_size()]):
                if layout == "tensor" and size * np.dtype(dtype).itemsize > MAX_TENSOR_BYTES:
                    continue  # every method's copies of p, g, m, v would not fit in memory
                cases += [Case(size, t, dtype, layout) for t in threads]
    return cases
