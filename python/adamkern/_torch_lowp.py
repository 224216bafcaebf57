"""adamkern's storage modes on :mod:`adamkern.torch`'s optimizers, as each param group keeps
them (``state_dtype``, ``master_weights``, ``rounding``, ``seed``): the state entries of a
buffer in each mode, as torch tensors (8-bit state as ``<name>_codes``/``<name>_absmax``, so
that no torch optimizer reads codes as values), a buffer brought from one format to another
(a state dict saved in another mode, or by torch), and :func:`to_torch_state_dict`, the state
dict in torch's own layout.

>>> opt = adamkern.torch.AdamW(model.parameters(), state_dtype="int8")
>>> torch.optim.AdamW(model.parameters()).load_state_dict(to_torch_state_dict(opt.state_dict()))
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from adamkern import lowp, registry
from adamkern._torch_tensors import contiguous_strides, flat, is_dense, same_order

__all__ = ["DEFAULT_MODE", "MODE_DEFAULTS", "Mode", "buffer_names", "call_seed",
           "check_codes_order", "convert_buffer", "mode_of", "new_buffer", "new_master",
           "other_format", "to_torch_state_dict"]

# The keys each param group holds (the constructor keywords): torch keeps the state in the
# param's dtype (float32 for master weights), rounds to nearest, and has no seed.
MODE_DEFAULTS = {"state_dtype": None, "master_weights": False, "rounding": "nearest", "seed": 0}
_FLOAT_STATE = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_CODES, _ABSMAX = "_codes", "_absmax"


class Mode(NamedTuple):
    """A param group's storage mode, checked."""

    state_dtype: str | None  # None: the param's dtype, as torch (float32 with master weights)
    master_weights: bool
    stochastic: bool
    seed: int

    @property
    def blockwise(self) -> bool:
        return self.state_dtype == "int8"

    def float_dtype(self, param_dtype: torch.dtype) -> torch.dtype:
        """The dtype of a buffer kept as floats in this mode, for a param of ``param_dtype``."""
        if self.state_dtype is None:
            return torch.float32 if self.master_weights else param_dtype
        return _FLOAT_STATE[self.state_dtype]


DEFAULT_MODE = Mode(None, False, False, 0)


@functools.lru_cache(maxsize=256)
def _mode(state_dtype: Any, master_weights: Any, rounding: Any, seed: Any) -> Mode:
    if state_dtype is not None:
        if isinstance(state_dtype, torch.dtype):
            state_dtype = str(state_dtype).removeprefix("torch.")
        state_dtype = lowp.state_dtype_name(state_dtype)
    if not isinstance(master_weights, (bool, np.bool_)):
        raise TypeError(f"master_weights must be True or False, got {master_weights!r}")
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return Mode(state_dtype, bool(master_weights), rounding == "stochastic",
                lowp.call_seed(seed, None))


def mode_of(group: dict) -> Mode:
    """The storage mode of a param group (a group without the keys, as torch saves one, is in
    torch's mode). Raises ValueError (TypeError for master_weights that is not a bool) for a
    value that is not a mode."""
    values = [group.get(key, default) for key, default in MODE_DEFAULTS.items()]
    try:
        hash(tuple(values))
    except TypeError:  # not a valid value either: checked without the cache, to say which
        return _mode.__wrapped__(*values)
    return _mode(*values)


def call_seed(mode: Mode, group_index: int, count: float) -> int:
    """The seed of one call's stochastic rounding: adamkern.optim's stream (the seed, the
    group's index, the step count after this step), here the count of the call's params."""
    return lowp.call_seed(lowp.call_seed(mode.seed, group_index), int(count))


# -- buffers --------------------------------------------------------------------------------


@functools.cache
def _signed() -> dict[str, bool]:
    """Whether each state buffer of the family (by torch's name) can be negative: the 8-bit
    map it is quantized with (one answer per name, across every optimizer)."""
    return {b.name: b.signed for name in registry.names() for b in registry.describe(name).state}


def buffer_names(name: str, mode: Mode) -> tuple[str, ...]:
    """The state entries of buffer ``name`` in ``mode``."""
    return (name + _CODES, name + _ABSMAX) if mode.blockwise else (name,)


def _kernel_strides(param: torch.Tensor) -> tuple[int, ...]:
    """The order the kernels step a param's elements in: its memory's when it is dense, else
    that of a contiguous copy (see reconcile_layouts)."""
    return param.stride() if is_dense(param) else contiguous_strides(param.shape)


