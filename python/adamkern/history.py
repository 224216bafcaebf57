"""What an optimizer did, step by step: the lr, the gradient norm, the update norm, skipped steps.

Recording is opt-in and costs nothing when off (one attribute test per step). Turn it on with
``Optimizer(..., history=True)`` or ``opt.record_history(...)`` (the :mod:`adamkern.optim`
optimizers and the :mod:`adamkern.torch` ones alike); ``opt.history`` is then a
:class:`History`.

>>> history = opt.record_history()                  # or optim.AdamW(params, history=True)
>>> for batch in data: opt.step(backward(batch)); history.log(loss=loss)
>>> history.to_csv("history.csv"); adamkern.history.plot_history(history, "history.png")

Columns (one row per recorded ``step()`` call):

- ``step``: the optimizer's step index at the call (the argument its schedules got; a skipped
  step leaves it unchanged, so the next row repeats it);
- ``lr``: the learning rate used (param group 0; ``lr/1``, ``lr/2``, ... for further groups);
- ``grad_norm``: the global L2 norm of the (unscaled) gradients as passed to ``step``, before
  clipping. It is the norm the optimizer already computes for ``max_grad_norm`` or a loss
  scaler (one deterministic C++ pass, reused: never computed twice); otherwise that pass
  (one read of the grads) is the price of the column;
- ``update_norm``: ``||p_after - p_before||`` over all params. The update kernels do not
  return it, so the params are copied before the update into a scratch buffer allocated once
  (one read and one write of the params), subtracted after it (two reads, one write) and
  reduced (one read): about 24 bytes per fp32 element, close to the 28 of an Adam update
  itself (measured: an fp32 AdamW step of 4M elements x2.7 with both norms, x1.36 with the
  grad norm alone). ``update_norm=False`` drops it, ``every=k`` pays it on every k-th step only;
- ``skipped``: 1 where the step was skipped (inf/NaN grads under a loss scaler or AMP's
  ``found_inf``; nothing changed, ``update_norm`` is 0), else 0.

``step`` and ``skipped`` are integer columns (int64 arrays, ``3`` in the CSV, not ``3.0``); the
others are float64. An integer column that some row lacks (a row added by :meth:`History.append`
without it) holds NaN there, and is then float64.

Anything else (the loss, a validation metric) goes in with :meth:`History.log`, which adds
its columns to the last row.

A History is a :class:`Recorder`: the optimizers call their recorders at each step (see
:class:`Recorder` for when) and hand them a :class:`StepRecord` of what the step did. Any code
can follow the steps the same way, with ``opt.add_recorder(recorder)`` (a Recorder, or a
callable of the record) and ``opt.remove_recorder(recorder)``.

>>> opt.add_recorder(lambda record: print(record.step, record.grad_norm))
"""

from __future__ import annotations

import csv
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from adamkern import memory
from adamkern.grads import grad_stats

__all__ = ["History", "Recorder", "StepRecord", "plot_history"]

#: The columns that hold counts: int64 arrays, written as integers in the CSV.
_INTEGER_COLUMNS = frozenset({"step", "skipped"})


def _global_norm(arrays: list[np.ndarray]) -> float:
    """The L2 norm of all elements (the deterministic C++ reduction)."""
    return grad_stats(arrays)[0]


@dataclass(frozen=True)
class StepRecord:
    """What one ``step()`` call of an optimizer did, as its recorders receive it.

    - ``step``: the optimizer's step index at the call (``opt.step_count`` before the step, the
      argument its schedules got; a skipped step leaves it unchanged). None for the
      :mod:`adamkern.torch` optimizers, which count steps per param (``state[p]["step"]``),
      not as a whole;
    - ``lrs``: the lr each param group used;
    - ``grad_norm``: the global L2 norm of the (unscaled) grads before clipping, where the step
      computed it (a recorder asked for it, or clipping or a loss scaler needed it), else None;
    - ``skipped``: True where inf/NaN grads skipped the step (nothing was written);
    - ``params``: the params as NumPy arrays, after the update (for :mod:`adamkern.torch`,
      views of the params that had a grad).

    >>> opt.add_recorder(lambda record: print(record.step, record.lrs[0], record.skipped))
    >>> opt.step(grads)
    """

    step: int | None
    lrs: list[float]
    grad_norm: float | None
    skipped: bool
    params: list[np.ndarray]


