"""Finding the learning rate: Smith's range test and grid / random hyperparameter search.

Both work with any :mod:`adamkern.optim` optimizer and any torch optimizer
(:mod:`adamkern.torch` included), around the user's own training code.

>>> result = adamkern.tuning.lr_range_test(opt, step_fn, start_lr=1e-6, end_lr=1.0)
>>> result.suggestion, result.plot("lr_range.png")        # params and state are as before
>>> found = adamkern.tuning.search(train, {"lr": adamkern.tuning.log_uniform(1e-4, 1e-1)},
...                                init=make_model, method="random", n_trials=20, seed=0)
>>> print(found); found.best.config      # train(config, model) got a new make_model() each trial
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adamkern import optim

__all__ = [
    "Distribution",
    "RangeTestResult",
    "SearchResult",
    "Trial",
    "log_uniform",
    "lr_range_test",
    "search",
    "uniform",
]


# ---------------------------------------------------------------------------------------------
# Range test

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
                                                     "last_step_skipped", "history")}

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    def pause_history(self) -> None:
        self.opt.history = None

    def resume_history(self) -> None:
        self.opt.history = self.scalars["history"]

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
        self.history = opt.__dict__.get("history")

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            if isinstance(group["lr"], self.torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def pause_history(self) -> None:
        if self.history is not None:
            self.opt.history = None

    def resume_history(self) -> None:
        if self.history is not None:
            self.opt.history = self.history

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
    they were, bit for bit, even if ``step_fn`` raises; a recording history is paused
    meanwhile. State outside the optimizer (a data iterator, a loss scaler, a random
    generator the step function uses) is the caller's. With ``restore=False`` the params and
    state are left as the test's last step made them and the lr at its last value.

    >>> result = adamkern.tuning.lr_range_test(opt, lambda: train_step(next(batches)))
    >>> opt.param_groups[0]["lr"] = result.suggestion
    """
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
    from adamkern import schedules

    steps = np.arange(num_steps, dtype=np.int64)
    schedule = (schedules.exponential_decay(float(start_lr), num_steps - 1,
                                            float(end_lr) / float(start_lr))
                if mode == "exp" else
                schedules.linear(float(start_lr), float(end_lr), int(num_steps) - 1))
    lrs = schedule(steps)
    snapshot = _snapshot(optimizer)
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, diverged = 0.0, math.inf, False
    snapshot.pause_history()
    try:
        for i, lr in enumerate(lrs):
            snapshot.set_lr(float(lr))
            loss = float(step_fn())
            average = smoothing * average + (1.0 - smoothing) * loss
            value = average / (1.0 - smoothing ** (i + 1))
            losses.append(loss)
            smoothed.append(value if math.isfinite(loss) else math.nan)
            if not math.isfinite(value) or (i > 0 and value > diverge_threshold * best):
                diverged = True
                break
            best = min(best, value)
    finally:
        if restore:
            snapshot.restore()
        snapshot.resume_history()
    count = len(losses)
    result_lrs = np.array(lrs[:count], np.float64)
    smoothed_array = np.array(smoothed, np.float64)
    suggest_upto = count - 1 if diverged else count  # the diverged point is not a candidate
    suggestions, skipped = _suggest(result_lrs[:suggest_upto], smoothed_array[:suggest_upto],
                                    _warmup_steps(float(smoothing)))
    return RangeTestResult(result_lrs, np.array(losses, np.float64), smoothed_array, diverged,
                           suggestions, mode, float(diverge_threshold), skipped)


# ---------------------------------------------------------------------------------------------
# Search

@dataclass(frozen=True)
class Distribution:
    """A distribution random search draws a hyperparameter from (made by :func:`log_uniform`
    or :func:`uniform`); ``sample(rng)`` draws one value.

    >>> lr = adamkern.tuning.log_uniform(1e-4, 1e-1)
    >>> lr.sample(np.random.default_rng(0))
    """

    kind: str
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"{self.kind}({self.low!r}, {self.high!r})"


