"""Sparse COO gradients as :mod:`adamkern.sparse`'s row ops take them: a param of any shape
is a table of ``prod(shape[:sparse_dim])`` rows of ``prod(shape[sparse_dim:])`` elements, and
a grad's indices (one column per gradient row) become row numbers of that table. An
``nn.Embedding(sparse=True)`` weight's grad has ``sparse_dim == 1``: its indices are the
rows of the weight, its values the gradient rows, used as they are (not coalesced: the row
ops sum repeats themselves, in a canonical order).

Everything a row op checks is checked here first, so that a step over several params raises
before any of them is written (the ops check again, and write nothing when they refuse)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from adamkern._torch_tensors import CPU_DTYPES, Label, name_of

__all__ = ["SparseRows", "sparse_rows", "table_of"]


class SparseRows(NamedTuple):
    """A step's row-sparse arguments for one param."""

    table: np.ndarray  # the param as (rows, cols), its memory
    indices: np.ndarray  # int64 row numbers, one per gradient row
    grad_rows: np.ndarray  # (len(indices), cols), the param's dtype


def table_of(tensor: torch.Tensor, rows: int, cols: int, what: Label) -> np.ndarray:
    """The (rows, cols) NumPy view of a dense CPU float32/float64 tensor's memory (a param or
    a state tensor of its shape), or a clear error."""
    if tensor.layout is not torch.strided:
        raise ValueError(f"{name_of(what)} has layout {tensor.layout}; the row-sparse step "
                         "needs a dense param and dense state")
    if not tensor.is_cpu:
        raise ValueError(f"{name_of(what)} is on {tensor.device}; the row-sparse step runs on "
                         "CPU tensors")
    if tensor.dtype not in CPU_DTYPES:
        raise TypeError(f"{name_of(what)} has dtype {tensor.dtype}; the row-sparse step needs "
                        "float32 or float64")
    if not tensor.is_contiguous():
        raise ValueError(f"{name_of(what)} is not contiguous; the row-sparse step needs the "
                         "param and its state contiguous (rows of one run of memory)")
    array = tensor.detach().numpy()
    return array.reshape(rows, cols)


def sparse_rows(param: torch.Tensor, grad: torch.Tensor, what: Label) -> SparseRows:
    """The row op's arguments for ``param`` and its sparse COO ``grad``, checked (shape,
    dtype, device, index range)."""
    if grad.layout is not torch.sparse_coo:
        raise ValueError(f"{name_of((*what, 'grad'))} has layout {grad.layout}; expected a "
                         "sparse COO grad")
    if grad.shape != param.shape:
        raise ValueError(f"{name_of((*what, 'grad'))} has shape {tuple(grad.shape)}; its "
                         f"param has {tuple(param.shape)}")
    if grad.dtype != param.dtype:
        raise TypeError(f"{name_of((*what, 'grad'))} has dtype {grad.dtype}; its param has "
                        f"{param.dtype}")
    if not grad.is_cpu:
        raise ValueError(f"{name_of((*what, 'grad'))} is on {grad.device}; the row-sparse step "
                         "runs on CPU tensors")
    sparse_dim = grad.sparse_dim()
    shape = tuple(param.shape)
    rows, cols = math.prod(shape[:sparse_dim]), math.prod(shape[sparse_dim:])
    table = table_of(param, rows, cols, what)
    index = grad._indices()
    values = grad._values().detach()
    if sparse_dim == 1:
        indices = index[0]
    else:  # row-major numbers of the index tuples
        indices = torch.zeros(index.shape[1], dtype=torch.int64)
        for d in range(sparse_dim):
            indices = indices * shape[d] + index[d]
    indices = indices.numpy()
    if len(indices) and (indices.min() < 0 or indices.max() >= rows):
        bad = int(np.flatnonzero((indices < 0) | (indices >= rows))[0])
        raise ValueError(f"{name_of((*what, 'grad'))} has an index outside the param "
                         f"(entry {bad}: {index[:, bad].tolist()}, shape {shape})")
    grad_rows = values.reshape(len(indices), cols)
    if not grad_rows.is_contiguous():
        grad_rows = grad_rows.contiguous()
    return SparseRows(table, indices, grad_rows.numpy())