class Recorder:
    """What an optimizer calls during its ``step()`` calls, once added with
    ``opt.add_recorder(recorder)`` (:mod:`adamkern.optim` and :mod:`adamkern.torch` optimizers
    alike); ``opt.remove_recorder(recorder)`` stops the calls. Subclass it and override what
    you need: the methods here do nothing. A plain callable ``fn(record)`` may be added
    instead; it is called as :meth:`on_step_end`. :class:`History` is a recorder.

    In one ``step()`` call, in this order:

    1. :meth:`on_step_begin`, once the call has started (before anything is written);
    2. :meth:`on_update`, once every check has passed and the grads are clipped, right before
       the params are written (not on a skipped step);
    3. :meth:`on_step_end`, once the step is done or skipped, with its :class:`StepRecord`.

    A ``step()`` that raises writes nothing and calls no :meth:`on_step_end`.

    >>> class Losses(adamkern.history.Recorder):
    ...     def on_step_end(self, record): print(record.step, record.grad_norm)
    >>> opt.add_recorder(Losses())
    """

    def on_step_begin(self) -> bool:
        """Called first in each ``step()`` call; True asks for the grad norm of this step in
        :attr:`StepRecord.grad_norm` (one deterministic C++ pass over the grads, made once for
        every recorder, and none where clipping or loss scaling computes it anyway)."""
        return False

    def on_update(self, params: list[np.ndarray]) -> None:
        """Called right before ``params`` (the arrays :attr:`StepRecord.params` will hold) are
        updated: the last moment to read their old values."""

    def on_step_end(self, record: StepRecord) -> None:
        """Called after each ``step()`` call that updated or skipped, with what it did."""


