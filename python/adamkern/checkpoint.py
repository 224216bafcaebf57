"""Checkpoints of :mod:`adamkern.optim` optimizers: ``state_dict`` as plain data, its
validation and loading (everything checked before anything changes), and the ``.npz`` file
format of ``save``/``load``.

A file holds ``__meta__`` (the JSON of the state dict without arrays, and ``num_entries``,
how many other entries there are), one entry per state array: ``state/<param
index>/<buffer>`` (bfloat16 buffers as ``<buffer>.bfloat16``, their bits as uint16; 8-bit
buffers as ``<buffer>.codes`` and ``<buffer>.absmax``) and ``group_state/<group
index>/<name>``, and, when saved with ``params=True``, one entry per param: ``params/<param
index>`` (a bfloat16 param as ``params/<index>.bfloat16``, its bits). Indices are plain
decimals (no sign, no leading zero); no other entry is valid.

>>> opt.save("checkpoint.npz", params=True)    # the params too: a full resume
>>> resumed.load("checkpoint.npz")      # ValueError, resumed unchanged, if it does not fit

What a checkpoint restores:

- the state, group state and step count; the params (in place, into the optimizer's own
  arrays) when the file has them, unless ``load(path, params=False)``;
- each group's hyperparameters. A callable (a schedule) cannot be saved, only its repr; one
  with ``state_dict()``/``load_state_dict()`` (``ReduceLROnPlateau``: its reduced lr, best
  value, bad-epoch and cooldown counters) has its state saved too, in the meta, and on load
  that state goes into the callable the optimizer holds at that place, which must be of the
  same kind (else ValueError). A plain schedule is a pure function of the step: the
  optimizer's own one stays, and the step count resumes it;
- ``max_grad_norm`` and ``max_grad_value``, checked as the constructor checks them. They
  change every update as the lr does, and the lr of each group is restored from the
  checkpoint: keeping the constructor's thresholds instead would resume another run than the
  one saved (or refusing a mismatch would ask of the code that resumes what is asked of no
  other hyperparameter). To resume with other thresholds, assign them after ``load``.
  ``state_dtype`` and ``master_weights`` are different: they are the format of the saved
  state, so another value is refused, not converted.

Not in a checkpoint: ``rounding`` and ``seed`` (constructor options; the stochastic rounding
of a step is drawn from them and the step count, so an optimizer built the same way resumes
it), ``history``, and a ``LossScaler`` (it has its own ``state_dict``).

Loading trusts nothing it is given: a file is read only as far as it matches what this
optimizer's own state would be (entry names, the meta's group sizes, each array header's
dtype and shape, each entry's size), so a crafted file costs no more memory or time than a
real checkpoint of the same optimizer; a value the optimizer's op would refuse at the next
step is refused at load. Every problem raises ValueError (a parser's own error chained as its
cause); only a path that cannot be opened raises ``open``'s own OSError (FileNotFoundError,
PermissionError, IsADirectoryError): that is about the path, not about a checkpoint. A
rejected load leaves everything as it was: params, state, group state, step count, groups,
clipping, and the callables' states (loaded into them for the checks, put back on failure).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import math
import os
import re
import reprlib
import secrets
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamkern import lowp, memory

__all__ = ["load", "load_state_dict", "save", "state_dict"]

_META = "__meta__"
_NUM_ENTRIES = "num_entries"  # in the meta of a file: how many array entries save wrote
# Entry names (without ".npy"): kind, index, buffer or group-state name (none for params),
# storage suffix (which suffixes a buffer or param has is _file_parts' to say).
_INDEX_AND_NAME = r"(0|[1-9][0-9]*)/([A-Za-z_][A-Za-z0-9_]*)"
_ENTRY_KEYS = {"state": re.compile(rf"state/{_INDEX_AND_NAME}(\.[a-z0-9]+)?"),
               "group_state": re.compile(rf"group_state/{_INDEX_AND_NAME}()"),
               "params": re.compile(r"params/(0|[1-9][0-9]*)()(\.[a-z0-9]+)?")}
# Bounds on what a file may make load read. An entry's data is bounded by what this optimizer
# expects; the .npy header (at most 64 KiB in format 1.0) comes on top.
_NPY_HEADER_BYTES = (1 << 16) + 16
_META_BYTES = 1 << 20  # the JSON as UTF-32: a real one is ~1 KiB per group
_META_BYTES_PER_GROUP = 1 << 16  # generous: a group holds a few numbers and callables' reprs
_GROUP_STATE_BYTES = 1 << 12  # per-group scalars (NAdam's mu_product)
# What malformed data makes the parsers raise (zipfile, zlib, numpy, json, int(), indexing);
# the error contract says ValueError.
_MALFORMED = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, KeyError, IndexError,
              TypeError, AttributeError, OSError, NotImplementedError, RuntimeError,
              OverflowError)
# Temp files of save: ".adamkern-<pid>-<random hex>.<target name, cut>.tmp" (pid and target
# let a later save tell its own stale files from live ones; the cut keeps the name short).
_TEMPORARY = re.compile(r"\.adamkern-([0-9]+)-[0-9a-f]+\.(.*)\.tmp", re.DOTALL)
_TEMPORARY_TARGET_CHARS = 50


# -- state_dict --------------------------------------------------------------------------------


def state_dict(opt: Any, *, params: bool = False) -> dict[str, Any]:
    """Plain data: the optimizer's kind, step count, clipping, groups (hyperparameters as
    Python numbers; callables as their repr, with their ``state_dict()`` where they have one)
    and state arrays, and with ``params=True`` the params (arrays are not copied: save or copy
    them before stepping again)."""
    groups = [{"num_params": len(group["params"]),
               **{key: _plain(group[key]) for key in opt.defaults}}
              for group in opt.param_groups]
    sd = {"optimizer": type(opt).__name__, "step_count": opt.step_count,
          **{key: _plain(getattr(opt, key)) for key in _CLIPPING},
          "state_dtype": opt.state_dtype, "master_weights": opt.master_weights,
          "param_groups": groups, "state": [dict(s) for s in opt.state],
          "group_state": [dict(s) for s in opt.group_state]}
    if params:
        sd["params"] = opt.params
    return sd


_CLIPPING = ("max_grad_norm", "max_grad_value")


def _plain(value: Any) -> Any:
    """A hyperparameter as JSON can hold it. Every step takes NumPy scalars and arrays as well
    as Python numbers (and converts them to double), so they are saved as the Python number
    of the same value: a resumed run steps with the same bits. A callable is saved as its
    repr, and a stateful one (see _is_stateful) with its kind and state."""
    if callable(value):
        if _is_stateful(value):
            return {"callable": repr(value), "type": _kind(value), "state": value.state_dict()}
        return {"callable": repr(value)}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _is_stateful(value: Any) -> bool:
    """A callable whose state can be saved and restored (ReduceLROnPlateau, ...)."""
    return (callable(getattr(value, "state_dict", None))
            and callable(getattr(value, "load_state_dict", None)))


def _kind(value: Any) -> str:
    """What a saved callable's state may be restored into: its class, by full name."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


