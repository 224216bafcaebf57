"""Every optimizer as its C++ header describes it (``cpp/include/adamkern/math/<name>.hpp``,
listed once in ``adamkern/optimizers.hpp``): its class name, its options (defaults, ranges),
whether it takes ``step``, and its state buffers (names, sign, when they are used, initial
values). The optimizer objects, the torch adapters and the tests read these instead of
restating them.

>>> adamkern.registry.describe("adagrad").state[0]
StateBuffer(name='sum', argument='state_sums', signed=False, needed='always', ...)
>>> adamkern.registry.describe("adamw").class_name
'AdamW'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adamkern import _core

__all__ = ["ALIASES", "Description", "StateBuffer", "describe", "names"]

# Functional ops that are another optimizer with other defaults (adamw_: adam_ with decoupled
# weight decay, weight_decay 1e-2, as torch.optim.AdamW), and the class name of each: its class
# in adamkern.optim and adamkern.torch derives from the optimizer's.
ALIASES = {"adamw": "adam"}
_ALIAS_CLASS_NAMES = {"adamw": "AdamW"}


@dataclass(frozen=True)
class StateBuffer:
    """One state buffer: ``name`` in torch's ``state[...]`` and adamkern.optim's, the op's list
    ``argument``, whether values can be negative (``signed``: the 8-bit map), when it is used
    (``needed``: "always", or "flag" / "positive" / "nonzero" of the option ``option``), and
    its value before the first step: ``initial``, the default of the constructor option
    ``initial_option`` where there is one."""

    name: str
    argument: str
    signed: bool
    needed: str
    option: str | None
    initial_option: str | None
    initial: float

    def is_needed(self, options: Mapping[str, Any]) -> bool:
        """Whether options (a param group) use this buffer."""
        if self.needed == "always":
            return True
        value = options[self.option]
        if self.needed == "flag":
            return bool(value)
        return value > 0 if self.needed == "positive" else value != 0


@dataclass(frozen=True)
class Description:
    """One optimizer: ``name`` (its op's, without the trailing ``_``; an alias's optimizer),
    ``class_name`` (its class in adamkern.optim and adamkern.torch; an alias's own), whether
    its op takes ``step``, its options and its state."""

    name: str
    class_name: str
    takes_step: bool
    options: Mapping[str, Mapping[str, Any]]  # option -> {"default", "range", "label"}
    state: tuple[StateBuffer, ...]

    @property
    def initial_options(self) -> dict[str, float]:
        """The constructor options that set a state buffer's initial value, with defaults."""
        return {b.initial_option: b.initial for b in self.state if b.initial_option}


_DESCRIPTIONS = {
    name: Description(name, d["class_name"], d["takes_step"], d["options"],
                      tuple(StateBuffer(**buffer) for buffer in d["state"]))
    for name, d in _core.optimizer_options().items()
}

_ALIAS_DESCRIPTIONS = {
    alias: dataclasses.replace(_DESCRIPTIONS[name], class_name=_ALIAS_CLASS_NAMES[alias])
    for alias, name in ALIASES.items()
}


def names() -> list[str]:
    """Every optimizer the C++ registry lists."""
    return list(_DESCRIPTIONS)


def describe(name: str) -> Description:
    """The description of optimizer ``name`` ("adam", "lion", ...; or an alias, "adamw": its
    optimizer's, with the alias's class name), or of the functional op of that name
    ("lion_")."""
    name = name.removesuffix("_")
    return _ALIAS_DESCRIPTIONS.get(name) or _DESCRIPTIONS[name]
