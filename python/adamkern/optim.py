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
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from adamkern import grads as _grads
from adamkern import _plain_optimizers, ops, sparse
from adamkern._optim_adafactor import Adafactor
from adamkern._optim_base import Optimizer
from adamkern._optim_state import StateBuffer, rows_of
from adamkern.groups import check_disjoint, check_hyperparameters, first_overlap, op_hyperparameters

# The classes written here, which do more than call their op; every other optimizer's class
# (Adam, AdamW, Lion, ...) is made from the registry at the end of the module and added.
__all__ = [
    "Adafactor",
    "Adagrad",
    "AdamWScheduleFree",
    "NAdam",
    "Optimizer",
    "Prodigy",
    "SGD",
    "SGDScheduleFree",
    "check_hyperparameters",
    "first_overlap",
    "op_hyperparameters",
]

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


class SGD(Optimizer):
    """torch.optim.SGD (the momentum buffer starts as the first gradient); see
    :func:`adamkern.sgd_`."""

    _op = staticmethod(ops.sgd_)

    def _call_arguments(self, group, index, created):
        return {"is_first_step": created}


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


def _docstring(class_name: str, op: Callable[..., None]) -> str:
    """The docstring of a class made from the registry: what a step calls, and the op's own
    summary."""
    return (f"{class_name}: each step is one :func:`adamkern.{op.__name__}` call per param group "
            f"(its state and initial values from the op's description).\n\n"
            f"{_plain_optimizers.first_sentence(op)}{_plain_optimizers.initial_values(op)}")


def __getattr__(name: str) -> type[Optimizer]:
    """Says to type checkers that the names this module does not define in its text (its
    classes made from the registry, below) are optimizer classes; at run time, a missing name
    is missing."""
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Last, once every class with behaviour of its own is defined: the class of each other
# optimizer and alias (AdamW derives from Adam), nothing but its op.
__all__ += _plain_optimizers.add_classes(globals(), Optimizer, lambda class_name, op: {},
                                         _docstring)
