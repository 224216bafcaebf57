"""The checks adamkern.optim and adamkern.torch share, made where a value is given rather
than at the next step: hyperparameters (by the functional op itself, on no tensors), params
sharing memory, and param groups that check a value when it is assigned."""

from __future__ import annotations

import inspect
import itertools
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from adamkern import registry
from adamkern._opcall import is_real

__all__ = ["ParamGroup", "check_disjoint", "check_hyperparameters", "first_overlap",
           "op_hyperparameters"]

# Keyword-only arguments of the functional ops that are not hyperparameters: per-call values
# and the optional state lists.
_NOT_HYPERPARAMETERS = {"step", "grad_scale", "found_inf", "mu_product", "weight_sums",
                        "group_scalars", "is_first_step",
                        "max_exp_avg_sqs", "momentum_buffers", "grad_avgs", "master_params",
                        "rounding", "seed"}


def op_hyperparameters(op: Callable[..., None]) -> dict[str, Any]:
    """The hyperparameters of a functional op (adamkern.adam_, ...) and their defaults."""
    return {name: p.default for name, p in inspect.signature(op).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in _NOT_HYPERPARAMETERS}


def first_overlap(ranges: Iterable[tuple[Any, int, int, Any]]) -> tuple[Any, Any] | None:
    """The labels of two of the ``(space, begin, end, label)`` byte ranges that overlap, the
    one listed first first; None if none do. Ranges of different spaces (devices) never
    overlap. One sort, then neighbours: a range overlapping any other overlaps the next one
    in order of begin."""
    listed = sorted((space, begin, end, order, label)
                    for order, (space, begin, end, label) in enumerate(ranges) if end > begin)
    for a, b in zip(listed, listed[1:]):
        if a[0] == b[0] and b[1] < a[2]:
            first, second = sorted((a, b), key=operator.itemgetter(3))
            return first[4], second[4]
    return None


def check_disjoint(arrays: list[tuple[np.ndarray, str]]) -> None:
    """Raises ValueError naming two of the (C-contiguous array, name) pairs whose bytes
    overlap, the later one first."""
    pair = first_overlap((0, a.ctypes.data, a.ctypes.data + a.nbytes, name) for a, name in arrays)
    if pair is not None:
        raise ValueError(f"{pair[1]} overlaps {pair[0]}: every param (and grad) must be a buffer "
                         "of its own, or it would be stepped twice")


def check_hyperparameters(op: Callable[..., None], values: dict[str, Any]) -> None:
    """Checks the hyperparameters of a param group of functional op ``op`` (types, ranges,
    combinations), and the options that start its state, where they are given: by the op
    itself, on no tensors (with found_inf=1 it validates every argument and writes nothing).
    A callable is checked at each step, on its value; here its default stands in for it.
    Other entries of ``values`` are ignored, missing ones are the op's defaults."""
    defaults = op_hyperparameters(op)
    arguments = {}
    for name, default in defaults.items():
        value = values.get(name, default)
        if isinstance(value, (tuple, list)):  # betas: each entry may be a callable
            value = tuple(d if callable(v) else v for v, d in itertools.zip_longest(value, default))
        arguments[name] = default if callable(value) else value
    parameters = inspect.signature(op).parameters
    extra = {name: value for name, value in (("step", 1), ("mu_product", np.ones(1)),
                                             ("weight_sums", np.array([-1.0, 0.0])),
                                             ("group_scalars", np.array([1.0, 1, 0, 0, 0, 0])))
             if name in parameters}
    description = registry.describe(op.__name__)
    op(params=[], grads=[], **{b.argument: [] for b in description.state}, **arguments, **extra,
       found_inf=1.0)
    for name, initial in description.initial_options.items():
        value = values.get(name, initial)
        if not (is_real(value) and 0 <= value < float("inf")):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class ParamGroup(dict):
    """A param group (a dict, as torch's). Assigning a hyperparameter checks it at once, on its
    own (its combinations with the group's other values are checked when the group steps), so
    a bad value from a config fails where it is given, not at the next step."""

    def __init__(self, check: Callable[[str, Any], None], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._check = check

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key, value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __reduce__(self) -> tuple:
        # copies and unpickling restore the items unchecked, then the check: the optimizer the
        # check belongs to is still being restored then
        return _restored, (type(self), dict(self)), {"_check": self._check}


class ParamGroups(list):
    """An optimizer's param groups (a list, as torch's). ``param_groups[i] = {...}`` replaces a
    group's hyperparameters through ``replace(i, group)``, which checks them all at once and
    returns the group to store; adding or removing groups through the list is refused (their
    params carry state: ``add_param_group`` adds one)."""

    def __init__(self, replace: Callable[[int, Any], ParamGroup]):
        super().__init__()
        self._replace = replace

    def __setitem__(self, index: Any, value: Any) -> None:
        if not isinstance(index, (int, np.integer)):
            raise TypeError("param groups are replaced one at a time (param_groups[i] = {...})")
        else:
            position = range(len(self))[index]  # IndexError as a list's
            super().__setitem__(position, self._replace(position, value))

    def __reduce__(self) -> tuple:
        return _restored, (type(self), list(self)), {"_replace": self._replace}

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("param groups cannot be added or removed through the list: "
                        "add_param_group adds one")

    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __delitem__ = __iadd__ = __imul__ = _refuse


def _restored(kind: type, items: Any) -> Any:
    """A ParamGroup or ParamGroups with ``items``, set without checks (see their __reduce__)."""
    restored = kind.__new__(kind)
    (dict.update if issubclass(kind, dict) else list.extend)(restored, items)
    return restored
