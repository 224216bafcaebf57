"""The constructor of :mod:`adamkern.torch`'s optimizers: its signature (the torch class's, or,
for the optimizers torch lacks, the functional op's hyperparameters), adamkern's storage
keywords at its end, and torch's own checks of the arguments, made by torch's class itself so
that a bad value raises what torch raises (the same exception, the same ranges)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from adamkern import registry
from adamkern._torch_lowp import MODE_DEFAULTS
from adamkern.groups import op_hyperparameters

__all__ = ["signature", "torch_checks"]

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _op_parameters(op: Callable[..., None]) -> list[inspect.Parameter]:
    """An optimizer torch lacks: the op's hyperparameters with its defaults (numbers in the
    op's order, then the options that start its state; flags keyword-only, as torch's
    ``maximize``)."""
    hyperparameters = {**op_hyperparameters(op),
                       **registry.describe(op.__name__).initial_options}
    numbers = [inspect.Parameter(name, _POSITIONAL, default=default)
               for name, default in hyperparameters.items() if not isinstance(default, bool)]
    flags = [inspect.Parameter(name, _KEYWORD, default=default)
             for name, default in hyperparameters.items() if isinstance(default, bool)]
    return numbers + flags


def signature(torch_class: type | None, op: Callable[..., None]) -> inspect.Signature:
    """The constructor's signature, ``params`` first: the torch class's (without ``self``) and
    then, keyword-only, the op's hyperparameters it lacks; or the op's hyperparameters; then
    ``state_dtype``, ``master_weights``, ``rounding`` and ``seed``, keyword-only."""
    if torch_class is not None:
        parameters = list(inspect.signature(torch_class.__init__).parameters.values())[1:]
        named = {p.name for p in parameters}
        # adamkern's options that torch's class lacks (decoupled_weight_decay on Adagrad...)
        parameters += [inspect.Parameter(p.name, _KEYWORD, default=p.default)
                       for p in _op_parameters(op) if p.name not in named]
    else:
        parameters = [inspect.Parameter("params", _POSITIONAL), *_op_parameters(op)]
    modes = [inspect.Parameter(name, _KEYWORD, default=default)
             for name, default in MODE_DEFAULTS.items()]
    return inspect.Signature(parameters + modes)


def torch_checks(torch_class: type | None, arguments: dict[str, Any]) -> None:
    """torch's checks of a constructor's ``arguments`` (no params among them), made by torch's
    class itself on one empty tensor (None: torch has no such optimizer, nothing to check):
    what it raises is raised, as torch raises it."""
    if torch_class is not None:
        torch_class([torch.empty(0)], **arguments)
