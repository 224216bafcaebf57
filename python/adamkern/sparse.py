"""Row-sparse optimizer steps for embedding tables: in place, only the touched rows.

A step takes a 2-D table ``param`` (rows x cols, float32 or float64, C-contiguous), the row
``indices`` a batch looked up (1-D int32 or int64, any order, repeats allowed) and
``grad_rows``, the gradient of each looked-up row (``(len(indices), cols)``, ``param``'s
dtype): torch's sparse COO gradient of an ``nn.Embedding(sparse=True)`` weight is
``indices = grad._indices()[0]``, ``grad_rows = grad._values()``. Gradient rows of equal
indices are summed first, then each touched row (and its state) gets the optimizer's update;
untouched rows and their state are neither read nor written.

The sum of duplicates is deterministic: the gradient rows of one table row are added in a
canonical order (by their bytes), so a step gives the same bits for any thread count, any
ISA and any order of the (index, gradient row) pairs. Each row's update is the per-element
math of the dense op (:func:`adamkern.adam_` with ``epsilon_hat``, :func:`adamkern.adagrad_`,
:func:`adamkern.sgd_`), so it rounds like those ops, not like torch's sparse paths, which
are a few ULP away (docs/sparse.md).

State tables are the caller's: ``np.zeros_like(param)`` (row-wise Adagrad:
``np.zeros(len(param), param.dtype)``), passed back every step. ``step`` counts the steps
of the table (1 on the first), as torch's ``state['step']``, whether or not a row was touched.

Errors: everything is checked before anything is written: ``TypeError`` for a non-array or a
wrong dtype, ``ValueError`` for shapes, layouts, an index outside ``[0, rows)`` (the message
names its position and value), overlapping arrays and out-of-range or unsupported options; on
error no array has changed.
"""

from __future__ import annotations

import numpy as np

from adamkern import _core
from adamkern._opcall import float_betas

__all__ = [
    "adagrad_rows_",
    "adam_rows_",
    "rowwise_adagrad_rows_",
    "sgd_rows_",
]


def adam_rows_(
    param: np.ndarray,
    indices: np.ndarray,
    grad_rows: np.ndarray,
    exp_avg: np.ndarray,
    exp_avg_sq: np.ndarray,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    maximize: bool = False,
) -> None:
    """One lazy Adam step on the touched rows: ``torch.optim.SparseAdam``'s update,
    ``p -= lr * sqrt(1 - beta2**step) / (1 - beta1**step) * m / (sqrt(v) + eps)``, with the
    moments ``exp_avg``, ``exp_avg_sq`` of the touched rows only (no weight decay, as
    SparseAdam).

    >>> p = np.ones((4, 2), np.float32)
    >>> m, v = np.zeros_like(p), np.zeros_like(p)
    >>> idx, g = np.array([3, 1, 3]), np.ones((3, 2), np.float32)
    >>> adamkern.sparse.adam_rows_(p, idx, g, m, v, step=1, lr=0.1)
    >>> [round(x, 6) for x in p[:, 0].tolist()]   # rows 1 and 3 moved by lr, 0 and 2 not
    [1.0, 0.9, 1.0, 0.9]
    """
    beta1, beta2 = float_betas(betas)
    _core.adam_rows_(
        param=param, indices=indices, grad_rows=grad_rows, exp_avg=exp_avg,
        exp_avg_sq=exp_avg_sq, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
        weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, maximize=maximize,
        epsilon_hat=True, cautious=False)


def adagrad_rows_(
    param: np.ndarray,
    indices: np.ndarray,
    grad_rows: np.ndarray,
    state_sum: np.ndarray,
    *,
    step: float,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
) -> None:
    """One Adagrad step on the touched rows, as ``torch.optim.Adagrad`` with a sparse
    gradient: ``state_sum += g * g``, ``p -= clr * g / (sqrt(state_sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) * lr_decay)``. ``weight_decay`` other than 0 is refused, as
    torch refuses it with sparse gradients. ``state_sum`` starts at torch's
    ``initial_accumulator_value`` (``np.full_like(param, value)``).

    >>> p, s = np.ones((4, 2), np.float32), np.zeros((4, 2), np.float32)
    >>> adamkern.sparse.adagrad_rows_(p, np.array([2]), np.ones((1, 2), np.float32), s,
    ...                               step=1, lr=0.5)
    >>> p[:, 0].tolist(), s[:, 0].tolist()
    ([1.0, 1.0, 0.5, 1.0], [0.0, 0.0, 1.0, 0.0])
    """
    _core.adagrad_rows_(
        param=param, indices=indices, grad_rows=grad_rows, state_sum=state_sum, step=step,
        lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, decoupled_weight_decay=False,
        eps=eps, maximize=maximize, eps_inside_sqrt=False)


def sgd_rows_(
    param: np.ndarray,
    indices: np.ndarray,
    grad_rows: np.ndarray,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """One SGD step on the touched rows, as ``torch.optim.SGD`` with a sparse gradient:
    ``p -= lr * g``. ``momentum`` and ``weight_decay`` other than 0 are refused: torch's
    momentum buffer of a sparse gradient is itself sparse and grows to every row ever
    touched, and torch's weight decay with a sparse gradient decays the whole table.

    >>> p = np.zeros((3, 2), np.float32)
    >>> adamkern.sparse.sgd_rows_(p, np.array([0, 0]), np.ones((2, 2), np.float32), lr=0.5)
    >>> p[:, 0].tolist()   # row 0's two gradient rows summed
    [-1.0, 0.0, 0.0]
    """
    _core.sgd_rows_(
        param=param, indices=indices, grad_rows=grad_rows, lr=lr, momentum=momentum,
        dampening=0.0, weight_decay=weight_decay, decoupled_weight_decay=False, nesterov=False,
        maximize=maximize)


def rowwise_adagrad_rows_(
    param: np.ndarray,
    indices: np.ndarray,
    grad_rows: np.ndarray,
    state_sum: np.ndarray,
    *,
    lr: float = 1e-2,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """One row-wise Adagrad step (FBGEMM's ``EXACT_ROWWISE_ADAGRAD``): one accumulator per
    row, ``state_sum[r] += mean(g * g)`` over the row, then
    ``p[r] -= lr / (sqrt(state_sum[r]) + eps) * g``, in FBGEMM's order of operations (its
    eight-lane sum of squares; ``weight_decay``: its L2 term ``g += weight_decay * p``).
    ``state_sum`` has one value per row: shape ``(rows,)``, ``param``'s dtype.

    >>> p, s = np.ones((3, 4), np.float32), np.zeros(3, np.float32)
    >>> g = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)
    >>> adamkern.sparse.rowwise_adagrad_rows_(p, np.array([1], np.int32), g, s, lr=0.5)
    >>> s.tolist(), p[1].tolist()
    ([0.0, 1.0, 0.0], [0.5, 1.5, 0.5, 1.5])
    """
    _core.rowwise_adagrad_rows_(
        param=param, indices=indices, grad_rows=grad_rows, state_sum=state_sum, lr=lr, eps=eps,
        weight_decay=weight_decay, maximize=maximize)
