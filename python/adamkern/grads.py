"""Gradient handling: the global norm, clipping, and AMP-style dynamic loss scaling.

The norm is one parallel C++ pass over all grads, summed in double in fixed chunks: the same
bits for any thread count and ISA. The optimizer objects (:mod:`adamkern.optim`) use these
and fold the clipping coefficient and the loss scale into the update pass itself.

>>> norm = adamkern.clip_grad_norm_(grads, max_norm=1.0)   # as torch.nn.utils.clip_grad_norm_
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adamkern import _core
from adamkern.ops import Arrays, as_list

__all__ = ["LossScaler", "all_finite", "clip_grad_norm_", "clip_grad_value_", "grad_norm"]


def grad_stats(grads: Arrays) -> tuple[float, bool]:
    """(global L2 norm, all finite) of ``grads`` in one pass; bfloat16 and float16 grads (and
    lists mixing dtypes) are read through float32 copies."""
    arrays = as_list(grads)
    if len({a.dtype for a in arrays}) > 1 or any(a.dtype.itemsize == 2 for a in arrays):
        arrays = [a.astype(np.float64 if a.dtype == np.float64 else np.float32) for a in arrays]
        if len({a.dtype for a in arrays}) > 1:
            arrays = [a.astype(np.float64) for a in arrays]
    return _core.grad_stats(arrays)


def grad_norm(grads: Arrays) -> float:
    """The L2 norm of all elements of all ``grads`` (float64)."""
    return grad_stats(grads)[0]


def all_finite(grads: Arrays) -> bool:
    """True if no element of ``grads`` is inf or NaN."""
    return grad_stats(grads)[1]


def clip_coefficient(norm: float, max_norm: float, eps: float = 1e-6) -> float:
    """torch's clip_grad_norm_ coefficient, ``min(max_norm / (norm + eps), 1)``."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    return min(max_norm / (norm + eps), 1.0)


def clip_grad_norm_(grads: Arrays, max_norm: float, eps: float = 1e-6) -> float:
    """Scales ``grads`` in place so their global L2 norm is at most ``max_norm``
    (torch.nn.utils.clip_grad_norm_); returns the norm before clipping."""
    norm = grad_norm(grads)
    coefficient = clip_coefficient(norm, max_norm, eps)
    if coefficient < 1.0:
        for g in as_list(grads):
            g *= g.dtype.type(coefficient)
    return norm


def clip_grad_value_(grads: Arrays, clip_value: float) -> None:
    """Clips every element of ``grads`` to ``[-clip_value, clip_value]`` in place."""
    if not clip_value >= 0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value!r}")
    for g in as_list(grads):
        np.clip(g, -clip_value, clip_value, out=g)


class LossScaler:
    """Dynamic loss scaling with torch.amp.GradScaler's rule: multiply the loss by ``scale``
    before backpropagating; ``update(found_inf)`` then halves the scale (``backoff_factor``)
    after a step with inf/NaN grads, and doubles it (``growth_factor``) after
    ``growth_interval`` good steps in a row. Pass it to an optimizer's ``step(grads,
    scaler=...)``: the grads are checked in one pass, a bad step is skipped without touching
    anything, and a good one is unscaled inside the update pass.

    >>> scaler = adamkern.LossScaler()
    >>> loss_grad = model_backward(loss * scaler.scale)   # your engine
    >>> opt.step(grads, scaler=scaler)                    # skips or unscales, then updates
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if not (isinstance(growth_interval, int) and growth_interval > 0):
            raise ValueError(f"growth_interval must be an int > 0, got {growth_interval!r}")
        # torch keeps the scale as a float32 tensor; so does this (as a Python float).
        self.scale = float(np.float32(init_scale))
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0

    def scale_loss(self, loss: Any) -> Any:
        """``loss * scale``."""
        return loss * self.scale

    def update(self, found_inf: bool) -> None:
        if found_inf:
            self.scale = float(np.float32(self.scale) * np.float32(self.backoff_factor))
            self.growth_tracker = 0
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            self.scale = float(np.float32(self.scale) * np.float32(self.growth_factor))
            self.growth_tracker = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "growth_tracker": self.growth_tracker}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [k for k in self.state_dict() if k not in state]
        if missing:
            raise ValueError(f"LossScaler state_dict is missing {', '.join(missing)}")
        self.scale = float(state["scale"])
        self.growth_factor = state["growth_factor"]
        self.backoff_factor = state["backoff_factor"]
        self.growth_interval = int(state["growth_interval"])
        self.growth_tracker = int(state["growth_tracker"])

    def __repr__(self) -> str:
        return (f"LossScaler(scale={self.scale!r}, growth_factor={self.growth_factor!r}, "
                f"backoff_factor={self.backoff_factor!r}, "
                f"growth_interval={self.growth_interval!r})")
