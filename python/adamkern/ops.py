"""Functional optimizer steps: fused, in place, one C++ call per call (however many tensors).

Names, defaults and formulas follow torch.optim where torch has the optimizer (adam_, adamw_,
adamax_, nadam_, radam_, rmsprop_, adagrad_, adadelta_, sgd_) and optax where it does not
(lion_, adabelief_, lamb_, adan_, yogi_); adopt_, ademamix_, the schedule-free ops and prodigy_
follow their authors' code (torch-adopt, ml-ademamix, schedulefree, prodigyopt). Each formula,
with its source, is in the header cpp/include/adamkern/math/<name>.hpp that implements it.

Every array argument is one ``numpy.ndarray`` or a list/tuple of them (or CPU ``torch.Tensor``
objects: contiguous, updated in place through a NumPy view as ``.numpy()`` makes, never copied;
one that is updated must not require grad); array ``i`` of every list has the shape of
``params[i]``; all arrays of a call share one dtype (float32 or float64; see
below for lower precision). All arguments are checked before anything is written: on error
(``TypeError`` for types and dtypes, ``ValueError`` for everything else) no array has changed.

State arrays are the caller's: allocate them once (``np.zeros_like(p)`` unless an op says
otherwise) and pass them back every step. ``step`` is the step count after increment (1 on the
first update), as torch's ``state['step']``. Every op takes ``grad_scale`` (the grads are
divided by it in place first, as AMP unscaling; rounded to float32 as torch's scale tensor) and
``found_inf`` (if nonzero, the step is skipped and nothing is written), and ``maximize``.

Lower precision (see :mod:`adamkern.lowp`): params (and their grads) may also be bfloat16
(``ml_dtypes.bfloat16``) or float16, and the state arrays of float32/bfloat16/float16 params
float32, bfloat16 or :class:`adamkern.Blockwise8` (block-wise 8-bit); every update computes in
float32 and rounds each buffer back once, in one pass over memory. Every op also takes
``master_params`` (float32 copies of bfloat16/float16 params: read and updated instead of the
params, which receive the rounded result), ``rounding`` (``"nearest"``, to nearest even, or
``"stochastic"`` for bfloat16 writes) and ``seed`` (the random bits of stochastic rounding are
a hash of ``seed``, ``step``, the tensor's index and the element's index; ops without a
``step`` need a new ``seed`` every call, as the optimizer objects pass).
"""

from __future__ import annotations

import numpy as np

from adamkern import _core  # noqa: F401 - the host kernels (adamkern.ops._core)
from adamkern._opcall import (Arrays, Scalar, as_list, is_real,  # noqa: F401 - as adamkern.ops's
                              backend, float_betas, kernel_op, precision_options)
from adamkern._ops_newest import (adafactor_, adamw_schedulefree_, ademamix_, adopt_, prodigy_,
                                  schedulefree_eval_, schedulefree_train_, sgd_schedulefree_)

__all__ = [
    "adafactor_",
    "adabelief_",
    "adadelta_",
    "adagrad_",
    "adam_",
    "adamax_",
    "adamw_",
    "adamw_schedulefree_",
    "ademamix_",
    "adan_",
    "adopt_",
    "lamb_",
    "lion_",
    "nadam_",
    "prodigy_",
    "radam_",
    "rmsprop_",
    "schedulefree_eval_",
    "schedulefree_train_",
    "sgd_",
    "sgd_schedulefree_",
    "yogi_",
]


@kernel_op()
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
    epsilon_hat: bool = False,
    cautious: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Adam step, in place on ``params``, ``exp_avgs``, ``exp_avg_sqs`` (and
    ``max_exp_avg_sqs`` with ``amsgrad``); bitwise identical to
    ``torch.optim.Adam(fused=True)`` on CPU.

    ``weight_decay`` is L2 (added to the gradient) unless ``decoupled_weight_decay`` (AdamW).
    ``epsilon_hat``: Keras' form, ``eps`` added to ``sqrt(v)`` before bias correction
    (``p -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``); not torch's.
    ``cautious``: Liang et al.'s cautious update (C-Optim's ``c_adamw.py``): the components
    where the new first moment and the gradient disagree in sign are dropped, the others
    scaled by ``1 / max(kept / n, 1e-3)`` per tensor (a read-only count pass before the update).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adam_(p, g, m, v, step=1, lr=0.1)   # p is now 0.9 (first step: lr * sign(g))
    """


@kernel_op("adam_", decoupled_weight_decay=True, op="adamw_")
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
    epsilon_hat: bool = False,
    cautious: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One AdamW step: :func:`adam_` with decoupled weight decay (default 1e-2), as
    ``torch.optim.AdamW(fused=True)``; ``cautious`` as there.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adamw_(p, g, m, v, step=1, lr=0.1)   # p is now 0.999 - 0.1
    """


