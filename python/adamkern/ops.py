"""Functional optimizer steps: fused, in place, one C++ call per call (however many tensors).

Every array argument is one ``numpy.ndarray`` or a list/tuple of them; array ``i`` of every list
has the shape and dtype of ``params[i]``; all arrays of a call share one dtype (float32 or
float64). All arguments are checked before anything is written: on error (``TypeError`` for
types and dtypes, ``ValueError`` for everything else) no array has changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from adamkern import _core

__all__ = ["adam_", "adamw_"]

Arrays = Union[np.ndarray, Sequence[np.ndarray]]
Scalar = Union[float, np.ndarray, None]


def _betas(betas: tuple[float, float]) -> tuple[float, float]:
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return beta1, beta2


def adam_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    amsgrad: bool = False,
    max_exp_avg_sqs: Arrays | None = None,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
) -> None:
    """One Adam step, in place on ``params``, ``exp_avgs``, ``exp_avg_sqs`` (and
    ``max_exp_avg_sqs`` with ``amsgrad``); bitwise identical to
    ``torch.optim.Adam(fused=True)`` on CPU.

    ``step`` is the step count after increment (1 on the first update), as torch's
    ``state['step']``. ``weight_decay`` is L2 (added to the gradient) unless
    ``decoupled_weight_decay`` (AdamW). ``grad_scale``: the grads are divided by it in place
    before the update (AMP unscaling; rounded to float32 as torch's scale tensor).
    ``found_inf``: if nonzero the whole step is skipped and nothing is written.

    >>> p, g, m, v = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adam_(p, g, m, v, step=1, lr=0.1)   # p is now 0.9 (first step: lr * sign(g))
    """
    beta1, beta2 = _betas(betas)
    _core.adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, beta1, beta2,
                eps, weight_decay, decoupled_weight_decay, amsgrad, maximize, grad_scale,
                found_inf)


def adamw_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    max_exp_avg_sqs: Arrays | None = None,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
) -> None:
    """One AdamW step: :func:`adam_` with decoupled weight decay (default 1e-2), as
    ``torch.optim.AdamW(fused=True)``.

    >>> p, g, m, v = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adamw_(p, g, m, v, step=1, lr=0.1)   # p is now 0.999 - 0.1
    """
    beta1, beta2 = _betas(betas)
    _core.adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, beta1, beta2,
                eps, weight_decay, True, amsgrad, maximize, grad_scale, found_inf)