# -- load_state_dict ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """What a load sets, every part checked (see _checked)."""

    step_count: int
    hyperparameters: list[dict[str, Any]]  # per group, as the group takes them
    trial_groups: list[dict]  # copies of the groups holding them (see _trial_group)
    callable_states: list[tuple[Any, Any, str]]  # (callable, saved state, where)
    clipping: dict[str, Any]
    group_state: list[dict[str, np.ndarray]]
    state: list[dict[str, Any]]
    params: list[np.ndarray] | None  # None: the params stay as they are


def load_state_dict(opt: Any, state_dict: dict[str, Any], *, params: bool = True) -> None:
    """Restores :func:`state_dict` output (its params too, if it has them, unless
    ``params=False``). Everything is checked before anything changes: if it comes from
    another kind of optimizer, does not fit these params or holds a value the optimizer's op
    refuses (hyperparameters, group state, step count), a clipping threshold the constructor
    refuses, or the state of a callable the optimizer does not hold (or that refuses it),
    raises ValueError and the optimizer and its callables are as they were."""
    _load(opt, state_dict, params, copy_params=True)


def _load(opt: Any, sd: Any, params: bool, copy_params: bool) -> None:
    """load_state_dict; ``copy_params=False`` where the saved params are already arrays of
    their own (read from a file), which are then copied into the params without a copy in
    between."""
    with _malformed("state_dict"):
        plan = _checked(opt, sd, params, copy_params)
    with _callables_loaded(plan.callable_states):  # put back if anything below fails
        with _malformed("state_dict"):
            _dry_run(opt, plan.trial_groups, plan.group_state, plan.step_count)
        state = _state_copies(opt, plan.state)  # its errors (memory) are not the state dict's
        for param, value in zip(opt.params, plan.params or ()):
            param[...] = value
        for group, values in zip(opt.param_groups, plan.hyperparameters):
            group.update(values)  # as their copies took them
        opt.state, opt.group_state, opt.step_count = state, plan.group_state, plan.step_count
        for key, value in plan.clipping.items():
            setattr(opt, key, value)


def _checked(opt: Any, sd: Any, params: bool, copy_params: bool) -> _Plan:
    """What loading ``sd`` sets, checked without touching the optimizer or its callables (the
    values that depend on the callables' states are checked by _dry_run once they have
    them)."""
    step_count = _check_header(opt, sd)
    loads: dict[int, tuple[Any, Any, str]] = {}
    hyperparameters = [_loaded_hyperparameters(opt, index, entry, loads)
                       for index, entry in enumerate(sd["param_groups"])]
    trial_groups = [_trial_group(group, values, index) for index, (group, values)
                    in enumerate(zip(opt.param_groups, hyperparameters))]
    return _Plan(step_count, hyperparameters, trial_groups, list(loads.values()),
                 _loaded_clipping(opt, sd), _loaded_group_state(opt, sd.get("group_state")),
                 _checked_state(opt, sd.get("state")),
                 _checked_params(opt, sd.get("params"), copy_params) if params else None)


