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

from adamkern._reference_common import (_cautious_scale, _l2, _lerp, _moment, _optax_apply,
                                        _skipped, _tensors, _unscaled, _weight_decay)
from adamkern._reference_newest import (adafactor, adamw_schedulefree, ademamix, adopt,
                                        prodigy, sgd_schedulefree)
from adamkern.ops import Arrays, Scalar

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


def _torch_weight_decay(grad: np.ndarray, param: np.ndarray, weight_decay: float, lr: float,
                        decoupled: bool) -> np.ndarray:
    """weight_decay as torch's Adam, NAdam and RAdam apply it: L2 (returns the gradient plus the
    decay), or decoupled (the param times ``1 - lr * wd`` in place; returns the gradient)."""
    if weight_decay == 0.0:
        return grad
    if decoupled:
        param *= param.dtype.type(1.0 - lr * weight_decay)
        return grad
    return _l2(grad, param, weight_decay)


def _adam_moments(exp_avg: np.ndarray, exp_avg_sq: np.ndarray, g: np.ndarray, beta1: float,
                  beta2: float, epsilon_hat: bool) -> None:
    """Adam's moments in place: torch's lerp and decay, or Keras' form with ``epsilon_hat``."""
    t = exp_avg.dtype.type
    if epsilon_hat:  # Keras: m += (g - m) * (1 - beta1); v += (g^2 - v) * (1 - beta2)
        exp_avg += (g - exp_avg) * t(1.0 - beta1)
        exp_avg_sq += (g * g - exp_avg_sq) * t(1.0 - beta2)
    else:
        _lerp(exp_avg, g, 1.0 - beta1)
        exp_avg_sq *= t(beta2)
        exp_avg_sq += t(1.0 - beta2) * g * g


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
        g = _torch_weight_decay(_unscaled(grad, grad_scale, maximize), param, weight_decay, lr,
                                decoupled_weight_decay)
        _adam_moments(exp_avg, exp_avg_sq, g, beta1, beta2, epsilon_hat)
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
        g = _torch_weight_decay(_unscaled(grad, grad_scale, maximize), param, weight_decay, lr,
                                decoupled_weight_decay)
        _adam_moments(exp_avg, exp_avg_sq, g, beta1, beta2, False)
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
        g = _torch_weight_decay(_unscaled(grad, grad_scale, maximize), param, weight_decay, lr,
                                decoupled_weight_decay)
        _adam_moments(exp_avg, exp_avg_sq, g, beta1, beta2, False)
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
        avg = (np.sqrt(second_moment + t(eps)) if eps_inside_sqrt
               else np.sqrt(second_moment) + t(eps))
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
