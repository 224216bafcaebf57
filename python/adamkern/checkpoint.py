"""Checkpoints of :mod:`adamkern.optim` optimizers: ``state_dict`` as plain data, its
validation and loading (everything checked before anything changes), and the ``.npz`` file
format of ``save``/``load``.

A file holds ``__meta__`` (the JSON of the state dict without arrays) and one entry per state
array: ``state/<param index>/<buffer>`` (bfloat16 buffers as ``<buffer>.bfloat16``, their bits
as uint16; 8-bit buffers as ``<buffer>.codes`` and ``<buffer>.absmax``) and
``group_state/<group index>/<name>``.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np

from adamkern import lowp, memory

__all__ = ["load", "load_state_dict", "save", "state_dict"]




def state_dict(opt: Any) -> dict[str, Any]:
    """Plain data: the optimizer's kind, step count, groups (hyperparameters that are
    numbers; callables recorded as their repr and not restored) and state arrays (copies
    are not made: save or copy them before stepping again)."""
    groups = []
    for group in opt.param_groups:
        entry = {"num_params": len(group["params"])}
        for key in opt.defaults:
            value = group[key]
            entry[key] = ({"callable": repr(value)} if callable(value)
                          else list(value) if isinstance(value, tuple) else value)
        groups.append(entry)
    return {"optimizer": type(opt).__name__, "step_count": opt.step_count,
            "max_grad_norm": opt.max_grad_norm, "max_grad_value": opt.max_grad_value,
            "state_dtype": opt.state_dtype, "master_weights": opt.master_weights,
            "param_groups": groups, "state": [dict(s) for s in opt.state],
            "group_state": [dict(s) for s in opt.group_state]}


def load_state_dict(opt: Any, state_dict: dict[str, Any]) -> None:
    """Restores :meth:`state_dict` output. Raises ValueError, and changes nothing, if it
    comes from another kind of optimizer or does not fit these params."""
    from adamkern import optim  # optim imports this module

    kind = state_dict.get("optimizer")
    if kind != type(opt).__name__:
        raise ValueError(f"state_dict is from optimizer {kind!r}, not {type(opt).__name__}")
    groups = state_dict["param_groups"]
    if [g["num_params"] for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        raise ValueError("state_dict's param groups have "
                         f"{[g['num_params'] for g in groups]} params, this optimizer's "
                         f"{[len(g['params']) for g in opt.param_groups]}")
    params = opt.params
    saved = state_dict["state"]
    if len(saved) != len(params):
        raise ValueError(f"state_dict has state for {len(saved)} params, not {len(params)}")
    for key, mine in (("state_dtype", opt.state_dtype),
                      ("master_weights", opt.master_weights)):
        theirs = state_dict.get(key, type(mine)())
        theirs = theirs or ("float32" if key == "state_dtype" else False)
        if theirs != mine:
            raise ValueError(f"state_dict has {key}={theirs!r}, this optimizer {mine!r}")
    buffers = {b.name: b for b in opt._buffers}
    if opt.master_weights:
        buffers["master"] = optim._Buffer("master", "master_params")
    for i, (param, entry) in enumerate(zip(params, saved)):
        for name, value in entry.items():
            if name not in buffers:
                raise ValueError(f"state_dict state[{i}] has unknown buffer {name!r}")
            _check_saved(opt, f"state[{i}][{name!r}]", value, param, buffers[name])
    state = [{} for _ in params]
    for name, buffer in buffers.items():  # copies, allocated as _ensure_state does
        holders = [i for i, entry in enumerate(saved) if name in entry]
        if name == "master":
            fresh = memory.empty_like_all([params[i] for i in holders], np.float32)
        else:
            fresh = opt._allocate([params[i] for i in holders], buffer, 0.0)
        for i, target in zip(holders, fresh):
            value = saved[i][name]
            if isinstance(target, lowp.Blockwise8):
                target.codes[...] = value.codes
                target.absmax[...] = value.absmax
            else:
                target[...] = value
            state[i][name] = target
    group_state = [{k: np.array(v, copy=True) for k, v in g.items()}
                   for g in state_dict.get("group_state", [{} for _ in groups])]
    if len(group_state) != len(opt.param_groups):
        raise ValueError("state_dict's group_state does not match the param groups")
    # everything checked: now change
    for group, entry in zip(opt.param_groups, groups):
        for key in opt.defaults:
            value = entry.get(key)
            if value is None or isinstance(value, dict) or callable(group[key]):
                continue  # a callable in either is left as this optimizer has it
            group[key] = tuple(value) if isinstance(value, list) else value
    opt.state, opt.group_state = state, group_state
    opt.step_count = int(state_dict["step_count"])


def _check_saved(opt: Any, where: str, value: Any, param: np.ndarray, buffer: Any) -> None:
    """A saved state buffer against its param and this optimizer's state format."""
    if buffer.name == "master":
        expected = np.dtype(np.float32)
    elif opt.state_dtype == "int8":
        if not (isinstance(value, lowp.Blockwise8) and value.signed == buffer.signed
                and value.codes.dtype == np.uint8 and value.codes.shape == param.shape
                and value.absmax.shape == (lowp.Blockwise8.blocks(param.size),)):
            raise ValueError(f"state_dict {where} is not the blockwise 8-bit state of "
                             f"param {param.dtype} {param.shape}: {value!r}")
        return
    else:
        expected = np.dtype(np.float64 if param.dtype == np.float64 else
                            lowp.bfloat16() if opt.state_dtype == "bfloat16" else np.float32)
    array = np.asarray(value)
    if array.shape != param.shape or array.dtype != expected:
        raise ValueError(f"state_dict {where} is {array.dtype} {array.shape}; expected "
                         f"{expected} {param.shape}")