def _check_header(opt: Any, sd: Any) -> int:
    """The checks that need no array (``load`` makes them before it reads any): kind, state
    format, group sizes; returns the step count."""
    _require(sd, dict, "state_dict")
    kind = sd.get("optimizer")
    if kind != type(opt).__name__:
        raise ValueError(f"state_dict is from optimizer {reprlib.repr(kind)}, not "
                         f"{type(opt).__name__}")
    for key, mine in (("state_dtype", opt.state_dtype),
                      ("master_weights", opt.master_weights)):
        theirs = sd.get(key, type(mine)())  # absent from files of older versions
        theirs = theirs or ("float32" if key == "state_dtype" else False)
        if theirs != mine:
            raise ValueError(f"state_dict has {key}={reprlib.repr(theirs)}, this optimizer "
                             f"{mine!r}")
    groups = _require(sd.get("param_groups"), (list, tuple), "state_dict['param_groups']")
    if len(groups) != len(opt.param_groups):
        raise ValueError(f"state_dict has {len(groups)} param groups, this optimizer "
                         f"{len(opt.param_groups)}")
    for index, (entry, group) in enumerate(zip(groups, opt.param_groups)):
        count = _require(entry, dict, f"state_dict param_groups[{index}]").get("num_params")
        if not _is_count(count) or count != len(group["params"]):
            raise ValueError(f"state_dict param_groups[{index}] has num_params "
                             f"{reprlib.repr(count)}, this optimizer's {len(group['params'])}")
    step_count = sd.get("step_count")
    if not _is_count(step_count):
        raise ValueError("state_dict step_count must be a non-negative integer, got "
                         f"{reprlib.repr(step_count)}")
    return int(step_count)


def _is_count(value: Any) -> bool:
    """A non-negative Python or NumPy integer (not a bool, not a float however round)."""
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            and value >= 0)


def _loaded_hyperparameters(opt: Any, index: int, entry: dict,
                            loads: dict[int, tuple[Any, Any, str]]) -> dict[str, Any]:
    """The values group ``index`` takes from its saved ``entry`` (ranges are the op's to check,
    see _dry_run); the saved states of its callables are added to ``loads``."""
    group, values = opt.param_groups[index], {}
    for key, saved in entry.items():
        if key == "num_params":
            continue
        if key not in opt.defaults:
            raise ValueError(f"state_dict param_groups[{index}] has unknown hyperparameter "
                             f"{reprlib.repr(key)}; {type(opt).__name__} takes "
                             f"{sorted(opt.defaults)}")
        values[key] = _restored(_plain(saved), group[key], f"param_groups[{index}][{key!r}]",
                                loads)
    return values


def _restored(saved: Any, current: Any, where: str,
              loads: dict[int, tuple[Any, Any, str]]) -> Any:
    """The value a hyperparameter takes from its saved (plain) form. Callables are not saved,
    only their repr: where either side has one (betas entries too), this optimizer's own
    value stays; a saved state goes into it (see _stateful_load)."""
    if isinstance(saved, dict) and "state" in saved:
        _stateful_load(saved, current, where, loads)
        return current
    if callable(current) or (isinstance(saved, dict) and set(saved) == {"callable"}):
        return current
    if isinstance(saved, list):
        currents = (current if isinstance(current, (tuple, list)) and len(current) == len(saved)
                    else (None,) * len(saved))
        return tuple(_restored(s, c, f"{where}[{k}]", loads)
                     for k, (s, c) in enumerate(zip(saved, currents)))
    if not isinstance(saved, (bool, int, float)):
        raise ValueError(f"state_dict {where} must be a number, a bool or a list of them, got "
                         f"{reprlib.repr(saved)}")
    return saved


def _stateful_load(saved: dict, current: Any, where: str,
                   loads: dict[int, tuple[Any, Any, str]]) -> None:
    """Adds to ``loads`` the saved state of a stateful callable (see _plain), for the callable
    the optimizer holds at the same place, which must be of the kind saved. One callable at
    several places (an lr shared by the groups) is loaded once, and must have been saved with
    one state."""
    if set(saved) != {"callable", "type", "state"} or not isinstance(saved["type"], str):
        raise ValueError(f"state_dict {where} must be a saved callable (callable, type, state), "
                         f"got {reprlib.repr(saved)}")
    if _kind(current) != saved["type"] or not _is_stateful(current):
        raise ValueError(f"state_dict {where} holds the state of a {saved['type'][:200]!r}"
                         f" ({reprlib.repr(saved['callable'])}); this optimizer has "
                         f"{reprlib.repr(current)} there: give it a callable of that kind to "
                         "take the state")
    earlier = loads.setdefault(id(current), (current, saved["state"], where))
    if earlier[1] is not saved["state"] and earlier[1] != saved["state"]:
        raise ValueError(f"state_dict {earlier[2]} and {where} are one callable here, saved "
                         "with two different states")