def log_uniform(low: float, high: float) -> Distribution:
    """A value drawn log-uniformly from ``[low, high]`` (for lr, weight decay), in random search.

    >>> space = {"lr": adamkern.tuning.log_uniform(1e-5, 1e-1)}
    >>> adamkern.tuning.search(train, space, method="random", n_trials=20)
    """
    if not (isinstance(low, numbers.Real) and isinstance(high, numbers.Real)
            and 0 < low < high and math.isfinite(high)):
        raise ValueError(f"log_uniform needs finite 0 < low < high, got low={low!r}, "
                         f"high={high!r}")
    return Distribution("log_uniform", float(low), float(high))


def uniform(low: float, high: float) -> Distribution:
    """A value drawn uniformly from ``[low, high]``, in random search.

    >>> space = {"beta1": adamkern.tuning.uniform(0.8, 0.95)}
    >>> adamkern.tuning.search(train, space, method="random", n_trials=20)
    """
    if not (isinstance(low, numbers.Real) and isinstance(high, numbers.Real)
            and math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"uniform needs finite low < high, got low={low!r}, high={high!r}")
    return Distribution("uniform", float(low), float(high))


@dataclass
class Trial:
    """One configuration tried. ``metric`` is the best epoch's metric (or the single value
    ``train_fn`` returned); ``metrics`` every epoch's; ``best_epoch`` its index;
    ``stopped_early``: patience ran out before ``train_fn`` finished.

    >>> trial = adamkern.tuning.search(train, space).best
    >>> trial.config, trial.metric, trial.metrics[trial.best_epoch]
    """

    index: int
    config: dict[str, Any]
    metric: float
    metrics: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        return len(self.metrics)


def _is_better(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class SearchResult:
    """The trials of a :func:`search`, in the order they ran; ``best`` is the best trial
    (non-finite metrics rank last). ``str(result)`` is a text table, best first.

    >>> result = adamkern.tuning.search(train, {"lr": [1e-3, 1e-2, 1e-1]})
    >>> print(result); result.best_config; result.to_pandas()
    """

    trials: list[Trial]
    names: list[str]
    mode: str

    @property
    def best(self) -> Trial:
        return self.ranked()[0]

    @property
    def best_config(self) -> dict[str, Any]:
        return dict(self.best.config)

    def ranked(self) -> list[Trial]:
        """The trials best first (ties: the earlier trial first)."""
        sign = 1.0 if self.mode == "min" else -1.0
        return sorted(self.trials, key=lambda t: (not math.isfinite(t.metric),
                                                  sign * t.metric if math.isfinite(t.metric)
                                                  else 0.0, t.index))

    def rows(self) -> list[dict[str, Any]]:
        """One dict per trial: ``trial``, the hyperparameters, ``metric``, ``epochs``,
        ``best_epoch``, ``stopped_early``."""
        return [{"trial": t.index, **t.config, "metric": t.metric, "epochs": t.epochs,
                 "best_epoch": t.best_epoch, "stopped_early": t.stopped_early}
                for t in self.trials]

    def table(self, sort: bool = True) -> str:
        """A fixed-width text table of the trials (best first with ``sort``)."""
        trials = self.ranked() if sort else self.trials
        best = self.best.index if self.trials else None
        header = ["trial", *self.names, "metric", "epochs", "best_epoch", "stopped"]

        def text(value: Any) -> str:
            if isinstance(value, bool):
                return "yes" if value else ""
            if isinstance(value, numbers.Integral):
                return str(value)
            if isinstance(value, numbers.Real):
                return f"{float(value):.4g}"
            return str(value)

        body = [[f"{t.index}{' *' if t.index == best else ''}",
                 *(text(t.config[n]) for n in self.names), text(t.metric), str(t.epochs),
                 str(t.best_epoch), text(t.stopped_early)] for t in trials]
        widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
        lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths))
                 for row in [header, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        if not self.trials:
            return "SearchResult(0 trials)"
        return (f"SearchResult({len(self.trials)} trials, best {self.best.config} "
                f"with metric {self.best.metric:.4g})")

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas: ``pip install "adamkern[tuning]"``).

        >>> frame = adamkern.tuning.search(train, space).to_pandas()
        >>> frame.sort_values("metric").head()
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError('SearchResult.to_pandas needs pandas: pip install '
                              '"adamkern[tuning]"') from None
        return pd.DataFrame(self.rows())


