"""Drop-in ``torch.optim`` optimizers for CPU tensors, stepped by adamkern's fused kernels.

Same constructor arguments, defaults and checks as torch's own classes (torch's class itself
checks them: a bad value raises what torch raises, in the constructor), the same state layout
(so
``state_dict()`` checkpoints move between ``torch.optim.AdamW`` and
``adamkern.torch.AdamW`` in both directions, older torch checkpoints with numeric steps
included), torch's LR schedulers, ``zero_grad``, ``add_param_group``, closures and
``torch.amp.GradScaler`` all work. Params, grads and state are handed to the kernels as
zero-copy NumPy views (copies only where layouts differ or a param is not dense, see below).
Adam/AdamW, SGD and Adagrad are bitwise identical to torch's ``fused=True`` path.

>>> opt = adamkern.torch.AdamW(model.parameters(), lr=1e-3)
>>> loss.backward(); opt.step(); opt.zero_grad()

Each param is stepped as torch steps it on its own, whichever of its group's params have
grads: its own step count, its own first step (SGD's momentum buffer starts as its first grad),
its own NAdam ``mu_product``. A step that raises changes nothing: every group is checked before
any is stepped, and state the step created is removed again. Params that share memory (a param
and a view of it) are refused when they are added, as a step would update that memory twice.

``foreach`` and ``fused`` are accepted (and recorded, as torch records them) but adamkern
always runs its own fused kernel; where torch has a fused path, ``fused`` is recorded as True
unless given (and foreach is not True), so a checkpoint loaded into torch's optimizer continues
on that path, bit for bit. ``capturable=True`` and ``differentiable=True`` are refused.

adamkern's own storage modes are keywords of every class, kept in each param group as torch
keeps its options: ``state_dtype`` (None: the param's dtype, as torch; ``"float32"``,
``"bfloat16"``, or ``"int8"``, block-wise 8-bit), ``master_weights=True`` (a float32 copy of
bfloat16/float16 params), ``rounding="stochastic"`` with ``seed``. A mode the kernels refuse
for a group's params is refused when the group is added; the state dict of each mode round
trips bit for bit, and :func:`to_torch_state_dict` converts it to torch's layout.

>>> opt = adamkern.torch.AdamW(model.parameters(), state_dtype="int8")

The optimizers torch lacks (Lion, AdaBelief, LAMB, ...: every class with no ``torch.optim``
class of its name) take their functional op's hyperparameters and defaults (optax's, or their
authors' package's). ``Adafactor`` is ``torch.optim.Adafactor`` itself with
its step run by :func:`adamkern.adafactor_` (float32/float64 contiguous tensors; none of the
storage modes).

In a training loop, each step reuses the views the step before made, after checks that
cost far less than making them (the same params, in the same memory, with the same state
tensors; see :mod:`adamkern._torch_views`), and views only the new grads; results and errors
are those of a step that views everything.

Params are real float32, float64, bfloat16 or float16 CPU tensors of any layout torch's fused
optimizers step: contiguous; dense in another order of dimensions (channels_last,
channels_last_3d, transposed), stepped in place as one run of memory when the grad and state
share the param's strides; or not dense (slices, strided views into a bigger tensor), stepped
on contiguous copies that are written back once the kernel succeeded. bfloat16/float16 params
keep their state in their own dtype, as torch does. A param whose elements share memory (an
expanded tensor) is refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError('adamkern.torch needs torch: pip install "adamkern[torch]"') from error

from torch.optim.sgd import sgd as torch_sgd

from adamkern import _plain_optimizers, ops, optim, registry, sparse
from adamkern._torch_adafactor import Adafactor
from adamkern._torch_kernel import _KernelOptimizer
from adamkern._torch_lowp import DEFAULT_MODE, MODE_DEFAULTS, mode_of, to_torch_state_dict
from adamkern._torch_schedulefree import AdamWScheduleFree, SGDScheduleFree
from adamkern._torch_sparse import sparse_rows, table_of
from adamkern._torch_step import hooked_step
from adamkern._torch_tensors import name_of

# The classes written here or imported, which do more than call their op; every other
# optimizer's class (Adam, AdamW, Lion, ...) is made from the registry at the end of the module
# and added.
__all__ = ["Adafactor", "Adagrad", "AdamWScheduleFree", "NAdam", "Prodigy", "SGD",
           "SGDScheduleFree", "SparseAdam", "to_torch_state_dict"]

class NAdam(_KernelOptimizer):
    """torch.optim.NAdam on adamkern's kernel (``mu_product`` per param, as torch)."""

    _torch_class = torch.optim.NAdam
    _op = staticmethod(ops.nadam_)
    _buffers = optim.NAdam._buffers
    _shared_scalars: ClassVar[dict[str, float]] = {"mu_product": 1.0}


