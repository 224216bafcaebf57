"""The state dict of an :mod:`adamkern.optim` optimizer (see :mod:`adamkern.checkpoint`):
made as plain data, and loaded with everything checked before anything changes. Also what the
file format shares with it: the checks of a state dict's header, the arrays a state buffer is
stored as (bfloat16 as its bits, 8-bit as codes and absmax), and the ValueError that malformed
data becomes."""

from __future__ import annotations

import contextlib
import copy
import math
import reprlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamkern import lowp, memory
from adamkern._optim_state import StateBuffer, allocate

# What malformed data makes the parsers raise (zipfile, zlib, numpy, json, int(), indexing);
# the error contract says ValueError.
_MALFORMED = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, KeyError, IndexError,
              TypeError, AttributeError, OSError, NotImplementedError, RuntimeError,
              OverflowError)


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
    restore(opt, state_dict, params, copy_params=True)


def restore(opt: Any, sd: Any, params: bool, copy_params: bool) -> None:
    """load_state_dict; ``copy_params=False`` where the saved params are already arrays of
    their own (read from a file), which are then copied into the params without a copy in
    between."""
    with malformed("state_dict"):
        plan = _checked(opt, sd, params, copy_params)
    with _callables_loaded(plan.callable_states):  # put back if anything below fails
        with malformed("state_dict"):
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
    step_count = check_header(opt, sd)
    loads: dict[int, tuple[Any, Any, str]] = {}
    hyperparameters = [_loaded_hyperparameters(opt, index, entry, loads)
                       for index, entry in enumerate(sd["param_groups"])]
    trial_groups = [_trial_group(group, values, index) for index, (group, values)
                    in enumerate(zip(opt.param_groups, hyperparameters))]
    state = _checked_state(opt, sd.get("state"))
    _check_layouts(opt, trial_groups, state)
    return _Plan(step_count, hyperparameters, trial_groups, list(loads.values()),
                 _loaded_clipping(opt, sd), _loaded_group_state(opt, sd.get("group_state")),
                 state, _checked_params(opt, sd.get("params"), copy_params) if params else None)


def check_header(opt: Any, sd: Any) -> int:
    """The checks that need no array (``load`` makes them before it reads any): kind, state
    format, group sizes; returns the step count."""
    require(sd, dict, "state_dict")
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
    groups = require(sd.get("param_groups"), (list, tuple), "state_dict['param_groups']")
    if len(groups) != len(opt.param_groups):
        raise ValueError(f"state_dict has {len(groups)} param groups, this optimizer "
                         f"{len(opt.param_groups)}")
    for index, (entry, group) in enumerate(zip(groups, opt.param_groups)):
        count = require(entry, dict, f"state_dict param_groups[{index}]").get("num_params")
        if not is_count(count) or count != len(group["params"]):
            raise ValueError(f"state_dict param_groups[{index}] has num_params "
                             f"{reprlib.repr(count)}, this optimizer's {len(group['params'])}")
    step_count = sd.get("step_count")
    if not is_count(step_count):
        raise ValueError("state_dict step_count must be a non-negative integer, got "
                         f"{reprlib.repr(step_count)}")
    return int(step_count)


def is_count(value: Any) -> bool:
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
    if saved is None and current is None:  # an option left unset (Prodigy's beta3)
        return None
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
    require(saved, (list, tuple), "state_dict['params']")
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
    require(saved, (list, tuple), "state_dict['group_state']")
    if len(saved) != len(opt.param_groups):
        raise ValueError(f"state_dict has group_state for {len(saved)} groups, this optimizer "
                         f"has {len(opt.param_groups)}")
    return [{name: np.array(value, copy=True)
             for name, value in require(entry, dict, f"state_dict group_state[{g}]").items()}
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
    try:
        prepared = shadow._prepared_groups([np.empty_like(p) for p in shadow.params])
        for arguments in prepared:
            shadow._run_call(arguments, found_inf=1.0)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"state_dict's hyperparameters, group state or step_count are refused "
                         f"by {type(opt)._op.__name__}: {error}") from error
    for index, (entry, arguments) in enumerate(zip(group_state, prepared)):
        for name, value in entry.items():
            if arguments.get(name) is not value:
                raise ValueError(f"state_dict group_state[{index}] has unknown entry "
                                 f"{reprlib.repr(name)}")


def _checked_state(opt: Any, saved: Any) -> list[dict[str, Any]]:
    """The saved state buffers, each checked against its param and the state format (as
    arrays, or lowp.Blockwise8)."""
    params, buffers = opt.params, known_buffers(opt)
    require(saved, (list, tuple), "state_dict['state']")
    if len(saved) != len(params):
        raise ValueError(f"state_dict has state for {len(saved)} params, not {len(params)}")
    checked: list[dict[str, Any]] = [{} for _ in params]
    for i, (param, entry) in enumerate(zip(params, saved)):
        for name, value in require(entry, dict, f"state_dict state[{i}]").items():
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