def _configs(space: Mapping[str, Any], method: str, n_trials: int | None,
             seed: int | None) -> list[dict[str, Any]]:
    names = list(space)
    axes = {}
    for name in names:
        value = space[name]
        if isinstance(value, Distribution):
            if method == "grid":
                raise ValueError(f"space[{name!r}] is {value!r}, which grid search cannot "
                                 "enumerate: give a list of values (e.g. np.geomspace(...)) "
                                 "or use method='random'")
            axes[name] = value
        elif isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            axes[name] = [value]  # a fixed value
        else:
            values = list(value)
            if not values:
                raise ValueError(f"space[{name!r}] is an empty list")
            axes[name] = [v.item() if isinstance(v, np.generic) else v for v in values]
    if method == "grid":
        if n_trials is not None:
            raise ValueError("n_trials is for method='random' (grid search runs every point)")
        return [dict(zip(names, point)) for point in itertools.product(*axes.values())]
    if not isinstance(n_trials, numbers.Integral) or isinstance(n_trials, bool) or n_trials < 1:
        raise ValueError(f"n_trials must be an int >= 1 for method='random', got {n_trials!r}")
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(int(n_trials)):
        config = {}
        for name, axis in axes.items():
            config[name] = (axis.sample(rng) if isinstance(axis, Distribution)
                            else axis[int(rng.integers(len(axis)))])
        configs.append(config)
    return configs


def search(train_fn: Callable[..., float | Iterable[float]], space: Mapping[str, Any], *,
           init: Callable[[], Any] | None = None, method: str = "grid",
           n_trials: int | None = None, seed: int | None = 0, mode: str = "min",
           patience: int | None = None, min_delta: float = 0.0,
           verbose: bool = False) -> SearchResult:
    """Grid or random search of ``train_fn(config) -> metric`` (or, with ``init``,
    ``train_fn(config, init()) -> metric``) over ``space``.

    Every trial must start from the same initial model, not from where the previous trial
    left it. With ``init``, a callable that builds the model (or the list of params: whatever
    ``train_fn`` trains) from scratch, each trial calls it and runs ``train_fn(config, model)``
    on the new object; ``train_fn`` then builds its optimizer on that model. If ``init`` hands
    back an object that an earlier trial received and that still exists (the object itself
    or, for a list, tuple or dict of arrays or tensors, one of them), the search stops with a
    ValueError: the trials would continue from each other. Without ``init``,
    ``train_fn(config)`` must build or reset its model itself.

    ``space`` maps each hyperparameter to a list of values (a grid axis; random search picks
    one uniformly), to :func:`log_uniform` / :func:`uniform` (random search only) or to a
    fixed value. ``method="grid"`` runs every combination in order (the first name varies
    slowest); ``method="random"`` draws ``n_trials`` configurations, all from one
    ``numpy.random.default_rng(seed)`` before any trial runs, so the same seed gives the same
    configurations whatever the metrics.

    ``train_fn`` returns the metric, or yields one metric per epoch (a generator): the trial's
    metric is then its best epoch's, and with ``patience`` the trial is stopped (the generator
    closed) once ``patience`` epochs in a row have not improved on the best by more than
    ``min_delta`` (Keras' EarlyStopping), or at a non-finite metric. ``mode`` is ``"min"``
    (a loss) or ``"max"`` (an accuracy). Keep ``init`` and ``train_fn`` deterministic (seed
    the init and the data order) so trials compare fairly and a search repeats exactly.

    >>> result = adamkern.tuning.search(train, {"lr": [1e-3, 1e-2], "weight_decay": [0, 1e-4]},
    ...                                 init=lambda: MLP(seed=0))   # train(config, model)
    >>> print(result); result.best_config
    """
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
    if init is not None and not callable(init):
        raise TypeError(f"init must be callable (it builds a fresh model for each trial) or "
                        f"None, got {type(init).__name__}")
    if not isinstance(space, Mapping) or not space:
        raise ValueError("space must be a non-empty dict of hyperparameter name -> values")
    if method not in ("grid", "random"):
        raise ValueError(f"method must be 'grid' or 'random', got {method!r}")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if patience is not None and (not isinstance(patience, numbers.Integral)
                                 or isinstance(patience, bool) or patience < 0):
        raise ValueError(f"patience must be an int >= 0 or None, got {patience!r}")
    if not (isinstance(min_delta, numbers.Real) and min_delta >= 0):
        raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
    configs = _configs(space, method, n_trials, seed)
    trials = []
    handed_out = _HandedOut()
    for index, config in enumerate(configs):
        if init is None:
            run = train_fn
        else:
            model = init()
            handed_out.check(model, index)
            run = _bind_model(train_fn, model)
            del model  # the trial holds it; once it ends, nothing here keeps it alive
        trial = _run_trial(run, index, config, mode, patience, float(min_delta))
        del run
        trials.append(trial)
        if verbose:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in config.items())
            print(f"trial {index}: {shown}  metric {trial.metric:.4g} "
                  f"({trial.epochs} epochs{', stopped early' if trial.stopped_early else ''})")
    return SearchResult(trials, list(space), mode)


