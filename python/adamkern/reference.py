"""Pure-NumPy references of every kernel: the test oracle and the NumPy baseline of the
benchmarks. Same signatures and in-place semantics as the fused ops in :mod:`adamkern.ops`,
same order of operations, but plain NumPy ufuncs (no fused multiply-add, several passes over
memory), so results agree with the kernels to within a few ULP, not bit for bit.

>>> p, g, m, v = (np.ones(3, np.float32) for _ in range(4))
>>> adamkern.reference.adam(p, g, m, v, step=1, lr=0.1)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adamkern._ops_newest import _schedulefree_weights
from adamkern.ops import Arrays, Scalar, as_list

__all__ = [
    "adafactor",
    "adabelief",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "adamw_schedulefree",
    "ademamix",
    "adan",
    "adopt",
    "lamb",
    "lion",
    "nadam",
    "prodigy",
    "radam",
    "rmsprop",
    "sgd",
    "sgd_schedulefree",
    "yogi",
]


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
    epsilon_hat: bool = False,
    cautious: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
) -> None:
    """Adam/AdamW in NumPy, in place; see :func:`adamkern.adam_` for the arguments. With
    ``epsilon_hat`` it follows Keras' Adam (keras/src/optimizers/adam.py) literally. With
    ``cautious`` the first moment the update uses is masked as C-Optim's c_adamw.py does it:
    m * (mask / max(mean(mask), 1e-3)), mask = m * g > 0 (m the new first moment, g the
    gradient the update sees)."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    for param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq in _tensors(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None
    ):
        t = param.dtype.type  # every per-call scalar is rounded once to the array's dtype
        g = _unscaled(grad, grad_scale, maximize)
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                param *= t(1.0 - lr * weight_decay)
            else:
                g = _l2(g, param, weight_decay)
        if epsilon_hat:  # Keras: m += (g - m) * (1 - beta1); v += (g^2 - v) * (1 - beta2)
            exp_avg += (g - exp_avg) * t(1.0 - beta1)
            exp_avg_sq += (g * g - exp_avg_sq) * t(1.0 - beta2)
        else:
            _lerp(exp_avg, g, 1.0 - beta1)
            exp_avg_sq *= t(beta2)
            exp_avg_sq += t(1.0 - beta2) * g * g
        second_moment = exp_avg_sq
        if max_exp_avg_sq is not None:
            np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
            second_moment = max_exp_avg_sq
        first_moment = exp_avg
        if cautious:
            first_moment = exp_avg * _cautious_scale(exp_avg, g, "mean")
        if epsilon_hat:  # Keras: p -= (m * alpha) / (sqrt(v) + eps)
            alpha = t(lr * math.sqrt(bias_correction2) / bias_correction1)
            param -= (first_moment * alpha) / (np.sqrt(second_moment) + t(eps))
            continue
        denom = np.sqrt(second_moment)
        denom /= t(math.sqrt(bias_correction2))
        denom += t(eps)
        update = t(-(lr / bias_correction1)) * first_moment
        update /= denom
        param += update


def adamw(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
          weight_decay: float = 1e-2, **kwargs) -> None:
    """AdamW in NumPy: :func:`adam` with decoupled weight decay (default 1e-2)."""
    adam(params, grads, exp_avgs, exp_avg_sqs, weight_decay=weight_decay,
         decoupled_weight_decay=True, **kwargs)


