"""Smith's learning-rate range test (see :func:`lr_range_test`), for :mod:`adamkern.optim`
optimizers and any torch optimizer (:mod:`adamkern.torch` included): the steps, the snapshot
that puts the optimizer back, and the result with its suggestions and plot."""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamkern import optim


class _OptimSnapshot:
    """Everything an adamkern.optim optimizer's steps can change, copied; restored in place
    (the same arrays and dicts, their old bytes)."""

    def __init__(self, opt: optim.Optimizer):
        self.opt = opt
        self.params = [p.copy() for p in opt.params]
        self.state = [dict(s) for s in opt.state]
        self.state_values = [{k: np.array(v, copy=True) for k, v in s.items()} for s in opt.state]
        self.group_state = [dict(s) for s in opt.group_state]
        self.group_state_values = [{k: np.array(v, copy=True) for k, v in s.items()}
                                   for s in opt.group_state]
        self.groups = [dict(g) for g in opt.param_groups]
        self.scalars = {k: getattr(opt, k) for k in ("step_count", "last_grad_norm",
                                                     "last_step_skipped")}

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def recording_paused(self) -> contextlib.AbstractContextManager:
        return self.opt.recording_paused()

    def restore(self) -> None:
        opt = self.opt
        for p, saved in zip(opt.params, self.params):
            np.copyto(p, saved)
        opt.state = [dict(s) for s in self.state]
        for s, values in zip(opt.state, self.state_values):
            for k, v in values.items():
                np.copyto(s[k], v)
        opt.group_state = [dict(s) for s in self.group_state]
        for s, values in zip(opt.group_state, self.group_state_values):
            for k, v in values.items():
                np.copyto(s[k], v)
        for group, saved in zip(opt.param_groups, self.groups):
            group.clear()
            group.update(saved)
        for k, v in self.scalars.items():
            setattr(opt, k, v)


class _TorchSnapshot:
    """A torch optimizer: its params and grads cloned, its state_dict deep-copied."""

    def __init__(self, opt: Any):
        import copy

        import torch

        self.torch = torch
        self.opt = opt
        self.params = [p for group in opt.param_groups for p in group["params"]]
        self.values = [p.detach().clone() for p in self.params]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.state_dict = copy.deepcopy(opt.state_dict())

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            if isinstance(group["lr"], self.torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def recording_paused(self) -> contextlib.AbstractContextManager:
        """adamkern.torch's recorders paused; torch's own optimizers have none."""
        paused = getattr(self.opt, "recording_paused", None)
        return contextlib.nullcontext() if paused is None else paused()

    def restore(self) -> None:
        with self.torch.no_grad():
            for p, value, grad in zip(self.params, self.values, self.grads):
                p.copy_(value)
                p.grad = grad
        self.opt.load_state_dict(self.state_dict)


def _snapshot(optimizer: Any) -> _OptimSnapshot | _TorchSnapshot:
    if isinstance(optimizer, optim.Optimizer):
        return _OptimSnapshot(optimizer)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(optimizer, torch.optim.Optimizer):
        return _TorchSnapshot(optimizer)
    raise TypeError("optimizer must be an adamkern.optim optimizer or a torch.optim.Optimizer, "
                    f"got {type(optimizer).__name__}")


@dataclass
class RangeTestResult:
    """The curve of a learning-rate range test and the lrs it suggests.

    ``lrs[i]`` was used for step i, ``losses[i]`` is what the step function returned and
    ``smoothed_losses[i]`` its debiased exponential average. ``suggestions``:
    ``"steepest"``, the lr where the smoothed loss falls fastest against log(lr) (searched up
    to the minimum), and ``"min/10"``, a tenth of the lr at the minimum of the smoothed loss;
    both are searched past the smoothing's warm-up, the first ``warmup`` steps (see
    :func:`lr_range_test`). ``diverged``: the test stopped early because the loss blew up.

    >>> result = adamkern.tuning.lr_range_test(opt, step_fn)
    >>> result.suggestions, result.lrs[np.argmin(result.smoothed_losses)]
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    diverged: bool
    suggestions: dict[str, float]
    mode: str = "exp"
    diverge_threshold: float = 4.0
    warmup: int = 0

    @property
    def suggestion(self) -> float:
        """The steepest-descent suggestion."""
        return self.suggestions["steepest"]

    def _loss_limits(self, marked: list[float]) -> tuple[float, float]:
        """The plot's loss range: the smoothed loss from the start to its minimum (not the
        blow-up after it) and every marked point, with a margin."""
        smoothed = self.smoothed_losses
        finite = np.isfinite(smoothed)
        if not finite.any():
            return (0.0, 1.0)
        best = int(np.nanargmin(np.where(finite, smoothed, np.nan)))
        shown = np.concatenate([smoothed[:best + 1][finite[:best + 1]],
                                np.array([y for y in marked if math.isfinite(y)], np.float64)])
        low, high = float(shown.min()), float(shown.max())
        span = max(high - low, 1e-12 * max(abs(low), abs(high), 1.0))
        return (low - 0.1 * span, high + 0.5 * span)

    def __repr__(self) -> str:
        tips = ", ".join(f"{k}={v:.3g}" for k, v in self.suggestions.items())
        stop = "diverged" if self.diverged else "ran to the end"
        return (f"RangeTestResult({len(self.lrs)} steps, lr {self.lrs[0]:.3g} .. "
                f"{self.lrs[-1]:.3g}, {stop}; suggestions: {tips})")

    def plot(self, path: str | os.PathLike | None = None, ax: Any = None) -> Any:
        """Loss (raw and smoothed) against lr on a log axis, the suggestions marked (always
        inside the axes' limits), the smoothing's warm-up shaded. Writes a PNG to ``path`` if
        given; returns the matplotlib Figure (needs matplotlib:
        ``pip install "adamkern[plot]"``).

        >>> result = adamkern.tuning.lr_range_test(opt, step_fn)
        >>> result.plot("lr_range.png")
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError('plotting needs matplotlib: pip install "adamkern[plot]"') from None
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 4))
        else:
            fig = ax.figure
        ax.plot(self.lrs, self.losses, lw=0.6, alpha=0.4, label="loss")
        ax.plot(self.lrs, self.smoothed_losses, lw=1.5, label="smoothed loss")
        if 0 < self.warmup < len(self.lrs):
            ax.axvspan(self.lrs[0], self.lrs[self.warmup], color="0.5", alpha=0.12, lw=0,
                       label="smoothing warm-up")
        styles = {"steepest": ("tab:red", "o"), "min/10": ("tab:green", "s")}
        marked = []
        for name, lr in self.suggestions.items():
            i = int(np.argmin(np.abs(np.log(self.lrs) - np.log(lr))))
            color, marker = styles.get(name, ("black", "x"))
            ax.plot([lr], [self.smoothed_losses[i]], marker, color=color,
                    label=f"{name}: {lr:.2g}")
            marked.append(float(self.smoothed_losses[i]))
        if self.mode == "exp":
            ax.set_xscale("log")
        ax.set_ylim(*self._loss_limits(marked))  # the x axis autoscales to every marker
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        ax.set_title("learning-rate range test", fontsize=9)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig


def _warmup_steps(smoothing: float) -> int:
    """The smoothing's warm-up: the steps before its average spans the ``1 / (1 - smoothing)``
    losses it averages once settled. Debiasing makes the early averages unbiased, not quiet:
    the average at step i weighs the new loss by ``(1 - smoothing) / (1 - smoothing**(i+1))``,
    about ``1 / (i+1)``, so one noisy batch moves it (and its slope) far more there than
    later."""
    return max(round(1.0 / (1.0 - smoothing)) - 1, 0)


def _suggest(lrs: np.ndarray, smoothed: np.ndarray, warmup: int) -> tuple[dict[str, float], int]:
    """The suggestions and the number of leading points they skipped: the warm-up, but never
    more than half of the points."""
    finite = np.isfinite(smoothed)
    count = int(np.argmin(finite)) if not finite.all() else len(smoothed)
    if count == 0:
        raise ValueError("the step function returned a non-finite loss at the first step; "
                         "lower start_lr")
    skip = min(warmup, (count - 1) // 2)
    lrs, smoothed = lrs[skip:count], smoothed[skip:count]
    best = int(np.argmin(smoothed))
    steepest = best
    if best >= 1:
        slopes = np.gradient(smoothed[:best + 1], np.log(lrs[:best + 1]))
        steepest = int(np.argmin(slopes))
    return {"steepest": float(lrs[steepest]), "min/10": float(lrs[best] / 10.0)}, skip


def lr_range_test(optimizer: Any, step_fn: Callable[[], Any], *, start_lr: float = 1e-7,
                  end_lr: float = 10.0, num_steps: int = 100, mode: str = "exp",
                  smoothing: float = 0.98, diverge_threshold: float = 4.0,
                  restore: bool = True) -> RangeTestResult:
    """Smith's learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's
    lr_find): ``num_steps`` steps with the lr rising from ``start_lr`` to ``end_lr``
    (geometrically with ``mode="exp"``, else linearly), stopped once the smoothed loss exceeds
    ``diverge_threshold`` times its best (or is not finite).

    ``step_fn()`` runs one training step with ``optimizer`` (compute the loss and grads on a
    batch, call ``optimizer.step``) and returns the loss (a float, a 0-d array or tensor).
    Before each call the lr of every param group is set. The loss is smoothed as fastai does:
    ``avg = smoothing * avg + (1 - smoothing) * loss``, divided by ``1 - smoothing**(i+1)``.
    The suggestions are searched past the smoothing's warm-up, its first
    ``round(1 / (1 - smoothing)) - 1`` steps (49 with the default 0.98; never more than half
    of the steps run): there the average holds too few losses, and one lucky batch makes the
    steepest slope of the curve. Choose ``start_lr`` (or ``num_steps``, or a lighter
    ``smoothing``) so that the lrs worth suggesting come after it (``result.warmup`` is its
    length, the plot shades it).

    With ``restore`` (the default) the params (and, for torch, their ``.grad``), the
    optimizer's state, step count and param groups (lr schedules included) are put back as
    they were, bit for bit, even if ``step_fn`` raises; the optimizer's recorders (a recording
    history) are paused meanwhile. State outside the optimizer (a data iterator, a loss
    scaler, a random generator the step function uses) is the caller's. With
    ``restore=False`` the params and state are left as the test's last step made them and the
    lr at its last value.

    >>> result = adamkern.tuning.lr_range_test(opt, lambda: train_step(next(batches)))
    >>> opt.param_groups[0]["lr"] = result.suggestion
    """
    _check_arguments(step_fn, start_lr, end_lr, num_steps, mode, smoothing, diverge_threshold)
    lrs = _lrs(start_lr, end_lr, num_steps, mode)
    snapshot = _snapshot(optimizer)
    with snapshot.recording_paused():
        try:
            losses, smoothed, diverged = _run(snapshot, step_fn, lrs, smoothing,
                                              diverge_threshold)
        finally:
            if restore:
                snapshot.restore()
    count = len(losses)
    result_lrs = np.array(lrs[:count], np.float64)
    smoothed_array = np.array(smoothed, np.float64)
    suggest_upto = count - 1 if diverged else count  # the diverged point is not a candidate
    suggestions, skipped = _suggest(result_lrs[:suggest_upto], smoothed_array[:suggest_upto],
                                    _warmup_steps(float(smoothing)))
    return RangeTestResult(result_lrs, np.array(losses, np.float64), smoothed_array, diverged,
                           suggestions, mode, float(diverge_threshold), skipped)


def _check_arguments(step_fn: Any, start_lr: Any, end_lr: Any, num_steps: Any, mode: Any,
                     smoothing: Any, diverge_threshold: Any) -> None:
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}")
    if not (isinstance(start_lr, numbers.Real) and math.isfinite(start_lr) and start_lr > 0):
        raise ValueError(f"start_lr must be a finite number > 0, got {start_lr!r}")
    if not (isinstance(end_lr, numbers.Real) and math.isfinite(end_lr) and end_lr > start_lr):
        raise ValueError(f"end_lr must be a finite number > start_lr ({start_lr!r}), got "
                         f"{end_lr!r}")
    if not isinstance(num_steps, numbers.Integral) or isinstance(num_steps, bool) \
            or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2, got {num_steps!r}")
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    if not (isinstance(smoothing, numbers.Real) and 0.0 <= smoothing < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if not (isinstance(diverge_threshold, numbers.Real) and diverge_threshold > 1.0):
        raise ValueError(f"diverge_threshold must be a number > 1, got {diverge_threshold!r}")


def _lrs(start_lr: float, end_lr: float, num_steps: int, mode: str) -> np.ndarray:
    """The lr of each step: geometric (``"exp"``) or linear from start_lr to end_lr."""
    from adamkern import schedules

    steps = np.arange(num_steps, dtype=np.int64)
    schedule = (schedules.exponential_decay(float(start_lr), num_steps - 1,
                                            float(end_lr) / float(start_lr))
                if mode == "exp" else
                schedules.linear(float(start_lr), float(end_lr), int(num_steps) - 1))
    return schedule(steps)


def _run(snapshot: _OptimSnapshot | _TorchSnapshot, step_fn: Callable[[], Any],
         lrs: np.ndarray, smoothing: float,
         diverge_threshold: float) -> tuple[list[float], list[float], bool]:
    """The steps of the test: the losses, their smoothed values, and whether it diverged."""
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    for i, lr in enumerate(lrs):
        snapshot.set_lr(float(lr))
        loss = float(step_fn())
        average = smoothing * average + (1.0 - smoothing) * loss
        value = average / (1.0 - smoothing ** (i + 1))
        losses.append(loss)
        smoothed.append(value if math.isfinite(loss) else math.nan)
        if not math.isfinite(value) or (i > 0 and value > diverge_threshold * best):
            return losses, smoothed, True
        best = min(best, value)
    return losses, smoothed, False