class History(Recorder):
    """Columns of per-step values, recorded by an optimizer (see the module docstring).

    ``history["lr"]`` is a column as an array (float64; int64 for ``step`` and ``skipped``),
    ``history.rows`` the rows as dicts, ``len(history)`` the number of rows.

    >>> history = adamkern.history.History(update_norm=False, every=10)
    >>> opt = adamkern.optim.Adam(params, history=history)
    """

    def __init__(self, *, grad_norm: bool = True, update_norm: bool = True, every: int = 1):
        if not isinstance(every, numbers.Integral) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.grad_norm = bool(grad_norm)
        self.update_norm = bool(update_norm)
        self.every = int(every)
        self.columns: dict[str, list[float | int]] = {}
        self._length = 0
        self._calls = 0
        self._recording = False
        self._last_call_recorded = False
        self._scratch: list[np.ndarray] | None = None
        self._before: list[np.ndarray] | None = None
        self._unnumbered_updates = 0  # see on_step_end

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the columns are {list(self.columns)}")
        column = self.columns[name]
        if name in _INTEGER_COLUMNS and all(type(v) is int for v in column):
            return np.array(column, dtype=np.int64)
        return np.array(column, dtype=np.float64)

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    @property
    def rows(self) -> list[dict[str, float | int]]:
        return [{k: v[i] for k, v in self.columns.items()} for i in range(self._length)]

    def as_dict(self) -> dict[str, np.ndarray]:
        """Every column as an array: float64, int64 for ``step`` and ``skipped``.

        >>> columns = opt.history.as_dict()
        >>> columns["lr"][-1], columns["update_norm"].max()
        """
        return {name: self[name] for name in self.columns}

    def clear(self) -> None:
        """Forgets every row (the settings stay)."""
        self.columns, self._length, self._calls = {}, 0, 0

    def __repr__(self) -> str:
        return (f"History({self._length} rows, columns={list(self.columns)}, "
                f"grad_norm={self.grad_norm}, update_norm={self.update_norm}, "
                f"every={self.every})")

    # -- writing -----------------------------------------------------------------------------

    def append(self, **values: float) -> None:
        """Adds a row; columns it lacks are NaN in it (and new columns are NaN before it).

        >>> history = adamkern.history.History()
        >>> history.append(step=0, lr=1e-3, loss=2.3)
        """
        for name in values:
            if name not in self.columns:
                self.columns[name] = [math.nan] * self._length
        for name, column in self.columns.items():
            column.append(_cell(name, values.get(name, math.nan)))
        self._length += 1

    def log(self, **values: float) -> None:
        """Sets values (a loss, a metric) on the row of the latest ``step()`` call, adding the
        columns if new; does nothing if that call was not recorded (``every > 1``).

        >>> opt.step(grads); opt.history.log(loss=loss)
        """
        if self._calls == 0:
            raise ValueError("log() sets values on the row of the latest step; no step has "
                             "been recorded yet")
        if not self._last_call_recorded:
            return
        for name, value in values.items():
            column = self.columns.setdefault(name, [math.nan] * self._length)
            column[-1] = _cell(name, value)

    # -- export ------------------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike) -> None:
        """Writes the rows as CSV with a header: floats in full precision (``repr``), the
        integer columns ``step`` and ``skipped`` as integers.

        >>> history.to_csv("history.csv")
        """
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(list(self.columns))
            for i in range(self._length):
                writer.writerow([str(column[i]) if type(column[i]) is int else repr(column[i])
                                 for column in self.columns.values()])

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame, with the dtypes of :meth:`as_dict` (needs pandas:
        ``pip install "adamkern[tuning]"``).

        >>> frame = opt.history.to_pandas()
        >>> frame[["step", "lr", "grad_norm"]].tail()
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError('History.to_pandas needs pandas: pip install "adamkern[tuning]"'
                              ) from None
        return pd.DataFrame(self.as_dict())

    def to_tensorboard(self, logdir: str | os.PathLike, prefix: str = "optimizer/") -> str:
        """Writes every column (except ``step``) as TensorBoard scalars ``prefix + name`` at
        ``global_step = step`` into an event file in ``logdir``; returns ``logdir``. Uses
        ``torch.utils.tensorboard`` or ``tensorboardX`` (whichever is installed; both need the
        ``tensorboard`` package: ``pip install "adamkern[tuning]"``).

        >>> history.to_tensorboard("runs/adamw")    # then: tensorboard --logdir runs
        """
        writer_class = _summary_writer()
        writer = writer_class(log_dir=str(logdir))
        try:
            steps = self.columns.get("step", list(range(self._length)))
            for name, column in self.columns.items():
                if name == "step":
                    continue
                for step, value in zip(steps, column):
                    if not math.isnan(value):
                        writer.add_scalar(prefix + name, value, global_step=int(step))
            writer.flush()
        finally:
            writer.close()
        return str(logdir)

    def plot(self, path: str | os.PathLike | None = None, columns: list[str] | None = None) -> Any:
        """See :func:`plot_history`."""
        return plot_history(self, path, columns)

    # -- recording (the Recorder interface) --------------------------------------------------

    def on_step_begin(self) -> bool:
        """Counts the call (for ``every``); True if its grad norm is wanted."""
        self._recording = self._calls % self.every == 0
        self._last_call_recorded = False
        self._calls += 1
        return self._recording and self.grad_norm

    def on_update(self, params: list[np.ndarray]) -> None:
        """Copies the params into the scratch buffer (allocated once) for the update norm."""
        self._before = None
        if not (self._recording and self.update_norm):
            return
        scratch = self._scratch
        if scratch is None or len(scratch) != len(params) or any(
                s.shape != p.shape or s.dtype != p.dtype for s, p in zip(scratch, params)):
            scratch = self._scratch = memory.empty_like_all(params)
        for s, p in zip(scratch, params):
            np.copyto(s, p)
        self._before = scratch

    def on_step_end(self, record: StepRecord) -> None:
        """Records the row of the step: a skipped one always, whatever ``every``. Steps without
        an index of their own (:mod:`adamkern.torch`) are numbered by the updates recorded."""
        step = record.step
        if step is None:
            step = self._unnumbered_updates
            if not record.skipped:
                self._unnumbered_updates += 1
        if record.skipped:
            self._skipped(step, record.lrs, record.grad_norm)
        else:
            self._updated(step, record.lrs, record.params, record.grad_norm)

    def _updated(self, step: int, lrs: list[float], params: list[np.ndarray],
                 grad_norm: float | None) -> None:
        """Records the row of an update done since on_update."""
        if not self._recording:
            return
        row = self._row(step, lrs, grad_norm)
        if self._before is not None:
            for s, p in zip(self._before, params):
                np.subtract(p, s, out=s)
            row["update_norm"] = _global_norm(self._before)
            self._before = None
        row["skipped"] = 0
        self.append(**row)
        self._last_call_recorded = True

    def _skipped(self, step: int, lrs: list[float], grad_norm: float | None) -> None:
        """Records a skipped step."""
        row = self._row(step, lrs, grad_norm)
        if self.update_norm:
            row["update_norm"] = 0.0
        row["skipped"] = 1
        self._before = None
        self.append(**row)
        self._last_call_recorded = True

    def _row(self, step: int, lrs: list[float],
             grad_norm: float | None) -> dict[str, float | int]:
        row: dict[str, float | int] = {"step": int(step)}
        for g, lr in enumerate(lrs):
            row["lr" if g == 0 else f"lr/{g}"] = float(lr)
        if self.grad_norm:
            row["grad_norm"] = math.nan if grad_norm is None else float(grad_norm)
        return row