def _bind_model(train_fn: Callable, model: Any) -> Callable[[dict[str, Any]], Any]:
    def run(config: dict[str, Any]) -> Any:
        return train_fn(config, model)
    return run


class _HandedOut:
    """Weak references to what ``init`` returned for earlier trials, to catch an ``init`` that
    hands the same model out again (``init=lambda: model``): its trials would continue from
    each other. Weak, so a finished trial's model is freed as before; identity is checked only
    against objects still alive, so a reused id() is never mistaken for a reused model."""

    def __init__(self) -> None:
        self.seen: list[tuple[weakref.ref, int, str]] = []

    @staticmethod
    def _parts(model: Any) -> list[tuple[Any, str]]:
        """The object, and the arrays of a params list (or dict): not the items of a mixed
        tuple, where a shared data set next to a new model is fine."""
        parts = [(model, "the object")]
        items = (list(model.items()) if isinstance(model, Mapping)
                 else list(enumerate(model)) if isinstance(model, (list, tuple)) else [])
        if items and all(isinstance(item, np.ndarray) or _is_torch_state(item)
                         for _, item in items):
            parts += [(item, f"its item [{key!r}]") for key, item in items]
        return parts

    def check(self, model: Any, index: int) -> None:
        parts = self._parts(model)
        for ref, trial, _ in self.seen:
            old = ref()
            if old is None:
                continue
            for part, where in parts:
                if part is old:
                    raise ValueError(
                        f"init returned for trial {index} {where} ({type(part).__name__}) that "
                        f"trial {trial} already trained: init must build a new model on every "
                        "call (init=lambda: MLP(seed=0), not init=lambda: model), or each "
                        "trial continues from the last one's weights")
        for part, where in parts:
            try:
                self.seen.append((weakref.ref(part), index, where))
            except TypeError:
                pass  # lists, tuples, numbers: not trainable state themselves


def _is_torch_state(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, (torch.Tensor, torch.nn.Module))


def _run_trial(train_fn: Callable, index: int, config: dict[str, Any], mode: str,
               patience: int | None, min_delta: float) -> Trial:
    outcome = train_fn(dict(config))
    if isinstance(outcome, numbers.Real) or (isinstance(outcome, np.ndarray)
                                             and outcome.ndim == 0):
        value = float(outcome)
        return Trial(index, config, value, [value], 0, False)
    if not isinstance(outcome, Iterable) or isinstance(outcome, (str, bytes)):
        raise TypeError(f"train_fn must return a number or yield one per epoch, got "
                        f"{type(outcome).__name__} for config {config}")
    metrics: list[float] = []
    best, best_epoch = math.nan, 0
    reference, waited, stopped = math.nan, 0, False  # patience counts against `reference`
    iterator = iter(outcome)
    try:
        for value in iterator:
            value = float(value)
            metrics.append(value)
            if _is_better(value, best, mode):
                best, best_epoch = value, len(metrics) - 1
            if _is_better(value, reference, mode, min_delta):
                reference, waited = value, 0
            else:
                waited += 1
            if not math.isfinite(value) or (patience is not None and 0 < waited
                                            and waited >= patience):
                stopped = True
                break
    finally:
        close = getattr(iterator, "close", None)
        if stopped and close is not None:
            close()
    if not metrics:
        raise ValueError(f"train_fn yielded no metric for config {config}")
    return Trial(index, config, best, metrics, best_epoch, stopped)