@contextlib.contextmanager
def _callables_loaded(loads: list[tuple[Any, Any, str]]) -> Iterator[None]:
    """Loads each saved state into its callable (a copy of the state: the callable does not
    share it with the state dict), for the checks that evaluate the callables and for good if
    the body completes. If a callable refuses its state (ValueError naming where it was
    saved) or the body raises, every callable gets back the state it had. Callables have no
    general way to be copied (ReduceLROnPlateau's C++ core cannot be), so they are loaded and
    put back rather than tried on copies."""
    before: list[tuple[Any, Any]] = []
    try:
        for target, state, where in loads:
            before.append((target, copy.deepcopy(target.state_dict())))
            try:
                target.load_state_dict(copy.deepcopy(state))
            except (ValueError, *_MALFORMED) as error:
                raise ValueError(f"state_dict {where}: {type(target).__name__} refuses its "
                                 f"saved state: {error}") from error
        yield
    except BaseException:
        for target, state in reversed(before):
            target.load_state_dict(state)
        raise


def _loaded_clipping(opt: Any, sd: dict) -> dict[str, Any]:
    """max_grad_norm and max_grad_value as saved (this optimizer's own where the state dict
    has none), checked by the constructor itself: a throwaway optimizer of this kind over one
    zero-size param is given them."""
    from adamkern import optim  # optim imports this module

    clipping = {key: _plain(sd[key]) if key in sd else getattr(opt, key) for key in _CLIPPING}
    try:
        optim.Optimizer.__init__(object.__new__(type(opt)), [np.empty(0, np.float32)],
                                 **clipping)
    except (TypeError, ValueError) as error:
        raise ValueError(f"state_dict's clipping is refused: {error}") from error
    return clipping


def _checked_params(opt: Any, saved: Any, copies: bool) -> list[np.ndarray] | None:
    """The saved params, each of its param's dtype and shape (never converted: a float64 array
    for a float32 param is refused, as every in-place argument is), and copies of them with
    ``copies`` (a saved array may share memory with another param than its own). Each param
    must be writable, as it was when it was given."""
    if saved is None:
        return None
    params = opt.params
    _require(saved, (list, tuple), "state_dict['params']")
    if len(saved) != len(params):
        raise ValueError(f"state_dict has {len(saved)} params, this optimizer {len(params)}")
    checked = []
    for i, (param, value) in enumerate(zip(params, saved)):
        value = np.asarray(value)
        if (value.dtype, value.shape) != (param.dtype, param.shape):
            raise ValueError(f"state_dict params[{i}] is {value.dtype} {value.shape}; expected "
                             f"{param.dtype} {param.shape}, as param {i}")
        if not param.flags.writeable:
            raise ValueError(f"param {i} is read-only now: its saved values cannot be restored")
        checked.append(np.array(value, copy=True) if copies else value)
    return checked


def _trial_group(group: dict, values: dict[str, Any], index: int) -> dict:
    """A copy of ``group`` with ``values`` assigned as load then assigns them to the group
    itself, and zero-size stand-ins of its params (see _dry_run). A param group may check
    what is assigned to it (optim's do): the copy raises what the group would, before
    anything changes."""
    trial = copy.copy(group)
    try:
        trial.update(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"state_dict param_groups[{index}]: {error}") from error
    trial["params"] = [np.empty(0, p.dtype) for p in group["params"][:1]]
    return trial


def _loaded_group_state(opt: Any, saved: Any) -> list[dict[str, np.ndarray]]:
    """Copies of the saved group state (checked by _dry_run)."""
    if saved is None:  # files of versions without group state
        return [{} for _ in opt.param_groups]
    _require(saved, (list, tuple), "state_dict['group_state']")
    if len(saved) != len(opt.param_groups):
        raise ValueError(f"state_dict has group_state for {len(saved)} groups, this optimizer "
                         f"has {len(opt.param_groups)}")
    return [{name: np.array(value, copy=True)
             for name, value in _require(entry, dict, f"state_dict group_state[{g}]").items()}
            for g, entry in enumerate(saved)]


def _dry_run(opt: Any, groups: list[dict], group_state: list[dict], step_count: int) -> None:
    """Checks loaded hyperparameters, group state and step count exactly as a step would, so
    no rule is written twice: a shallow copy of the optimizer holding the trial ``groups``
    (loaded values, zero-size stand-ins of the params), the loaded group state and step count
    prepares a step, and the op validates each group's call with found_inf=1 (every argument
    checked, nothing written). A group-state entry that the optimizer does not pass to its op
    is unknown."""
    shadow = copy.copy(opt)
    shadow.param_groups = groups
    shadow.state = [{} for _ in shadow.params]
    shadow.group_state = [dict(entry) for entry in group_state]
    shadow.step_count = step_count
    op = type(opt)._op
    try:
        prepared = shadow._prepared_groups([np.empty_like(p) for p in shadow.params])
        for arguments in prepared:
            op(**arguments, found_inf=1.0)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"state_dict's hyperparameters, group state or step_count are refused "
                         f"by {op.__name__}: {error}") from error
    for index, (entry, arguments) in enumerate(zip(group_state, prepared)):
        for name, value in entry.items():
            if arguments.get(name) is not value:
                raise ValueError(f"state_dict group_state[{index}] has unknown entry "
                                 f"{reprlib.repr(name)}")