@kernel_op()
def adamax_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_infs: Arrays,
    *,
    step: float,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Adamax step (``torch.optim.Adamax``): Adam with the infinity norm,
    ``u = max(beta2 * u, |g| + eps)`` (eps inside the max), ``p -= lr / (1 - beta1**t) * m / u``.

    ``decoupled_weight_decay=True`` decays the param instead of adding ``weight_decay * p`` to
    the gradient: ``p -= lr * weight_decay * p`` before the update (Keras' and optimi's
    decoupled weight decay; torch's Adamax has only the L2 form).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, u = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adamax_(p, g, m, u, step=1)
    """


@kernel_op()
def nadam_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    mu_product: np.ndarray,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One NAdam step (``torch.optim.NAdam``), with torch's momentum schedule
    ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))``.

    ``mu_product`` is torch's ``state['mu_product']``: a one-element float32 (as torch keeps
    it) or float64 array, ``1.0`` before the first step, multiplied by ``mu_t`` in place by
    every step (in its own precision), shared by all tensors of the call.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> mu_product = np.ones(1, np.float32)
    >>> adamkern.nadam_(p, g, m, v, step=1, mu_product=mu_product)
    """


@kernel_op()
def radam_(
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
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One RAdam step (``torch.optim.RAdam``): Adam's moments, with the variance
    rectification applied once ``rho_t > 5`` (plain bias-corrected momentum before).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.radam_(p, g, m, v, step=1)
    """


@kernel_op()
def rmsprop_(
    params: Arrays,
    grads: Arrays,
    square_avgs: Arrays,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    momentum: float = 0.0,
    centered: bool = False,
    momentum_buffers: Arrays | None = None,
    grad_avgs: Arrays | None = None,
    maximize: bool = False,
    eps_inside_sqrt: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One RMSprop step (``torch.optim.RMSprop``). ``momentum > 0`` needs
    ``momentum_buffers``, ``centered`` needs ``grad_avgs`` (both zero-initialised).
    ``eps_inside_sqrt``: Keras' form ``sqrt(square_avg + eps)`` instead of
    ``sqrt(square_avg) + eps``.

    ``decoupled_weight_decay=True`` decays the param instead of adding ``weight_decay * p`` to
    the gradient: ``p -= lr * weight_decay * p`` before the update (Keras' and optimi's
    decoupled weight decay; torch's RMSprop has only the L2 form).

    >>> p, g, s = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.rmsprop_(p, g, s)
    """


@kernel_op()
def adagrad_(
    params: Arrays,
    grads: Arrays,
    state_sums: Arrays,
    *,
    step: float,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    eps: float = 1e-10,
    maximize: bool = False,
    eps_inside_sqrt: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Adagrad step, bitwise identical to ``torch.optim.Adagrad(fused=True)``.
    ``state_sums`` start at torch's ``initial_accumulator_value`` (default 0:
    ``np.full_like(p, initial_accumulator_value)``); ``lr`` decays as
    ``lr / (1 + (step - 1) * lr_decay)``. ``eps_inside_sqrt``: Keras' form
    ``sqrt(state_sum + eps)`` (Keras also starts the sums at 0.1).

    ``decoupled_weight_decay=True`` decays the param instead of adding ``weight_decay * p`` to
    the gradient: ``p -= clr * weight_decay * p`` before the update, with ``clr`` the decayed
    lr above (Keras' and optimi's decoupled weight decay; torch's Adagrad has only the L2 form).

    >>> p, g, s = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adagrad_(p, g, s, step=1)
    """


@kernel_op()
def adadelta_(
    params: Arrays,
    grads: Arrays,
    square_avgs: Arrays,
    acc_deltas: Arrays,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Adadelta step (``torch.optim.Adadelta``), eps inside both square roots:
    ``delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g``.

    ``decoupled_weight_decay=True`` decays the param instead of adding ``weight_decay * p`` to
    the gradient: ``p -= lr * weight_decay * p`` before the update (Keras' and optimi's
    decoupled weight decay; torch's Adadelta has only the L2 form).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> s, d = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adadelta_(p, g, s, d)
    """


@kernel_op()
def sgd_(
    params: Arrays,
    grads: Arrays,
    momentum_buffers: Arrays | None = None,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    nesterov: bool = False,
    maximize: bool = False,
    is_first_step: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One SGD step, bitwise identical to ``torch.optim.SGD(fused=True)``. With
    ``momentum != 0`` it needs ``momentum_buffers``; on the first step pass
    ``is_first_step=True`` and the buffers are set to the gradient (torch creates them from it)
    instead of being decayed, so their initial contents do not matter.

    ``decoupled_weight_decay=True`` decays the param instead of adding ``weight_decay * p`` to
    the gradient: ``p -= lr * weight_decay * p`` before the update (Keras' and optimi's
    decoupled weight decay; torch's SGD has only the L2 form).

    >>> p, g, b = np.ones(3, np.float32), np.ones(3, np.float32), np.empty(3, np.float32)
    >>> adamkern.sgd_(p, g, b, lr=0.1, momentum=0.9, is_first_step=True)
    """


@kernel_op()
def lion_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.99),
    weight_decay: float = 1e-3,
    maximize: bool = False,
    cautious: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Lion step (``optax.lion``): ``p -= lr * (sign(b1*m + (1-b1)*g) + wd*p)``, then
    ``m = b2*m + (1-b2)*g``. optax's defaults (it has no default lr; 1e-4 here, the paper's
    advice of 3-10x below AdamW's).
    ``cautious``: Liang et al.'s cautious Lion (C-Optim's ``c_lion.py``): the sign step is
    dropped where it disagrees with the gradient, the rest scaled by ``n / (kept + 1)`` per
    tensor (a read-only count pass before the update).

    >>> p, g, m = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.lion_(p, g, m)
    """


@kernel_op()
def adabelief_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_vars: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One AdaBelief step (``optax.adabelief``): the second moment tracks
    ``(g - m)**2`` (with the new ``m``), plus ``eps_root``, kept in ``exp_avg_vars``.
    ``weight_decay`` is optax's decoupled form ``p -= lr * wd * p`` (0: none, as optax).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, s = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.adabelief_(p, g, m, s, step=1)
    """


@kernel_op()
def lamb_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One LAMB step (``optax.lamb``): the Adam direction plus ``weight_decay * p``, scaled
    per tensor by the trust ratio ``||p|| / ||r||`` (1 when either norm is 0). The norms are
    computed in the same call with a deterministic reduction (the same bits for any thread
    count and ISA), so the call reads the params twice.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.zeros(3, np.float32), np.zeros(3, np.float32)
    >>> adamkern.lamb_(p, g, m, v, step=1)
    """


@kernel_op()
def adan_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_diffs: Arrays,
    exp_avg_sqs: Arrays,
    prev_grads: Arrays,
    *,
    step: float,
    lr: float = 1e-3,
    betas: tuple[float, float, float] = (0.98, 0.92, 0.99),
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Adan step (``optax.adan``): moments of the gradient, of the gradient difference
    and of ``(g + (1 - b2) * diff)**2``. ``prev_grads`` holds the previous step's gradient
    (negated under ``maximize``); it is not read on step 1, where the difference is 0.

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, d, v, prev = (np.zeros(3, np.float32) for _ in range(4))
    >>> adamkern.adan_(p, g, m, d, v, prev, step=1)
    """


@kernel_op()
def yogi_(
    params: Arrays,
    grads: Arrays,
    exp_avgs: Arrays,
    exp_avg_sqs: Arrays,
    *,
    step: float,
    lr: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-3,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    maximize: bool = False,
    grad_scale: Scalar = None,
    found_inf: Scalar = None,
    master_params: Arrays | None = None,
    rounding: str = "nearest",
    seed: int = 0,
) -> None:
    """One Yogi step (``optax.yogi``): ``v -= (1 - b2) * sign(v - g**2) * g**2``. optax
    initialises both moments to 1e-6 (``np.full_like(p, 1e-6)``); lr 1e-2 is the paper's
    (optax has no default).

    >>> p, g = np.ones(3, np.float32), np.ones(3, np.float32)
    >>> m, v = np.full(3, 1e-6, np.float32), np.full(3, 1e-6, np.float32)
    >>> adamkern.yogi_(p, g, m, v, step=1)
    """
