"""adamkern.optim.Adafactor: torch.optim.Adafactor's state and checkpoints over NumPy arrays.

Adafactor's state is shaped by each param (factors of its last two dimensions), so it is not
one of the registry's one-pass optimizers (adamkern.optim.Optimizer): this class holds its
param groups and per-param state (torch's names: ``step``, ``row_var`` and ``col_var`` or
``variance``) itself and steps each group with one :func:`adamkern.adafactor_` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from adamkern import ops

__all__ = ["Adafactor"]

_DEFAULTS: dict[str, Any] = {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
                             "weight_decay": 0.0, "maximize": False}


def state_shapes(shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The state arrays torch keeps for a param of this shape."""
    if len(shape) >= 2:
        return {"row_var": shape[:-1] + (1,), "col_var": shape[:-2] + (1, shape[-1])}
    return {"variance": shape}


class Adafactor:
    """torch.optim.Adafactor over NumPy arrays (float32 or float64, one dtype per group); see
    :func:`adamkern.adafactor_`. ``lr`` may be a callable of the step index (0 at the first
    step). State: per param ``step`` (its own count, as torch's) and ``row_var``/``col_var``
    (params with two or more dimensions: rows + cols values per matrix) or ``variance``.

    >>> opt = adamkern.optim.Adafactor([w, b], lr=1e-2)
    >>> opt.step([grad_w, grad_b])
    """

    def __init__(self, params: Sequence[np.ndarray] | Sequence[dict], **hyperparameters: Any):
        unknown = sorted(set(hyperparameters) - set(_DEFAULTS))
        if unknown:
            raise TypeError(f"Adafactor got unknown hyperparameters {unknown}; it takes "
                            f"{sorted(_DEFAULTS)}")
        self.defaults = {**_DEFAULTS, **hyperparameters}
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of param-group dicts")
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)
        self.step_count = 0
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    @property
    def params(self) -> list[np.ndarray]:
        return [p for group in self.param_groups for p in group["params"]]

    def add_param_group(self, group: dict[str, Any]) -> None:
        group = {**self.defaults, **group, "params": list(group["params"])}
        self._check(group)
        self.param_groups.append(group)
        if hasattr(self, "state"):
            self.state += [{} for _ in group["params"]]

    def _hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        values = {k: group[k] for k in _DEFAULTS}
        if callable(values["lr"]):
            values["lr"] = float(values["lr"](getattr(self, "step_count", 0)))
        return values

    def _check(self, group: dict[str, Any]) -> None:
        """Refuses bad hyperparameters (the kernel's own checks, on no arrays)."""
        ops.adafactor_([], [], [], [], [], step=[], **self._hyperparameters(group))

    def state_nbytes(self) -> int:
        """Bytes of state held now."""
        return sum(a.nbytes for s in self.state for a in s.values() if isinstance(a, np.ndarray))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        """One step of every param, ``grads`` in the order of :attr:`params`. A step that
        raises changes nothing (the state it would have created is not kept)."""
        grads = list(grads)
        if len(grads) != len(self.params):
            raise ValueError(f"step got {len(grads)} grads for {len(self.params)} params")
        calls, first = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            indices = range(first, first + count)
            first += count
            states = []
            for i, p in zip(indices, group["params"]):
                state = self.state[i] or {"step": 0.0, **{
                    name: np.zeros(shape, p.dtype)
                    for name, shape in state_shapes(p.shape).items()}}
                states.append(state)
            calls.append((indices, states, dict(
                params=group["params"], grads=[grads[i] for i in indices],
                row_vars=[s.get("row_var") for s in states],
                col_vars=[s.get("col_var") for s in states],
                variances=[s.get("variance") for s in states],
                step=[s["step"] + 1.0 for s in states], **self._hyperparameters(group))))
        for _, _, call in calls:  # hyperparameters first: no group steps if one is refused
            self._check(call)
        for indices, states, call in calls:
            ops.adafactor_(**call)
            for i, state in zip(indices, states):
                state["step"] += 1.0
                self.state[i] = state
        self.step_count += 1

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``state`` by param index (copies), ``param_groups`` with indices."""
        groups, first = [], 0
        for group in self.param_groups:
            count = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(first, first + count))})
            first += count
        state = {i: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for i, s in enumerate(self.state) if s}
        return {"state": state, "param_groups": groups, "step_count": self.step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state dict of this class (or torch's, with arrays or tensors): shapes and
        dtypes must fit the params; nothing changes if one does not."""
        params = self.params
        loaded: list[dict[str, Any]] = [{} for _ in params]
        for key, state in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"state for param {i}, but there are {len(params)} params")
            p = params[i]
            entry: dict[str, Any] = {"step": float(np.asarray(state["step"]).item())}
            for name, shape in state_shapes(p.shape).items():
                value = state.get(name)
                if value is None:
                    raise ValueError(f"state[{i}] lacks {name!r}")
                array = np.array(value.numpy() if hasattr(value, "numpy") else value,
                                 dtype=p.dtype)
                if array.shape != shape:
                    raise ValueError(f"state[{i}][{name!r}] has shape {array.shape}; "
                                     f"expected {shape}")
                entry[name] = np.ascontiguousarray(array)
            loaded[i] = entry
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{len(groups)} param groups for {len(self.param_groups)}")
        hyper = [{k: groups[g].get(k, self.param_groups[g][k]) for k in _DEFAULTS}
                 for g in range(len(groups))]
        for g, values in enumerate(hyper):
            self._check({**values, "params": []})
        for group, values in zip(self.param_groups, hyper):
            group.update(values)
        self.state = loaded
        self.step_count = int(state_dict.get("step_count", max(
            (s["step"] for s in loaded if s), default=0)))