def _checked_state(opt: Any, saved: Any) -> list[dict[str, Any]]:
    """The saved state buffers, each checked against its param and the state format (as
    arrays, or lowp.Blockwise8)."""
    params, buffers = opt.params, _known_buffers(opt)
    _require(saved, (list, tuple), "state_dict['state']")
    if len(saved) != len(params):
        raise ValueError(f"state_dict has state for {len(saved)} params, not {len(params)}")
    checked: list[dict[str, Any]] = [{} for _ in params]
    for i, (param, entry) in enumerate(zip(params, saved)):
        for name, value in _require(entry, dict, f"state_dict state[{i}]").items():
            if name not in buffers:
                raise ValueError(f"state_dict state[{i}] has unknown buffer "
                                 f"{reprlib.repr(name)}")
            checked[i][name] = _check_saved(opt, f"state[{i}][{name!r}]", value, param,
                                            buffers[name])
    _check_whole_groups(opt, checked)
    return checked


def _check_whole_groups(opt: Any, state: list[dict[str, Any]]) -> None:
    """Each buffer is held by every param of a group or by none: a group's params are stepped
    in one call, whose first step (SGD's momentum, for one) is the whole call's; state for only
    some of them would restart the others'."""
    first = 0
    for g, group in enumerate(opt.param_groups):
        entries = state[first:first + len(group["params"])]
        first += len(group["params"])
        for name in {name for entry in entries for name in entry}:
            missing = [first - len(entries) + i for i, e in enumerate(entries) if name not in e]
            if missing:
                raise ValueError(f"state_dict has {name!r} for some params of param_groups[{g}] "
                                 f"but not for state{missing}: a group's state is all or none")


