"""Optimizer objects for training loops: torch-shaped, over NumPy arrays.

Each class holds param groups, allocates its state lazily on the first step (each buffer kind
of a group in one 64-byte-aligned allocation, see memory.empty_like_all)
and steps every group with ONE fused C++ call (one parallel region over all its tensors).
Hyperparameters have the names and defaults of the functional op it wraps (torch's where torch
has the optimizer); ``lr``, ``weight_decay`` and each entry of ``betas`` may also be a callable
of the step index (0 at the first step): any :mod:`adamkern.schedules` object, a
``ReduceLROnPlateau``, ``one_cycle(...).momentum`` for ``betas[0]``.

>>> opt = adamkern.optim.AdamW(params, lr=adamkern.schedules.cosine_decay(1e-3, 10_000))
>>> for batch in data:
...     grads = backward(params, batch)       # your engine, grads in the order of params
...     opt.step(grads)
>>> opt.save("checkpoint.npz")

Lower precision (see :mod:`adamkern.lowp`): params may be bfloat16 or float16 (computed in
float32); ``state_dtype`` keeps the state in ``"float32"`` (default), ``"bfloat16"`` or
``"int8"`` (block-wise 8-bit); ``master_weights=True`` keeps a float32 copy of low-precision
params in the state and writes the params as its rounded copy; ``rounding="stochastic"``
rounds every bfloat16 write stochastically (reproducible from ``seed``).

>>> opt = adamkern.optim.AdamW(bf16_params, state_dtype="int8", rounding="stochastic")
>>> opt.state_nbytes()        # 2 bytes per param plus one float per 256
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adamkern import checkpoint, lowp, ops, registry, sparse
from adamkern import grads as _grads
from adamkern._opcall import is_real
from adamkern._optim_adafactor import Adafactor
from adamkern._optim_state import StateBuffer, add_missing, rows_of
from adamkern._recording import Recording
from adamkern.groups import (ParamGroup, ParamGroups, check_disjoint, check_hyperparameters,
                             first_overlap, op_hyperparameters)
from adamkern.history import History, StepRecord

__all__ = [
    "ADOPT",
    "Adafactor",
    "AdaBelief",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "AdamWScheduleFree",
    "Adamax",
    "AdEMAMix",
    "Adan",
    "LAMB",
    "Lion",
    "NAdam",
    "Optimizer",
    "Prodigy",
    "RAdam",
    "RMSprop",
    "SGD",
    "SGDScheduleFree",
    "Yogi",
    "check_hyperparameters",
    "first_overlap",
    "op_hyperparameters",
]

_LOW_PRECISION = ("bfloat16", "float16")


class Optimizer(Recording):
    """The common machinery; subclasses name their functional op and state buffers. Recorders
    (:class:`adamkern.history.Recorder`, or callables of a
    :class:`~adamkern.history.StepRecord`) follow its steps: :meth:`add_recorder`,
    :meth:`remove_recorder`, :attr:`recorders`, :meth:`recording_paused`, and
    :meth:`record_history` for a :class:`~adamkern.history.History`."""

    _op: Callable[..., None]
    # From the op's C++ description (adamkern.registry), set for each subclass:
    _buffers: tuple[StateBuffer, ...] = ()  # its state
    _extra_defaults: dict[str, Any] = {}  # constructor options the op does not take
    # A subclass's own options beside the op's (name: default)
    _own_options: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "_op" not in cls.__dict__ and cls.__name__.startswith("_"):
            return  # a base of several classes (_ScheduleFree)
        description = registry.describe(cls._op.__name__)
        cls._buffers = cls._described_buffers(tuple(
            StateBuffer(b.name, b.argument, b.initial_option or b.initial, b.is_needed, b.signed)
            for b in description.state))
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


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay unless ``decoupled_weight_decay``); see
    :func:`adamkern.adam_`."""

    _op = staticmethod(ops.adam_)


class AdamW(Adam):
    """torch.optim.AdamW; see :func:`adamkern.adamw_`."""

    _op = staticmethod(ops.adamw_)


class Adamax(Optimizer):
    """torch.optim.Adamax; see :func:`adamkern.adamax_`."""

    _op = staticmethod(ops.adamax_)


class NAdam(Optimizer):
    """torch.optim.NAdam; ``mu_product`` is kept per group in ``group_state``. See
    :func:`adamkern.nadam_`."""

    _op = staticmethod(ops.nadam_)

    def _call_arguments(self, group, index, created):
        state = self.group_state[index]
        if "mu_product" not in state:
            self._snapshot()
            state["mu_product"] = np.ones(1, np.float32)  # torch keeps it in float32
        return {"step": self.step_count + 1, "mu_product": state["mu_product"]}


