"""The NumPy references of the newest members (see :mod:`adamkern.reference`, which exports
them): ADOPT, AdEMAMix, Schedule-Free AdamW and SGD, Prodigy and Adafactor, each as its source
runs it."""

from __future__ import annotations

import math

import numpy as np

from adamkern._ops_newest import _schedulefree_weights
from adamkern._reference_common import (_cautious_scale, _chunked_sum, _fma, _l2, _lerp,
                                        _skipped, _tensors, _unscaled)
from adamkern.ops import Arrays, Scalar, as_list

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
