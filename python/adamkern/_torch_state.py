"""The state of :mod:`adamkern.torch`'s optimizers in each param group's storage mode (see
:mod:`adamkern._torch_lowp`): which entries a step reads, how a param's first step makes
them (and a failed step removes them again), the op's state arguments made of their views,
and checkpoints: ``load_state_dict`` keeps the dtypes a state was saved in and converts one
of another mode."""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch.optim.optimizer import _get_scalar_dtype

from adamkern._torch_lowp import (MODE_DEFAULTS, Mode, buffer_names, call_seed, convert_buffer,
                                  mode_of, new_buffer, new_master, other_format)
from adamkern._torch_tensors import float_scalar, name_of
from adamkern.lowp import Blockwise8

__all__ = ["Layout", "TorchState"]

_NO_STATE = MappingProxyType({})  # the state of a param never stepped, read without adding it


class Layout(NamedTuple):
    """The state a group's step reads, in the group's storage mode."""

    mode: Mode
    names: tuple[str, ...]  # every entry, in the order a param's state is made
    shaped: tuple[str, ...]  # those of the param's shape (laid out as the param)
    buffers: tuple[tuple[Any, tuple[str, ...]], ...]  # each buffer used, with its entries


@functools.lru_cache(maxsize=None)
def _layout_of(cls: type, mode: Mode, needed: tuple[bool, ...]) -> Layout:
    """The layout of optimizer ``cls``'s state in ``mode``, with the buffers ``needed`` (one
    flag per buffer: the group's options use it)."""
    buffers = tuple((b, buffer_names(b.name, mode))
                    for b, used in zip(cls._buffers, needed) if used)
    master = ("master",) if mode.master_weights else ()
    # a stochastic step needs a step count, which optimizers that keep none keep then
    step = ("step",) if cls._has_step or mode.stochastic else ()
    names = (step + tuple(cls._shared_scalars) + tuple(n for _, ns in buffers for n in ns)
             + master)
    return Layout(mode, names, tuple(ns[0] for _, ns in buffers) + master, buffers)