def _state_copies(opt: Any, saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of checked state buffers, allocated as the optimizer allocates its own (each
    buffer kind in one aligned allocation), bit for bit."""
    params = opt.params
    state: list[dict[str, Any]] = [{} for _ in params]
    for name, buffer in _known_buffers(opt).items():
        holders = [i for i, entry in enumerate(saved) if name in entry]
        if name == "master":
            fresh = memory.empty_like_all([params[i] for i in holders], np.float32)
        else:
            fresh = opt._allocate([params[i] for i in holders], buffer, 0.0)
        for i, target in zip(holders, fresh):
            for part, value in _encode(saved[i][name]).items():
                _encode(target)[part][...] = value
            state[i][name] = target
    return state


def _known_buffers(opt: Any) -> dict[str, Any]:
    """The optimizer's state buffers by name (``master`` with master weights)."""
    from adamkern import optim  # optim imports this module

    buffers = {b.name: b for b in opt._buffers}
    if opt.master_weights:
        buffers["master"] = optim._Buffer("master", "master_params")
    return buffers


def _check_saved(opt: Any, where: str, value: Any, param: np.ndarray, buffer: Any) -> Any:
    """A saved state buffer checked against its param and this optimizer's state format;
    returns it as an array (or lowp.Blockwise8)."""
    dtype = _state_dtype(opt, param, buffer.name)
    expected = _file_parts(dtype, param.shape)
    if not isinstance(value, lowp.Blockwise8):
        value = np.asarray(value)
    parts = _encode(value)
    if (parts.keys() != expected.keys()
            or any((a.dtype, a.shape) != expected[k] for k, a in parts.items())
            or (isinstance(value, lowp.Blockwise8) and value.signed != buffer.signed)):
        kind = "the blockwise 8-bit state" if dtype is None else f"{dtype} {param.shape}"
        shown = (repr(value) if isinstance(value, lowp.Blockwise8)
                 else f"{value.dtype} {value.shape}")
        raise ValueError(f"state_dict {where} is {shown}; expected {kind} of param "
                         f"{param.dtype} {param.shape}")
    return value


def _state_dtype(opt: Any, param: np.ndarray, name: str) -> np.dtype | None:
    """The dtype of state buffer ``name`` of ``param`` (None: lowp.Blockwise8)."""
    if name == "master":
        return np.dtype(np.float32)
    if opt.state_dtype == "int8":
        return None
    if param.dtype == np.float64:
        return np.dtype(np.float64)
    return lowp.bfloat16() if opt.state_dtype == "bfloat16" else np.dtype(np.float32)


# -- the arrays of a state buffer or param in a file (.npz has no bfloat16, no Blockwise8) -----


def _file_parts(dtype: np.dtype | None, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Entry-name suffix -> (dtype, shape) of each array a buffer (or param) of ``dtype``
    (None: 8-bit) is stored as."""
    if dtype is None:
        return {".codes": (np.dtype(np.uint8), shape),
                ".absmax": (np.dtype(np.float32), (lowp.Blockwise8.blocks(math.prod(shape)),))}
    if dtype.name == "bfloat16":
        return {".bfloat16": (np.dtype(np.uint16), shape)}
    return {"": (dtype, shape)}


def _encode(value: Any) -> dict[str, np.ndarray]:
    """A state buffer (or param) as the arrays of _file_parts (views, not copies)."""
    if isinstance(value, lowp.Blockwise8):
        return {".codes": value.codes, ".absmax": value.absmax}
    if value.dtype.name == "bfloat16":
        return {".bfloat16": value.view(np.uint16)}
    return {"": value}


def _decode(parts: dict[str, np.ndarray], signed: bool) -> Any:
    """The state buffer that _encode gave ``parts``."""
    if ".codes" in parts:
        return lowp.Blockwise8(parts[".codes"], parts[".absmax"], signed)
    if ".bfloat16" in parts:
        return parts[".bfloat16"].view(lowp.bfloat16())
    return parts[""]


# -- save --------------------------------------------------------------------------------------


def save(opt: Any, path: str | os.PathLike, *, params: bool = False) -> None:
    """Writes :func:`state_dict` (with ``params=True``, the params too: what a full resume
    needs) to ``path`` (.npz) atomically: a temp file in the same directory, flushed and
    fsynced, renamed over ``path``, then the directory fsynced, so a crash or power loss
    leaves the previous checkpoint or the new one, whole. The file gets
    the mode any new file gets (0o666 less the umask). The temp file is named
    ``.adamkern-<pid>-<random>.<name of path>.tmp``: a save killed before its rename leaves
    it behind, and the next save of the same path removes those whose process is gone."""
    sd = state_dict(opt, params=params)
    arrays = {f"state/{i}/{name}{suffix}": part
              for i, entry in enumerate(sd.pop("state")) for name, value in entry.items()
              for suffix, part in _encode(value).items()}
    arrays.update({f"group_state/{g}/{name}": value
                   for g, entry in enumerate(sd.pop("group_state"))
                   for name, value in entry.items()})
    arrays.update({f"params/{i}{suffix}": part for i, param in enumerate(sd.pop("params", ()))
                   for suffix, part in _encode(param).items()})
    sd[_NUM_ENTRIES] = len(arrays)
    meta = json.dumps(sd)  # fails, before any file exists, on a value JSON cannot hold
    directory, target = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(directory, target)
    descriptor, temporary = _create_temporary(directory, target)
    try:
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, **{_META: np.array(meta)}, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _create_temporary(directory: str, target: str) -> tuple[int, str]:
    """A new, empty temp file for ``target``, created as ``open(..., "w")`` creates a file
    (mode 0o666 less the umask; mkstemp's 0o600 would stay on the checkpoint after the
    rename)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = (f".adamkern-{os.getpid()}-{secrets.token_hex(4)}."
                f"{target[:_TEMPORARY_TARGET_CHARS]}.tmp")
        temporary = os.path.join(directory, name)
        with contextlib.suppress(FileExistsError):  # that random name is taken: draw again
            return os.open(temporary, flags, 0o666), temporary
    raise FileExistsError(errno.EEXIST, "no free temp file name for a checkpoint", directory)


def _remove_stale_temporaries(directory: str, target: str) -> None:
    """Deletes the temp files that saves of ``target`` killed before their rename left behind
    (each the size of a checkpoint). Only this writer's names for the same target, and only
    where the writing process is gone: a save running now, in this process or another one,
    keeps its file. Best effort: what cannot be listed or removed stays."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = _TEMPORARY.fullmatch(name)
            if (match and match[2] == target[:_TEMPORARY_TARGET_CHARS]
                    and not _writer_alive(int(match[1]))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))


def _writer_alive(pid: int) -> bool:
    """Whether the process that named a temp file may still be writing it. Signal 0 probes
    without signalling; Windows has no such probe (its os.kill terminates), so there every
    writer counts as alive. On a file system shared between hosts, a pid names a process of
    this host only: two hosts saving the same path at once race each other anyway."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: it exists, as another user's process
        return True
    return True


def _fsync_directory(directory: str) -> None:
    """Makes the rename durable: until the directory itself is synced, a power loss may bring
    back the old name. Skipped where directories cannot be opened or synced (Windows, some
    file systems)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# -- load --------------------------------------------------------------------------------------


def load(opt: Any, path: str | os.PathLike, *, params: bool = True) -> None:
    """Restores a checkpoint written by :func:`save` (see :func:`load_state_dict`): the params
    too, in place, when the file has them (saved with ``params=True``), unless
    ``params=False`` (then its params entries are not read). A file that is not one
    (truncated, damaged, crafted) raises ValueError, the parser's error chained, and changes
    nothing; it is read only as far as it fits this optimizer, so it costs no more than a real
    checkpoint. A path that cannot be opened raises open()'s OSError (FileNotFoundError,
    ...)."""
    with open(path, "rb") as file, _malformed(f"checkpoint {os.fspath(path)!r}"):
        sd = _read(opt, file, params)
    _load(opt, sd, params, copy_params=False)  # the params read are arrays of their own


def _read(opt: Any, file: Any, params: bool) -> dict[str, Any]:
    """The state dict in ``file``, read in the order that bounds what a bad file can cost:
    entry names, then the meta (checked against the optimizer before any array is read), then
    each array's header before its data. Params come from their entries only (with
    ``params``), never from the meta."""
    with zipfile.ZipFile(file) as archive:
        meta_entry, entries = _entries(archive)
        sd = _read_meta(archive, meta_entry, len(opt.param_groups))
        _check_header(opt, sd)
        _check_entry_count(sd.pop(_NUM_ENTRIES, None), len(entries))
        sd.pop("params", None)
        sd["state"], sd["group_state"], saved_params = _read_arrays(opt, archive, entries,
                                                                    params)
        if saved_params is not None:
            sd["params"] = saved_params
    return sd


def _check_entry_count(saved: Any, found: int) -> None:
    """The number of array entries the meta was saved with (absent from files of older
    versions) against those found: a zip whose directory lost entries (damage the CRCs do not
    see) would otherwise load as a checkpoint without some of its state."""
    if saved is not None and (not _is_count(saved) or saved != found):
        raise ValueError(f"checkpoint has {found} array entries; its {_META} says "
                         f"{reprlib.repr(saved)} (entries lost: a damaged zip directory?)")


def _entries(archive: zipfile.ZipFile) -> tuple[zipfile.ZipInfo, list[tuple]]:
    """The meta entry and (kind, index, name, suffix, info) of every other entry; any name
    that is not canonical (see the module docstring), or comes twice, is an error."""
    meta, entries, seen = None, [], set()
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        parsed = [(kind, int(m[1]), m[2], m[3] or "", info)
                  for kind, pattern in _ENTRY_KEYS.items() if (m := pattern.fullmatch(key))]
        if key == info.filename or not (parsed or key == _META):
            raise ValueError(f"checkpoint has an unexpected entry {reprlib.repr(info.filename)}")
        if key in seen:
            raise ValueError(f"checkpoint has entry {info.filename!r} twice")
        seen.add(key)
        if key == _META:
            meta = info
        entries += parsed
    if meta is None:
        raise ValueError(f"checkpoint has no {_META} entry: not a checkpoint of adamkern.optim")
    return meta, entries


def _read_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, groups: int) -> dict:
    """The state dict's JSON (its size bounded by the number of groups before it is read)."""
    array = _read_npy(archive, info, _META_BYTES + _META_BYTES_PER_GROUP * groups,
                      lambda dtype, shape: dtype.kind == "U" and shape == (), "one string")
    try:
        sd = json.loads(str(array[()]))
    except ValueError as error:
        raise ValueError(f"checkpoint {_META} is not JSON: {error}") from error
    return _require(sd, dict, f"checkpoint {_META}")