def save(opt: Any, path: str | os.PathLike) -> None:
    """Writes :meth:`state_dict` to ``path`` (.npz) atomically: a temp file in the same
    directory, flushed and fsynced, then renamed over ``path``, so a crash mid-save leaves
    the previous checkpoint intact."""
    sd = opt.state_dict()
    arrays = {}
    for i, entry in enumerate(sd.pop("state")):
        for name, a in entry.items():
            if isinstance(a, lowp.Blockwise8):
                arrays[f"state/{i}/{name}.codes"] = a.codes
                arrays[f"state/{i}/{name}.absmax"] = a.absmax
            elif a.dtype.name == "bfloat16":  # stored as its bits: .npz has no bfloat16
                arrays[f"state/{i}/{name}.bfloat16"] = a.view(np.uint16)
            else:
                arrays[f"state/{i}/{name}"] = a
    for g, entry in enumerate(sd.pop("group_state")):
        for name, a in entry.items():
            arrays[f"group_state/{g}/{name}"] = a
    meta = json.dumps(sd)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".adamkern-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.array(meta), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def load(opt: Any, path: str | os.PathLike) -> None:
    """Restores a checkpoint written by :meth:`save` (see :meth:`load_state_dict`)."""
    with np.load(path, allow_pickle=False) as data:
        sd = json.loads(str(data["__meta__"]))
        count = sum(g["num_params"] for g in sd["param_groups"])
        sd["state"] = [{} for _ in range(count)]
        sd["group_state"] = [{} for _ in sd["param_groups"]]
        for key in data.files:
            if key == "__meta__":
                continue
            kind, index, name = key.split("/")
            sd[kind][int(index)][name] = data[key]
    signed = {b.name: b.signed for b in opt._buffers}
    for entry in sd["state"]:
        for key in [k for k in entry if "." in k]:
            name, part = key.split(".")
            if part == "bfloat16":
                entry[name] = entry.pop(key).view(lowp.bfloat16())
            elif part == "codes":
                entry[name] = lowp.Blockwise8(entry.pop(key), entry.pop(f"{name}.absmax"),
                                              signed.get(name, True))
    load_state_dict(opt, sd)
