"""Pure-NumPy references of every kernel: the test oracle and the NumPy baseline of the
benchmarks. Same signatures and in-place semantics as the fused ops in :mod:`adamkern.ops`,
same order of operations, but plain NumPy ufuncs (no fused multiply-add, several passes over
memory), so results agree with the kernels to within a few ULP, not bit for bit.

>>> p, g, m, v = (np.ones(3, np.float32) for _ in range(4))
>>> adamkern.reference.adam(p, g, m, v, step=1, lr=0.1)
"""

from __future__ import annotations

import math

import numpy as np

from adamkern.ops import Arrays, Scalar

__all__ = ["adam", "adamw"]


def _as_list(arrays: Arrays | None) -> list[np.ndarray]:
    if arrays is None:
        return []
    return [arrays] if isinstance(arrays, np.ndarray) else list(arrays)


def adam(
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
    """Adam/AdamW in NumPy, in place; see :func:`adamkern.adam_` for the arguments."""
    if found_inf is not None and float(np.asarray(found_inf).item()) != 0.0:
        return
    beta1, beta2 = betas
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    maxes = _as_list(max_exp_avg_sqs) if amsgrad else None
    for i, (param, grad, exp_avg, exp_avg_sq) in enumerate(
        zip(_as_list(params), _as_list(grads), _as_list(exp_avgs), _as_list(exp_avg_sqs))
    ):
        t = param.dtype.type  # every per-call scalar is rounded once to the array's dtype
        if grad_scale is not None:
            scale = np.float32(np.asarray(grad_scale).item())
            np.divide(grad, t(scale), out=grad)
        g = np.negative(grad) if maximize else grad
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                param *= t(1.0 - lr * weight_decay)
            else:
                g = g + param * t(weight_decay)
        # exp_avg.lerp_(g, 1 - beta1), in torch's two-sided form
        weight = t(1.0 - beta1)
        if abs(weight) < 0.5:
            exp_avg += weight * (g - exp_avg)
        else:
            exp_avg[...] = g - (g - exp_avg) * (t(1.0) - weight)
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g
        second_moment = exp_avg_sq
        if maxes is not None:
            np.maximum(maxes[i], exp_avg_sq, out=maxes[i])
            second_moment = maxes[i]
        denom = np.sqrt(second_moment)
        denom /= t(math.sqrt(bias_correction2))
        denom += t(eps)
        update = t(-(lr / bias_correction1)) * exp_avg
        update /= denom
        param += update


def adamw(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
          weight_decay: float = 1e-2, **kwargs) -> None:
    """AdamW in NumPy: :func:`adam` with decoupled weight decay (default 1e-2)."""
    adam(params, grads, exp_avgs, exp_avg_sqs, weight_decay=weight_decay,
         decoupled_weight_decay=True, **kwargs)
