"""The recorder interface of adamkern's optimizer objects, the same on :mod:`adamkern.optim`'s
and on :mod:`adamkern.torch`'s: recorders (:class:`adamkern.history.Recorder`) are added and
removed, ``opt.history`` is the one :class:`~adamkern.history.History` among them, and the
optimizers' ``step`` tells them what happened through the three ``_record_*`` methods."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from adamkern.history import History, Recorder, StepRecord


class _Callback(Recorder):
    """A plain callable added as a recorder: called with each step's record."""

    def __init__(self, callback: Callable[[StepRecord], Any]):
        self.callback = callback

    def on_step_end(self, record: StepRecord) -> None:
        self.callback(record)


class Recording:
    """Recorders of an optimizer's steps (mixed into the optimizer classes). Held in a tuple
    replaced on every change, so a step iterates over the recorders it began with; none
    (the default) costs a step one truth test."""

    _recorders: tuple[Recorder, ...] = ()
    _history: History | None = None

    @property
    def recorders(self) -> tuple[Any, ...]:
        """The recorders, in the order they are called (each as it was added)."""
        return tuple(r.callback if isinstance(r, _Callback) else r for r in self._recorders)

    def add_recorder(self, recorder: Recorder | Callable[[StepRecord], Any]) -> Any:
        """Calls ``recorder`` at every ``step()`` from now on: a
        :class:`~adamkern.history.Recorder`, or a callable that is given each step's
        :class:`~adamkern.history.StepRecord`. Returns ``recorder``.

        >>> norms = []
        >>> opt.add_recorder(lambda record: norms.append(record.grad_norm))
        """
        if any(r is recorder for r in self.recorders):
            raise ValueError(f"{recorder!r} is already a recorder of this optimizer")
        if isinstance(recorder, Recorder):
            adapted = recorder
        elif callable(recorder):
            adapted = _Callback(recorder)
        else:
            raise TypeError("a recorder is an adamkern.history.Recorder or a callable of a "
                            f"StepRecord, got {type(recorder).__name__}")
        self._recorders = (*self._recorders, adapted)
        return recorder

    def remove_recorder(self, recorder: Any) -> None:
        """Stops calling ``recorder`` (one given to :meth:`add_recorder`; removing
        ``opt.history`` sets it to None).

        >>> opt.remove_recorder(printer)
        """
        kept = tuple(r for r, given in zip(self._recorders, self.recorders)
                     if given is not recorder)
        if len(kept) == len(self._recorders):
            raise ValueError(f"{recorder!r} is not a recorder of this optimizer")
        self._recorders = kept
        if recorder is self._history:
            self._history = None

    @contextlib.contextmanager
    def recording_paused(self) -> Iterator[None]:
        """Steps taken inside call no recorder, and ``opt.history`` is None there; on exit the
        recorders and the history are those of the entry again.

        >>> with opt.recording_paused():
        ...     opt.step(probe_grads)        # in no history
        """
        recorders, history = self._recorders, self._history
        self._recorders, self._history = (), None
        try:
            yield
        finally:
            self._recorders, self._history = recorders, history

    @property
    def history(self) -> History | None:
        """The :class:`~adamkern.history.History` recording this optimizer's steps, or None.
        Assigning one records into it (in place of the previous one); None stops."""
        return self._history

    @history.setter
    def history(self, history: History | None) -> None:
        if self._history is not None and self._history is not history:
            self.remove_recorder(self._history)
        if history is not None and not any(r is history for r in self.recorders):
            self.add_recorder(history)
        self._history = history

    def record_history(self, history: History | None = None, **options: Any) -> History:
        """Starts recording lr, grad norm, update norm and skipped steps per step (see
        :mod:`adamkern.history` for what each costs) into ``history`` or a new
        ``History(**options)``; returns it (also ``opt.history``). ``opt.history = None``
        stops.

        >>> history = opt.record_history(update_norm=False)
        >>> opt.step(grads); history["grad_norm"]
        """
        self.history = history if history is not None else History(**options)
        return self.history

    # -- called by the optimizers' step ------------------------------------------------------

    def _record_begin(self) -> bool:
        """Tells every recorder a step begins; True if any wants its grad norm."""
        wanted = [recorder.on_step_begin() for recorder in self._recorders]
        return any(wanted)

    def _record_update(self, params: list[np.ndarray]) -> None:
        for recorder in self._recorders:
            recorder.on_update(params)

    def _record_end(self, record: StepRecord) -> None:
        for recorder in self._recorders:
            recorder.on_step_end(record)