def _read_arrays(opt: Any, archive: zipfile.ZipFile, entries: list[tuple],
                 params_wanted: bool) -> tuple[list[dict], list[dict], list | None]:
    """The state, group state and (if wanted and there) params entries, each checked against
    what this optimizer keeps before its data is read (group state is checked in full by
    load_state_dict)."""
    params, buffers = opt.params, _known_buffers(opt)
    parts: list[dict[str, dict]] = [{} for _ in params]  # buffer name -> suffix -> array
    param_parts: list[dict[str, np.ndarray]] = [{} for _ in params]  # suffix -> array
    group_state: list[dict[str, np.ndarray]] = [{} for _ in opt.param_groups]
    counts = {"state": len(params), "params": len(params), "group_state": len(group_state)}
    for kind, index, name, suffix, info in entries:
        where = f"checkpoint entry {info.filename!r}"
        if index >= counts[kind]:
            raise ValueError(f"{where}: there are {counts[kind]} "
                             f"{'param groups' if kind == 'group_state' else 'params'}")
        if kind == "group_state":
            group_state[index][name] = _read_npy(
                archive, info, _GROUP_STATE_BYTES,
                lambda dtype, shape: (dtype.kind in "biuf" and
                                      dtype.itemsize * math.prod(shape) <= _GROUP_STATE_BYTES),
                f"numbers of at most {_GROUP_STATE_BYTES} bytes")
        elif kind == "params":
            if params_wanted:
                param = params[index]
                param_parts[index][suffix] = _read_part(
                    archive, info, f"params/{index}", _file_parts(param.dtype, param.shape),
                    suffix)
        elif name not in buffers:
            raise ValueError(f"{where}: {type(opt).__name__} has no state buffer {name!r}")
        else:
            stored = _file_parts(_state_dtype(opt, params[index], name), params[index].shape)
            parts[index].setdefault(name, {})[suffix] = _read_part(archive, info, name, stored,
                                                                   suffix)
    state = [_decoded(opt, index, param, entry, buffers)
             for index, (param, entry) in enumerate(zip(params, parts))]
    return state, group_state, _decoded_params(params, param_parts)