def _empty(param: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty_strided(param.shape, _kernel_strides(param), dtype=dtype,
                               device=param.device)


def _blockwise_entries(name: str, values: torch.Tensor, param: torch.Tensor,
                       signed: bool) -> dict[str, torch.Tensor]:
    """``values`` (of the param's shape) quantized block by block in the order the kernels
    step the param: codes in the param's layout and one float32 absmax per 256 elements."""
    ordered = _empty(param, torch.float32).copy_(values)
    quantized = lowp.Blockwise8.quantize(flat(ordered).cpu().numpy(), signed)
    codes = _empty(param, torch.uint8)
    flat(codes).copy_(torch.from_numpy(quantized.codes))
    return {name + _CODES: codes,
            name + _ABSMAX: torch.from_numpy(quantized.absmax).to(param.device)}


def new_buffer(param: torch.Tensor, name: str, value: float,
               mode: Mode) -> dict[str, torch.Tensor]:
    """The entries of a new buffer ``name`` of ``param``, every element ``value``."""
    if mode.blockwise:  # a constant: every block's absmax |value|, every code one code
        constant = lowp.Blockwise8.quantize(np.full(1, value, np.float32), _signed()[name])
        blocks = lowp.Blockwise8.blocks(param.numel())
        return {name + _CODES: _empty(param, torch.uint8).fill_(int(constant.codes[0])),
                name + _ABSMAX: torch.full((blocks,), float(constant.absmax[0]),
                                           dtype=torch.float32, device=param.device)}
    return {name: torch.full_like(param, value, dtype=mode.float_dtype(param.dtype),
                                  memory_format=torch.preserve_format)}


def new_master(param: torch.Tensor) -> torch.Tensor:
    """The float32 master copy of a bfloat16/float16 param, in its layout."""
    return torch.empty_like(param, dtype=torch.float32,
                            memory_format=torch.preserve_format).copy_(param.detach())


def _values(state: dict, name: str) -> torch.Tensor | None:
    """Buffer ``name`` as floats, whichever format ``state`` holds it in (None: absent)."""
    if name in state:
        return state[name]
    codes = state.get(name + _CODES)
    if codes is None:
        return None
    absmax = state[name + _ABSMAX].detach().cpu().numpy()
    decoded = lowp.Blockwise8(flat(codes).cpu().numpy(), absmax, _signed()[name]).dequantize()
    values = torch.empty_like(codes, dtype=torch.float32)
    flat(values).copy_(torch.from_numpy(decoded))
    return values


def _in_mode(state: dict, name: str, param: torch.Tensor, mode: Mode) -> bool:
    """Whether buffer ``name`` is held in ``mode``'s format (8-bit codes in the order the
    kernels step the param: the blocks are runs of that order)."""
    if mode.blockwise:
        codes = state.get(name + _CODES)
        return (codes is not None and name not in state and codes.shape == param.shape
                and same_order(codes, _kernel_strides(param)))
    value = state.get(name)
    return (value is not None and name + _CODES not in state
            and value.dtype == mode.float_dtype(param.dtype))


def convert_buffer(state: dict, name: str, param: torch.Tensor, mode: Mode) -> None:
    """Brings buffer ``name`` of a param's ``state``, if it has it, to ``mode``'s format (a
    state saved in another mode or by torch.optim): float dtypes are cast (to nearest even),
    8-bit blocks decoded or quantized. A buffer already in that format is left as it is."""
    values = _values(state, name)
    if values is None or _in_mode(state, name, param, mode):
        return
    if tuple(values.shape) != tuple(param.shape):
        raise ValueError(f"state {name!r} has shape {tuple(values.shape)}; expected "
                         f"{tuple(param.shape)}, the param's")
    for key in (name, name + _CODES, name + _ABSMAX):
        state.pop(key, None)
    if mode.blockwise:
        state.update(_blockwise_entries(name, values, param, _signed()[name]))
    else:
        state[name] = torch.empty_like(param, dtype=mode.float_dtype(param.dtype),
                                       memory_format=torch.preserve_format).copy_(values)


def other_format(state: dict, name: str, mode: Mode) -> str | None:
    """The entry holding buffer ``name`` in another format than ``mode``'s, if any."""
    for key in (name + _CODES,) if not mode.blockwise else (name,):
        if key in state:
            return key
    return None


def check_codes_order(codes: torch.Tensor, param: torch.Tensor, what: str) -> None:
    """8-bit codes must lie in the order the kernels step their param (a copy in another
    order would pair elements with the wrong blocks' absmax)."""
    if not same_order(codes, _kernel_strides(param)):
        raise ValueError(f"{what} lies in memory in another order than its param steps in (the "
                         "param's layout changed since the state was made); 8-bit blocks are "
                         "runs of that order: state_dict() and load_state_dict() lay it out "
                         "again")


# -- torch's layout -------------------------------------------------------------------------


def to_torch_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The state dict of an :mod:`adamkern.torch` optimizer in any storage mode, in the layout
    of the ``torch.optim`` optimizer of the same name: every buffer as float32 under torch's
    name (8-bit buffers decoded, bfloat16/float16 ones widened exactly; torch casts them to
    its params' dtype when it loads them), without the float32 master copies and without the
    group keys of adamkern's modes. The input is not changed; tensors not converted are
    shared with it, as ``state_dict()`` shares them with the optimizer.

    >>> sd = adamkern.torch.to_torch_state_dict(opt.state_dict())   # opt: state_dtype="int8"
    >>> torch.optim.AdamW(model.parameters()).load_state_dict(sd)
    """
    groups = [{k: v for k, v in group.items() if k not in MODE_DEFAULTS}
              for group in state_dict["param_groups"]]
    state = {}
    for key, entries in state_dict["state"].items():
        converted = {}
        for name, value in entries.items():
            if name == "master" or (name.endswith(_ABSMAX)
                                    and name[:-len(_ABSMAX)] + _CODES in entries):
                continue
            if name.endswith(_CODES) and name[:-len(_CODES)] + _ABSMAX in entries:
                name = name[:-len(_CODES)]
                value = _values(entries, name)
            elif (isinstance(value, torch.Tensor)
                  and value.dtype in (torch.bfloat16, torch.float16)):
                value = value.float()
            converted[name] = value
        state[key] = converted
    return {**state_dict, "state": state, "param_groups": groups}
