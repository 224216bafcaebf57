"""Grid and random hyperparameter search (see :func:`search`): the search space, the trials
(each from a freshly built model, with early stopping), and the result as a table."""

from __future__ import annotations

import itertools
import math
import numbers
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    _check_arguments(train_fn, space, init, method, mode, patience, min_delta)
    configs = _configs(space, method, n_trials, seed)
    trials = []
    handed_out = _HandedOut()
    for index, config in enumerate(configs):
        # the trial's model (with init) lives as long as the trial runs, no longer
        trial = _run_trial(_trial_function(train_fn, init, handed_out, index), index, config,
                           mode, patience, float(min_delta))
        trials.append(trial)
        if verbose:
            _print_trial(trial)
    return SearchResult(trials, list(space), mode)


def _check_arguments(train_fn: Any, space: Any, init: Any, method: Any, mode: Any,
                     patience: Any, min_delta: Any) -> None:
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


def _trial_function(train_fn: Callable, init: Callable[[], Any] | None, handed_out: _HandedOut,
                    index: int) -> Callable[[dict[str, Any]], Any]:
    """What trial ``index`` runs: ``train_fn``, or with ``init`` ``train_fn`` bound to the new
    model ``init`` builds for it (refused if an earlier trial had it)."""
    if init is None:
        return train_fn
    model = init()
    handed_out.check(model, index)
    return _bind_model(train_fn, model)


def _print_trial(trial: Trial) -> None:
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in trial.config.items())
    print(f"trial {trial.index}: {shown}  metric {trial.metric:.4g} "
          f"({trial.epochs} epochs{', stopped early' if trial.stopped_early else ''})")


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
