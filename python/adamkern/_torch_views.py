"""What a step of :mod:`adamkern.torch`'s optimizers reuses from the step before it, once a
training loop is in its steady state: each param group's NumPy views of its params and state
(and the op's state arguments made of them), kept from the last full step that succeeded, and
checked at each step by what a change would alter, which costs far less than viewing every
tensor again:

- the groups (``param_groups`` and each group's ``params``) and the state (``opt.state``, each
  param's entries) hold the same objects (compared by identity: ``add_param_group``,
  ``load_state_dict``, a param added to a group, a param's state or a state entry replaced
  all show here);
- the same params have grads;
- params and state tensors lie in the same memory (``data_ptr``: ``p.data = ...`` shows here),
  as the views :meth:`adamkern._torch_kernel._KernelOptimizer._view` caches are checked;
- the group's storage layout (its mode, the buffers its options need) is the same.

Grads are read at every step and handed to the op as the tensors they are (the binding views
them, and releases its views before the kernel runs); no grad is held after the step (autograd
makes new ones each step; holding the last ones would keep their memory). Whatever these
checks do not vouch for (a grad that is not contiguous or of another dtype; a bad value in a
group) makes the op refuse its call before it writes anything, and the optimizer then takes
the full step, which raises its own error or steps what these views cannot.
"""

from __future__ import annotations

import operator
from itertools import chain, repeat
from typing import Any

import numpy as np
import torch

__all__ = ["GroupViews", "StepViews"]

_GRAD = operator.attrgetter("grad")
_DATA_PTR = torch.Tensor.data_ptr
_IS = operator.is_
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # not a subclass (DTensor...): viewed each step


def _same(items: list, cached: list) -> bool:
    """Whether two lists hold the same objects, in order (by identity: tensors compare
    elementwise)."""
    return len(items) == len(cached) and all(map(_IS, items, cached))


class GroupViews:
    """One param group's views, as the last full step made them, and what they were made of."""

    __slots__ = ("arrays", "dtypes", "entries", "entry_ptrs", "group", "indices", "layout",
                 "no_grads", "param_ptrs", "params", "picked", "state", "states", "stepped",
                 "take")

    def __init__(self, group: dict, indices: list[int], layout: Any, states: list[dict],
                 state: dict[str, list[np.ndarray]], arrays: dict[str, list],
                 dtypes: list | None) -> None:
        params = group["params"]
        self.group = group
        self.params = list(params)
        self.no_grads = [p.grad is None for p in params]
        self.indices = indices  # the params with grads
        self.picked = None if len(indices) == len(params) else indices
        self.stepped = [params[i] for i in indices]
        self.param_ptrs = list(map(_DATA_PTR, self.stepped))
        self.layout = layout
        self.states = states
        self.take = (operator.itemgetter(*layout.names) if layout is not None and layout.names
                     else None)
        self.entries = self._entries()
        self.entry_ptrs = list(map(_DATA_PTR, self.entries))
        self.state = state  # the state entries' views by name
        self.arrays = arrays  # the op's array arguments, the grads' aside
        self.dtypes = dtypes  # the params' dtypes where they differ

    @staticmethod
    def viewable(params: list[torch.Tensor], grads: list[torch.Tensor],
                 views: list[np.ndarray]) -> bool:
        """Whether views made of these tensors can be reused: plain CPU tensors (the kernels'
        NumPy views, in place), grads that ``.numpy()`` views as they are."""
        return (all(type(view) is np.ndarray for view in views)
                and all(type(p) in _PLAIN for p in params)
                and all(type(g) in _PLAIN and not g.requires_grad for g in grads))

    def _entries(self) -> list:
        """The state tensors the group's step reads, param by param (KeyError: one is
        missing)."""
        if self.take is None:
            return []
        if len(self.layout.names) == 1:
            return list(map(self.take, self.states))
        return list(chain.from_iterable(map(self.take, self.states)))

    def refresh(self, layout: Any) -> list[torch.Tensor] | None:
        """This step's grads if the group's views still hold (its storage ``layout`` now
        given), else None."""
        params = self.group["params"]
        if layout is not self.layout or not _same(params, self.params):
            return None
        grads = list(map(_GRAD, params))
        if list(map(_IS, grads, repeat(None))) != self.no_grads:
            return None
        if self.picked is not None:
            grads = [grads[i] for i in self.picked]
        if list(map(_DATA_PTR, self.stepped)) != self.param_ptrs:
            return None
        try:
            entries = self._entries()
        except KeyError:
            return None
        if not _same(entries, self.entries) or list(map(_DATA_PTR, entries)) != self.entry_ptrs:
            return None
        return grads


class StepViews:
    """Every group's views, and the objects whose identity says they still hold."""

    __slots__ = ("groups", "param_groups", "state", "state_keys", "state_values", "the_groups")

    def __init__(self, optimizer: torch.optim.Optimizer, groups: list[GroupViews]) -> None:
        self.param_groups = optimizer.param_groups
        self.the_groups = list(optimizer.param_groups)
        self.state = optimizer.state
        self.state_keys = list(optimizer.state)
        self.state_values = list(optimizer.state.values())
        self.groups = groups

    def current(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether the optimizer holds the same groups and the same state dicts."""
        state = optimizer.state
        return (optimizer.param_groups is self.param_groups
                and _same(self.param_groups, self.the_groups)
                and state is self.state and len(state) == len(self.state_keys)
                and all(map(_IS, state.values(), self.state_values))
                and all(map(_IS, state, self.state_keys)))