class TorchState:
    """The state half of adamkern.torch's optimizers (a mixin of torch.optim.Optimizer
    subclasses that name ``_buffers``, ``_has_step`` and ``_shared_scalars``)."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Where torch's load_state_dict (and unpickling) ends. As torch's own classes do
        here, steps (and mu_products) an older torch saved as numbers become float scalar
        tensors, as do int64 ones, and groups saved without the storage keys or adamkern's
        own options (by torch, or an older adamkern) take the constructor's; the views cached
        of the replaced state are dropped."""
        super().__setstate__(state)
        self._views = {}
        self._steady = None
        for group in self.param_groups:
            for key, default in {**MODE_DEFAULTS, **self.defaults}.items():
                group.setdefault(key, default)
            for param in group["params"]:
                entries = self.state.get(param)
                if not entries:
                    continue
                if "step" in entries:
                    entries["step"] = float_scalar(
                        entries["step"], _get_scalar_dtype(is_fused=group.get("fused")))
                for name in self._shared_scalars.keys() & entries.keys():
                    entries[name] = float_scalar(entries[name], _get_scalar_dtype())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load_state_dict, keeping each state tensor in the dtype it was saved in
        (torch casts every one to its param's dtype), then bringing each buffer to its group's
        storage mode: a state dict of the same mode loads bit for bit, one of another mode
        (or torch.optim's) is converted (see :mod:`adamkern._torch_lowp`). The groups' storage
        keys are the state dict's, as its hyperparameters are (the constructor's where it has
        none). Raises, and changes nothing, where the kernels refuse a group's mode for its
        params, or a buffer cannot be converted."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) == len(self.param_groups):  # else torch's error
            for g, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
                merged = {**group, **saved, "params": group["params"]}
                try:
                    mode_of(merged)
                except (TypeError, ValueError) as error:
                    raise type(error)(f"param_groups[{g}]: {error}") from None
                self._check_storage(g, merged)
        before = {"state": self.state, "param_groups": self.param_groups}
        super().load_state_dict(state_dict)
        try:
            self._restore_dtypes(state_dict)
            for group in self.param_groups:
                mode = mode_of(group)
                for param in group["params"]:
                    state = self.state.get(param)
                    if state:
                        for buffer in self._buffers:
                            convert_buffer(state, buffer.name, param, mode)
                        if not mode.master_weights:
                            state.pop("master", None)
        except BaseException:
            self.__setstate__(before)
            raise

    def _restore_dtypes(self, state_dict: dict[str, Any]) -> None:
        """Undoes the casts of load_state_dict: each state tensor but the step as it was
        saved (moved to its param's device, as torch moves it), 8-bit codes, their absmax,
        float32 master copies and NAdam's mu_product of 16-bit params included."""
        saved_ids = (k for group in state_dict["param_groups"] for k in group["params"])
        params = (p for group in self.param_groups for p in group["params"])
        for key, param in zip(saved_ids, params):
            saved, state = state_dict["state"].get(key), self.state.get(param)
            if not saved or not state:
                continue
            for name, value in saved.items():
                if name != "step" and isinstance(value, torch.Tensor) and name in state:
                    state[name] = value.to(device=param.device)

    def _layout(self, group: dict) -> Layout:
        """The state entries a step of the group reads, in its storage mode."""
        return _layout_of(type(self), mode_of(group),
                          tuple(b.needed(group) for b in self._buffers))

    def _new_entries(self, group: dict, layout: Layout, param: torch.Tensor,
                     state: Any) -> tuple[dict[str, torch.Tensor], bool]:
        """The entries of ``layout`` that ``state`` lacks, made as torch's optimizer makes them
        (in the group's storage mode), and whether a buffer is among them (the param's first
        step). Raises ValueError where a buffer is held in another mode's format."""
        new: dict[str, torch.Tensor] = {}
        if "step" in layout.names and "step" not in state:
            new["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype(is_fused=group.get("fused")))
        for name in self._shared_scalars.keys() - state.keys():
            new[name] = torch.tensor(self._shared_scalars[name], dtype=_get_scalar_dtype())
        first = False
        for buffer, names in layout.buffers:
            if all(name in state for name in names):
                continue
            held = other_format(state, buffer.name, layout.mode)
            if held is not None:
                raise ValueError(f"its state holds {held!r}, of another storage mode than the "
                                 "group's; a group's state_dtype changes through "
                                 "state_dict() and load_state_dict(), which convert the state")
            value = group[buffer.init] if isinstance(buffer.init, str) else buffer.init
            new.update(new_buffer(param, buffer.name, value, layout.mode))
            first = True
        if layout.mode.master_weights and "master" not in state:
            new["master"] = new_master(param)
        return new, first

    def _init_state(self, g: int, i: int, group: dict, layout: Layout, param: torch.Tensor,
                    undo: list) -> bool:
        """Adds the entries of the layout the param's state lacks; True if it added a buffer
        (the param's first step). ``undo`` notes the keys there were before (None: no
        state)."""
        state = self.state.get(param, _NO_STATE)
        if all(name in state for name in layout.names):
            return False
        try:
            new, first = self._new_entries(group, layout, param, state)
        except ValueError as error:
            raise ValueError(f"{name_of((g, i))}: {error}") from None
        undo.append((param, set(state) if param in self.state else None))
        self.state[param].update(new)
        return first

    def _undo(self, undo: list) -> None:
        """Removes what a failed step added to the state (and the views cached of it), so the
        next step is not taken for a later one."""
        self._steady = None
        for param, keys in reversed(undo):
            state = self.state[param]
            for name in [name for name in state if keys is None or name not in keys]:
                self._views.pop(id(state.pop(name)), None)
            if keys is None:
                del self.state[param]

    def _state_entries(self, g: int, group: dict, layout: Layout, indices: list[int],
                       undo: list) -> tuple[dict[str, list], list[bool]]:
        """The state entries of the group's params ``indices`` by name, allocating what is
        missing, and per param whether this is its first step."""
        params = [group["params"][i] for i in indices]
        states = [self.state.get(p, _NO_STATE) for p in params]
        try:
            return ({name: [s[name] for s in states] for name in layout.names},
                    [False] * len(params))
        except KeyError:  # some param's first step, or an entry the group's options now need
            first = [self._init_state(g, i, group, layout, p, undo)
                     for i, p in zip(indices, params)]
            states = [self.state[p] for p in params]
            return {name: [s[name] for s in states] for name in layout.names}, first

    @staticmethod
    def _state_arrays(layout: Layout, views: dict[str, list]) -> dict[str, list]:
        """The op's state arguments from the views of the state entries: each buffer's list
        (8-bit ones as Blockwise8 of their codes and absmax), and the master copies."""
        arrays = {}
        for buffer, names in layout.buffers:
            if len(names) == 1:
                arrays[buffer.keyword] = views[names[0]]
            else:
                arrays[buffer.keyword] = [Blockwise8(codes, absmax, buffer.signed)
                                          for codes, absmax in zip(*map(views.get, names))]
        if layout.mode.master_weights:
            arrays["master_params"] = views["master"]
        return arrays

    @staticmethod
    def _precision(mode: Mode, g: int, count: float | None) -> dict[str, Any]:
        """The rounding arguments of a call of group ``g`` whose params' step count after
        this step is ``count``."""
        if not mode.stochastic:
            return {}
        return {"rounding": "stochastic", "seed": call_seed(mode, g, count)}
