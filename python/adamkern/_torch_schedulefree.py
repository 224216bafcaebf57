"""adamkern.torch's Schedule-Free optimizers: the schedulefree package's ``AdamWScheduleFree``
and ``SGDScheduleFree`` (1.4) on adamkern's kernels, with the package's constructor, state
(``z``, ``exp_avg_sq``) and group keys (``k``, ``lr_max``, ``weight_sum``, ``scheduled_lr``,
``train_mode``), so a ``state_dict`` loads into either. Params are dense CPU float32/float64
tensors in any layout whose memory is one run (contiguous, channels_last ...); ``z`` and
``exp_avg_sq`` are made with the param's strides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from adamkern import ops
from adamkern._ops_newest import _schedulefree_weights
from adamkern._torch_tensors import flat, is_dense, name_of
from adamkern.groups import check_hyperparameters, op_hyperparameters

__all__ = ["AdamWScheduleFree", "SGDScheduleFree"]


class _ScheduleFree(torch.optim.Optimizer):
    _op: Callable[..., None]
    _beta1: Callable[[dict], float]
    _state: tuple[str, ...]  # the state tensors, in the op's order after params and grads

    def __init__(self, params: Any, defaults: dict[str, Any]):
        super().__init__(params, {**defaults, "k": 0, "train_mode": False, "weight_sum": 0.0,
                                  "lr_max": -1.0, "scheduled_lr": 0.0})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group, g = self.param_groups[-1], len(self.param_groups) - 1
        try:
            check_hyperparameters(type(self)._op, group)
        except (TypeError, ValueError) as error:
            del self.param_groups[-1]
            raise type(error)(f"param_groups[{g}]: {error}") from None

    def _array(self, tensor: torch.Tensor, what: tuple) -> np.ndarray:
        if tensor.device.type != "cpu" or tensor.dtype not in (torch.float32, torch.float64) \
                or not is_dense(tensor):
            raise ValueError(f"{name_of(what)}: adamkern.torch's schedule-free optimizers take "
                             f"dense float32/float64 CPU tensors, got {tensor.dtype} on "
                             f"{tensor.device}" + ("" if is_dense(tensor) else ", not dense"))
        return flat(tensor.detach()).numpy()

    def _group_arrays(self, g: int, group: dict) -> tuple[list, dict[str, list]]:
        stepped = [(i, p) for i, p in enumerate(group["params"]) if p.grad is not None]
        arrays: dict[str, list] = {"params": [], "grads": [],
                                   **{name + "s": [] for name in self._state}}
        for i, p in stepped:
            arrays["params"].append(self._array(p, (g, i)))
            grad = p.grad
            if grad.is_sparse or grad.stride() != p.stride():
                raise ValueError(f"{name_of((g, i, 'grad'))}: must be dense with its param's "
                                 "strides")
            arrays["grads"].append(self._array(grad, (g, i, "grad")))
        for i, p in stepped:  # state made once every param and grad passed
            state = self.state[p]
            if "z" not in state:  # as the package: z starts as the param
                state["z"] = torch.clone(p.detach(), memory_format=torch.preserve_format)
                if "exp_avg_sq" in self._state:
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            for name in self._state:
                arrays[name + "s"].append(self._array(state[name], (g, i, name)))
        return [p for _, p in stepped], arrays

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of every group (in train mode, as the package requires)."""
        if not self.param_groups[0]["train_mode"]:
            raise RuntimeError("Optimizer was not in train mode when step is called: call "
                               "train() before training and eval() before evaluating")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        defaults = op_hyperparameters(type(self)._op)  # maximize: not the package's, off
        for g, group in enumerate(self.param_groups):
            params, arrays = self._group_arrays(g, group)
            if not params:
                continue
            step = group["k"] + 1
            sums = np.array([group["lr_max"], group["weight_sum"]])
            scheduled = _schedulefree_weights(
                self._op.__name__, sums, step, float(group["lr"]), group["warmup_steps"],
                group["r"], group["weight_lr_power"])[0]
            try:
                type(self)._op(**arrays, step=step, weight_sums=sums,
                               **{k: group.get(k, d) for k, d in defaults.items()})
            except (TypeError, ValueError) as error:
                raise type(error)(f"param_groups[{g}]: {error}") from None
            group["lr_max"], group["weight_sum"] = float(sums[0]), float(sums[1])
            group["k"], group["scheduled_lr"] = step, scheduled
        return loss

    @torch.no_grad()
    def _move(self, function: Callable[..., None], train_mode: bool) -> None:
        for g, group in enumerate(self.param_groups):
            if group["train_mode"] != train_mode:
                moved = [(i, p) for i, p in enumerate(group["params"]) if "z" in self.state[p]]
                function([self._array(p, (g, i)) for i, p in moved],
                         [self._array(self.state[p]["z"], (g, i, "z")) for i, p in moved],
                         beta1=self._beta1(group))
                group["train_mode"] = train_mode

    def eval(self) -> None:
        """The params to the average x, to evaluate or save the model (the package's)."""
        self._move(ops.schedulefree_eval_, False)

    def train(self) -> None:
        """The params back to y, for training (the package's)."""
        self._move(ops.schedulefree_train_, True)


class AdamWScheduleFree(_ScheduleFree):
    """schedulefree.AdamWScheduleFree (1.4) on adamkern's kernel: its constructor (``foreach``
    is taken and ignored), state and group keys; see :func:`adamkern.adamw_schedulefree_`."""

    _op = staticmethod(ops.adamw_schedulefree_)
    _state = ("z", "exp_avg_sq")

    def __init__(self, params: Any, lr: float = 0.0025, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, warmup_steps: int = 0,
                 r: float = 0.0, weight_lr_power: float = 2.0, foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r,
                                      weight_lr_power=weight_lr_power, foreach=foreach))

    @staticmethod
    def _beta1(group: dict) -> float:
        return group["betas"][0]


class SGDScheduleFree(_ScheduleFree):
    """schedulefree.SGDScheduleFree (1.4) on adamkern's kernel; see
    :func:`adamkern.sgd_schedulefree_`."""

    _op = staticmethod(ops.sgd_schedulefree_)
    _state = ("z",)

    def __init__(self, params: Any, lr: float = 1.0, momentum: float = 0.9,
                 weight_decay: float = 0, warmup_steps: int = 0, r: float = 0.0,
                 weight_lr_power: float = 2, foreach: bool | None = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r,
                                      weight_lr_power=weight_lr_power, foreach=foreach))

    @staticmethod
    def _beta1(group: dict) -> float:
        return group["momentum"]
