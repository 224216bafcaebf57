"""adamkern: fused SIMD + OpenMP kernels for Adam-family optimizer updates, in place on NumPy.

The functional ops (``adam_``, ``adamw_``, ... one per optimizer: ``adamkern.ops.__all__``) live
in :mod:`adamkern.ops` and are exported here; their NumPy references in
:mod:`adamkern.reference`.

>>> import numpy as np, adamkern
>>> p, g, m, v = (np.ones(4, np.float32) for _ in range(4))
>>> adamkern.adamw_(p, g, m, v, step=1, lr=1e-3)
"""

from __future__ import annotations

from adamkern import lowp, ops, optim, reference, registry, schedules
from adamkern import history, tuning  # the learning-rate tools
from adamkern import sparse  # row-sparse steps for embedding tables
from adamkern._runtime import cpu_info, get_num_threads, set_isa, set_num_threads
from adamkern.grads import LossScaler, all_finite, clip_grad_norm_, clip_grad_value_, grad_norm
from adamkern.lowp import Blockwise8
from adamkern.memory import empty, flatten, zeros
from adamkern.ops import *  # noqa: F403 - every functional op (adamkern.ops.__all__)

__all__ = [
    "Blockwise8",
    "LossScaler",
    "all_finite",
    "clip_grad_norm_",
    "clip_grad_value_",
    "empty",
    "flatten",
    "grad_norm",
    "lowp",
    "ops",
    "optim",
    "registry",
    "zeros",
    *ops.__all__,
    "cpu_info",
    "get_num_threads",
    "reference",
    "schedules",
    "sparse",
    "set_isa",
    "set_num_threads",
    "history",
    "tuning",
]

__version__ = "0.1.0"
