"""The newest members of the family among the functional ops (see :mod:`adamkern.ops`, which
exports them): ADOPT, AdEMAMix, Schedule-Free AdamW and SGD (with the moves between their y and
x sequences), Prodigy, following their authors' code (torch-adopt, ml-ademamix, schedulefree,
prodigyopt), and Adafactor, torch 2.13's (its own C++ entry point)."""

from __future__ import annotations

import numpy as np

from adamkern._opcall import (Arrays, Scalar, as_list, is_real, backend, float_betas,
                              kernel_op, precision_options)

__all__ = ["adafactor_", "ademamix_", "adamw_schedulefree_", "adopt_", "prodigy_",
           "schedulefree_eval_", "schedulefree_train_", "sgd_schedulefree_"]


@kernel_op()
def adopt_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.9999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    clip: bool = True,
    maximize: bool = False,
    cautious: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One ADOPT step (Taniguchi et al., 2024), as its authors' ``adopt.ADOPT`` (torch-adopt
    0.1.0) on CPU: the gradient is normalised by the second moment *before* it sees that
    gradient, ``n = g / max(sqrt(v), eps)``, clipped to ``±(step - 1)**0.25``
    (``clip=False``: torch-adopt's ``clip_lambda=None``), then ``m = lerp(m, n, 1 - beta1)``,
    ``p -= lr * m`` and ``v = beta2*v + (1-beta2)*g**2``. Step 1 only adds ``g**2`` to ``v``
    (params and ``exp_avgs`` are not changed). ``weight_decay`` is L2 (added to the gradient)
    unless ``decoupled_weight_decay`` (torch-adopt's ``decouple``: ``p -= lr * wd * p``).
    Bitwise torch-adopt's with a correctly rounded sqrt; torch's CPU sqrt on x86 (MKL's) is
    not, and torch-adopt as it runs is a few ULP away (docs/optimizers.md).
    ``cautious``: the cautious mask on the new first moment from step 2, as :func:`adam_`'s.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adopt_(p, g, m, v, step=1)   # v is now g**2; p is unchanged
    >>> adamkern.adopt_(p, g, m, v, step=2)   # p is now 1 - 1e-3 * 0.1
    """


@kernel_op()
def ademamix_(
    params: Arrays,
    grads: Arrays,
    exp_avg_fasts: Arrays,
    exp_avg_slows: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
    alpha: float = 2.0,
    beta3_warmup: float = 0,
    alpha_warmup: float = 0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One AdEMAMix step (Pagliardini et al. 2024, the authors' PyTorch ``AdEMAMix``): Adam
    whose numerator mixes a slow EMA of the gradient (``betas[2]``) into the fast one,
    ``u = (m_fast / (1 - beta1**t) + alpha_t * m_slow) / (sqrt(v / (1 - beta2**t)) + eps)``,
    then ``p -= lr * (u + weight_decay * p)``. ``alpha_warmup`` / ``beta3_warmup`` steps (0:
    none, the authors' None) grow ``alpha`` linearly from 0 and the slow EMA's half-life
    linearly from ``beta1``'s to ``beta3``'s, as the paper recommends for long runs.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> fast, slow, v = (np.zeros(3, np.float32) for _ in range(3))
    >>> adamkern.ademamix_(p, g, fast, slow, v, step=1, alpha_warmup=100, beta3_warmup=100)
    """


def _schedulefree_weights(op: str, weight_sums: np.ndarray, step: Scalar, lr: Scalar,
                          warmup_steps: Scalar, r: Scalar, weight_lr_power: Scalar,
                          arrays: dict[str, Arrays | None] = {}
                          ) -> tuple[float, float, tuple[float, float]]:
    """The step's scheduled lr, ckp1 and the next (lr_max, weight_sum), in double as the
    schedulefree package computes them (its group['scheduled_lr'], ckp1, 'lr_max' and
    'weight_sum'), from ``weight_sums = [lr_max, weight_sum]`` (-1 and 0 at the start), which
    must not share memory with any of the call's ``arrays``."""
    what = ("a writable, contiguous, aligned float64 array of 2 ([lr_max, weight_sum], "
            "[-1.0, 0.0] at the start)")
    if not (isinstance(weight_sums, np.ndarray) and weight_sums.dtype == np.float64):
        raise TypeError(f"{op}: weight_sums must be {what}, got {weight_sums!r}")
    if not (weight_sums.shape == (2,) and weight_sums.flags.writeable
            and weight_sums.flags.c_contiguous and weight_sums.flags.aligned):
        raise ValueError(f"{op}: weight_sums must be {what}, got {weight_sums!r}")
    for name, given in arrays.items():  # what is not a list of arrays the kernel refuses
        listed = [given] if isinstance(given, np.ndarray) else \
            given if isinstance(given, (list, tuple)) else []
        for i, array in enumerate(listed):
            if isinstance(array, np.ndarray) and np.may_share_memory(array, weight_sums):
                raise ValueError(f"{op}: weight_sums overlaps {name}[{i}]")
    for name, value in (("step", step), ("lr", lr), ("warmup_steps", warmup_steps), ("r", r),
                        ("weight_lr_power", weight_lr_power)):
        if not is_real(value):
            raise TypeError(f"{op}: {name} must be a real number, got {value!r} "
                            f"({type(value).__name__})")
        if not np.isfinite(float(value)):
            raise ValueError(f"{op}: {name} must be a finite number, got {value!r}")
    for name, value in (("lr", lr), ("weight_lr_power", weight_lr_power)):
        if float(value) < 0:
            raise ValueError(f"{op}: {name} must be a finite number >= 0, got {value!r}")
    for name, value, least in (("step", step, 1), ("warmup_steps", warmup_steps, 0)):
        if float(value) < least or float(value) != int(float(value)):
            raise ValueError(f"{op}: {name} must be a whole number >= {least}, got {value!r}")
    step, lr = float(step), float(lr)
    scheduled = lr * (step / float(warmup_steps) if step - 1 < warmup_steps else 1.0)
    lr_max = max(scheduled, float(weight_sums[0]))
    weight = step ** float(r) * lr_max ** float(weight_lr_power)
    weight_sum = float(weight_sums[1]) + weight
    ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
    return scheduled, ckp1, (lr_max, weight_sum)


def _took_the_step(found_inf: Scalar) -> bool:
    return found_inf is None or float(np.asarray(found_inf).item()) == 0.0


def adamw_schedulefree_(
    params: Arrays,
    grads: Arrays,
    zs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    weight_sums: np.ndarray,
    lr: float = 0.0025,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    warmup_steps: float = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    maximize: bool = False,
    is_first_step: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Schedule-Free AdamW step (Defazio et al. 2024), as ``schedulefree.AdamWScheduleFree``
    1.4 in train mode: ``params`` are its y sequence, ``zs`` its z (set to the params on the
    call with ``is_first_step=True``; their contents before do not matter), ``exp_avg_sqs``
    start at 0. ``weight_sums`` is the package's running ``[lr_max, weight_sum]`` of the group, a
    float64 array of 2 (``np.array([-1.0, 0.0])`` at the start), updated in place when the step
    is taken. ``warmup_steps`` scales ``lr`` linearly; the average's weight is
    ``step**r * lr_max**weight_lr_power``. No lr schedule is needed: evaluate at x with
    :func:`schedulefree_eval_` (and go back with :func:`schedulefree_train_`).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> z, v, sums = np.empty(3, np.float32), np.zeros(3, np.float32), np.array([-1.0, 0.0])
    >>> adamkern.adamw_schedulefree_(p, g, z, v, step=1, weight_sums=sums, is_first_step=True)
    """
    beta1, beta2 = float_betas(betas)
    scheduled, ckp1, sums = _schedulefree_weights(
        "adamw_schedulefree_", weight_sums, step, lr, warmup_steps, r, weight_lr_power,
        {"params": params, "grads": grads, "zs": zs, "exp_avg_sqs": exp_avg_sqs,
         "master_params": master_params})
    backend(params).adamw_schedulefree_(
        params=params, grads=grads, zs=zs, exp_avg_sqs=exp_avg_sqs, step=step, lr=scheduled,
        beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, ckp1=ckp1,
        maximize=maximize, is_first_step=is_first_step, grad_scale=grad_scale,
        found_inf=found_inf, precision=precision_options(master_params, rounding, seed, step))
    if _took_the_step(found_inf):
        weight_sums[:] = sums


def sgd_schedulefree_(
    params: Arrays,
    grads: Arrays,
    zs: Arrays,
    *,
    step: float,
    weight_sums: np.ndarray,
    lr: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    warmup_steps: float = 0,
    r: float = 0.0,
    weight_lr_power: float = 2.0,
    maximize: bool = False,
    is_first_step: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Schedule-Free SGD step, as ``schedulefree.SGDScheduleFree`` 1.4 in train mode (see
    :func:`adamw_schedulefree_` for ``zs``, ``weight_sums``, the warmup and the weights).

    >>> p, g, z = np.ones(3, np.float32), np.ones(3, np.float32), np.empty(3, np.float32)
    >>> sums = np.array([-1.0, 0.0])
    >>> adamkern.sgd_schedulefree_(p, g, z, step=1, weight_sums=sums, is_first_step=True)
    """
    scheduled, ckp1, sums = _schedulefree_weights(
        "sgd_schedulefree_", weight_sums, step, lr, warmup_steps, r, weight_lr_power,
        {"params": params, "grads": grads, "zs": zs, "master_params": master_params})
    backend(params).sgd_schedulefree_(
        params=params, grads=grads, zs=zs, lr=scheduled, momentum=momentum,
        weight_decay=weight_decay, ckp1=ckp1, maximize=maximize, is_first_step=is_first_step,
        grad_scale=grad_scale, found_inf=found_inf,
        # the kernel takes no step: its rounding seed is the caller's, as sgd_'s
        precision=precision_options(master_params, rounding, seed, None))
    if _took_the_step(found_inf):
        weight_sums[:] = sums


def _schedulefree_move(op: str, params: Arrays, zs: Arrays, weight: float) -> None:
    params, zs = as_list(params), as_list(zs)
    if len(params) != len(zs):
        raise ValueError(f"{op}: {len(params)} params but {len(zs)} zs")
    for i, (p, z) in enumerate(zip(params, zs)):
        if not (isinstance(p, np.ndarray) and isinstance(z, np.ndarray)):
            raise TypeError(f"{op}: params[{i}] and zs[{i}] must be numpy arrays")
        if p.shape != z.shape or p.dtype != z.dtype or p.dtype.kind != "f":
            raise ValueError(f"{op}: zs[{i}] ({z.dtype}{list(z.shape)}) must match params[{i}] "
                             f"({p.dtype}{list(p.shape)}), a float array")
        if not p.flags.writeable:
            raise ValueError(f"{op}: params[{i}] must be writable")
    for p, z in zip(params, zs):
        # torch's p.lerp_(z, weight) in its two-sided form, each fma in float64 (exact products
        # of float32; within an ULP for float64)
        wide = np.float64 if p.dtype == np.float32 else p.dtype.type
        start, end = p.astype(wide), z.astype(wide)
        w = p.dtype.type(weight)
        if abs(w) < 0.5:
            p[...] = start + wide(w) * (end - start).astype(p.dtype)
        else:
            p[...] = end - wide(1 - w) * (end - start).astype(p.dtype)


def schedulefree_eval_(params: Arrays, zs: Arrays, *, beta1: float = 0.9) -> None:
    """Moves the params from the training sequence y to the averaged x where the model is
    evaluated (and checkpointed): ``p = lerp(p, z, 1 - 1/beta1)``, as the schedulefree
    optimizers' ``eval()`` (``beta1`` is SGD's ``momentum``). :func:`schedulefree_train_`
    moves them back."""
    _schedulefree_move("schedulefree_eval_", params, zs, 1.0 - 1.0 / beta1)


def schedulefree_train_(params: Arrays, zs: Arrays, *, beta1: float = 0.9) -> None:
    """Moves the params from x back to y before training: ``p = lerp(p, z, 1 - beta1)``, as
    the schedulefree optimizers' ``train()``."""
    _schedulefree_move("schedulefree_train_", params, zs, 1.0 - beta1)


def prodigy_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    s: Arrays,
    p0: Arrays,
    *,
    group_scalars: np.ndarray,
    lr: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = float("inf"),
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Prodigy step (Mishchenko and Defazio, 2024) over one param group, as its authors'
    ``prodigyopt.Prodigy`` 1.1: Adam with the step size ``d * lr``, where ``d`` is estimated
    from the distance travelled since the initial params ``p0`` (``beta3`` defaults to
    ``sqrt(beta2)``). Two passes over memory; the global sums behind ``d`` are reduced
    deterministically (the same bits for any thread count and ISA).

    ``group_scalars`` is the group's state that prodigyopt keeps in its param group: a float64
    array of 6 values ``(d, d_max, d_numerator, k, d_denom, d_hat)``, ``(d0, d0, 0, 0, 0, 0)``
    before the first step, read and updated in place. ``s`` starts at zeros, ``p0`` as a copy
    of the params, ``exp_avgs`` and ``exp_avg_sqs`` at zeros. A call whose ``s`` sum to zero
    (all grads zero, or ``lr=0``) updates the moments but not the params or the scalars, as
    prodigyopt. ``weight_decay`` is decoupled (``decouple=True``, the default) or L2.

    >>> p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
    >>> m, v, s = np.zeros(3, np.float32), np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> p0 = p.copy()
    >>> scalars = np.array([1e-6, 1e-6, 0.0, 0.0, 0.0, 0.0])
    >>> adamkern.prodigy_(p, g, m, v, s, p0, group_scalars=scalars)   # p is now 1 - 3.2e-6
    >>> float(scalars[3])   # k: one step done; d is still d0 (p had not moved yet)
    1.0
    """
    beta1, beta2 = float_betas(betas)
    backend(params).prodigy_(
        params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, s=s, p0=p0,
        group_scalars=group_scalars, lr=lr, beta1=beta1, beta2=beta2,
        beta3=float("nan") if beta3 is None else beta3, eps=eps, weight_decay=weight_decay,
        d0=d0, d_coef=d_coef, growth_rate=growth_rate, decouple=decouple,
        use_bias_correction=use_bias_correction, safeguard_warmup=safeguard_warmup,
        maximize=maximize, grad_scale=grad_scale, found_inf=found_inf,
        precision=precision_options(master_params, rounding, seed, None))


def _state_list(arrays: Arrays | None, count: int, name: str) -> list:
    """A state argument of adafactor_ as one item per param; None items (and None for the
    whole list) stand for the state a param of that layout does not keep."""
    if arrays is None:
        return [None] * count
    items = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
    if len(items) != count:
        raise ValueError(f"adafactor_: {name} has {len(items)} items but params has {count}")
    return items


def adafactor_(
    params: Arrays,
    grads: Arrays,
    row_vars: Arrays | None,
    col_vars: Arrays | None,
    variances: Arrays | None,
    *,
    step: float | list[float],
    lr: float = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    """One Adafactor step (Shazeer & Stern, 2018) as torch 2.13's ``torch.optim.Adafactor``
    (its single-tensor path). A param with two or more dimensions keeps the factors of its
    last two dimensions, ``row_vars[i]`` of shape ``(..., R, 1)`` and ``col_vars[i]`` of shape
    ``(..., 1, C)`` (``variances[i]`` is None); a vector keeps ``variances[i]`` of its shape
    (``row_vars[i]`` and ``col_vars[i]`` are None). ``step`` is each param's step count after
    the increment (torch's ``state['step']``): one number for all, or one per param.
    ``eps = (eps1, eps2)``: eps1 None is the params' machine epsilon. The step::

        alpha = max(eps2, rms(p)) * min(lr, step**-0.5)
        p *= 1 - lr * weight_decay
        row_var, col_var = lerp(..., mean of g**2 over each row / column, step**beta2_decay)
        u = g / sqrt(max(row_var * col_var / max(mean(row_var), eps1), eps1**2))
        p -= alpha / max(1, rms(u) / d) * u

    Every sum is accumulated in double in a fixed order (same bits for any thread count and
    ISA); torch sums in float32 in its own order, so results agree within a few ULP
    (docs/optimizers.md). All params of a call share one dtype (float32 or float64). CUDA
    arrays run the same passes on the device (adamkern.cuda).

    >>> p, g = np.ones((2, 3)), np.ones((2, 3))
    >>> row_var, col_var = np.zeros((2, 1)), np.zeros((1, 3))
    >>> adamkern.adafactor_(p, g, row_var, col_var, None, step=1)   # p is now 1 + 1e-2 * -1
    """
    params_list = as_list(params)
    count = len(params_list)
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise TypeError(f"adafactor_: eps must be a pair (eps1 or None, eps2), got {eps!r}")
    if isinstance(step, (list, tuple, np.ndarray)) and np.ndim(step) == 1:
        steps = [float(s) for s in step]
    elif is_real(step):
        steps = [float(step)] * count
    else:
        raise TypeError(f"adafactor_: step must be a number or one per param, got {step!r}")
    backend(params).adafactor_(
        params=params_list, grads=_state_list(grads, count, "grads"),
        row_vars=_state_list(row_vars, count, "row_vars"),
        col_vars=_state_list(col_vars, count, "col_vars"),
        variances=_state_list(variances, count, "variances"), steps=steps, lr=lr,
        beta2_decay=beta2_decay, eps1=eps[0], eps2=eps[1], d=d, weight_decay=weight_decay,
        maximize=maximize)
