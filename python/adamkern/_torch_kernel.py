"""The machinery of :mod:`adamkern.torch`'s optimizers on adamkern's kernels
(:class:`_KernelOptimizer`): torch's constructor and checks, the views of params, grads and
state handed to the kernels, the calls of a step (grouped by their per-call values), the copies
of params that are not dense, undo on failure, the sparse path and the steady path of a
training loop. The optimizers themselves are in :mod:`adamkern.torch`."""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from adamkern import _core, optim
from adamkern._recording import Recording
from adamkern._torch_checks import signature, torch_checks
from adamkern._torch_lowp import DEFAULT_MODE, MODE_DEFAULTS, Mode, check_codes_order, mode_of
from adamkern._torch_state import TorchState
from adamkern._torch_step import hooked_step
from adamkern._torch_tensors import (CPU_DTYPES, LOW_DTYPES, Label, as_numpy, check_cuda,
                                     check_disjoint, check_sharded_storage, flat, is_dense,
                                     local_tensor, name_of, overlaps_itself, reconcile_layouts)
from adamkern._torch_views import GroupViews, StepViews
from adamkern.grads import grad_norm
from adamkern.history import StepRecord
from adamkern.optim import op_hyperparameters

__all__ = ["_KernelOptimizer"]

_ARRAY_INDEX = re.compile(r"\b([a-z_]+)\[(\d+)\]")  # how the ops name an array of a call


def _partition(values: dict[str, list]) -> list[tuple[list[int] | None, dict[str, Any]]]:
    """Positions of params with equal per-call values (None: all of them, the common case),
    with those values."""
    if not values:
        return [(None, {})]
    if all(v.count(v[0]) == len(v) for v in values.values()):  # one call, without tuples
        return [(None, {name: v[0] for name, v in values.items()})]
    keys = list(zip(*values.values()))
    positions: dict[tuple, list[int]] = {}
    for position, key in enumerate(keys):
        positions.setdefault(key, []).append(position)
    return [(chosen, dict(zip(values, key))) for key, chosen in positions.items()]


class _Counts(NamedTuple):
    """The step counts of params of a group (the views of their ``state['step']``) before and
    after this step: one number where they are all equal (the common case), else one each."""

    views: list[np.ndarray]
    before: float | list[float]
    after: float | list[float]

    @classmethod
    def of(cls, views: list[np.ndarray]) -> _Counts:
        """The counts the views hold, each one more after the step."""
        try:
            common = _core.common_value(views)  # one C++ loop: ~150 views cold in cache
        except TypeError:  # a count of another dtype: read one by one
            common = None
        if common is not None:
            return cls(views, common, common + 1.0)
        before = list(map(float, views))
        return cls(views, before, [count + 1.0 for count in before])

    def per_param(self) -> list[float]:
        """Each param's count after the step."""
        return self.after if isinstance(self.after, list) else [self.after] * len(self.views)

    def write(self, after: bool = True) -> None:
        """Sets the counts after the step (``after=False``: back to those before it)."""
        value = self.after if after else self.before
        if isinstance(value, float):
            _core.fill_values_(self.views, value)
        else:
            for view, count in zip(self.views, value):
                view[()] = count


def _dtypes(param_views: list) -> list | None:
    """The params' dtypes if they differ (None: one dtype, the common case)."""
    dtypes = [view.dtype for view in param_views]
    return None if dtypes.count(dtypes[0]) == len(dtypes) else dtypes


class _Call(NamedTuple):
    """One op call of a step: params of one group that share the op's per-call values."""

    group: int  # its index in param_groups
    indices: list[int]  # the group's params it steps: the op's array k is param indices[k]
    arguments: dict[str, Any]  # the op's arguments, grad_scale and found_inf aside
    shared: dict[str, list[np.ndarray]]  # each param's view of the scalars the call shares


