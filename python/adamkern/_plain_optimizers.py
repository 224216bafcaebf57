"""The classes of adamkern.optim and adamkern.torch that are their functional op and nothing
else, made from the registry (one per optimizer and alias) instead of written out: each module
writes by hand only the classes with behaviour of their own, then calls :func:`add_classes`
with what its plain classes hold.

A made class is what the hand-written one was: a module-level class of that module
(``__module__``, ``__qualname__``, so instances pickle and copy), deriving from the module's
base class, or, for an alias (AdamW), from its optimizer's class.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, MutableMapping
from typing import Any

from adamkern import ops, registry

__all__ = ["add_classes", "first_sentence", "initial_values", "plain_names", "state_names"]


def plain_names(namespace: MutableMapping[str, Any]) -> list[str]:
    """The optimizers and aliases (op names without ``_``) whose class ``namespace`` (a
    module's globals) does not define, the optimizers before their aliases."""
    names = [*registry.names(), *registry.ALIASES]
    return [name for name in names if registry.describe(name).class_name not in namespace]


def first_sentence(op: Callable[..., None]) -> str:
    """The first sentence of the op's docstring (a period outside parentheses and inline code,
    followed by a space or the end, ends it)."""
    text = " ".join(inspect.cleandoc(op.__doc__ or "").split("\n\n")[0].split())
    depth, code, i = 0, False, 0
    while i < len(text):
        if text.startswith("``", i):
            code, i = not code, i + 2
            continue
        if not code:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if text[i] == "." and depth == 0 and text[i + 1:i + 2] in ("", " "):
                return text[:i + 1]
        i += 1
    return text


def add_classes(namespace: MutableMapping[str, Any], base: type,
                body: Callable[[str, Callable[..., None]], dict[str, Any]],
                docstring: Callable[[str, Callable[..., None]], str]) -> list[str]:
    """Adds to ``namespace`` (a module's globals) the class of every optimizer and alias it
    lacks: ``_op`` the functional op, the attributes ``body(class_name, op)`` gives, the
    docstring ``docstring(class_name, op)``, deriving from ``base`` (an alias from its
    optimizer's class). Returns the names of the classes added."""
    added = []
    for name in plain_names(namespace):
        class_name = registry.describe(name).class_name
        op = getattr(ops, name + "_")
        target = registry.ALIASES.get(name)
        parent = namespace[registry.describe(target).class_name] if target else base
        attributes = {"__module__": namespace["__name__"], "__qualname__": class_name,
                      "__doc__": docstring(class_name, op), "_op": staticmethod(op),
                      **body(class_name, op)}
        namespace[class_name] = type(class_name, (parent,), attributes)
        added.append(class_name)
    return added


def initial_values(op: Callable[..., None]) -> str:
    """A sentence on the state buffers a constructor option starts (`` ``exp_avg`` starts at
    ``initial_accumulator_value`` (default 1e-06).``), or "" where every buffer starts at 0."""
    starts: dict[tuple[str, float], list[str]] = {}
    for buffer in registry.describe(op.__name__).state:
        if buffer.initial_option:
            key = (buffer.initial_option, buffer.initial)
            starts.setdefault(key, []).append(f"``{buffer.name}``")
    return "".join(f" {' and '.join(names)} start{'' if len(names) > 1 else 's'} at "
                   f"``{option}`` (a constructor option, default {initial:g})."
                   for (option, initial), names in starts.items())


def state_names(op: Callable[..., None], step: bool) -> str:
    """The state of a param (``step`` first if ``step``), each buffer that an option asks for
    with that option: ``step``, ``exp_avg``, ``max_exp_avg_sq`` (with ``amsgrad``)."""
    names = ["``step``"] if step else []
    for buffer in registry.describe(op.__name__).state:
        when = "" if buffer.needed == "always" else f" (with ``{buffer.option}``)"
        names.append(f"``{buffer.name}``{when}")
    return ", ".join(names)