def _read_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo, stem: str,
               stored: dict[str, tuple], suffix: str) -> np.ndarray:
    """The entry ``stem + suffix``, one of the arrays ``stored`` (see _file_parts) says a
    buffer or param is stored as, read only if it has that array's dtype and shape."""
    if suffix not in stored:
        raise ValueError(f"checkpoint entry {info.filename!r}: this optimizer stores {stem} as "
                         f"{[stem + s for s in stored]}")
    dtype, shape = stored[suffix]
    return _read_npy(archive, info, dtype.itemsize * math.prod(shape), _exactly(dtype, shape),
                     f"{dtype} {shape}")


def _decoded_params(params: list[np.ndarray],
                    parts: list[dict[str, np.ndarray]]) -> list[np.ndarray] | None:
    """The params from their entries (None if the file has none): every param, each with
    every part, or the file is refused."""
    if not any(parts):
        return None
    incomplete = [i for i, (param, found) in enumerate(zip(params, parts))
                  if found.keys() != _file_parts(param.dtype, param.shape).keys()]
    if incomplete:
        raise ValueError(f"checkpoint has params entries, but not all of those of params "
                         f"{reprlib.repr(incomplete)} (of {len(params)})")
    return [_decode(found, signed=True) for found in parts]


def _decoded(opt: Any, index: int, param: np.ndarray, parts: dict[str, dict],
             buffers: dict) -> dict[str, Any]:
    """The state buffers of param ``index`` from their entries, each with every part."""
    for name, found in parts.items():
        stored = _file_parts(_state_dtype(opt, param, name), param.shape)
        if found.keys() != stored.keys():
            raise ValueError(f"checkpoint has {sorted(name + s for s in found)} of param "
                             f"{index}, not all of {sorted(name + s for s in stored)}")
    return {name: _decode(found, buffers[name].signed) for name, found in parts.items()}


def _exactly(dtype: np.dtype, shape: tuple[int, ...]) -> Callable[[np.dtype, tuple], bool]:
    """The ``fits`` of _read_npy for an entry of exactly ``dtype`` and ``shape``."""
    return lambda d, s: (d, s) == (dtype, shape)


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int,
              fits: Callable[[np.dtype, tuple], bool], expected: str) -> np.ndarray:
    """One .npy entry, read only as far as it is what the caller expects: its declared size
    is bounded first (zipfile never inflates past it), its header is checked with ``fits``
    before any data is read, and the data must fill the entry exactly and is read to its end
    (where zipfile checks the CRC)."""
    if info.file_size > max_bytes + _NPY_HEADER_BYTES:
        raise ValueError(f"checkpoint entry {info.filename!r} holds {info.file_size} bytes, "
                         f"more than {expected} can")
    with archive.open(info) as member:
        try:
            shape, fortran_order, dtype = _npy_header(member)
        except ValueError as error:  # numpy's, without the entry's name
            raise ValueError(f"checkpoint entry {info.filename!r}: {error}") from error
        if any(n < 0 for n in shape) or dtype.hasobject or not fits(dtype, shape):
            raise ValueError(f"checkpoint entry {info.filename!r} is {dtype} {shape}; expected "
                             f"{expected}")
        size = dtype.itemsize * math.prod(shape)
        if member.tell() + size != info.file_size:
            raise ValueError(f"checkpoint entry {info.filename!r} holds {info.file_size} bytes, "
                             f"not its header's {member.tell()} and {size} of data")
        data = member.read(size)
        if len(data) != size:
            raise ValueError(f"checkpoint entry {info.filename!r} is truncated")
        member.read(1)  # reaches the end of a deflated entry too: there zipfile checks the CRC
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran_order else "C")


def _npy_header(member: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """shape, fortran_order and dtype from a .npy header (formats 1.0 and 2.0, what numpy
    writes for these arrays), leaving ``member`` at the data."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    version = np.lib.format.read_magic(member)
    if version not in readers:
        raise ValueError(f"unsupported .npy format version {version}")
    return readers[version](member)


# -- shared ------------------------------------------------------------------------------------


def _require(value: Any, kinds: type | tuple[type, ...], where: str) -> Any:
    """``value``, if it is one of ``kinds``; else the ValueError naming ``where``."""
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise ValueError(f"{where} must be a {names}, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def _malformed(what: str) -> Iterator[None]:
    """Turns the errors that malformed data makes parsers raise (zipfile, zlib, numpy, json,
    int(), indexing) into the ValueError of the error contract, the original as its cause."""
    try:
        yield
    except _MALFORMED as error:
        raise ValueError(f"{what} is malformed: {type(error).__name__}: {error}") from error