class RAdam(Optimizer):
    """torch.optim.RAdam; see :func:`adamkern.radam_`."""

    _op = staticmethod(ops.radam_)


class RMSprop(Optimizer):
    """torch.optim.RMSprop; see :func:`adamkern.rmsprop_`."""

    _op = staticmethod(ops.rmsprop_)


class Adagrad(Optimizer):
    """torch.optim.Adagrad (``initial_accumulator_value`` starts the sums); see
    :func:`adamkern.adagrad_`.

    ``rowwise=True`` (per group): FBGEMM's ``EXACT_ROWWISE_ADAGRAD``
    (:func:`adamkern.sparse.rowwise_adagrad_rows_`), one accumulator per row of each param
    (its first dimension; the rest of a row's elements share it): state ``row_sum`` of shape
    ``(rows,)`` in the param's dtype, starting at ``initial_accumulator_value``, instead of
    ``sum``. The grads are dense, so every row is stepped, each accumulator growing by the mean
    square of its grad row. ``lr``, ``eps``, ``weight_decay`` (FBGEMM's L2 term) and
    ``maximize`` apply; ``lr_decay``, ``eps_inside_sqrt``, ``decoupled_weight_decay`` and the
    storage modes (``state_dtype``, master weights, stochastic rounding) are refused with it.
    A checkpoint keeps the layout: its ``row_sum`` loads only into a row-wise group, ``sum``
    only into another."""

    _op = staticmethod(ops.adagrad_)
    _own_options = {"rowwise": False}
    _REFUSED_ROWWISE = (("lr_decay", 0.0), ("eps_inside_sqrt", False),
                        ("decoupled_weight_decay", False))

    @classmethod
    def _described_buffers(cls, buffers: tuple[StateBuffer, ...]) -> tuple[StateBuffer, ...]:
        def rowwise(group: dict) -> bool:
            return bool(group.get("rowwise"))

        per_element = tuple(
            dataclasses.replace(b, needed=lambda group, n=b.needed: n(group) and not rowwise(group),
                                allowed=lambda group: not rowwise(group))
            for b in buffers)
        row_sum = StateBuffer("row_sum", "row_sums", "initial_accumulator_value", rowwise,
                              signed=False, per_row=True, allowed=rowwise)
        return (*per_element, row_sum)

    def _check_hyperparameters(self, values: dict[str, Any]) -> None:
        super()._check_hyperparameters(values)
        rowwise = values.get("rowwise", False)
        if not isinstance(rowwise, (bool, np.bool_)):
            raise TypeError(f"rowwise must be True or False, got {rowwise!r}")
        if rowwise:
            self._check_rowwise(values)

    def _check_rowwise(self, values: dict[str, Any]) -> None:
        """What a row-wise group must hold (checked where it is given, and at each step: a
        group's values may change one at a time)."""
        for name, default in self._REFUSED_ROWWISE:
            if values.get(name, default) != default:
                raise ValueError(f"rowwise=True does not take {name}={values[name]!r} (FBGEMM's "
                                 "row-wise Adagrad has no such option)")
        if self.state_dtype != "float32" or self.master_weights or self.rounding != "nearest":
            raise ValueError("rowwise=True keeps its state in the params' dtype: "
                             "state_dtype='float32', no master weights, nearest rounding")
        for i, p in enumerate(values.get("params", ())):
            if p.dtype not in (np.float32, np.float64):
                raise ValueError(f"params[{i}] is {p.dtype}: rowwise=True steps float32 and "
                                 "float64 params")

    def _run_call(self, op_arguments: dict[str, Any], **amp: Any) -> None:
        if "row_sums" not in op_arguments:
            super()._run_call(op_arguments, **amp)
            return
        self._check_rowwise(op_arguments)
        params, grads, sums = (op_arguments[k] for k in ("params", "grads", "row_sums"))
        tables = [self._rows(p, f"params[{i}]") for i, p in enumerate(params)]
        grad_tables = [self._rows(g, f"grads[{i}]", like=p)
                       for i, (g, p) in enumerate(zip(grads, params))]
        check_disjoint([*((t, f"params[{i}]") for i, t in enumerate(tables)),
                        *((t, f"grads[{i}]") for i, t in enumerate(grad_tables)),
                        *((s, f"row_sum[{i}]") for i, s in enumerate(sums))])
        if amp.get("found_inf"):
            return  # checked, nothing written (see Optimizer._validate)
        scale = amp.get("grad_scale")
        options = {k: op_arguments[k] for k in ("lr", "eps", "weight_decay", "maximize")}
        for table, grad, row_sum in zip(tables, grad_tables, sums):
            if scale is not None:  # unscaled in place, as the kernels do
                np.divide(grad, grad.dtype.type(scale), out=grad)
            sparse.rowwise_adagrad_rows_(table, np.arange(len(table), dtype=np.int64), grad,
                                         row_sum, **options)

    @staticmethod
    def _rows(array: np.ndarray, where: str, like: np.ndarray | None = None) -> np.ndarray:
        """A (rows, cols) view of ``array`` for the row-wise step (checked against the param it
        is the grad of)."""
        if like is not None and (array.dtype, array.shape) != (like.dtype, like.shape):
            raise ValueError(f"{where} is {array.dtype} {array.shape}; its param is "
                             f"{like.dtype} {like.shape}")
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"{where} must be C-contiguous and writable")
        rows = rows_of(array)
        return array.reshape(rows, array.size // rows if rows else 0)


class Adadelta(Optimizer):
    """torch.optim.Adadelta; see :func:`adamkern.adadelta_`."""

    _op = staticmethod(ops.adadelta_)


class SGD(Optimizer):
    """torch.optim.SGD (the momentum buffer starts as the first gradient); see
    :func:`adamkern.sgd_`."""

    _op = staticmethod(ops.sgd_)

    def _call_arguments(self, group, index, created):
        return {"is_first_step": created}


class Lion(Optimizer):
    """optax.lion; see :func:`adamkern.lion_`."""

    _op = staticmethod(ops.lion_)


class AdaBelief(Optimizer):
    """optax.adabelief; see :func:`adamkern.adabelief_`."""

    _op = staticmethod(ops.adabelief_)


class LAMB(Optimizer):
    """optax.lamb (per-tensor trust ratios); see :func:`adamkern.lamb_`."""

    _op = staticmethod(ops.lamb_)


class Adan(Optimizer):
    """optax.adan; see :func:`adamkern.adan_`."""

    _op = staticmethod(ops.adan_)


class Yogi(Optimizer):
    """optax.yogi (both moments start at ``initial_accumulator_value``, 1e-6); see
    :func:`adamkern.yogi_`."""

    _op = staticmethod(ops.yogi_)


class ADOPT(Optimizer):
    """ADOPT, as its authors' torch-adopt (``adopt.ADOPT``); see :func:`adamkern.adopt_`. The
    first step only sets ``exp_avg_sq`` (no update). ``step`` is the optimizer's step count,
    as for every class here: a group added after the first step starts past it."""

    _op = staticmethod(ops.adopt_)


class AdEMAMix(Optimizer):
    """AdEMAMix, as its authors' PyTorch class (apple/ml-ademamix); see
    :func:`adamkern.ademamix_`. State: ``exp_avg_fast``, ``exp_avg_slow``, ``exp_avg_sq``: a
    third buffer beside Adam's (12 bytes per float32 parameter)."""

    _op = staticmethod(ops.ademamix_)


class _ScheduleFree(Optimizer):
    """The schedulefree package's optimizers: the params are the training sequence y; ``eval()``
    moves them to the average x (to evaluate or save the model), ``train()`` back. Per group,
    ``group_state`` keeps the package's running ``[lr_max, weight_sum]``; the step count is its
    ``k``. Like the package, they start in eval mode: call ``train()`` before the first step."""

    _beta1: str  # the hyperparameter that is beta1: betas[0], or SGD's momentum

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_mode = False

    def step(self, grads: Sequence[np.ndarray], scaler: _grads.LossScaler | None = None) -> None:
        """One step, in train mode only (as the package)."""
        if not self.train_mode:
            raise RuntimeError(f"{type(self).__name__}.step() needs train mode: call train() "
                               "first (and eval() before evaluating or saving the model)")
        super().step(grads, scaler)

    def _in_eval_mode(self, what: str) -> None:
        if self.train_mode:
            raise RuntimeError(f"{type(self).__name__}.{what}() in train mode: call eval() "
                               "first (the params are then the average x, the model to keep; "
                               "as the schedulefree package requires), and train() after")

    def state_dict(self, *, params: bool = False) -> dict[str, Any]:
        """As :meth:`Optimizer.state_dict`, in eval mode only: a loaded optimizer starts in
        eval mode, and ``train()`` takes the params from x to y."""
        self._in_eval_mode("state_dict")
        return super().state_dict(params=params)

    def save(self, path: str | os.PathLike, *, params: bool = False) -> None:
        """As :meth:`Optimizer.save`, in eval mode only (see :meth:`state_dict`)."""
        self._in_eval_mode("save")
        super().save(path, params=params)

    def _call_arguments(self, group, index, created):
        state = self.group_state[index]
        if "weight_sums" not in state:
            self._snapshot()
            state["weight_sums"] = np.array([-1.0, 0.0])  # the package's lr_max, weight_sum
        return {"step": self.step_count + 1, "weight_sums": state["weight_sums"],
                "is_first_step": created}

    def _move(self, function: Callable[..., None]) -> None:
        first = 0
        for group in self.param_groups:
            states = self.state[first:first + len(group["params"])]
            stepped = [(p, s["z"]) for p, s in zip(group["params"], states) if "z" in s]
            if stepped:
                beta1 = self._value(group["betas"])[0] if self._beta1 == "betas" else \
                    self._value(group[self._beta1])
                function([p for p, _ in stepped], [z for _, z in stepped], beta1=beta1)
            first += len(group["params"])

    def eval(self) -> None:
        """The params to x, where the model is evaluated and saved (the package's eval())."""
        if self.train_mode:
            self._move(ops.schedulefree_eval_)
            self.train_mode = False

    def train(self) -> None:
        """The params back to y, for training (the package's train())."""
        if not self.train_mode:
            self._move(ops.schedulefree_train_)
            self.train_mode = True


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-Free AdamW, as ``schedulefree.AdamWScheduleFree`` 1.4 (no lr schedule; a
    warmup through ``warmup_steps``); see :func:`adamkern.adamw_schedulefree_`. Call
    ``train()`` before training and ``eval()`` before evaluating or saving."""

    _op = staticmethod(ops.adamw_schedulefree_)
    _beta1 = "betas"


class SGDScheduleFree(_ScheduleFree):
    """Schedule-Free SGD, as ``schedulefree.SGDScheduleFree`` 1.4; see
    :func:`adamkern.sgd_schedulefree_` and :class:`AdamWScheduleFree`."""

    _op = staticmethod(ops.sgd_schedulefree_)
    _beta1 = "momentum"


class Prodigy(Optimizer):
    """Prodigy, as its authors' prodigyopt 1.1 (``prodigyopt.Prodigy``); see
    :func:`adamkern.prodigy_`. ``p0`` starts as a copy of the params (of the values the
    first step sees); the group's scalars ``(d, d_max, d_numerator, k, d_denom, d_hat)`` are
    kept in ``group_state[i]["group_scalars"]`` (float64), every group holding the same values,
    as prodigyopt writes them into every param group.

    prodigyopt estimates one d over all groups: with several groups, every group is stepped by
    one call, so the groups must agree on every hyperparameter (a step with groups that differ
    raises ValueError and changes nothing)."""

    _op = staticmethod(ops.prodigy_)

    def _state_arguments(self, group, index, first):
        states = self.state[first:first + len(group["params"])]
        new = [("p0" not in state) for state in states]
        arguments = super()._state_arguments(group, index, first)
        for state, param, is_new in zip(states, group["params"], new):
            if is_new:
                p0 = state["p0"]
                source = state.get("master", param)
                if not isinstance(p0, np.ndarray):  # block-wise 8-bit p0
                    raise ValueError("Prodigy keeps p0, the initial params, in the state: "
                                     "state_dtype='int8' would store them quantized")
                p0[...] = source
        return arguments

    def _call_arguments(self, group, index, created):
        state = self.group_state[index]
        if "group_scalars" not in state:
            self._snapshot()
            first = self.group_state[0].get("group_scalars")
            if index > 0 and first is not None:  # a group added later joins the one estimate
                state["group_scalars"] = first.copy()
            else:
                d0 = float(self._value(group["d0"]))
                state["group_scalars"] = np.array([d0, d0, 0.0, 0.0, 0.0, 0.0])
        return {"group_scalars": state["group_scalars"]}

    def _call_ops(self, groups, grads, checked, scale):
        if len(groups) == 1:
            super()._call_ops(groups, grads, checked, scale)
            return
        lists = [k for k, v in groups[0].items() if isinstance(v, list)]
        merged = dict(groups[0])
        for key in lists:
            merged[key] = [a for call in groups for a in call[key]]
        super()._call_ops([merged], grads, checked, scale)
        for call in groups[1:]:
            call["group_scalars"][...] = merged["group_scalars"]

    def _prepared_groups(self, grads):
        prepared = super()._prepared_groups(grads)
        for g, call in enumerate(prepared[1:], 1):
            differ = sorted(k for k in self._hyperparameter_names if call[k] != prepared[0][k])
            if differ:
                raise ValueError(f"Prodigy steps every group with one d: param_groups[{g}] "
                                 f"differs from param_groups[0] in {differ}")
            if not np.array_equal(call["group_scalars"], prepared[0]["group_scalars"]):
                raise ValueError(f"Prodigy steps every group with one d: param_groups[{g}]'s "
                                 "group_scalars differ from param_groups[0]'s")
        return prepared
