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
    grad_scale: _Scalar,
    found_inf: _Scalar,
) -> None: ...
def roofline_(params: _Arrays, grads: _Arrays, exp_avgs: _Arrays, exp_avg_sqs: _Arrays) -> None: ...
def active_isa() -> str: ...
def available_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(num_threads: int) -> None: ...
def build_info() -> dict[str, Any]: ...
