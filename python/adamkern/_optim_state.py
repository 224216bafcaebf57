"""The state of an :mod:`adamkern.optim` optimizer: the buffers its op takes (derived from the
op's C++ description), allocated in the optimizer's storage mode (``state_dtype``), each buffer
kind of a group in one 64-byte-aligned allocation (see memory.empty_like_all)."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamkern import lowp, memory


@dataclass(frozen=True)
class StateBuffer:
    """One state buffer: its name in ``opt.state[i]`` (torch's), the op's keyword, its initial
    value (a number or the name of a hyperparameter), when the options use it, and whether it
    can be negative (the 8-bit map: signed for first moments, unsigned for second moments)."""

    name: str
    keyword: str
    init: float | str = 0.0
    needed: Callable[[dict], bool] = lambda group: True
    signed: bool = True
    # one value per row of the param (shape (rows,): rows_of), not one per element
    per_row: bool = False
    # whether a checkpoint may hold it for a group with these options (a buffer of another
    # layout of the same optimizer may not: Adagrad's row-wise sums)
    allowed: Callable[[dict], bool] = lambda group: True

    def shape(self, param: np.ndarray) -> tuple[int, ...]:
        """The buffer's shape for ``param``."""
        return (rows_of(param),) if self.per_row else param.shape


def rows_of(param: np.ndarray) -> int:
    """The rows of a param as a row-wise step sees it: its first dimension (1 for a 0-d
    param), each row the rest of its elements."""
    return param.shape[0] if param.ndim else 1


def allocate(params: list[np.ndarray], buffer: StateBuffer, init: float,
             state_dtype: str) -> list[np.ndarray | lowp.Blockwise8]:
    """One buffer kind for ``params`` in ``state_dtype``, in one allocation, filled with
    ``init``."""
    if state_dtype == "int8":
        codes = memory.empty_like_all(params, np.uint8)
        # a constant block: absmax = |init| and every code that of 1 (or of 0)
        values = lowp.dynamic_map(buffer.signed)
        code = int(np.argmin(np.abs(values - (1.0 if init else 0.0))))
        out = []
        for c in codes:
            c.fill(code)
            absmax = memory.empty(lowp.Blockwise8.blocks(c.size), np.float32)
            absmax.fill(abs(init))
            out.append(lowp.Blockwise8(c, absmax, buffer.signed))
        return out
    dtype = (np.float64 if params and params[0].dtype == np.float64
             else lowp.bfloat16() if state_dtype == "bfloat16" else np.float32)
    shaped = [np.broadcast_to(p.dtype.type(0), buffer.shape(p)) for p in params]
    arrays = memory.empty_like_all(shaped if buffer.per_row else params, dtype)
    for a in arrays:
        a.fill(init)
    return arrays


def add_missing(states: list[dict[str, Any]], group: dict, buffers: tuple[StateBuffer, ...],
                state_dtype: str, master_weights: bool) -> bool:
    """Allocates the buffers the group's options need that its params' ``states`` lack (and
    the float32 master copies of the params with ``master_weights``); True if any buffer was
    new."""
    params = group["params"]
    created = False
    for buffer in buffers:
        if not buffer.needed(group) or all(map(operator.contains, states,
                                               itertools.repeat(buffer.name))):
            continue
        init = group[buffer.init] if isinstance(buffer.init, str) else buffer.init
        for state, array in zip(states, allocate(params, buffer, init, state_dtype)):
            state[buffer.name] = array
        created = True
    if master_weights and not all("master" in s for s in states):
        for state, param, master in zip(states, params,
                                        memory.empty_like_all(params, np.float32)):
            master[...] = param
            state["master"] = master
    return created
