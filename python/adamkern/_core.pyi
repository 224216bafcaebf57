"""Type stub of the compiled extension adamkern._core (keep in sync with cpp/bindings)."""

from typing import Any, Sequence, Union

import numpy as np

_Arrays = Union[np.ndarray, Sequence[np.ndarray]]
_Scalar = Union[float, np.ndarray, None]

def adam_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_sqs: _Arrays,
    max_exp_avg_sqs: _Arrays | None,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    epsilon_hat: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def adamax_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_infs: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def nadam_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_sqs: _Arrays,
    mu_product: np.ndarray,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    momentum_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def radam_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_sqs: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def rmsprop_(
    params: _Arrays,
    grads: _Arrays,
    square_avgs: _Arrays,
    momentum_buffers: _Arrays | None,
    grad_avgs: _Arrays | None,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
    eps_inside_sqrt: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def adagrad_(
    params: _Arrays,
    grads: _Arrays,
    state_sums: _Arrays,
    step: float,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
    eps_inside_sqrt: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def adadelta_(
    params: _Arrays,
    grads: _Arrays,
    square_avgs: _Arrays,
    acc_deltas: _Arrays,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def sgd_(
    params: _Arrays,
    grads: _Arrays,
    momentum_buffers: _Arrays | None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
    is_first_step: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def lion_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def adabelief_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_vars: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_root: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def lamb_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_sqs: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_root: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def adan_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_diffs: _Arrays,
    exp_avg_sqs: _Arrays,
    prev_grads: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    eps: float,
    eps_root: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def yogi_(
    params: _Arrays,
    grads: _Arrays,
    exp_avgs: _Arrays,
    exp_avg_sqs: _Arrays,
    step: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    eps_root: float,
    weight_decay: float,
    maximize: bool,
    grad_scale: _Scalar,
    found_inf: _Scalar,
    precision: tuple[Any, bool, int] | None = None,
) -> None: ...
def dynamic_map(signed: bool) -> np.ndarray: ...
def optimizer_options() -> dict[str, dict[str, Any]]: ...
def roofline_(params: _Arrays, grads: _Arrays, exp_avgs: _Arrays, exp_avg_sqs: _Arrays,
              master_params: _Arrays | None = ...) -> None: ...
def adam_kernel_seconds_(params: _Arrays, grads: _Arrays, exp_avgs: _Arrays, exp_avg_sqs: _Arrays,
                         repeats: int) -> list[float]: ...
def active_isa() -> str: ...
def available_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(num_threads: int) -> None: ...
def build_info() -> dict[str, Any]: ...

# The C++ schedules (a submodule; use adamkern.schedules, which documents every factory).
schedules: Any
