"""adamkern: fused SIMD + OpenMP kernels for Adam-family optimizer updates, in place on NumPy.

>>> import numpy as np, adamkern
>>> p, g, m, v = (np.ones(4, np.float32) for _ in range(4))
>>> adamkern.adamw_(p, g, m, v, step=1, lr=1e-3)
"""

from __future__ import annotations

from adamkern import reference
from adamkern._runtime import cpu_info, get_num_threads, set_isa, set_num_threads
from adamkern.ops import adam_, adamw_

__all__ = [
    "adam_",
    "adamw_",
    "cpu_info",
    "get_num_threads",
    "reference",
    "set_isa",
    "set_num_threads",
]

__version__ = "0.1.0"
