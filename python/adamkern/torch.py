"""Drop-in ``torch.optim`` optimizers for CPU tensors, stepped by adamkern's fused kernels.

Same constructor arguments and defaults as torch's own classes, the same state layout (so
``state_dict()`` checkpoints move between ``torch.optim.AdamW`` and
``adamkern.torch.AdamW`` in both directions), torch's LR schedulers, ``zero_grad``,
``add_param_group``, closures and ``torch.amp.GradScaler`` all work. Params, grads and state
are handed to the kernels as zero-copy NumPy views: nothing is copied. Adam/AdamW, SGD and
Adagrad are bitwise identical to torch's ``fused=True`` path.

>>> opt = adamkern.torch.AdamW(model.parameters(), lr=1e-3)
>>> loss.backward(); opt.step(); opt.zero_grad()

``foreach`` and ``fused`` are accepted (and recorded, as torch records them) but adamkern
always runs its own fused kernel; where torch has a fused path, ``fused`` is recorded as True
unless given, so a checkpoint loaded into torch's optimizer continues on that path, bit for
bit. ``capturable=True`` and ``differentiable=True`` are refused.
Params must be dense, real float32/float64 CPU tensors, contiguous.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import torch
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError('adamkern.torch needs torch: pip install "adamkern[torch]"') from error

from torch.optim.optimizer import _get_scalar_dtype

from adamkern import history as _history
from adamkern import ops, optim
from adamkern.optim import op_hyperparameters

__all__ = ["Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "Lion", "NAdam", "RAdam",
           "RMSprop", "SGD"]


def _check_cuda(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """A CUDA tensor the CUDA kernels can step in place (adamkern.cuda validates the rest)."""
    from adamkern import cuda

    if not cuda.available():
        raise ValueError(f"{what} is on {tensor.device}; adamkern.torch optimizers step CPU "
                         "tensors, and CUDA tensors once adamkern is built with its CUDA target "
                         "(ADAMKERN_CUDA=ON pip install ..., see the README)")
    if tensor.is_sparse:
        raise ValueError(f"{what} is sparse; adamkern.torch needs dense tensors")
    if tensor.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"{what} has dtype {tensor.dtype}; expected float32, float64, float16 "
                        "or bfloat16 on CUDA")
    if not tensor.is_contiguous():
        raise ValueError(f"{what} is not contiguous")
    return tensor.detach()


class _KernelOptimizer(torch.optim.Optimizer):
    """Binds the constructor to torch's own signature (``_torch_class``) and steps each param
    group with one call of the functional op ``_op``."""

    _torch_class: type | None = None
    _op: Callable[..., None]
    # the state buffers, as adamkern.optim describes them (torch's state names)
    _buffers: tuple = ()
    _has_step = True  # torch keeps state['step'] for this optimizer
    _step_supports_amp_scaling = True  # grad_scale / found_inf as torch's fused optimizers

    def __init__(self, params: Any, *args: Any, **kwargs: Any):
        signature = inspect.signature(self._torch_class.__init__)
        bound = signature.bind(self, params, *args, **kwargs)
        bound.apply_defaults()
        defaults = {k: v for k, v in bound.arguments.items() if k not in ("self", "params")}
        for flag in ("capturable", "differentiable"):
            if defaults.get(flag):
                raise ValueError(f"adamkern.torch.{type(self).__name__} does not support "
                                 f"{flag}=True (it steps CPU tensors eagerly)")
        if "fused" in defaults and defaults["fused"] is None:
            # adamkern's kernel is a fused one (bitwise torch's fused one): recording it lets
            # a checkpoint loaded into torch.optim continue on torch's fused path, bit for bit
            defaults["fused"] = True
        self._hyperparameters = set(op_hyperparameters(type(self)._op)) & set(defaults)
        super().__init__(params, defaults)

    @staticmethod
    def _check(tensor: torch.Tensor, what: str) -> np.ndarray:
        """The zero-copy NumPy view of a tensor the kernels can step (the tensor itself on
        CUDA, with adamkern's CUDA build), or a clear error."""
        if tensor.device.type == "cuda":
            return _check_cuda(tensor, what)
        if tensor.device.type != "cpu":
            raise ValueError(f"{what} is on {tensor.device}; adamkern.torch optimizers step CPU "
                             "tensors (and CUDA tensors with adamkern's CUDA build)")
        if tensor.is_sparse:
            raise ValueError(f"{what} is sparse; adamkern.torch needs dense tensors")
        if tensor.is_complex():
            raise ValueError(f"{what} is complex; adamkern.torch needs real tensors")
        if tensor.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{what} has dtype {tensor.dtype}; expected float32 or float64")
        if not tensor.is_contiguous():
            raise ValueError(f"{what} is not contiguous")
        return tensor.detach().numpy()

    def _view(self, tensor: torch.Tensor, what: str) -> np.ndarray:
        """_check's view, cached for params and state (the same tensors every step; a tensor
        whose storage moved is viewed again)."""
        cache = self.__dict__.setdefault("_views", {})
        entry = cache.get(id(tensor))
        if entry is not None and entry[0] is tensor and entry[1] == tensor.data_ptr():
            return entry[2]
        view = self._check(tensor, what)
        cache[id(tensor)] = (tensor, tensor.data_ptr(), view)
        return view

    def record_history(self, history: _history.History | None = None,
                       **options: Any) -> _history.History:
        """Records lr, grad norm, update norm and skipped steps per step, as
        :meth:`adamkern.optim.Optimizer.record_history`; returns ``opt.history``.

        >>> history = opt.record_history(update_norm=False)
        >>> loss.backward(); opt.step(); history["grad_norm"]
        """
        self.history = history if history is not None else _history.History(**options)
        return self.history

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.pop("_views", None)  # the state tensors are replaced
        super().load_state_dict(state_dict)

    def _init_state(self, group: dict, param: torch.Tensor) -> dict:
        state = self.state[param]
        if self._has_step and "step" not in state:
            state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
        for b in self._buffers:
            if b.name not in state and b.needed(group):
                value = group[b.init] if isinstance(b.init, str) else b.init
                state[b.name] = torch.full_like(param, value, memory_format=torch.preserve_format)
        return state

    def _extra_arguments(self, group: dict, states: list[dict], step: float,
                         created: bool) -> dict:
        """Arguments of the op beyond params, grads, state and hyperparameters (`created`:
        this step allocated the state)."""
        return {"step": step} if self._has_step else {}

    def _after_call(self, states: list[dict]) -> None:
        """Runs after each op call, with the states it stepped."""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        history = self.__dict__.get("history")
        if history is not None:
            record = _history._TorchStep(self, history, grad_scale, found_inf)
        if found_inf is not None and float(found_inf) != 0.0:
            return loss  # AMP: an inf/NaN step is skipped whole, step counts unchanged
        amp = {"grad_scale": None if grad_scale is None else float(grad_scale)}
        for g, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            created = any(len(self.state[p]) == 0 for p in params)
            states = [self._init_state(group, p) for p in params]
            hyper = {k: group[k] for k in self._hyperparameters}
            buffers = {b.keyword: [self._view(s[b.name], f"state {b.name!r}") for s in states]
                       for b in self._buffers if b.needed(group)}
            param_views = [self._view(p, f"param_groups[{g}] param {i}")
                           for i, p in enumerate(params)]
            grad_views = [self._check(p.grad, f"param_groups[{g}] grad {i}")
                          for i, p in enumerate(params)]
            # Params stepped together share a step count; ones added later step on their own.
            step_views = ([self._view(s["step"], "state 'step'") for s in states]
                          if self._has_step else [])
            steps = [float(v) + 1.0 for v in step_views] or [0.0] * len(params)
            for step in sorted(set(steps)):
                chosen = [i for i, s in enumerate(steps) if s == step]
                subset = chosen if len(chosen) < len(params) else None
                pick = (lambda xs: xs) if subset is None else (lambda xs: [xs[i] for i in subset])
                type(self)._op(pick(param_views), pick(grad_views),
                               **{k: pick(v) for k, v in buffers.items()}, **hyper, **amp,
                               **self._extra_arguments(group, pick(states), step, created))
                self._after_call(pick(states))
            for view in step_views:
                view += 1
        if history is not None:
            record.done()
        return loss


class Adam(_KernelOptimizer):
    """torch.optim.Adam on adamkern's kernel (bitwise equal to ``fused=True``)."""

    _torch_class = torch.optim.Adam
    _op = staticmethod(ops.adam_)
    _buffers = optim.Adam._buffers


class AdamW(Adam):
    """torch.optim.AdamW on adamkern's kernel (bitwise equal to ``fused=True``)."""

    _torch_class = torch.optim.AdamW
    _op = staticmethod(ops.adamw_)


class Adamax(_KernelOptimizer):
    """torch.optim.Adamax on adamkern's kernel."""

    _torch_class = torch.optim.Adamax
    _op = staticmethod(ops.adamax_)
    _buffers = optim.Adamax._buffers


class NAdam(_KernelOptimizer):
    """torch.optim.NAdam on adamkern's kernel (``mu_product`` per param, as torch)."""

    _torch_class = torch.optim.NAdam
    _op = staticmethod(ops.nadam_)
    _buffers = optim.NAdam._buffers

    def _init_state(self, group, param):
        state = super()._init_state(group, param)
        if "mu_product" not in state:
            state["mu_product"] = torch.tensor(1.0, dtype=torch.float32)
        return state

    def _extra_arguments(self, group, states, step, created):
        # Params stepped together have equal mu_products: the op updates the first one in
        # place, _after_call copies it to the others.
        return {"step": step, "mu_product": states[0]["mu_product"].numpy().reshape(1)}

    def _after_call(self, states):
        for s in states[1:]:
            s["mu_product"].copy_(states[0]["mu_product"])


class RAdam(_KernelOptimizer):
    """torch.optim.RAdam on adamkern's kernel."""

    _torch_class = torch.optim.RAdam
    _op = staticmethod(ops.radam_)
    _buffers = optim.RAdam._buffers


class RMSprop(_KernelOptimizer):
    """torch.optim.RMSprop on adamkern's kernel."""

    _torch_class = torch.optim.RMSprop
    _op = staticmethod(ops.rmsprop_)
    _buffers = optim.RMSprop._buffers

    def _extra_arguments(self, group, states, step, created):
        return {}


class Adagrad(_KernelOptimizer):
    """torch.optim.Adagrad on adamkern's kernel (bitwise equal to ``fused=True``)."""

    _torch_class = torch.optim.Adagrad
    _op = staticmethod(ops.adagrad_)
    _buffers = optim.Adagrad._buffers


class Adadelta(_KernelOptimizer):
    """torch.optim.Adadelta on adamkern's kernel."""

    _torch_class = torch.optim.Adadelta
    _op = staticmethod(ops.adadelta_)
    _buffers = optim.Adadelta._buffers

    def _extra_arguments(self, group, states, step, created):
        return {}


class SGD(_KernelOptimizer):
    """torch.optim.SGD on adamkern's kernel (bitwise equal to ``fused=True``)."""

    _torch_class = torch.optim.SGD
    _op = staticmethod(ops.sgd_)
    _buffers = optim.SGD._buffers
    _has_step = False

    def _extra_arguments(self, group, states, step, created):
        # torch creates the buffer from the first gradient: is_first_step overwrites it
        return {"is_first_step": created}


class _LionSignature:  # the constructor signature Lion binds (torch has no Lion)
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 1e-3, *, maximize: bool = False):
        pass


class Lion(_KernelOptimizer):
    """Lion (optax.lion's formula and defaults) as a torch optimizer; state ``exp_avg``."""

    _torch_class = _LionSignature
    _op = staticmethod(ops.lion_)
    _buffers = optim.Lion._buffers
    _has_step = False
