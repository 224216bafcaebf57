"""The building blocks of the NumPy references (:mod:`adamkern.reference`): the lists of a
call, AMP's skip and unscaling, torch's L2 and decoupled weight decay, fused multiply-add and
lerp emulated in NumPy, fixed-order sums, the cautious mask."""

from __future__ import annotations

from typing import Any

import numpy as np

from adamkern.ops import Arrays, Scalar, as_list

def _tensors(*lists: Arrays | None):
    """Array i of every list, for every i (absent lists give None)."""
    columns = [as_list(a) if a is not None else None for a in lists]
    count = len(columns[0])
    for i in range(count):
        yield tuple(c[i] if c is not None else None for c in columns)


def _skipped(found_inf: Scalar) -> bool:
    return found_inf is not None and float(np.asarray(found_inf).item()) != 0.0


def _unscaled(grad: np.ndarray, grad_scale: Scalar, maximize: bool) -> np.ndarray:
    """The gradient the update sees: divided by grad_scale in place (AMP), negated if
    maximizing."""
    if grad_scale is not None:
        np.divide(grad, grad.dtype.type(np.float32(np.asarray(grad_scale).item())), out=grad)
    return np.negative(grad) if maximize else grad


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a*b = hi + lo exactly, for float64 (Dekker's splitting)."""
    split = np.float64(134217729.0)  # 2**27 + 1
    hi = a * b
    a_hi = a * split
    a_hi = a_hi - (a_hi - a)
    b_hi = b * split
    b_hi = b_hi - (b_hi - b)
    a_lo, b_lo = a - a_hi, b - b_hi
    lo = ((a_hi * b_hi - hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return hi, lo


def _l2(grad: np.ndarray, param: np.ndarray, weight_decay: float) -> np.ndarray:
    """grad + weight_decay * param (torch's grad.add(param, alpha=wd)) rounded once, as the
    kernels' fused multiply-add does: where the sum cancels, a second rounding would be
    amplified by every later step. float32 computes it in float64 (where the product is
    exact); float64 adds the exact product (hi + lo) with one final rounding of a tiny term."""
    t = param.dtype.type
    if param.dtype == np.float32:
        exact = param.astype(np.float64) * np.float64(t(weight_decay)) + grad.astype(np.float64)
        return exact.astype(np.float32)
    hi, lo = _two_product(param, np.float64(weight_decay))
    total = hi + grad
    error = (hi - (total - (total - hi))) + (grad - (total - hi))  # two-sum
    return total + (error + lo)



def _weight_decay(grad: np.ndarray, param: np.ndarray, weight_decay: float, lr: float,
                  decoupled: bool) -> np.ndarray:
    """weight_decay in either form: L2 (returns the gradient plus the decay), or decoupled
    (decays the param in place before its update, p -= lr * wd * p; returns the gradient)."""
    if weight_decay == 0.0:
        return grad
    if decoupled:
        param += param.dtype.type(-lr * weight_decay) * param
        return grad
    return _l2(grad, param, weight_decay)

def _fma(a: np.ndarray, b: Any, c: np.ndarray) -> np.ndarray:
    """a * b + c rounded once, as the kernels' std::fma (float32 in float64, where the product
    is exact; float64 with the exact product, as _l2)."""
    t = c.dtype.type
    if c.dtype == np.float32:
        exact = np.asarray(a, np.float64) * np.float64(t(b)) + np.asarray(c, np.float64)
        return exact.astype(np.float32)
    hi, lo = _two_product(np.asarray(a, np.float64), np.float64(b))
    total = hi + c
    error = (hi - (total - (total - hi))) + (c - (total - hi))  # two-sum
    return total + (error + lo)


_REDUCTION_CHUNK = 1 << 14  # the kernels' fixed chunks (partition.hpp: kReductionChunk)
_REDUCTION_LANES = 16       # and lanes (kernels_isa.cpp: kLanes)


def _chunked_sum(terms: np.ndarray) -> float:
    """The sum of float64 terms in the kernels' order: per chunk, element i into lane
    i % 16, each lane in index order, the lanes by a fixed pairwise tree; the chunks in order."""
    total = 0.0
    for begin in range(0, terms.size, _REDUCTION_CHUNK):
        chunk = terms[begin:begin + _REDUCTION_CHUNK]
        padded = np.zeros(-(-chunk.size // _REDUCTION_LANES) * _REDUCTION_LANES)
        padded[:chunk.size] = chunk
        rows = padded.reshape(-1, _REDUCTION_LANES)
        lanes = rows[0].copy()
        for row in rows[1:]:
            lanes += row
        width = _REDUCTION_LANES // 2
        while width >= 1:
            lanes[:width] += lanes[width:2 * width]
            width //= 2
        total += float(lanes[0])
    return total


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """start.lerp_(end, weight), in torch's two-sided form."""
    t = start.dtype.type
    w = t(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end - (end - start) * (t(1.0) - w)


def _moment(moment: np.ndarray, x: np.ndarray, decay: float) -> None:
    """optax's tree_update_moment: (1 - decay) * x + decay * moment, in place."""
    t = moment.dtype.type
    moment[...] = t(1.0 - decay) * x + t(decay) * moment


def _cautious_scale(update: np.ndarray, grad: np.ndarray, rescale: str) -> np.ndarray:
    """The cautious mask (Liang et al. 2024, "Cautious Optimizers"), already rescaled: 0 where
    the update's sign disagrees with the gradient's (update * grad > 0 fails), elsewhere one
    number s, in the array's dtype. rescale="mean" is C-Optim's c_adamw.py,
    s = 1 / max(count / n, 1e-3); rescale="count" is its c_lion.py, s = n / (count + 1).
    The count is exact; each division is one rounding, as torch does it on a 0/1 mask."""
    t = update.dtype.type
    agree = update * grad > 0
    if agree.size == 0:
        return np.ones_like(update)
    count = int(np.count_nonzero(agree))
    if rescale == "mean":
        scale = t(1.0) / max(t(count) / t(agree.size), t(1e-3))
    else:
        scale = t(agree.size) / (t(count) + t(1.0))
    return np.where(agree, scale, t(0.0)).astype(update.dtype)


def _optax_apply(param: np.ndarray, direction: np.ndarray, lr: float, weight_decay: float) -> None:
    """optax's add_decayed_weights + scale_by_learning_rate + apply_updates."""
    t = param.dtype.type
    if weight_decay != 0.0:
        direction = direction + t(weight_decay) * param
    param += t(-lr) * direction