class Adagrad(_KernelOptimizer):
    """torch.optim.Adagrad on adamkern's kernel (bitwise equal to ``fused=True``). A sparse
    COO grad (``nn.Embedding(sparse=True)``) is stepped by
    :func:`adamkern.sparse.adagrad_rows_` on the touched rows, where torch's Adagrad accepts
    one: not with ``weight_decay`` or an explicit ``fused=True`` (torch's errors).

    ``rowwise=True`` (keyword-only, per group): FBGEMM's ``EXACT_ROWWISE_ADAGRAD``
    (:func:`adamkern.sparse.rowwise_adagrad_rows_`), one accumulator per row of a param of
    shape ``(rows, ...)``: state ``step`` and ``row_sum`` (``(rows,)``, the param's dtype,
    starting at ``initial_accumulator_value``). A sparse grad steps its rows; a dense grad
    steps every row, each row's accumulator growing by the mean square of its grad row.
    ``lr``, ``eps``, ``weight_decay`` (FBGEMM's L2 term) and ``maximize`` apply;
    ``lr_decay`` is refused. torch has no row-wise Adagrad: such a checkpoint loads into
    ``adamkern.torch.Adagrad(rowwise=True)`` only."""

    _torch_class = torch.optim.Adagrad
    _op = staticmethod(ops.adagrad_)
    _buffers = optim.Adagrad._op_buffers  # (its row-wise state: _rowwise_step)
    _sparse_grads = True
    _fused_sparse_error = "`fused` does not support sparse grad or complex param"

    def _sparse_step(self, g: int, i: int, group: dict, param: torch.Tensor,
                     undo: list) -> Callable[[], None]:
        if group.get("rowwise"):
            return self._rowwise_step(g, i, group, param, undo)
        if group["weight_decay"] != 0:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        if group.get("eps_inside_sqrt"):
            raise ValueError(f"{name_of((g, i))} has a sparse grad: the row-sparse step has "
                             "torch's eps outside the square root (eps_inside_sqrt=False)")
        rows = sparse_rows(param, param.grad, (g, i))
        entries, _ = self._state_entries(g, group, self._layout(group), [i], undo)
        state_sum = table_of(entries["sum"][0], *rows.table.shape, (g, i, "sum"))
        count = entries["step"][0]

        def run() -> None:
            step = float(count) + 1.0
            sparse.adagrad_rows_(rows.table, rows.indices, rows.grad_rows, state_sum, step=step,
                                 lr=float(group["lr"]), lr_decay=group["lr_decay"],
                                 eps=group["eps"], maximize=group["maximize"])
            count.fill_(step)

        return run

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group with its checks (see _KernelOptimizer), and those of
        ``rowwise``: a bool, without the options the row-wise step lacks."""
        super().add_param_group(param_group)
        group, g = self.param_groups[-1], len(self.param_groups) - 1
        try:
            if not isinstance(group["rowwise"], bool):
                raise TypeError(f"param_groups[{g}]: rowwise must be True or False, got "
                                f"{group['rowwise']!r}")
            if group["rowwise"]:
                self._check_rowwise(g, group)
        except Exception:
            self.param_groups.pop()
            raise

    @staticmethod
    def _check_rowwise(g: int, group: dict) -> None:
        """ValueError for an option the row-wise step does not take, or a storage mode."""
        for name, default in (("lr_decay", 0.0), ("eps_inside_sqrt", False),
                              ("decoupled_weight_decay", False)):
            if group.get(name, default) != default:
                raise ValueError(f"param_groups[{g}]: rowwise=True does not take {name}="
                                 f"{group[name]!r} (FBGEMM's row-wise Adagrad has no such "
                                 "option)")
        if mode_of(group) != DEFAULT_MODE:
            raise ValueError(f"param_groups[{g}]: rowwise=True keeps its state in the param's "
                             "dtype (state_dtype=None, no master weights, nearest rounding)")

    def _rowwise_step(self, g: int, i: int, group: dict, param: torch.Tensor,
                      undo: list) -> Callable[[], None]:
        """The row-wise step (:func:`adamkern.sparse.rowwise_adagrad_rows_`) of a param of
        shape ``(rows, ...)``: its sparse grad's rows, or every row of a dense grad; state
        ``step`` (as torch's) and ``row_sum``, ``(rows,)`` in the param's dtype, starting at
        ``initial_accumulator_value``."""
        what = (g, i)
        self._check_rowwise(g, group)  # (the group may have been changed since)
        grad = param.grad
        rows = param.shape[0] if param.dim() else 1
        if grad.is_sparse:
            if param.dim() > 1 and grad.sparse_dim() != 1:
                raise ValueError(f"{name_of((*what, 'grad'))} is sparse in {grad.sparse_dim()} "
                                 "dimensions; a row-wise step takes whole rows (sparse_dim 1)")
            sparse_grad = sparse_rows(param.reshape(rows, -1) if param.dim() != 2 else param,
                                      grad.reshape(rows, -1) if param.dim() != 2 else grad,
                                      what)
            table, indices, grad_rows = sparse_grad
        else:
            if grad.shape != param.shape or grad.dtype != param.dtype:
                raise ValueError(f"{name_of((*what, 'grad'))} is {grad.dtype} {tuple(grad.shape)}"
                                 f"; its param is {param.dtype} {tuple(param.shape)}")
            cols = param.numel() // rows if rows else 0
            table = table_of(param, rows, cols, what)
            grad_rows = table_of(grad, rows, cols, (*what, "grad"))
            indices = np.arange(rows, dtype=np.int64)
        state = self.state.get(param)
        if not state:
            undo.append((param, set(state) if param in self.state else None))
            state = self.state[param]
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["row_sum"] = torch.full((rows,), float(group["initial_accumulator_value"]),
                                          dtype=param.dtype)
        elif "row_sum" not in state:
            raise ValueError(f"{name_of(what)}'s state has no row_sum (it was stepped, or "
                             "loaded, with rowwise=False)")
        row_sum = table_of(state["row_sum"], rows, 1, (*what, "row_sum")).reshape(rows)
        count = state["step"]

        def run() -> None:
            sparse.rowwise_adagrad_rows_(table, indices, grad_rows, row_sum,
                                         lr=float(group["lr"]), eps=group["eps"],
                                         weight_decay=group["weight_decay"],
                                         maximize=group["maximize"])
            count.add_(1.0)

        return run


def _with_keyword(signature_: inspect.Signature, name: str, default: Any) -> inspect.Signature:
    """``signature_`` with keyword-only ``name`` before the storage keywords."""
    parameters = list(signature_.parameters.values())
    at = next(k for k, p in enumerate(parameters) if p.name in MODE_DEFAULTS)
    keyword = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
    return signature_.replace(parameters=parameters[:at] + [keyword] + parameters[at:])


Adagrad.__signature__ = _with_keyword(Adagrad.__signature__, "rowwise", False)


class SGD(_KernelOptimizer):
    """torch.optim.SGD on adamkern's kernel (bitwise equal to ``fused=True``)."""

    _torch_class = torch.optim.SGD
    _op = staticmethod(ops.sgd_)
    _buffers = optim.SGD._buffers
    _has_step = False  # the momentum buffer starts as each param's first grad (is_first_step)
    _sparse_grads = True
    _fused_sparse_error = "`_fused_sgd` does not support sparse gradients"
    def _sparse_step(self, g: int, i: int, group: dict, param: torch.Tensor,
                     undo: list) -> Callable[[], None]:
        """``p -= lr * g`` on the touched rows by :func:`adamkern.sparse.sgd_rows_`; with
        momentum or weight decay, whose updates are dense (torch's momentum buffer of a
        sparse grad is a sparse tensor of every row touched so far, its weight decay adds
        the whole param), torch's own single-tensor step. Weight decay raises torch's error
        (torch's SGD cannot add the param to a sparse grad), before anything is written."""
        if group["weight_decay"] != 0:  # torch's grad.add(param) fails for a sparse grad
            raise RuntimeError("add(sparse, dense) is not supported. Use add(dense, sparse) "
                               "instead.")
        if mode_of(group) != DEFAULT_MODE or torch.is_complex(param):
            raise ValueError(f"{name_of((g, i))}: no row-sparse step in this storage mode")
        lr = float(group["lr"])
        if group["momentum"] == 0:
            rows = sparse_rows(param, param.grad, (g, i))

            def run() -> None:
                sparse.sgd_rows_(rows.table, rows.indices, rows.grad_rows, lr=lr,
                                 maximize=group["maximize"])

            return run
        state = self.state.get(param, {})
        buffer = state.get("momentum_buffer") if group["momentum"] != 0 else None
        grad = param.grad

        def run_torch() -> None:
            buffers = [buffer]
            torch_sgd([param], [grad], buffers, has_sparse_grad=True, foreach=False,
                      fused=False, weight_decay=0.0,
                      momentum=group["momentum"], lr=lr, dampening=group["dampening"],
                      nesterov=group["nesterov"], maximize=group["maximize"])
            if group["momentum"] != 0:
                self.state[param]["momentum_buffer"] = buffers[0]
                self._views.clear()

        return run_torch


class SparseAdam(torch.optim.SparseAdam):
    """torch.optim.SparseAdam stepped by :func:`adamkern.sparse.adam_rows_`: torch's class
    for the constructor, its checks, ``state_dict`` and state (``step`` as an int,
    ``exp_avg``, ``exp_avg_sq`` of the param's shape: checkpoints move both ways), adamkern's
    row kernel for the update of the touched rows (repeated indices summed in a canonical
    order, deterministic; within 4 ULP of the magnitude of torch's, docs/sparse.md).

    Params are contiguous float32/float64 CPU tensors; grads sparse COO (a dense grad raises
    torch's RuntimeError). A step checks every param before it writes any: a step that
    raises changes nothing."""

    @hooked_step
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every param that has a grad (torch's ``step``), after ``closure``
        if given (its loss is returned)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for g, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("SparseAdam does not support dense gradients, please "
                                       "consider Adam instead")
                rows = sparse_rows(p, p.grad, (g, i))
                state = self.state.get(p)
                moments = ()
                if state:
                    moments = tuple(table_of(state[name], *rows.table.shape, (g, i, name))
                                    for name in ("exp_avg", "exp_avg_sq"))
                work.append((group, p, rows, moments))
        with torch.no_grad():
            for group, p, rows, moments in work:
                state = self.state[p]
                if not moments:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p,
                                                           memory_format=torch.preserve_format)
                    moments = tuple(state[name].numpy().reshape(rows.table.shape)
                                    for name in ("exp_avg", "exp_avg_sq"))
                state["step"] += 1
                if len(rows.indices):  # torch skips the update of an empty grad
                    lr = group["lr"]
                    sparse.adam_rows_(rows.table, rows.indices, rows.grad_rows, *moments,
                                      step=state["step"],
                                      lr=float(lr.item() if isinstance(lr, torch.Tensor) else lr),
                                      betas=group["betas"], eps=group["eps"],
                                      maximize=group["maximize"])
        return loss


class Prodigy(torch.optim.Optimizer):
    """prodigyopt.Prodigy (1.1) on adamkern's kernel (:func:`adamkern.prodigy_`): the same
    constructor, defaults and checks, the same state per param (``step``, ``s`` and ``p0``
    flat as prodigyopt keeps them, ``exp_avg``, ``exp_avg_sq``) and the same param-group keys
    (``d``, ``d0``, ``d_max``, ``d_numerator``, ``d_coef``, ``k``, ``growth_rate``, ...;
    ``d_denom`` and ``d_hat`` after a step), so ``state_dict()`` checkpoints move between
    prodigyopt and adamkern in both directions.

    One kernel call steps every param with a grad (one d over all groups, as prodigyopt), so
    the groups must agree on their hyperparameters; params are dense contiguous float32 or
    float64 CPU tensors of one dtype. Not built: ``fsdp_in_use=True`` and ``slice_p > 1``
    (refused). Unlike prodigyopt, L2 weight decay (``decouple=False``) does not add
    ``weight_decay * p`` into ``p.grad`` in place.

    >>> opt = adamkern.torch.Prodigy(model.parameters(), weight_decay=0.01)
    >>> loss.backward(); opt.step(); opt.zero_grad()
    """

    _SHARED = ("lr", "betas", "beta3", "eps", "weight_decay", "d0", "d_coef", "growth_rate",
               "decouple", "use_bias_correction", "safeguard_warmup")

    def __init__(self, params: Any, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                 beta3: float | None = None, eps: float = 1e-8, weight_decay: float = 0,
                 decouple: bool = True, use_bias_correction: bool = False,
                 safeguard_warmup: bool = False, d0: float = 1e-6, d_coef: float = 1.0,
                 growth_rate: float = float("inf"), fsdp_in_use: bool = False,
                 slice_p: int = 1):
        # prodigyopt's own checks and messages
        if not 0.0 < d0:
            raise ValueError(f"Invalid d0 value: {d0}")
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for index in (0, 1):
            if not 0.0 <= betas[index] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {betas[index]}")
        if fsdp_in_use:
            raise ValueError("adamkern.torch.Prodigy does not reduce d across ranks "
                             "(fsdp_in_use=True is not supported)")
        if slice_p != 1:
            raise ValueError(f"adamkern.torch.Prodigy computes d on every element "
                             f"(slice_p={slice_p} is not supported, only 1)")
        defaults = dict(lr=lr, betas=betas, beta3=beta3, eps=eps, weight_decay=weight_decay,
                        d=d0, d0=d0, d_max=d0, d_numerator=0.0, d_coef=d_coef, k=0,
                        growth_rate=growth_rate, use_bias_correction=use_bias_correction,
                        decouple=decouple, safeguard_warmup=safeguard_warmup,
                        fsdp_in_use=fsdp_in_use, slice_p=slice_p)
        super().__init__(params, defaults)

    def _arrays(self) -> tuple[list[torch.Tensor], dict[str, list[np.ndarray]]]:
        """The params with grads and the NumPy views of the op's lists, state created (as
        prodigyopt creates it) for params seen the first time; checks before any write."""
        first = self.param_groups[0]
        for g, group in enumerate(self.param_groups[1:], 1):
            differ = sorted(k for k in self._SHARED if group[k] != first[k])
            if differ:
                raise ValueError(f"adamkern.torch.Prodigy steps every group with one kernel "
                                 f"call: param_groups[{g}] differs from param_groups[0] in "
                                 f"{differ}")
            if group["slice_p"] != 1 or group["fsdp_in_use"]:
                raise ValueError(f"param_groups[{g}]: slice_p must be 1 and fsdp_in_use False")
        stepped = [p for group in self.param_groups for p in group["params"]
                   if p.grad is not None]
        for i, p in enumerate(stepped):
            what = f"params[{i}]"
            if p.device.type != "cpu" or p.is_sparse or p.grad.is_sparse:
                raise ValueError(f"{what}: adamkern.torch.Prodigy steps dense CPU tensors")
            if p.dtype not in (torch.float32, torch.float64) or p.dtype != stepped[0].dtype:
                raise TypeError(f"{what} has dtype {p.dtype}: the params of a step must all be "
                                f"float32 or all float64")
            if p.grad.dtype != p.dtype or p.grad.shape != p.shape:
                raise ValueError(f"{what}: its grad must have the param's dtype and shape")
            if not (p.is_contiguous() and p.grad.is_contiguous()):
                raise ValueError(f"{what}: param and grad must be contiguous")
        lists: dict[str, list[np.ndarray]] = {k: [] for k in ("params", "grads", "exp_avgs",
                                                                "exp_avg_sqs", "s", "p0")}
        for p in stepped:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["s"] = torch.zeros(p.numel(), dtype=p.dtype)
                state["p0"] = p.detach().flatten().clone()
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
            elif state["p0"].dim() == 0:  # prodigyopt's p0 of an all-zero param: a scalar 0
                state["p0"] = torch.zeros(p.numel(), dtype=p.dtype)
            lists["params"].append(p.detach().numpy())
            lists["grads"].append(p.grad.detach().numpy())
            lists["exp_avgs"].append(state["exp_avg"].numpy())
            lists["exp_avg_sqs"].append(state["exp_avg_sq"].numpy())
            lists["s"].append(state["s"].numpy().reshape(p.shape))
            lists["p0"].append(state["p0"].numpy().reshape(p.shape))
        return stepped, lists

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stepped, lists = self._arrays()
        if not stepped:
            return loss
        group = self.param_groups[0]
        k = group["k"]
        scalars = np.array([group["d"], group["d_max"], group["d_numerator"], k,
                            group.get("d_denom", 0.0), group.get("d_hat", 0.0)], np.float64)
        ops.prodigy_(**lists, group_scalars=scalars,
                     **{name: group[name] for name in self._SHARED})
        if scalars[3] == k:  # prodigyopt's early return: no update, the group keys as they were
            return loss
        for group in self.param_groups:
            group.update(d_numerator=float(scalars[2]), d_denom=float(scalars[4]),
                         d=float(scalars[0]), d_max=float(scalars[1]), d_hat=float(scalars[5]),
                         k=group["k"] + 1)
        for p in stepped:
            self.state[p]["step"] += 1
        return loss


def _attributes(class_name: str, op: Callable[..., None]) -> dict[str, Any]:
    """What a class made from the registry holds beside its op: torch's class of its name where
    torch has one (its constructor, defaults and checks), adamkern.optim's state buffers, and
    whether the state keeps ``step`` (torch's classes all do; otherwise where the op takes it)."""
    torch_class = getattr(torch.optim, class_name, None)
    return {"_torch_class": torch_class, "_buffers": getattr(optim, class_name)._buffers,
            "_has_step": torch_class is not None or registry.describe(op.__name__).takes_step}


def _docstring(class_name: str, op: Callable[..., None]) -> str:
    """The docstring of a class made from the registry: where its arguments come from, its
    state, what a step calls, and the op's own summary."""
    attributes = _attributes(class_name, op)
    origin = (f"torch.optim.{class_name}'s constructor, defaults and checks"
              if attributes["_torch_class"] else "its op's hyperparameters and defaults")
    state = _plain_optimizers.state_names(op, attributes["_has_step"])
    return (f"{class_name} as a torch optimizer on adamkern's kernel ({origin}; state {state}): "
            f"each step is one :func:`adamkern.{op.__name__}` call per param group.\n\n"
            f"{_plain_optimizers.first_sentence(op)}{_plain_optimizers.initial_values(op)}")


def __getattr__(name: str) -> type[_KernelOptimizer]:
    """Says to type checkers that the names this module does not define in its text (its
    classes made from the registry, below) are optimizer classes; at run time, a missing name
    is missing."""
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Last, once every class with behaviour of its own is defined: the class of each other
# optimizer and alias (AdamW derives from Adam), nothing but its op.
__all__ += _plain_optimizers.add_classes(globals(), _KernelOptimizer, _attributes, _docstring)