def _cell(name: str, value: Any) -> float | int:
    """A value as stored in column ``name``: an int in an integer column when it is a whole
    number (NaN, for a row that lacks the column, stays a float), else a float."""
    if name in _INTEGER_COLUMNS:
        if isinstance(value, numbers.Integral):
            return int(value)
        number = float(value)
        if number.is_integer():
            return int(number)
        return number
    return float(value)


def _summary_writer() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter
    except ImportError:
        pass
    try:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    except ImportError:
        raise ImportError('to_tensorboard needs tensorboard (with torch) or tensorboardX: '
                          'pip install "adamkern[tuning]"') from None


def plot_history(history: History, path: str | os.PathLike | None = None,
                 columns: list[str] | None = None) -> Any:
    """One panel per column against ``step`` (default: every column but ``step`` and
    ``skipped``; skipped steps are marked in red). Writes a PNG to ``path`` if given and
    returns the matplotlib Figure (needs matplotlib: ``pip install "adamkern[plot]"``).

    >>> opt = adamkern.optim.AdamW(params, history=True)   # ... train ...
    >>> adamkern.history.plot_history(opt.history, "history.png")
    """
    if not isinstance(history, History):
        raise TypeError(f"history must be an adamkern History, got {type(history).__name__}")
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plot_history needs matplotlib: pip install "adamkern[plot]"') from None
    if columns is None:
        columns = [c for c in history.columns if c not in ("step", "skipped")]
    unknown = [c for c in columns if c not in history.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the history ({list(history.columns)})")
    if not columns:
        raise ValueError("nothing to plot: the history has no columns besides step/skipped")
    steps = history["step"] if "step" in history else np.arange(len(history), dtype=np.float64)
    skipped = history["skipped"] > 0 if "skipped" in history else np.zeros(len(history), bool)
    fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.2 * len(columns)), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], columns):
        values = history[name]
        ax.plot(steps, values, lw=0.9)
        if skipped.any():
            ax.plot(steps[skipped], np.where(np.isfinite(values[skipped]), values[skipped],
                                             np.nanmax(values) if np.isfinite(values).any()
                                             else 0.0), "rx", label="skipped")
            ax.legend(fontsize=7)
        positive = values[np.isfinite(values)]
        if name.startswith(("lr", "grad_norm", "update_norm", "loss")) and positive.size \
                and (positive > 0).all():
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
