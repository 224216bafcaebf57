"""NumPy references of :mod:`adamkern.sparse`: the test oracle of the row-sparse steps.

Same signatures and in-place semantics as the ops. Duplicates are summed as the kernels sum
them (:func:`coalesce`: by table row, each row's gradient rows in the order of their bytes,
added left to right); then each touched row is updated in the order of operations of the
library the op follows, in plain NumPy (no fused multiply-add):

- :func:`adam_rows`, :func:`adagrad_rows`, :func:`sgd_rows`: torch's sparse paths
  (``sparse_adam`` in torch/optim/_functional.py; the ``grad.is_sparse`` branches of
  torch/optim/adagrad.py and sgd.py). The kernels run the dense ops' per-element math, which
  rounds differently (fma forms), so the two agree to a few ULP, not bit for bit.
- :func:`rowwise_adagrad_rows`: FBGEMM's ``rowwise_sparse_adagrad_ref``
  (src/RefImplementations.cc), which the kernel follows bit for bit (without weight decay;
  with it, the fma is emulated in float64 here and may round once differently).

>>> p, s = np.ones((3, 2), np.float32), np.zeros(3, np.float32)
>>> rowwise_adagrad_rows(p, np.array([0, 0]), np.ones((2, 2), np.float32), s, lr=0.5)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["adagrad_rows", "adam_rows", "coalesce", "rowwise_adagrad_rows", "sgd_rows"]


def coalesce(indices: np.ndarray, grad_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the touched rows in increasing order, the summed gradient of each): the gradient rows
    of one table row ordered by their bytes (as memcmp orders them), then added left to
    right in the rows' dtype."""
    indices = np.asarray(indices).astype(np.int64)
    rows = np.unique(indices)
    sums = np.empty((rows.size, grad_rows.shape[1]), grad_rows.dtype)
    for k, row in enumerate(rows):
        positions = sorted(np.flatnonzero(indices == row), key=lambda i: grad_rows[i].tobytes())
        total = grad_rows[positions[0]].copy()
        for position in positions[1:]:
            total = total + grad_rows[position]
        sums[k] = total
    return rows, sums


def _oriented(grad: np.ndarray, maximize: bool) -> np.ndarray:
    return -grad if maximize else grad


def adam_rows(param: np.ndarray, indices: np.ndarray, grad_rows: np.ndarray,
              exp_avg: np.ndarray, exp_avg_sq: np.ndarray, *, step: float, lr: float = 1e-3,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              maximize: bool = False) -> None:
    """torch.optim.SparseAdam's step in NumPy; see :func:`adamkern.sparse.adam_rows_`."""
    beta1, beta2 = betas
    t = param.dtype.type
    rows, g = coalesce(indices, grad_rows)
    g = _oriented(g, maximize)
    old_exp_avg, old_exp_avg_sq = exp_avg[rows], exp_avg_sq[rows]
    new_exp_avg = old_exp_avg + (g - old_exp_avg) * t(1 - beta1)
    new_exp_avg_sq = old_exp_avg_sq + (g * g - old_exp_avg_sq) * t(1 - beta2)
    exp_avg[rows], exp_avg_sq[rows] = new_exp_avg, new_exp_avg_sq
    step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    denom = np.sqrt(new_exp_avg_sq) + t(eps)
    param[rows] = param[rows] + t(-step_size) * (new_exp_avg / denom)


def adagrad_rows(param: np.ndarray, indices: np.ndarray, grad_rows: np.ndarray,
                 state_sum: np.ndarray, *, step: float, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, eps: float = 1e-10, maximize: bool = False) -> None:
    """torch.optim.Adagrad's sparse-gradient step in NumPy; see
    :func:`adamkern.sparse.adagrad_rows_`."""
    if weight_decay != 0.0:
        raise ValueError("weight_decay is not compatible with sparse gradients")
    t = param.dtype.type
    rows, g = coalesce(indices, grad_rows)
    g = _oriented(g, maximize)
    clr = lr / (1 + (step - 1) * lr_decay)
    new_sum = state_sum[rows] + g * g
    state_sum[rows] = new_sum
    param[rows] = param[rows] + t(-clr) * (g / (np.sqrt(new_sum) + t(eps)))


def sgd_rows(param: np.ndarray, indices: np.ndarray, grad_rows: np.ndarray, *,
             lr: float = 1e-3, maximize: bool = False) -> None:
    """torch.optim.SGD's step with a sparse gradient (no momentum) in NumPy; see
    :func:`adamkern.sparse.sgd_rows_`."""
    t = param.dtype.type
    rows, g = coalesce(indices, grad_rows)
    param[rows] = param[rows] + t(-lr) * _oriented(g, maximize)


def _fma(a: np.ndarray, b, c: np.ndarray) -> np.ndarray:
    """a * b + c rounded once for float32 (exact product and one double rounding through
    float64); for float64, a product and a sum (no fma in NumPy)."""
    wide = np.float64 if a.dtype == np.float32 else a.dtype.type
    return (a.astype(wide) * wide(b) + c.astype(wide)).astype(a.dtype)


def rowwise_adagrad_rows(param: np.ndarray, indices: np.ndarray, grad_rows: np.ndarray,
                         state_sum: np.ndarray, *, lr: float = 1e-2, eps: float = 1e-8,
                         weight_decay: float = 0.0, maximize: bool = False) -> None:
    """FBGEMM's rowwise_sparse_adagrad_ref in NumPy (eight lanes of squares, its reduction
    tree, the mean, the accumulator, the row's step); see
    :func:`adamkern.sparse.rowwise_adagrad_rows_`."""
    t = param.dtype.type
    rows, g = coalesce(indices, grad_rows)
    cols = param.shape[1]
    if rows.size == 0 or cols == 0:
        return
    p = param[rows]
    g = _oriented(g, maximize)
    if weight_decay != 0.0:
        g = _fma(p, t(weight_decay), g)
    squares = g * g
    padded = np.zeros((rows.size, -(-cols // 8) * 8), param.dtype)
    padded[:, :cols] = squares
    lanes = np.zeros((rows.size, 8), param.dtype)
    for block in range(padded.shape[1] // 8):
        lanes = lanes + padded[:, 8 * block:8 * block + 8]
    total = ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + (
        (lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7]))
    new_sum = state_sum[rows] + total / t(cols)
    state_sum[rows] = new_sum
    step = t(-lr) / (np.sqrt(new_sum) + t(eps))
    param[rows] = p + g * step[:, None]
