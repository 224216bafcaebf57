"""The machinery every :mod:`adamkern.optim` optimizer shares (:class:`Optimizer`): param
groups and their checks, lazily allocated state, the step (grad checks, clipping, loss
scaling, recorders, one fused call per group) and checkpoints. The optimizers themselves, each
naming its functional op, are in :mod:`adamkern.optim`."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adamkern import checkpoint, lowp, registry
from adamkern import grads as _grads
from adamkern._opcall import is_real
from adamkern._optim_state import StateBuffer, add_missing
from adamkern._recording import Recording
from adamkern.groups import (ParamGroup, ParamGroups, check_disjoint, check_hyperparameters,
                             op_hyperparameters)
from adamkern.history import History, StepRecord

__all__ = ["Optimizer"]

_LOW_PRECISION = ("bfloat16", "float16")


class Optimizer(Recording):
    """The common machinery; subclasses name their functional op and state buffers. Recorders
    (:class:`adamkern.history.Recorder`, or callables of a
    :class:`~adamkern.history.StepRecord`) follow its steps: :meth:`add_recorder`,
    :meth:`remove_recorder`, :attr:`recorders`, :meth:`recording_paused`, and
    :meth:`record_history` for a :class:`~adamkern.history.History`."""

    _op: Callable[..., None]
    # From the op's C++ description (adamkern.registry), set for each subclass:
    _op_buffers: tuple[StateBuffer, ...] = ()  # the op's state lists
    _buffers: tuple[StateBuffer, ...] = ()  # its state (_described_buffers of those)
    _extra_defaults: dict[str, Any] = {}  # constructor options the op does not take
    # A subclass's own options beside the op's (name: default)
    _own_options: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "_op" not in cls.__dict__ and cls.__name__.startswith("_"):
            return  # a base of several classes (_ScheduleFree)
        description = registry.describe(cls._op.__name__)
        # the op's state lists, and the optimizer's state (a subclass may keep other buffers)
        cls._op_buffers = tuple(
            StateBuffer(b.name, b.argument, b.initial_option or b.initial, b.is_needed, b.signed)
            for b in description.state)
        cls._buffers = cls._described_buffers(cls._op_buffers)
        cls._extra_defaults = {**description.initial_options, **cls._own_options}
        cls._takes_step = description.takes_step

    @classmethod
    def _described_buffers(cls, buffers: tuple[StateBuffer, ...]) -> tuple[StateBuffer, ...]:
        """The state buffers, from those the op's description gives (a subclass with state of
        its own changes them)."""
        return buffers

    def __init__(self, params: Sequence[np.ndarray] | Sequence[dict], *,
                 max_grad_norm: float | None = None, max_grad_value: float | None = None,
                 state_dtype: Any = "float32", master_weights: bool = False,
                 rounding: str = "nearest", seed: int = 0,
                 history: bool | History = False, **hyperparameters: Any):
        defaults = {**op_hyperparameters(type(self)._op), **self._extra_defaults}
        unknown = sorted(set(hyperparameters) - set(defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown hyperparameters {unknown}; it "
                            f"takes {sorted(defaults)}")
        if max_grad_norm is not None and not (is_real(max_grad_norm) and max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
        if max_grad_value is not None and not (is_real(max_grad_value)
                                               and max_grad_value >= 0):
            raise ValueError(f"max_grad_value must be >= 0 or None, got {max_grad_value!r}")
        if rounding not in ("nearest", "stochastic"):
            raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
        self.state_dtype = lowp.state_dtype_name(state_dtype)
        self.master_weights = bool(master_weights)
        self.rounding = rounding
        self.seed = lowp.call_seed(seed, None)
        self._hyperparameter_names = tuple(op_hyperparameters(type(self)._op))
        self._check_hyperparameters({**defaults, **hyperparameters})
        self.defaults = {**defaults, **hyperparameters}
        self.max_grad_norm = max_grad_norm
        self.max_grad_value = max_grad_value
        self.param_groups: list[dict[str, Any]] = ParamGroups(self._replace_group)
        for group in self._groups(params):
            self.add_param_group(group)
        self.zero_state()
        if isinstance(history, History) or history:
            self.record_history(history if isinstance(history, History) else None)

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _groups(params: Any) -> list[dict]:
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of param-group dicts, not one "
                            "array (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError("params is empty")
        if all(isinstance(p, dict) for p in params):
            return [dict(p) for p in params]
        return [{"params": params}]

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Adds a group: ``{"params": [arrays], **hyperparameter overrides}``."""
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"param group has unknown keys {unknown}")
        arrays = group["params"]
        arrays = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"params[{i}] must be a numpy.ndarray, got {type(a).__name__}")
            if a.dtype not in (np.float32, np.float64) and a.dtype.name not in _LOW_PRECISION:
                raise TypeError(f"params[{i}] has dtype {a.dtype}; expected float32, float64, "
                                "bfloat16 or float16")
            if a.dtype == np.float64 and self.state_dtype != "float32":
                raise ValueError(f"params[{i}] is float64: state_dtype {self.state_dtype!r} is "
                                 "for float32, bfloat16 and float16 params")
            if self.master_weights and a.dtype.name not in _LOW_PRECISION:
                raise ValueError(f"params[{i}] has dtype {a.dtype}: master_weights=True is for "
                                 "bfloat16 and float16 params")
            if not (a.flags.c_contiguous and a.flags.writeable):
                raise ValueError(f"params[{i}] must be C-contiguous and writable")
        groups = [*(g["params"] for g in self.param_groups), arrays]
        check_disjoint([(p, f"param_groups[{g}] params[{i}]")
                         for g, group_params in enumerate(groups)
                         for i, p in enumerate(group_params)])
        values = {**self.defaults, **group, "params": arrays}
        self._check_hyperparameters(values)
        list.append(self.param_groups, ParamGroup(self._check_hyperparameter, values))
        if hasattr(self, "state"):  # a group added after construction
            self.state += [{} for _ in arrays]
            self.group_state.append({})

    def _replace_group(self, index: int, group: Any) -> ParamGroup:
        """``param_groups[index] = group`` (see groups.ParamGroups): the same params (or none
        named), hyperparameters it leaves out at the optimizer's defaults, all checked at once."""
        if not isinstance(group, dict):
            raise TypeError(f"param_groups[{index}] must be a dict, got {type(group).__name__}")
        unknown = sorted(set(group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"param_groups[{index}] has unknown keys {unknown}")
        params = self.param_groups[index]["params"]
        given = group.get("params", params)
        given = [given] if isinstance(given, np.ndarray) else list(given)
        if len(given) != len(params) or any(a is not b for a, b in zip(given, params)):
            raise ValueError(f"param_groups[{index}] = ... must keep the group's params (the "
                             "same arrays, in order): their state is theirs; add_param_group "
                             "adds others")
        values = {**self.defaults, **group, "params": params}
        self._check_hyperparameters(values)
        return ParamGroup(self._check_hyperparameter, values)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        check_hyperparameters(type(self)._op, values)

    def _check_hyperparameter(self, name: str, value: Any) -> None:
        """Checks one value assigned to a param group (see groups.ParamGroup): its type, and a
        number's range beside the op's defaults (which combine with any valid value)."""
        default = self.defaults.get(name)
        if isinstance(default, bool):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        elif name in self.defaults:
            op_defaults = {**op_hyperparameters(type(self)._op), **self._extra_defaults}
            self._check_hyperparameters({**op_defaults, name: value})

    @property
    def params(self) -> list[np.ndarray]:
        """Every param, in order (groups concatenated): the order ``step`` expects grads in."""
        return [p for group in self.param_groups for p in group["params"]]

    def zero_state(self) -> None:
        """Forgets all state (allocated again at the next step) and the step count."""
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        self.group_state: list[dict[str, np.ndarray]] = [{} for _ in self.param_groups]
        self.step_count = 0
        self.last_grad_norm: float | None = None
        self.last_step_skipped = False
        self._before: tuple[list[dict], list[dict]] | None = None  # see _snapshot

    # -- stepping ----------------------------------------------------------------------------

    def _value(self, value: Any) -> Any:
        """A hyperparameter at this step: callables are evaluated at the step index."""
        if callable(value):
            return float(value(self.step_count))
        if isinstance(value, tuple):
            return tuple(self._value(v) for v in value)
        return value

    def state_nbytes(self) -> int:
        """Bytes of optimizer state held now (every buffer, master weights included)."""
        return sum(int(a.nbytes) for s in self.state + self.group_state for a in s.values())

    def _call_arguments(self, group: dict, index: int, created: bool) -> dict[str, Any]:
        """Arguments of the op beyond params, grads, state and hyperparameters."""
        return {"step": self.step_count + 1} if self._takes_step else {}

    def _precision_arguments(self, states: list[dict], index: int) -> dict[str, Any]:
        """master_params, rounding and seed of group ``index``'s call (none by default)."""
        arguments: dict[str, Any] = {}
        if self.master_weights:
            arguments["master_params"] = [s["master"] for s in states]
        if self.rounding == "stochastic":
            # a stream of random bits per group and step (ops without a step count too)
            group_seed = lowp.call_seed(self.seed, index)
            arguments.update(rounding="stochastic",
                             seed=lowp.call_seed(group_seed, self.step_count + 1))
        return arguments

    @staticmethod
    def _check_grads(grads: list, params: list[np.ndarray]) -> None:
        """Grads against their params, before anything is touched (the kernels check again,
        but per group: a bad grad in a later group must not leave earlier groups stepped)."""
        if len(grads) != len(params):
            raise ValueError(f"step got {len(grads)} grads for {len(params)} params")
        for i, (g, p) in enumerate(zip(grads, params)):
            if not isinstance(g, np.ndarray):
                raise TypeError(f"grads[{i}] must be a numpy.ndarray, got {type(g).__name__}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
            if not (g.flags.c_contiguous and g.flags.writeable):
                raise ValueError(f"grads[{i}] must be C-contiguous and writable")

    def _state_arguments(self, group: dict, index: int, first: int) -> dict[str, Any]:
        """Group ``index``'s state lists and precision arguments, allocating what is missing.
        Past the first step every buffer is there, and the lists are read without a check of
        their own (a missing one raises KeyError: then the state is completed first)."""
        states = self.state[first:first + len(group["params"])]

        def read() -> dict[str, Any]:
            return {**{b.keyword: list(map(operator.itemgetter(b.name), states))
                       for b in self._buffers if b.needed(group)},
                    **self._precision_arguments(states, index)}

        try:
            arguments, created = read(), False
        except KeyError:  # the first step, or a buffer the group's options now need
            self._snapshot()
            created = add_missing(states, group, self._buffers, self.state_dtype,
                                  self.master_weights)
            arguments = read()
        arguments.update(self._call_arguments(group, index, created))
        return arguments

    def _prepared_groups(self, grads: list[np.ndarray]) -> list[dict[str, Any]]:
        """Every group's op arguments, state allocated (new state is dropped again by
        :meth:`_rollback` if the step then fails)."""
        prepared, first = [], 0
        names, value = self._hyperparameter_names, self._value
        for index, group in enumerate(self.param_groups):
            count = len(group["params"])
            prepared.append({"params": group["params"], "grads": grads[first:first + count],
                             **{k: value(group[k]) for k in names},
                             **self._state_arguments(group, index, first)})
            first += count
        return prepared

    def _validate(self, prepared: list[dict[str, Any]]) -> None:
        """Checks every group's call without writing anything (found_inf=1: the op validates
        all its arguments, then skips), and that no buffer of one group overlaps another
        group's: needed before the first of several calls, or before the grads are clipped."""
        for op_arguments in prepared:
            self._run_call(op_arguments, found_inf=1.0)
        if len(prepared) > 1:
            ranges = [(a, f"{kind}[{i}]") for kind in ("params", "grads") for i, a in
                      enumerate(a for call in prepared for a in call[kind])]
            check_disjoint(ranges)

    def _snapshot(self) -> None:
        """Remembers the state before this step creates any (the first creation counts)."""
        if self._before is None:
            self._before = ([dict(s) for s in self.state], [dict(s) for s in self.group_state])

    def _rollback(self) -> None:
        """Forgets the state this step created (a failed step leaves no trace)."""
        if self._before is not None:
            self.state, self.group_state = self._before
            self._before = None

    def step(self, grads: Sequence[np.ndarray], scaler: _grads.LossScaler | None = None) -> None:
        """One update of every param from ``grads`` (in the order of :attr:`params`).

        With a :class:`~adamkern.LossScaler`, grads are the scaled ones: if any is inf or NaN
        the step is skipped (nothing changes) and the scaler backs off; otherwise they are
        unscaled inside the update pass. ``max_grad_norm`` / ``max_grad_value`` clip the
        (unscaled) grads first, as torch's clip_grad_norm_/clip_grad_value_ (in place);
        ``last_grad_norm`` holds the norm before clipping (None without max_grad_norm). The
        recorders (:meth:`add_recorder`, ``opt.history``) are told what the step did."""
        grads = [grads] if isinstance(grads, np.ndarray) else list(grads)
        checked = self._check_grads_first(grads, scaler)
        scale = 1.0 if scaler is None else scaler.scale
        wants_norm = bool(self._recorders) and self._record_begin()
        grad_norm, finite = self._measure_grads(grads, scaler, wants_norm, scale)
        if not finite:
            self._skip(scaler, grad_norm)
            return
        if not checked and len(grads) != len(self.param_groups[0]["params"]):  # one group
            self._check_grads(grads, self.params)
        index = self.step_count
        groups = self._update_or_roll_back(grads, checked, scale)
        self._count_step(scaler)
        if self._recorders:
            self._record_end(StepRecord(index, [g["lr"] for g in groups], grad_norm, False,
                                        self.params))

    def _check_grads_first(self, grads: list, scaler: _grads.LossScaler | None) -> bool:
        """Checks the grads against their params unless the op's own checks (all before any
        write) cover them: past the first step (state allocated), with one group and nothing
        done to the grads before the update, the Python check would only word the message.
        Returns whether it checked."""
        checked = (self.step_count == 0 or len(self.param_groups) > 1 or scaler is not None
                   or self.max_grad_norm is not None or self.max_grad_value is not None)
        if checked:
            self._check_grads(grads, self.params)
        return checked

    def _measure_grads(self, grads: list[np.ndarray], scaler: _grads.LossScaler | None,
                       wants_norm: bool, scale: float) -> tuple[float | None, bool]:
        """The global norm of the unscaled grads where the step needs it (a loss scaler, clipping
        or a recorder; else None), computed once, and False if a loss scaler must skip the step
        (inf/NaN grads). Sets :attr:`last_grad_norm` (None without ``max_grad_norm``)."""
        self.last_grad_norm = None
        if scaler is None and self.max_grad_norm is None and not wants_norm:
            return None, True
        norm, finite = _grads.grad_stats(grads)
        if scaler is not None and not finite:
            return norm / scale, False
        if self.max_grad_norm is not None:
            self.last_grad_norm = norm / scale
        return norm / scale, True

    def _skip(self, scaler: _grads.LossScaler, grad_norm: float | None) -> None:
        """A step skipped for inf/NaN grads: nothing changes, the loss scale backs off."""
        self.last_step_skipped = True
        scaler.update(True)
        if self._recorders:
            self._record_end(StepRecord(self.step_count, self._lrs(), grad_norm, True,
                                        self.params))

    def _update_or_roll_back(self, grads: list[np.ndarray], checked: bool,
                             scale: float) -> list[dict[str, Any]]:
        """Prepares every group's call, validates them where one call's own checks are not
        enough, clips the grads and updates; returns the calls' arguments. If anything raises,
        the state this step created is dropped again (:meth:`_rollback`)."""
        try:
            groups = self._prepared_groups(grads)
            clipping = self.max_grad_norm is not None or self.max_grad_value is not None
            if len(groups) > 1 or clipping:
                self._validate(groups)  # nothing is written unless every call will pass
            self._clip(grads, scale)
            if self._recorders:
                self._record_update(self.params)
            self._call_ops(groups, grads, checked, scale)
        except BaseException:
            self._rollback()
            raise
        self._before = None
        return groups

    def _clip(self, grads: list[np.ndarray], scale: float) -> None:
        """Clips the grads in place as configured (``max_grad_value``, then ``max_grad_norm``)."""
        if self.max_grad_value is not None:
            _grads.clip_grad_value_(grads, self.max_grad_value * scale)
            if self.max_grad_norm is not None:  # the norm of what is left after that
                self.last_grad_norm = _grads.grad_stats(grads)[0] / scale
        if self.max_grad_norm is not None:
            # torch's clip_grad_norm_: grads times the coefficient, in the grads' precision (the
            # loss scale, a power of two, is divided out exactly inside the update pass)
            coefficient = _grads.clip_coefficient(self.last_grad_norm, self.max_grad_norm)
            if coefficient < 1.0:
                for g in grads:
                    g *= g.dtype.type(coefficient)

    def _call_ops(self, groups: list[dict[str, Any]], grads: list[np.ndarray], checked: bool,
                  scale: float) -> None:
        """Calls the op once per group (the grads unscaled inside the update pass)."""
        for op_arguments in groups:
            try:
                self._run_call(op_arguments, grad_scale=None if scale == 1.0 else scale)
            except (TypeError, ValueError):
                if not checked:
                    self._check_grads(grads, self.params)  # raises with the grads' own message
                raise

    def _run_call(self, op_arguments: dict[str, Any], **amp: Any) -> None:
        """One group's call of the op (``amp``: grad_scale, or found_inf=1.0 to check every
        argument and write nothing)."""
        type(self)._op(**op_arguments, **amp)

    def _count_step(self, scaler: _grads.LossScaler | None) -> None:
        """The step is done: counted, and the loss scale may grow."""
        self.step_count += 1
        self.last_step_skipped = False
        if scaler is not None:
            scaler.update(False)

    def _lrs(self) -> list[float]:
        return [self._value(group["lr"]) for group in self.param_groups]

    # -- checkpoints (adamkern.checkpoint) ---------------------------------------------------

    def state_dict(self, *, params: bool = False) -> dict[str, Any]:
        """Plain data: the optimizer's kind, step count, clipping, groups (hyperparameters that
        are numbers; callables by their repr, and their state where they have a
        ``state_dict()``, as ReduceLROnPlateau) and state arrays, and with ``params=True`` the
        params (arrays are not copied: save or copy them before stepping again). See
        :mod:`adamkern.checkpoint` for what is restored."""
        return checkpoint.state_dict(self, params=params)

    def load_state_dict(self, state_dict: dict[str, Any], *, params: bool = True) -> None:
        """Restores :meth:`state_dict` output, and its params (in place) if it has them unless
        ``params=False``. Raises ValueError, and changes nothing, if it comes from another
        kind of optimizer, does not fit these params or holds a value that is refused."""
        checkpoint.load_state_dict(self, state_dict, params=params)

    def save(self, path: str | os.PathLike, *, params: bool = False) -> None:
        """Writes :meth:`state_dict` to ``path`` (.npz) atomically; ``params=True`` stores the
        params too, for a full resume (see :func:`adamkern.checkpoint.save`).

        >>> opt.save("checkpoint.npz", params=True)
        >>> opt.load("checkpoint.npz")     # params, state, schedules' state: as saved
        """
        checkpoint.save(self, path, params=params)

    def load(self, path: str | os.PathLike, *, params: bool = True) -> None:
        """Restores a checkpoint written by :meth:`save`, its params (in place) if it has them
        unless ``params=False`` (see :meth:`load_state_dict`)."""
        checkpoint.load(self, path, params=params)

    def __repr__(self) -> str:
        groups = ", ".join(f"{len(g['params'])} params" for g in self.param_groups)
        return f"{type(self).__name__}({groups}; step_count={self.step_count})"