def _check_layouts(opt: Any, groups: list[dict], state: list[dict[str, Any]]) -> None:
    """Each saved buffer is one the group's loaded options allow (Adagrad: per-element sums
    or, with rowwise=True, per-row sums, never the other)."""
    buffers, first = known_buffers(opt), 0
    for g, group in enumerate(groups):
        count = len(opt.param_groups[g]["params"])
        for i in range(first, first + count):
            for name in state[i]:
                if not buffers[name].allowed(group):
                    raise ValueError(f"state_dict state[{i}] has {name!r}, which "
                                     f"param_groups[{g}]'s options do not use (its state was "
                                     "saved with other options, as rowwise)")
        first += count


def _state_copies(opt: Any, saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of checked state buffers, allocated as the optimizer allocates its own (each
    buffer kind in one aligned allocation), bit for bit."""
    params = opt.params
    state: list[dict[str, Any]] = [{} for _ in params]
    for name, buffer in known_buffers(opt).items():
        holders = [i for i, entry in enumerate(saved) if name in entry]
        if name == "master":
            fresh = memory.empty_like_all([params[i] for i in holders], np.float32)
        else:
            fresh = allocate([params[i] for i in holders], buffer, 0.0, opt.state_dtype)
        for i, target in zip(holders, fresh):
            for part, value in encode(saved[i][name]).items():
                encode(target)[part][...] = value
            state[i][name] = target
    return state


def known_buffers(opt: Any) -> dict[str, Any]:
    """The optimizer's state buffers by name (``master`` with master weights)."""
    buffers = {b.name: b for b in opt._buffers}
    if opt.master_weights:
        buffers["master"] = StateBuffer("master", "master_params")
    return buffers


def _check_saved(opt: Any, where: str, value: Any, param: np.ndarray, buffer: Any) -> Any:
    """A saved state buffer checked against its param and this optimizer's state format;
    returns it as an array (or lowp.Blockwise8)."""
    dtype = buffer_dtype(opt, param, buffer.name)
    shape = buffer.shape(param)
    expected = storage_parts(dtype, shape)
    if not isinstance(value, lowp.Blockwise8):
        value = np.asarray(value)
    parts = encode(value)
    if (parts.keys() != expected.keys()
            or any((a.dtype, a.shape) != expected[k] for k, a in parts.items())
            or (isinstance(value, lowp.Blockwise8) and value.signed != buffer.signed)):
        kind = "the blockwise 8-bit state" if dtype is None else f"{dtype} {shape}"
        shown = (repr(value) if isinstance(value, lowp.Blockwise8)
                 else f"{value.dtype} {value.shape}")
        raise ValueError(f"state_dict {where} is {shown}; expected {kind} of param "
                         f"{param.dtype} {param.shape}")
    return value


def buffer_dtype(opt: Any, param: np.ndarray, name: str) -> np.dtype | None:
    """The dtype of state buffer ``name`` of ``param`` (None: lowp.Blockwise8)."""
    if name == "master":
        return np.dtype(np.float32)
    if opt.state_dtype == "int8":
        return None
    if param.dtype == np.float64:
        return np.dtype(np.float64)
    return lowp.bfloat16() if opt.state_dtype == "bfloat16" else np.dtype(np.float32)


# -- the arrays of a state buffer or param in a file (.npz has no bfloat16, no Blockwise8) -----


def storage_parts(dtype: np.dtype | None, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Entry-name suffix -> (dtype, shape) of each array a buffer (or param) of ``dtype``
    (None: 8-bit) is stored as."""
    if dtype is None:
        return {".codes": (np.dtype(np.uint8), shape),
                ".absmax": (np.dtype(np.float32), (lowp.Blockwise8.blocks(math.prod(shape)),))}
    if dtype.name == "bfloat16":
        return {".bfloat16": (np.dtype(np.uint16), shape)}
    return {"": (dtype, shape)}


def encode(value: Any) -> dict[str, np.ndarray]:
    """A state buffer (or param) as the arrays of storage_parts (views, not copies)."""
    if isinstance(value, lowp.Blockwise8):
        return {".codes": value.codes, ".absmax": value.absmax}
    if value.dtype.name == "bfloat16":
        return {".bfloat16": value.view(np.uint16)}
    return {"": value}


def decode(parts: dict[str, np.ndarray], signed: bool) -> Any:
    """The state buffer that encode gave ``parts``."""
    if ".codes" in parts:
        return lowp.Blockwise8(parts[".codes"], parts[".absmax"], signed)
    if ".bfloat16" in parts:
        return parts[".bfloat16"].view(lowp.bfloat16())
    return parts[""]


# -- shared ------------------------------------------------------------------------------------


def require(value: Any, kinds: type | tuple[type, ...], where: str) -> Any:
    """``value``, if it is one of ``kinds``; else the ValueError naming ``where``."""
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise ValueError(f"{where} must be a {names}, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def malformed(what: str) -> Iterator[None]:
    """Turns the errors that malformed data makes parsers raise (zipfile, zlib, numpy, json,
    int(), indexing) into the ValueError of the error contract, the original as its cause."""
    try:
        yield
    except _MALFORMED as error:
        raise ValueError(f"{what} is malformed: {type(error).__name__}: {error}") from error