class _KernelOptimizer(Recording, TorchState, torch.optim.Optimizer):
    """Binds the constructor to torch's own signature (``_torch_class``; for an optimizer
    torch lacks, None: the op's hyperparameters) and adamkern's storage keywords, and steps
    each param group with one call of the functional op ``_op`` (more where its params' step
    counts, first steps or shared scalars differ)."""

    _torch_class: type | None = None
    _op: Callable[..., None]
    # the state buffers, as adamkern.optim describes them (torch's state names)
    _buffers: tuple = ()
    _has_step = True  # torch keeps state['step'] for this optimizer
    # per-param scalar state the op takes as one array per call and updates in place, with its
    # initial value (NAdam's mu_product): a call steps params whose values are equal
    _shared_scalars: ClassVar[dict[str, float]] = {}
    _step_supports_amp_scaling = True  # grad_scale / found_inf as torch's fused optimizers
    _sparse_grads = False  # sparse COO grads are stepped (_sparse_step), as torch's class does

    def __init__(self, params: Any, *args: Any, **kwargs: Any):
        bound = self.__signature__.bind(params, *args, **kwargs)
        bound.apply_defaults()
        defaults = {k: v for k, v in bound.arguments.items() if k != "params"}
        name = f"adamkern.torch.{type(self).__name__}"
        for flag in ("capturable", "differentiable"):
            if defaults.get(flag):
                raise ValueError(f"{name} does not support {flag}=True (it steps CPU tensors "
                                 "eagerly)")
        # the storage keywords (state_dtype as a name); their combination with params is
        # checked per group
        defaults["state_dtype"] = mode_of(defaults).state_dtype
        given = dict(defaults)
        if "fused" in defaults and defaults["fused"] is None and not defaults.get("foreach"):
            # adamkern's kernel is a fused one (bitwise torch's fused one): recording it lets
            # a checkpoint loaded into torch.optim continue on torch's fused path, bit for bit
            # (unless foreach=True was asked for: torch refuses both)
            defaults["fused"] = True
        self._views: dict[int, tuple] = {}
        self._steady: StepViews | None = None  # the views a steady step reuses
        self._fused_asked = bool(given.get("fused"))  # torch's fused path refuses sparse grads
        super().__init__(params, defaults)  # each group checked by add_param_group
        if self._torch_class is not None:  # and the defaults, which groups may override
            try:
                torch_checks(self._torch_class, {k: given[k] for k in self._torch_arguments})
            except Exception as error:
                raise type(error)(f"{name}: {error}") from error

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """What each optimizer's op and torch's signature say, derived once per class (not
        per object, so copies and unpickled optimizers have it too): the group entries passed
        to the op, and the per-call arguments it takes."""
        super().__init_subclass__(**kwargs)
        cls.__signature__ = signature(cls._torch_class, cls._op)
        names = set(cls.__signature__.parameters)
        cls._hyperparameters = frozenset(op_hyperparameters(cls._op)) & names
        # the arguments of torch's constructor, which torch checks (see torch_checks)
        cls._torch_arguments = () if cls._torch_class is None else tuple(
            n for n in inspect.signature(cls._torch_class).parameters if n != "params")
        op_parameters = inspect.signature(cls._op).parameters
        cls._takes_step = "step" in op_parameters
        cls._takes_first_step = "is_first_step" in op_parameters

    # -- params and views --------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group, checking the group's hyperparameters and storage mode
        where they are given (as adamkern.optim does; torch checks some in its constructors),
        and refusing a param that shares memory with another one (of any group): a step
        would update that memory twice."""
        super().add_param_group(param_group)
        self._steady = None
        added = self.param_groups[-1]
        try:
            try:
                # torch's checks first: what torch refuses raises what torch raises
                torch_checks(self._torch_class, {k: added[k] for k in self._torch_arguments})
                optim.check_hyperparameters(self._op, added)
                added["state_dtype"] = mode_of(added).state_dtype  # as a name
            except Exception as error:
                where = f"param_groups[{len(self.param_groups) - 1}]"
                raise type(error)(f"{where}: {error}") from error
            check_disjoint(((g, i), p) for g, group in enumerate(self.param_groups)
                            for i, p in enumerate(group["params"]))
            g = len(self.param_groups) - 1
            for i, p in enumerate(self.param_groups[-1]["params"]):
                if p.layout is torch.strided and overlaps_itself(p):
                    raise ValueError(f"{name_of((g, i))} has elements that share memory (an "
                                     "expanded tensor); each element of a param needs memory "
                                     "of its own")
            self._check_storage(g, added)
        except Exception:
            self.param_groups.pop()
            raise

    def _check_storage(self, g: int, group: dict) -> None:
        """Asks the kernels whether they step the group's params in its storage mode (one
        param of each dtype and device, with state made as a step makes it, checked with
        found_inf=1: nothing is written); ValueError naming the param if not."""
        layout = self._layout(group)
        if layout.mode == DEFAULT_MODE:  # torch's own mode: every param torch steps
            return
        check_sharded_storage(g, group["params"], layout.mode.blockwise)
        seen = set()
        for i, param in enumerate(group["params"]):
            if (param.dtype, param.device) in seen:
                continue
            seen.add((param.dtype, param.device))
            probe = torch.zeros(1, dtype=param.dtype, device=param.device)
            state = self._new_entries(group, layout, probe, {})[0]
            views = {name: [self._check(t, (g, i, name), codes=True)]
                     for name, t in state.items()}
            arrays = {"params": [self._check(probe, (g, i))],
                      "grads": [self._check(torch.zeros_like(probe), (g, i, "grad"))],
                      **self._state_arrays(layout, views)}
            per_call = {"step": 1.0} if self._takes_step else {}
            per_call.update({k: np.full(1, v, np.float32) for k, v in self._shared_scalars.items()})
            per_call.update(self._precision(layout.mode, g, 1.0))
            try:
                type(self)._op(**arrays, **{k: group[k] for k in self._hyperparameters},
                               **per_call, found_inf=1.0)
            except (TypeError, ValueError) as error:
                keys = ", ".join(f"{k}={group.get(k, d)!r}" for k, d in MODE_DEFAULTS.items()
                                 if group.get(k, d) != d)
                raise ValueError(f"{name_of((g, i))} is {param.dtype} on {param.device}: the "
                                 f"kernels do not step it with {keys} ({error})") from None

    def _check(self, tensor: torch.Tensor, what: Label, codes: bool = False) -> np.ndarray:
        """The zero-copy NumPy view of a tensor the kernels can step (the tensor itself on
        CUDA, with adamkern's CUDA build), or a clear error; ``codes``: uint8 too (8-bit
        state). A tensor that is not contiguous is viewed as one 1-D run of its memory when
        dense, as a strided array when not (and marks the step as one whose tensors
        reconcile_layouts makes one layout). A DTensor is viewed through its local shard."""
        tensor = local_tensor(tensor, what)
        if not tensor.is_cpu:
            if tensor.device.type == "cuda":
                return check_cuda(tensor, name_of(what))
            raise ValueError(f"{name_of(what)} is on {tensor.device}; adamkern.torch optimizers "
                             "step CPU tensors (and CUDA tensors with adamkern's CUDA build)")
        if tensor.layout is not torch.strided:
            raise ValueError(f"{name_of(what)} has layout {tensor.layout}; adamkern.torch needs "
                             "dense tensors")
        dtype = tensor.dtype
        if dtype not in CPU_DTYPES and dtype not in LOW_DTYPES and not (
                codes and dtype is torch.uint8):
            if tensor.is_complex():
                raise ValueError(f"{name_of(what)} is complex; adamkern.torch needs real tensors")
            raise TypeError(f"{name_of(what)} has dtype {dtype}; expected float32, float64, "
                            "bfloat16 or float16")
        # grads seldom require grad, and detach() would cost a third of this function
        if tensor.requires_grad:
            tensor = tensor.detach()
        if not tensor.is_contiguous():
            self._strided = True
            return as_numpy(flat(tensor) if is_dense(tensor) else tensor)
        return tensor.numpy() if dtype is not torch.bfloat16 else as_numpy(tensor)

    def _view(self, tensor: torch.Tensor, what: Label, codes: bool = False) -> np.ndarray:
        """_check's view, cached for params and state (the same tensors every step; a tensor
        whose storage moved is viewed again; a DTensor's storage is its local shard's)."""
        local = local_tensor(tensor, what)
        entry = self._views.get(id(tensor))
        if entry is not None and entry[0] is tensor and entry[1] == local.data_ptr():
            return entry[2]
        view = self._check(local, what, codes)
        if local.is_contiguous():  # others are viewed each step, marking it (see _check)
            self._views[id(tensor)] = (tensor, local.data_ptr(), view)
        return view

    # -- stepping ----------------------------------------------------------------------------

    def _group_calls(self, g: int, group: dict, undo: list,
                     steps: list[_Counts], copies: list,
                     grad_scale: float | None, built: list) -> list[_Call]:
        """Group ``g``'s op calls (one in the common case); appends the step counts of its
        calls' params to ``steps``, the tensors stepped on copies, with
        their copies, to ``copies``, and the group's views to ``built`` (None where they cannot
        be reused, see :mod:`adamkern._torch_views`)."""
        params = group["params"]
        indices = [i for i, p in enumerate(params) if p.grad is not None]
        if not indices:
            built.append(GroupViews(group, [], None, [], {}, {}, None))
            return []
        self._strided = False  # set by _check when a tensor is not contiguous
        # params and grads before their state: an error names the param, not a state made of it
        param_views = [self._view(params[i], (g, i)) for i in indices]
        grads = [params[i].grad for i in indices]
        grad_views = [self._check(grad, (g, i, "grad")) for i, grad in zip(indices, grads)]
        layout = self._layout(group)
        entries, first = self._state_entries(g, group, layout, indices, undo)
        blockwise = layout.mode.blockwise
        state = {name: [self._view(t, (g, i, name), blockwise) for i, t in zip(indices, tensors)]
                 for name, tensors in entries.items()}
        if self._strided:
            if blockwise:  # the codes must not be copied into another order (see _torch_lowp)
                for _, (codes, _) in layout.buffers:
                    for i, tensor in zip(indices, entries[codes]):
                        check_codes_order(tensor, params[i], name_of((g, i, codes)))
            reconcile_layouts(g, params, indices,
                              {"params": param_views, "grads": grad_views, **state}, entries,
                              list(layout.shaped), copies, grad_scale is not None)
        arrays = {"params": param_views, **self._state_arrays(layout, state)}
        dtypes = _dtypes(param_views)
        stepped = [params[i] for i in indices]
        built.append(GroupViews(group, indices, layout, [self.state[p] for p in stepped],
                                state, arrays, dtypes)
                     if not self._strided and GroupViews.viewable(stepped, grads,
                                                                  param_views + grad_views)
                     else None)
        return self._calls(g, group, indices, {**arrays, "grads": grad_views}, state, first,
                           dtypes, steps, layout.mode)

    def _calls(self, g: int, group: dict, indices: list[int], arrays: dict[str, list],
               state: dict[str, list], first: list[bool], dtypes: list | None,
               steps: list[_Counts], mode: Mode) -> list[_Call]:
        """The calls of group ``g`` stepping its params ``indices`` with ``arrays`` (the views
        of ``state`` among them); ``first``: whether it is each one's first step, ``dtypes``:
        the params' dtypes where they differ (see _dtypes)."""
        values: dict[str, list] = {}  # per param, the op's arguments that are one per call
        if "step" in state:
            counts = _Counts.of(state["step"])
            steps.append(counts)
            values["step" if self._takes_step else "_count"] = counts.per_param()
        if self._takes_first_step:
            values["is_first_step"] = first
        for name in self._shared_scalars:
            values[name] = list(map(float, state[name]))
        if dtypes is not None:  # one dtype per call, as torch's fused
            values["_dtype"] = dtypes
        return self._split(g, group, indices, arrays, state, values, mode)

    def _split(self, g: int, group: dict, indices: list[int], arrays: dict[str, list],
               state: dict[str, list], values: dict[str, list], mode: Mode) -> list[_Call]:
        """The calls stepping the group's params ``indices``: one per set of params with equal
        per-call ``values`` (step count, SGD's first step, NAdam's mu_product; and the dtype
        under ``_dtype``, and the step count of an op without one under ``_count``, which only
        split)."""
        hyperparameters = {k: group[k] for k in self._hyperparameters}
        calls = []
        for chosen, per_call in _partition(values):
            pick = ((lambda xs: xs) if chosen is None
                    else (lambda xs, chosen=chosen: [xs[k] for k in chosen]))
            shared = {name: pick(state[name]) for name in self._shared_scalars}
            precision = self._precision(mode, g, per_call.get("step", per_call.get("_count")))
            per_call = {k: v for k, v in per_call.items() if not k.startswith("_")}
            arguments = {**{k: pick(v) for k, v in arrays.items()}, **hyperparameters, **per_call,
                         **precision,
                         **{name: views[0].reshape(1) for name, views in shared.items()}}
            calls.append(_Call(g, pick(indices), arguments, shared))
        return calls

    def _call_op(self, call: _Call, grad_scale: float | None, found_inf: float | None) -> None:
        """The op's call (found_inf=1: a check that writes nothing), its errors worded with
        the group's param indices."""
        try:
            type(self)._op(**call.arguments, grad_scale=grad_scale, found_inf=found_inf)
        except (TypeError, ValueError) as error:
            raise type(error)(self._named(str(error), call)) from None

    def _named(self, message: str, call: _Call) -> str:
        """The op's error message, naming arrays as the group's params: the op counts the
        arrays of its own call, which holds some of the group's params (those with grads and
        equal per-call values)."""
        parts = {"params": None, "grads": "grad", "master_params": "master",
                 **{b.keyword: b.name for b in self._buffers}}

        def name(match: re.Match) -> str:
            kind, k = match[1], int(match[2])
            if kind not in parts or k >= len(call.indices):
                return match[0]
            part = parts[kind]
            index = call.indices[k]
            return name_of((call.group, index) if part is None else (call.group, index, part))

        named, count = _ARRAY_INDEX.subn(name, message)
        return named if count else f"param_groups[{call.group}]: {message}"

    def _check_calls(self, calls: list[_Call], grad_scale: float | None) -> None:
        """Checks every call before any runs: each op checks all its arguments with
        found_inf=1 (and writes nothing); params of different calls must not share memory
        (an op checks its own call's; checked again only once a param's view changed)."""
        views = [view for call in calls for view in call.arguments["params"]]
        checked = self.__dict__.get("_disjoint_views")
        if not (checked is not None and len(checked) == len(views)
                and all(map(operator.is_, checked, views))):
            check_disjoint(((call.group, i), self.param_groups[call.group]["params"][i])
                            for call in calls for i in call.indices)
            self._disjoint_views = views
        for call in calls:
            self._call_op(call, grad_scale, 1.0)

    def _run(self, call: _Call, grad_scale: float | None) -> None:
        """One call's update."""
        self._call_op(call, grad_scale, None)
        for views in call.shared.values():  # the op updated the first param's; copied to all
            for view in views[1:]:
                view[()] = views[0]

    @hooked_step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every param that has a grad (torch's ``step``), after ``closure`` if
        given (its loss is returned). Skipped whole, step counts unchanged, when AMP's
        ``found_inf`` is set. The recorders (``add_recorder``, ``opt.history``) are told what
        the step did. torch's step hooks run around it (see :mod:`adamkern._torch_step`)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        if found_inf is not None and float(found_inf) != 0.0:
            if self._recorders:
                with torch.no_grad():
                    self._record_end(self._step_record(grad_scale, skipped=True))
            return loss
        scale = None if grad_scale is None else float(grad_scale)
        # a steady step runs no torch op that autograd would record: it steps NumPy views. It
        # refuses a sparse grad (nothing written), so the scan for sparse grads (Adagrad, SGD)
        # costs only the steps that are not steady; row-wise groups never take it.
        rowwise = self._sparse_grads and any(group.get("rowwise") for group in self.param_groups)
        if (self._steady is not None and not self._recorders and not rowwise
                and self._steady_update(scale)):
            return loss
        with torch.no_grad():
            if self._sparse_grads and any(
                    p.grad is not None and (p.grad.is_sparse or group.get("rowwise"))
                    for group in self.param_groups for p in group["params"]):
                self._sparse_update(scale)
            else:
                self._update(grad_scale)
        return loss

    def _update(self, grad_scale: Any) -> None:
        """Every group's calls prepared and checked, then run; a failure before the first call
        writes removes the state the step created (the first call checks all it writes before
        writing, later calls were checked beforehand). The copies of params not dense are
        written back and the step counts set only once every call succeeded. In a training
        loop's steady state, step() first tries the views of the step before
        (_steady_update)."""
        scale = None if grad_scale is None else float(grad_scale)
        self._steady = None
        undo: list = []
        steps: list[_Counts] = []
        copies: list[tuple[torch.Tensor, torch.Tensor]] = []  # (tensor, the copy stepped)
        built: list[GroupViews | None] = []
        record = None
        try:
            calls = [call for g, group in enumerate(self.param_groups)
                     for call in self._group_calls(g, group, undo, steps, copies, scale, built)]
            # A lone call checks everything before it writes; anything else is checked first
            # (and a call on copies, which its op cannot check against the other params).
            if len(calls) > 1 or (calls and (self._recorders or copies)):
                self._check_calls(calls, scale)
            if self._recorders:
                record = self._step_record(grad_scale, skipped=False)
                self._record_update(record.params)
            if calls:
                self._run(calls[0], scale)
        except BaseException:
            self._undo(undo)
            raise
        for call in calls[1:]:
            self._run(call, scale)
        for tensor, copy in copies:
            tensor.detach().copy_(copy)
        for counts in steps:
            counts.write()
        if all(views is not None for views in built):
            self._steady = StepViews(self, built)
        if record is not None:
            self._record_end(record)

    def _steady_update(self, scale: float | None) -> bool:
        """The step on the views the step before made, where they still hold (see
        :mod:`adamkern._torch_views`): True once it is done. False where they do not, or where
        anything refuses before a call writes (nothing is changed then): the full step
        follows, and raises its own error or steps what these views cannot. The step counts
        are written before the first call, while they are in cache (the kernel's pass over
        memory evicts them), and written back if it refuses."""
        steady = self._steady
        steps: list[_Counts] = []
        calls: list[_Call] = []
        try:
            if not steady.current(self):
                return False
            for g, views in enumerate(steady.groups):
                layout = self._layout(views.group) if views.stepped else None
                grad_views = views.refresh(layout)
                if grad_views is None:
                    return False
                if grad_views:
                    calls += self._calls(g, views.group, views.indices,
                                         {**views.arrays, "grads": grad_views}, views.state,
                                         [False] * len(grad_views), views.dtypes, steps,
                                         layout.mode)
            if len(calls) > 1:
                self._check_calls(calls, scale)
        except Exception:
            return False
        for counts in steps:
            counts.write()
        try:
            if calls:
                self._run(calls[0], scale)
        except BaseException as error:
            for counts in steps:
                counts.write(after=False)
            if not isinstance(error, Exception):
                raise
            return False
        for call in calls[1:]:
            self._run(call, scale)
        return True

    def _sparse_update(self, grad_scale: float | None) -> None:
        """A step where some params have sparse COO grads (or are in a row-wise group): each
        of those is checked and its state made (torch's errors where torch refuses the
        group's options with a sparse grad), the other params get the dense step (with their
        grads alone), then each sparse one its row step. Nothing is written before
        everything is checked; a failed dense step removes the state made for the sparse
        ones."""
        undo: list = []
        runs = []
        saved = []
        try:
            for g, group in enumerate(self.param_groups):
                rowwise = group.get("rowwise")
                for i, p in enumerate(group["params"]):
                    if p.grad is None or not (p.grad.is_sparse or rowwise):
                        continue
                    if (p.grad.is_sparse and not rowwise and group.get("fused")
                            and getattr(self, "_fused_asked", False)):
                        raise RuntimeError(self._fused_sparse_error)
                    if grad_scale is not None:
                        raise ValueError(f"{name_of((g, i))} has a sparse grad or a row-wise "
                                         "group: adamkern.torch does not unscale those grads "
                                         "(AMP grad scaling)")
                    if mode_of(group) != DEFAULT_MODE:
                        raise ValueError(f"{name_of((g, i))} has a sparse grad: the row-sparse "
                                         "step keeps state in the param's dtype (state_dtype="
                                         "None, no master weights, nearest rounding)")
                    runs.append(self._sparse_step(g, i, group, p, undo))
                    saved.append((p, p.grad))
            for p, _ in saved:
                p.grad = None
            try:
                if any(p.grad is not None for group in self.param_groups
                       for p in group["params"]):
                    self._update(grad_scale)
            finally:
                for p, grad in saved:
                    p.grad = grad
        except BaseException:
            self._undo(undo)
            raise
        self._steady = None
        for run in runs:
            run()

    def _sparse_step(self, g: int, i: int, group: dict, param: torch.Tensor,
                     undo: list) -> Callable[[], None]:
        """The row step of a param with a sparse grad, checked, with its state made (noted
        in ``undo``)."""
        raise NotImplementedError

    def _step_record(self, grad_scale: Any, skipped: bool) -> StepRecord:
        """This step's record for the recorders, told the step begins: the lrs, the params that
        have grads (as arrays), and the grad norm (unscaled) if a recorder wants it. torch's
        optimizers count steps per param: the record has no step index of its own."""
        lrs = [float(group["lr"]) for group in self.param_groups]
        pairs = [(p, p.grad) for group in self.param_groups for p in group["params"]
                 if p.grad is not None]
        params = [self._view(p, f"param {i}") for i, (p, _) in enumerate(pairs)]
        norm = None
        if self._record_begin() and pairs:
            grads = [self._check(g, f"grad {i}") for i, (_, g) in enumerate(pairs)]
            norm = grad_norm(grads) / (1.0 if grad_scale is None else float(grad_scale))
        return StepRecord(None, lrs, norm, skipped, params)