def adamax(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_infs: Arrays, *, step: float,
           lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
           weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
           maximize: bool = False, grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """Adamax in NumPy (torch/optim/adamax.py); see :func:`adamkern.adamax_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_inf in _tensors(params, grads, exp_avgs, exp_infs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        g = _weight_decay(g, param, weight_decay, lr, decoupled_weight_decay)
        _lerp(exp_avg, g, 1.0 - beta1)
        exp_inf *= t(beta2)
        np.maximum(exp_inf, np.abs(g) + t(eps), out=exp_inf)
        param += t(-(lr / (1.0 - beta1**step))) * exp_avg / exp_inf


def nadam(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
          step: float, mu_product: np.ndarray, lr: float = 2e-3,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 0.0, momentum_decay: float = 4e-3,
          decoupled_weight_decay: bool = False, maximize: bool = False,
          grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """NAdam in NumPy (torch/optim/nadam.py); see :func:`adamkern.nadam_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * momentum_decay))
    mu_product *= mu_product.dtype.type(mu)  # in the state's own precision, as torch
    product = float(mu_product.reshape(-1)[0])
    bias_correction2 = 1.0 - beta2**step
    for param, grad, exp_avg, exp_avg_sq in _tensors(params, grads, exp_avgs, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                param *= t(1.0 - lr * weight_decay)
            else:
                g = _l2(g, param, weight_decay)
        _lerp(exp_avg, g, 1.0 - beta1)
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g
        denom = np.sqrt(exp_avg_sq / t(bias_correction2)) + t(eps)
        param += t(-lr * (1.0 - mu) / (1.0 - product)) * g / denom
        param += t(-lr * mu_next / (1.0 - product * mu_next)) * exp_avg / denom


def radam(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
          step: float, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
          maximize: bool = False, grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """RAdam in NumPy (torch/optim/radam.py); see :func:`adamkern.radam_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    bias_correction1 = 1.0 - beta1**step
    bias_correction2 = 1.0 - beta2**step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2**step / bias_correction2
    for param, grad, exp_avg, exp_avg_sq in _tensors(params, grads, exp_avgs, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        if weight_decay != 0.0:
            if decoupled_weight_decay:
                param *= t(1.0 - lr * weight_decay)
            else:
                g = _l2(g, param, weight_decay)
        _lerp(exp_avg, g, 1.0 - beta1)
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g
        update = exp_avg / t(bias_correction1) * t(lr)
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive_lr = t(math.sqrt(bias_correction2)) / (np.sqrt(exp_avg_sq) + t(eps))
            update = update * adaptive_lr * t(rect)
        param -= update


def rmsprop(params: Arrays, grads: Arrays, square_avgs: Arrays, *, lr: float = 1e-2,
            alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
            decoupled_weight_decay: bool = False,
            momentum: float = 0.0, centered: bool = False,
            momentum_buffers: Arrays | None = None, grad_avgs: Arrays | None = None,
            maximize: bool = False, eps_inside_sqrt: bool = False, grad_scale: Scalar = None,
            found_inf: Scalar = None) -> None:
    """RMSprop in NumPy (torch/optim/rmsprop.py; Keras' eps placement with
    ``eps_inside_sqrt``); see :func:`adamkern.rmsprop_`."""
    if _skipped(found_inf):
        return
    for param, grad, square_avg, buf, grad_avg in _tensors(
        params, grads, square_avgs, momentum_buffers if momentum > 0 else None,
        grad_avgs if centered else None,
    ):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        g = _weight_decay(g, param, weight_decay, lr, decoupled_weight_decay)
        square_avg *= t(alpha)
        square_avg += t(1.0 - alpha) * g * g
        second_moment = square_avg
        if grad_avg is not None:
            _lerp(grad_avg, g, 1.0 - alpha)
            second_moment = square_avg - grad_avg * grad_avg
        avg = np.sqrt(second_moment + t(eps)) if eps_inside_sqrt else np.sqrt(second_moment) + t(eps)
        if buf is not None:
            buf *= t(momentum)
            buf += g / avg
            param -= t(lr) * buf
        else:
            param -= t(lr) * g / avg


def adagrad(params: Arrays, grads: Arrays, state_sums: Arrays, *, step: float,
            lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
            decoupled_weight_decay: bool = False,
            eps: float = 1e-10, maximize: bool = False, eps_inside_sqrt: bool = False,
            grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """Adagrad in NumPy (torch/optim/adagrad.py; Keras' eps placement with
    ``eps_inside_sqrt``); see :func:`adamkern.adagrad_`."""
    if _skipped(found_inf):
        return
    clr = lr / (1.0 + (step - 1.0) * lr_decay)
    for param, grad, state_sum in _tensors(params, grads, state_sums):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        g = _weight_decay(g, param, weight_decay, clr, decoupled_weight_decay)
        state_sum += g * g
        std = np.sqrt(state_sum + t(eps)) if eps_inside_sqrt else np.sqrt(state_sum) + t(eps)
        param -= t(clr) * g / std


def adadelta(params: Arrays, grads: Arrays, square_avgs: Arrays, acc_deltas: Arrays, *,
             lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0,
             decoupled_weight_decay: bool = False, maximize: bool = False,
             grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """Adadelta in NumPy (torch/optim/adadelta.py); see :func:`adamkern.adadelta_`."""
    if _skipped(found_inf):
        return
    for param, grad, square_avg, acc_delta in _tensors(params, grads, square_avgs, acc_deltas):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        g = _weight_decay(g, param, weight_decay, lr, decoupled_weight_decay)
        square_avg *= t(rho)
        square_avg += t(1.0 - rho) * g * g
        delta = np.sqrt(acc_delta + t(eps)) / np.sqrt(square_avg + t(eps)) * g
        acc_delta *= t(rho)
        acc_delta += t(1.0 - rho) * delta * delta
        param -= t(lr) * delta


def sgd(params: Arrays, grads: Arrays, momentum_buffers: Arrays | None = None, *,
        lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
        weight_decay: float = 0.0, decoupled_weight_decay: bool = False, nesterov: bool = False,
        maximize: bool = False, is_first_step: bool = False, grad_scale: Scalar = None,
        found_inf: Scalar = None) -> None:
    """SGD in NumPy (torch/optim/sgd.py); see :func:`adamkern.sgd_`."""
    if _skipped(found_inf):
        return
    for param, grad, buf in _tensors(params, grads,
                                     momentum_buffers if momentum != 0.0 else None):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        g = _weight_decay(g, param, weight_decay, lr, decoupled_weight_decay)
        if buf is not None:
            if is_first_step:
                buf[...] = g
            else:
                buf *= t(momentum)
                buf += t(1.0 - dampening) * g
            g = g + t(momentum) * buf if nesterov else buf
        param -= t(lr) * g


def lion(params: Arrays, grads: Arrays, exp_avgs: Arrays, *, lr: float = 1e-4,
         betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 1e-3,
         maximize: bool = False, cautious: bool = False, grad_scale: Scalar = None,
         found_inf: Scalar = None) -> None:
    """Lion in NumPy (optax/_src/transform.py scale_by_lion); see :func:`adamkern.lion_`.
    With ``cautious`` the sign direction is masked as C-Optim's c_lion.py does it:
    d * mask * n / (count + 1), mask = d * g > 0."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg in _tensors(params, grads, exp_avgs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        direction = np.sign(t(1.0 - beta1) * g + t(beta1) * exp_avg)
        if cautious:
            direction = direction * _cautious_scale(direction, g, "count")
        _moment(exp_avg, g, beta2)
        _optax_apply(param, direction, lr, weight_decay)


def _bias_corrected(moment: np.ndarray, decay: float, step: float) -> np.ndarray:
    """optax's tree_bias_correction: moment / (1 - decay**step)."""
    return moment / moment.dtype.type(1.0 - decay**step)


def adabelief(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_vars: Arrays, *,
              step: float, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-16, eps_root: float = 1e-16, weight_decay: float = 0.0,
              maximize: bool = False, grad_scale: Scalar = None,
              found_inf: Scalar = None) -> None:
    """AdaBelief in NumPy (optax/_src/transform.py scale_by_belief); see
    :func:`adamkern.adabelief_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_avg_var in _tensors(params, grads, exp_avgs, exp_avg_vars):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        _moment(exp_avg, g, beta1)
        prediction_error = g - exp_avg
        _moment(exp_avg_var, prediction_error * prediction_error, beta2)
        exp_avg_var += t(eps_root)
        direction = _bias_corrected(exp_avg, beta1, step) / (
            np.sqrt(_bias_corrected(exp_avg_var, beta2, step)) + t(eps))
        _optax_apply(param, direction, lr, weight_decay)


def lamb(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
         step: float, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-6, eps_root: float = 0.0, weight_decay: float = 0.0,
         maximize: bool = False, grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """LAMB in NumPy (optax/_src/alias.py lamb: scale_by_adam, add_decayed_weights,
    scale_by_trust_ratio); the norms are summed in float64. See :func:`adamkern.lamb_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_avg_sq in _tensors(params, grads, exp_avgs, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        _moment(exp_avg, g, beta1)
        _moment(exp_avg_sq, g * g, beta2)
        # bias corrections as multiplications by reciprocals, as the kernel (see lamb.hpp)
        direction = exp_avg * t(1.0 / (1.0 - beta1**step)) / (
            np.sqrt(exp_avg_sq * t(1.0 / (1.0 - beta2**step)) + t(eps_root)) + t(eps))
        if weight_decay != 0.0:
            direction = direction + t(weight_decay) * param
        param_norm = math.sqrt(np.sum(np.square(param, dtype=np.float64)))
        direction_norm = math.sqrt(np.sum(np.square(direction, dtype=np.float64)))
        ratio = 1.0 if param_norm == 0.0 or direction_norm == 0.0 else param_norm / direction_norm
        param += t(-lr) * (direction * t(ratio))


def adan(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_diffs: Arrays,
         exp_avg_sqs: Arrays, prev_grads: Arrays, *, step: float, lr: float = 1e-3,
         betas: tuple[float, float, float] = (0.98, 0.92, 0.99), eps: float = 1e-8,
         eps_root: float = 1e-8, weight_decay: float = 0.0, maximize: bool = False,
         grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """Adan in NumPy (optax/_src/transform.py scale_by_adan); see :func:`adamkern.adan_`."""
    if _skipped(found_inf):
        return
    beta1, beta2, beta3 = betas
    for param, grad, exp_avg, exp_avg_diff, exp_avg_sq, prev_grad in _tensors(
        params, grads, exp_avgs, exp_avg_diffs, exp_avg_sqs, prev_grads
    ):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        diff = np.zeros_like(g) if step == 1 else g - prev_grad
        _moment(exp_avg, g, beta1)
        _moment(exp_avg_diff, diff, beta2)
        corrected = g + t(1.0 - beta2) * diff
        _moment(exp_avg_sq, corrected * corrected, beta3)
        prev_grad[...] = g
        numerator = _bias_corrected(exp_avg, beta1, step) + t(1.0 - beta2) * _bias_corrected(
            exp_avg_diff, beta2, step)
        direction = numerator / (
            np.sqrt(_bias_corrected(exp_avg_sq, beta3, step) + t(eps_root)) + t(eps))
        _optax_apply(param, direction, lr, weight_decay)


def yogi(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
         step: float, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.999),
         eps: float = 1e-3, eps_root: float = 0.0, weight_decay: float = 0.0,
         maximize: bool = False, grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """Yogi in NumPy (optax/_src/transform.py scale_by_yogi); see :func:`adamkern.yogi_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_avg_sq in _tensors(params, grads, exp_avgs, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        _moment(exp_avg, g, beta1)
        grad_sq = g * g
        exp_avg_sq += t(-(1.0 - beta2)) * np.sign(exp_avg_sq - grad_sq) * grad_sq
        direction = _bias_corrected(exp_avg, beta1, step) / (
            np.sqrt(_bias_corrected(exp_avg_sq, beta2, step) + t(eps_root)) + t(eps))
        _optax_apply(param, direction, lr, weight_decay)


def adopt(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, *,
          step: float, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.9999),
          eps: float = 1e-6, weight_decay: float = 0.0, decoupled_weight_decay: bool = False,
          clip: bool = True, maximize: bool = False, cautious: bool = False,
          grad_scale: Scalar = None, found_inf: Scalar = None) -> None:
    """ADOPT in NumPy (torch-adopt 0.1.0, adopt/adopt.py, _single_tensor_adopt); see
    :func:`adamkern.adopt_`. With ``cautious`` the first moment the update uses is masked
    as for Adam (C-Optim's c_adamw.py rescale); step 1 moves nothing, so has no mask."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    for param, grad, exp_avg, exp_avg_sq in _tensors(params, grads, exp_avgs, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        if weight_decay != 0.0 and not decoupled_weight_decay:
            g = _l2(g, param, weight_decay)
        if step == 1:  # torch-adopt's step 0: the second moment starts, nothing else
            exp_avg_sq += g * g
            continue
        if weight_decay != 0.0 and decoupled_weight_decay:
            param += t(-lr * weight_decay) * param
        normed = g / np.maximum(np.sqrt(exp_avg_sq), t(eps))
        if clip:
            bound = t((step - 1) ** 0.25)
            normed = np.clip(normed, -bound, bound)
        _lerp(exp_avg, normed, 1.0 - beta1)
        first_moment = exp_avg
        if cautious:
            first_moment = exp_avg * _cautious_scale(exp_avg, g, "mean")
        param += t(-lr) * first_moment
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g


def ademamix(params: Arrays, grads: Arrays, exp_avg_fasts: Arrays, exp_avg_slows: Arrays,
             exp_avg_sqs: Arrays, *, step: float, lr: float = 1e-3,
             betas: tuple[float, float, float] = (0.9, 0.999, 0.9999), alpha: float = 2.0,
             beta3_warmup: float = 0, alpha_warmup: float = 0, eps: float = 1e-8,
             weight_decay: float = 0.0, maximize: bool = False, grad_scale: Scalar = None,
             found_inf: Scalar = None) -> None:
    """AdEMAMix in NumPy (apple/ml-ademamix, pytorch/ademamix.py); see
    :func:`adamkern.ademamix_`."""
    if _skipped(found_inf):
        return
    beta1, beta2, beta3 = betas
    if alpha_warmup and step < alpha_warmup:
        alpha = step / alpha_warmup * alpha
    if beta3_warmup and step < beta3_warmup:
        def half_life(beta):
            return math.log(0.5) / math.log(beta + 1e-8) - 1.0
        a = step / beta3_warmup
        beta3 = 0.5 ** (1.0 / ((1.0 - a) * half_life(beta1) + a * half_life(beta3) + 1.0))
    for param, grad, fast, slow, exp_avg_sq in _tensors(params, grads, exp_avg_fasts,
                                                        exp_avg_slows, exp_avg_sqs):
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        for moment, beta in ((fast, beta1), (slow, beta3)):
            moment *= t(beta)
            moment += t(1.0 - beta) * g
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g
        denom = np.sqrt(exp_avg_sq) / t(math.sqrt(1.0 - beta2**step)) + t(eps)
        update = (fast / t(1.0 - beta1**step) + t(alpha) * slow) / denom
        if weight_decay != 0.0:
            update = _l2(update, param, weight_decay)
        param += t(-lr) * update


def _schedulefree_step(y: np.ndarray, z: np.ndarray, n: np.ndarray, lr: float, ckp1: float,
                       beta1: float, weight_decay: float) -> None:
    """What both schedulefree optimizers do with the normalised gradient n."""
    t = y.dtype.type
    if weight_decay != 0.0:
        n = _l2(n, y, weight_decay)
    _lerp(y, z, ckp1)
    y += t(lr * (beta1 * (1.0 - ckp1) - 1.0)) * n
    z -= t(lr) * n


def adamw_schedulefree(params: Arrays, grads: Arrays, zs: Arrays, exp_avg_sqs: Arrays, *,
                       step: float, weight_sums: np.ndarray, lr: float = 0.0025,
                       betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                       weight_decay: float = 0.0, warmup_steps: float = 0, r: float = 0.0,
                       weight_lr_power: float = 2.0, maximize: bool = False,
                       is_first_step: bool = False, grad_scale: Scalar = None,
                       found_inf: Scalar = None) -> None:
    """Schedule-Free AdamW in NumPy (schedulefree 1.4, adamw_schedulefree.py); see
    :func:`adamkern.adamw_schedulefree_`."""
    if _skipped(found_inf):
        return
    beta1, beta2 = betas
    lr, ckp1, sums = _schedulefree_weights("adamw_schedulefree", weight_sums, step, lr,
                                           warmup_steps, r, weight_lr_power)
    for y, grad, z, exp_avg_sq in _tensors(params, grads, zs, exp_avg_sqs):
        t = y.dtype.type
        if is_first_step:
            z[...] = y
        g = _unscaled(grad, grad_scale, maximize)
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g
        n = g / (np.sqrt(exp_avg_sq / t(1.0 - beta2**step)) + t(eps))
        _schedulefree_step(y, z, n, lr, ckp1, beta1, weight_decay)
    weight_sums[:] = sums


def sgd_schedulefree(params: Arrays, grads: Arrays, zs: Arrays, *, step: float,
                     weight_sums: np.ndarray, lr: float = 1.0, momentum: float = 0.9,
                     weight_decay: float = 0.0, warmup_steps: float = 0, r: float = 0.0,
                     weight_lr_power: float = 2.0, maximize: bool = False,
                     is_first_step: bool = False, grad_scale: Scalar = None,
                     found_inf: Scalar = None) -> None:
    """Schedule-Free SGD in NumPy (schedulefree 1.4, sgd_schedulefree.py); see
    :func:`adamkern.sgd_schedulefree_`."""
    if _skipped(found_inf):
        return
    lr, ckp1, sums = _schedulefree_weights("sgd_schedulefree", weight_sums, step, lr,
                                           warmup_steps, r, weight_lr_power)
    for y, grad, z in _tensors(params, grads, zs):
        if is_first_step:
            z[...] = y
        _schedulefree_step(y, z, _unscaled(grad, grad_scale, maximize), lr, ckp1, momentum,
                           weight_decay)
    weight_sums[:] = sums


def prodigy(params: Arrays, grads: Arrays, exp_avgs: Arrays, exp_avg_sqs: Arrays, s: Arrays,
            p0: Arrays, *, group_scalars: np.ndarray, lr: float = 1.0,
            betas: tuple[float, float] = (0.9, 0.999), beta3: float | None = None,
            eps: float = 1e-8, weight_decay: float = 0.0, d0: float = 1e-6,
            d_coef: float = 1.0, growth_rate: float = float("inf"), decouple: bool = True,
            use_bias_correction: bool = False, safeguard_warmup: bool = False,
            maximize: bool = False, grad_scale: Scalar = None,
            found_inf: Scalar = None) -> None:
    """Prodigy in NumPy (prodigyopt 1.1, prodigyopt/prodigy.py, Prodigy.step, one param
    group); see :func:`adamkern.prodigy_`. Unlike the other references it rounds as the kernel
    does (fused multiply-adds, the sums of the d estimate in the kernel's order): d depends on
    p0 - p, a difference of close values, so one ULP of a param moves d far more than one ULP."""
    if _skipped(found_inf) or lr == 0.0:
        return
    beta1, beta2 = betas
    beta3 = math.sqrt(beta2) if beta3 is None else beta3
    d, d_max, d_numerator, k = (float(x) for x in group_scalars[:4])
    bias_correction = (((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1))
                       if use_bias_correction else 1.0)
    dlr = d * lr * bias_correction
    d_numerator *= beta3
    d_denom = 0.0
    tensors = list(_tensors(params, grads, exp_avgs, exp_avg_sqs, s, p0))
    for param, grad, exp_avg, exp_avg_sq, s_sum, start in tensors:
        t = param.dtype.type
        g = _unscaled(grad, grad_scale, maximize)
        if weight_decay != 0.0 and not decouple:
            g = _l2(g, param, weight_decay)
        travelled = (start - param).astype(np.float64).ravel()
        d_numerator += (d / d0) * dlr * _chunked_sum(g.astype(np.float64).ravel() * travelled)
        exp_avg[...] = _fma(g, d * (1 - beta1), exp_avg * t(beta1))
        exp_avg_sq[...] = _fma(t(d * d * (1 - beta2)) * g, g, exp_avg_sq * t(beta2))
        s_sum[...] = _fma(g, (d / d0) * (d if safeguard_warmup else dlr), s_sum * t(beta3))
        d_denom += _chunked_sum(np.abs(s_sum).astype(np.float64).ravel())
    if d_denom == 0.0:
        return
    d_hat = d_coef * d_numerator / d_denom
    if d == d0:
        d = max(d, d_hat)
    d_max = max(d_max, d_hat)
    d = min(d_max, d * growth_rate)
    group_scalars[:] = (d, d_max, d_numerator, k + 1, d_denom, d_hat)
    for param, _, exp_avg, exp_avg_sq, _, _ in tensors:
        t = param.dtype.type
        denom = np.sqrt(exp_avg_sq) + t(d * eps)
        if weight_decay != 0.0 and decouple:
            param[...] = _fma(param, -weight_decay * dlr, param)
        param += (t(-dlr) * exp_avg) / denom


def _norm(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """torch.norm of x (over axis, kept), rounded to x's dtype: squares summed in float64."""
    wide = x.astype(np.float64)
    total = np.sum(wide * wide, axis=axis, keepdims=axis is not None)
    return np.sqrt(total).astype(x.dtype)


def adafactor(params: Arrays, grads: Arrays, row_vars: Arrays | None, col_vars: Arrays | None,
              variances: Arrays | None, *, step: float | list[float], lr: float = 1e-2,
              beta2_decay: float = -0.8, eps: tuple[float | None, float] = (None, 1e-3),
              d: float = 1.0, weight_decay: float = 0.0, maximize: bool = False) -> None:
    """Adafactor in NumPy (torch/optim/_adafactor.py, _single_tensor_adafactor, line by
    line); see :func:`adamkern.adafactor_`."""
    params = as_list(params)
    count = len(params)

    def items(arrays):
        if arrays is None:
            return [None] * count
        return [arrays] if isinstance(arrays, np.ndarray) else list(arrays)

    steps = list(step) if isinstance(step, (list, tuple)) else [step] * count
    for param, grad, row_var, col_var, variance, step_i in zip(
            params, items(grads), items(row_vars), items(col_vars), items(variances), steps):
        if param.size == 0:  # torch would divide by its size; the kernel leaves it alone
            continue
        t = param.dtype.type
        g = np.negative(grad) if maximize else grad
        eps1 = float(np.finfo(param.dtype).eps) if eps[0] is None else eps[0]
        step_f = float(step_i)
        one_minus_beta2 = step_f ** beta2_decay
        rho = min(lr, 1 / (step_f ** 0.5))
        alpha = max(eps[1], float(_norm(param)) / (param.size ** 0.5)) * rho
        if weight_decay != 0:
            param *= t(1 - lr * weight_decay)
        if g.ndim > 1:
            row_mean = np.square(_norm(g, axis=-1)) / t(g.shape[-1])
            _lerp(row_var, row_mean, one_minus_beta2)
            col_mean = np.square(_norm(g, axis=-2)) / t(g.shape[-2])
            _lerp(col_var, col_mean, one_minus_beta2)
            row_var_mean = (np.sum(row_var.astype(np.float64), axis=-2, keepdims=True)
                            .astype(param.dtype) / t(g.shape[-2]))
            estimate = row_var * col_var / np.maximum(row_var_mean, t(eps1))
        else:
            _lerp(variance, g * g, one_minus_beta2)
            estimate = variance.copy()
        update = (t(1) / np.sqrt(np.maximum(estimate, t(eps1 * eps1)))) * g
        denom = max(1.0, float(_norm(update)) / ((update.size ** 0.5) * d))
        param += t(-alpha / denom) * update
