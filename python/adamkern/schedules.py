"""Learning-rate schedules, evaluated in C++: the catalogue of torch, Keras and optax.

A schedule is a callable of the step (counting from 0): an int gives a float, an integer
ndarray gives a float64 ndarray of its shape, computed in one C++ call. Every schedule works
for ``lr``, ``weight_decay`` or a momentum alike; the formulas, with their sources, are in
``cpp/include/adamkern/schedules.hpp``.

>>> lr = adamkern.schedules.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4])  # per epoch
>>> lr(0), lr(10), lr(25)
(0.001, 0.0005, 0.0001)
>>> lr = adamkern.schedules.warmup_cosine_decay(0.0, 1e-3, warmup_steps=100, decay_steps=10_000)
>>> lr(np.arange(0, 10_000, 1000))  # a float64 array

Any schedule steps per epoch instead of per step with ``.per_epoch(steps_per_epoch)`` (the
value is constant within an epoch, ``epoch = step // steps_per_epoch``), so an epoch recipe
drives an optimizer stepped per batch as written:

>>> lr = adamkern.schedules.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4]).per_epoch(390)
>>> opt = adamkern.optim.Adam(params, lr=lr)     # epochs 0-9 at 1e-3, 10-19 at 5e-4, ...

Extremes. Steps are int64: ``0 <= step < 2**63`` (a larger or negative step, or an unsigned
array holding one, is a ValueError); the formulas see the step as a double, so past 2**53 it is
rounded to a multiple of a power of two first. Every argument the constructor accepts gives a
finite value at every step, in a time that does not depend on the step (no loop over cycles or
epochs):

- a value whose exact magnitude is past the largest double (a factor > 1 compounded over many
  steps: ``step_decay``, ``multistep_decay``, ``exponential_decay``, ``multiplicative`` with a
  factor > 1, ``cyclic`` ``exp_range`` with ``gamma > 1``, ``cosine_restarts`` with
  ``m_mul > 1``, or a bounded schedule whose end, ``init_value * alpha``, is past it) is
  returned as ``+-sys.float_info.max``, where IEEE round-toward-zero puts it; never inf or NaN;
- where only a step on the way overflows (``0 * inf``, the difference of two huge bounds of
  opposite signs, a tiny ``decay_steps``), the value is computed another way and is what the
  formula means;
- arguments for which the source formula has no value are refused at construction with a
  ValueError naming them: a negative ``power`` (``polynomial_decay``) or ``exponent``
  (``cosine_decay``), whose base reaches 0; a ``warmup_cosine_decay`` whose
  ``end_value / peak_value`` is not a double; a ``one_cycle`` whose initial or final value is
  not; a ``cyclic`` cycle longer than the largest double.

Arguments of the wrong type raise TypeError naming them (a bool is not a number here, nor a
number a bool).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from adamkern import _core

__all__ = [
    "ReduceLROnPlateau",
    "Schedule",
    "constant",
    "cosine_decay",
    "cosine_restarts",
    "cyclic",
    "exponential_decay",
    "inverse_time_decay",
    "join",
    "linear",
    "multiplicative",
    "multistep_decay",
    "one_cycle",
    "per_epoch",
    "piecewise_constant",
    "polynomial_decay",
    "step_decay",
    "warmup",
    "warmup_cosine_decay",
]

_cpp = _core.schedules

_INT64_MAX = 2**63 - 1
# A callable factor of multiplicative() is called once per epoch at construction and its
# products are held in memory: this many epochs take ~80 MB and a few seconds.
_MAX_CALLABLE_EPOCHS = 10_000_000


def _step(step: Any) -> int | np.ndarray:
    """A step (int) or steps (int64 array) as the C++ call takes them; TypeError for anything
    else, ValueError for a step outside [0, 2**63)."""
    if isinstance(step, np.ndarray):
        if step.dtype.kind not in "iu":
            raise TypeError(f"steps must be an integer array, got dtype {step.dtype}")
        if step.dtype == np.uint64 and step.size and int(step.max()) > _INT64_MAX:
            raise ValueError(f"steps must be < 2**63 (int64), got {int(step.max())}")
        return step.astype(np.int64, copy=False)
    if isinstance(step, numbers.Integral) and not isinstance(step, bool):
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0 (steps count from 0), got {step}")
        if step > _INT64_MAX:
            raise ValueError(f"step must be < 2**63 (int64), got {step}")
        return step
    raise TypeError(f"step must be an int or an integer ndarray, got {type(step).__name__}")


def _integer(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f"{name} must fit in 64 bits (-2**63 <= {name} < 2**63), got {value}")
    return value


def _real(value: Any, name: str) -> float:
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int past the double range
        raise ValueError(f"{name} must be a finite number, got {value}") from None


def _steps_per_epoch(value: Any) -> int:
    value = _integer(value, "steps_per_epoch")
    if value < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {value}")
    return value


def _optional_real(value: Any, name: str) -> float | None:
    return None if value is None else _real(value, name)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _choice(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _sequence(values: Any, name: str, item: Callable[[Any, str], Any]) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence, got {type(values).__name__}")
    return [item(value, f"{name}[{i}]") for i, value in enumerate(values)]


class Schedule:
    """A schedule: ``sched(step)`` for an int or an integer array of steps (from 0)."""

    def __init__(self, core: Any, name: str, arguments: dict[str, Any], text: str | None = None):
        self._core = core
        self._name = name
        self._arguments = arguments
        self._text = text

    def __call__(self, step: int | np.ndarray) -> float | np.ndarray:
        step = _step(step)
        if isinstance(step, np.ndarray):
            return self._core.values(step)
        return self._core.value(step)

    def __repr__(self) -> str:
        if self._text is not None:
            return self._text
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._arguments.items())
        return f"{self._name}({arguments})"

    def per_epoch(self, steps_per_epoch: int) -> Schedule:
        """This schedule advanced once per epoch: ``value(step) = self(step // steps_per_epoch)``,
        constant within an epoch (evaluated in C++, arrays included). A one-cycle schedule's
        ``.momentum`` is carried along.

        >>> lr = adamkern.schedules.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4])
        >>> lr.per_epoch(100)(1999), lr.per_epoch(100)(2000)     # (0.0005, 0.0001)
        """
        steps_per_epoch = _steps_per_epoch(steps_per_epoch)
        stepped = Schedule(_cpp.per_epoch(self._core, steps_per_epoch), "per_epoch",
                           dict(schedule=self, steps_per_epoch=steps_per_epoch),
                           text=f"{self!r}.per_epoch({steps_per_epoch})")
        momentum = getattr(self, "momentum", None)
        if isinstance(momentum, Schedule):
            stepped.momentum = momentum.per_epoch(steps_per_epoch)
        return stepped

    def plot(self, steps: int | np.ndarray, path: str | None = None, ax: Any = None) -> Any:
        """Plots the schedule over ``range(steps)`` (or the given steps); writes a PNG to
        ``path`` if given. Returns the matplotlib Figure. Needs matplotlib
        (``pip install "adamkern[plot]"``)."""
        plt = _pyplot()
        xs = np.arange(steps) if isinstance(steps, numbers.Integral) else np.asarray(steps)
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 4))
        else:
            fig = ax.figure
        ax.plot(xs, self(xs.astype(np.int64)), label=repr(self))
        ax.set_xlabel("step")
        ax.set_ylabel("value")
        ax.grid(True, alpha=0.3)
        ax.set_title(repr(self), fontsize=8)
        if path is not None:
            fig.savefig(path, dpi=120, bbox_inches="tight")
        return fig


def _pyplot():
    try:
        import matplotlib.pyplot as plt  # picks a non-interactive backend without a display
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "adamkern[plot]"') from None
    return plt


def _make(name: str, core: Any, **arguments: Any) -> Schedule:
    return Schedule(core, name, arguments)


def _schedule(value: Any, name: str) -> Schedule:
    if not isinstance(value, Schedule):
        raise TypeError(f"{name} must be an adamkern.schedules.Schedule, got "
                        f"{type(value).__name__}")
    return value


def constant(value: float) -> Schedule:
    """The same value at every step."""
    return _make("constant", _cpp.constant(_real(value, "value")), value=value)


def step_decay(init_value: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """torch StepLR: ``init_value * gamma ** (step // step_size)``."""
    core = _cpp.step_decay(_real(init_value, "init_value"), _integer(step_size, "step_size"),
                           _real(gamma, "gamma"))
    return _make("step_decay", core, init_value=init_value, step_size=step_size, gamma=gamma)


def multistep_decay(init_value: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """torch MultiStepLR: multiplied by ``gamma`` at every milestone (a repeated milestone
    counts each time, as torch's)."""
    milestones = _sequence(milestones, "milestones", _integer)
    core = _cpp.multistep_decay(_real(init_value, "init_value"), milestones, _real(gamma, "gamma"))
    return _make("multistep_decay", core, init_value=init_value, milestones=milestones,
                 gamma=gamma)


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """``values[i]`` on ``[boundaries[i-1], boundaries[i])``: the boundary step takes the next
    value (as optax; Keras switches one step later). ``piecewise_constant([10, 20],
    [1e-3, 5e-4, 1e-4])`` is 1e-3 for steps 0-9, 5e-4 for 10-19, 1e-4 from 20 on."""
    boundaries = _sequence(boundaries, "boundaries", _integer)
    values = _sequence(values, "values", _real)
    return _make("piecewise_constant", _cpp.piecewise_constant(boundaries, values),
                 boundaries=boundaries, values=values)


def exponential_decay(init_value: float, decay_steps: float, decay_rate: float,
                      staircase: bool = False, transition_begin: int = 0,
                      end_value: float | None = None) -> Schedule:
    """Keras ExponentialDecay and optax exponential_decay:
    ``init_value * decay_rate ** ((step - transition_begin) / decay_steps)`` (the exponent
    floored with ``staircase``), ``init_value`` before ``transition_begin``; ``end_value``
    bounds it (from below when decaying). torch's ExponentialLR(gamma) is
    ``exponential_decay(lr, 1, gamma)``. With ``decay_rate > 1`` and no ``end_value`` the value
    grows until it saturates at the largest double."""
    core = _cpp.exponential_decay(_real(init_value, "init_value"),
                                  _real(decay_steps, "decay_steps"),
                                  _real(decay_rate, "decay_rate"), _flag(staircase, "staircase"),
                                  _integer(transition_begin, "transition_begin"),
                                  _optional_real(end_value, "end_value"))
    return _make("exponential_decay", core, init_value=init_value, decay_steps=decay_steps,
                 decay_rate=decay_rate, staircase=staircase, transition_begin=transition_begin,
                 end_value=end_value)


def inverse_time_decay(init_value: float, decay_steps: float, decay_rate: float,
                       staircase: bool = False) -> Schedule:
    """Keras InverseTimeDecay: ``init_value / (1 + decay_rate * step / decay_steps)``. Keras 2's
    ``Adam(lr, decay=d)`` is ``inverse_time_decay(lr, 1, d)``."""
    core = _cpp.inverse_time_decay(_real(init_value, "init_value"),
                                   _real(decay_steps, "decay_steps"),
                                   _real(decay_rate, "decay_rate"), _flag(staircase, "staircase"))
    return _make("inverse_time_decay", core, init_value=init_value, decay_steps=decay_steps,
                 decay_rate=decay_rate, staircase=staircase)


def polynomial_decay(init_value: float, end_value: float, decay_steps: float,
                     power: float = 1.0, cycle: bool = False,
                     transition_begin: int = 0) -> Schedule:
    """Keras PolynomialDecay (``cycle``) and optax polynomial_schedule (``transition_begin``):
    ``(init - end) * (1 - t / decay_steps) ** power + end``, ``t`` the steps since
    ``transition_begin``, held at ``end_value`` after ``decay_steps`` (or, with ``cycle``,
    decaying again over the next multiple of ``decay_steps``). ``power`` must be >= 0: a
    negative one has no value at ``decay_steps``, where the base reaches 0."""
    core = _cpp.polynomial_decay(_real(init_value, "init_value"), _real(end_value, "end_value"),
                                 _real(decay_steps, "decay_steps"), _real(power, "power"),
                                 _flag(cycle, "cycle"),
                                 _integer(transition_begin, "transition_begin"))
    return _make("polynomial_decay", core, init_value=init_value, end_value=end_value,
                 decay_steps=decay_steps, power=power, cycle=cycle,
                 transition_begin=transition_begin)


def linear(init_value: float, end_value: float, transition_steps: int,
           transition_begin: int = 0) -> Schedule:
    """optax linear_schedule: from ``init_value`` to ``end_value`` over ``transition_steps``,
    starting at ``transition_begin``."""
    core = _cpp.linear(_real(init_value, "init_value"), _real(end_value, "end_value"),
                       _integer(transition_steps, "transition_steps"),
                       _integer(transition_begin, "transition_begin"))
    return _make("linear", core, init_value=init_value, end_value=end_value,
                 transition_steps=transition_steps, transition_begin=transition_begin)


def cosine_decay(init_value: float, decay_steps: float, alpha: float = 0.0,
                 exponent: float = 1.0) -> Schedule:
    """optax cosine_decay_schedule:
    ``init * ((1 - alpha) * (0.5 * (1 + cos(pi * t / decay_steps))) ** exponent + alpha)``,
    ``t = min(step, decay_steps)``. torch's CosineAnnealingLR(T_max, eta_min) is
    ``cosine_decay(lr, T_max, eta_min / lr)`` up to ``T_max``. ``exponent`` must be >= 0: a
    negative one has no value at ``decay_steps``, where the cosine reaches 0."""
    core = _cpp.cosine_decay(_real(init_value, "init_value"), _real(decay_steps, "decay_steps"),
                             _real(alpha, "alpha"), _real(exponent, "exponent"))
    return _make("cosine_decay", core, init_value=init_value, decay_steps=decay_steps,
                 alpha=alpha, exponent=exponent)


def cosine_restarts(init_value: float, first_decay_steps: float, t_mul: float = 2.0,
                    m_mul: float = 1.0, alpha: float = 0.0) -> Schedule:
    """Keras CosineDecayRestarts (SGDR): cosine cycles of ``first_decay_steps * t_mul**i``
    steps, the i-th scaled by ``m_mul**i``. torch's CosineAnnealingWarmRestarts(T_0, T_mult,
    eta_min) is ``cosine_restarts(lr, T_0, T_mult, 1.0, eta_min / lr)``.

    Every step costs the same bounded work: the cycle of a step is found in closed form (the
    exact remainder of the step by ``first_decay_steps`` when ``t_mul == 1``, Keras' logarithm
    otherwise) and corrected by at most a few whole cycles, never walked to cycle by cycle.

    Extremes. Any ``first_decay_steps > 0``, ``t_mul >= 1`` and ``m_mul >= 0`` define a value at
    every step, so none is refused; what a double cannot hold is handled at evaluation:

    - cycles shorter than a step (a tiny ``first_decay_steps``, so that
      ``step / first_decay_steps`` or ``step * (t_mul - 1)`` overflow): with ``t_mul == 1`` the
      value is that of the step's exact remainder; with ``t_mul > 1`` the cycle comes from
      logarithms;
    - a cycle index past 2**53 (``t_mul`` within ~1e-15 of 1, or ``t_mul == 1`` with a tiny
      ``first_decay_steps``, at huge steps): the cycle boundaries are only known to the rounding
      of the index, and the position in the cycle is clamped to ``[0, 1]``;
    - ``m_mul > 1`` grows each cycle's peak; past the largest double the value saturates there.

    In every case with ``m_mul <= 1`` the value stays between ``init_value * alpha`` and
    ``init_value``, the range of the schedule; it is never inf or NaN.

    >>> lr = adamkern.schedules.cosine_restarts(0.1, 10, t_mul=1.0)   # torch T_0=10, T_mult=1
    >>> lr(2**53), lr(np.array([0, 5, 2**62]))                        # a float, an array
    """
    core = _cpp.cosine_restarts(_real(init_value, "init_value"),
                                _real(first_decay_steps, "first_decay_steps"),
                                _real(t_mul, "t_mul"), _real(m_mul, "m_mul"),
                                _real(alpha, "alpha"))
    return _make("cosine_restarts", core, init_value=init_value,
                 first_decay_steps=first_decay_steps, t_mul=t_mul, m_mul=m_mul, alpha=alpha)


def warmup(schedule: Schedule, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """Linear warmup from ``init_value`` to ``schedule(0)`` over ``warmup_steps``, then
    ``schedule(step - warmup_steps)``."""
    inner = _schedule(schedule, "schedule")
    core = _cpp.warmup(inner._core, _integer(warmup_steps, "warmup_steps"),
                       _real(init_value, "init_value"))
    return _make("warmup", core, schedule=inner, warmup_steps=warmup_steps, init_value=init_value)


def warmup_cosine_decay(init_value: float, peak_value: float, warmup_steps: int,
                        decay_steps: int, end_value: float = 0.0) -> Schedule:
    """optax warmup_cosine_decay_schedule: linear from ``init_value`` to ``peak_value`` over
    ``warmup_steps``, then cosine down to ``end_value`` at ``decay_steps``, which counts the
    warmup. optax scales the cosine by ``peak_value`` and decays it to
    ``alpha = end_value / peak_value``, so that ratio must be a finite double."""
    core = _cpp.warmup_cosine_decay(_real(init_value, "init_value"),
                                    _real(peak_value, "peak_value"),
                                    _integer(warmup_steps, "warmup_steps"),
                                    _integer(decay_steps, "decay_steps"),
                                    _real(end_value, "end_value"))
    return _make("warmup_cosine_decay", core, init_value=init_value, peak_value=peak_value,
                 warmup_steps=warmup_steps, decay_steps=decay_steps, end_value=end_value)


def one_cycle(total_steps: int, max_value: float, pct_start: float = 0.3,
              anneal: Literal["cos", "linear"] = "cos", div_factor: float = 25.0,
              final_div_factor: float = 1e4, three_phase: bool = False,
              base_momentum: float = 0.85, max_momentum: float = 0.95) -> Schedule:
    """torch OneCycleLR over steps ``0..total_steps``: up from ``max_value / div_factor`` to
    ``max_value`` over ``pct_start`` of the steps, then down to ``max_value / div_factor /
    final_div_factor`` (both must be finite doubles). The returned schedule's ``.momentum`` is
    the momentum torch cycles the other way (for Adam, beta1)."""
    lr, momentum = _cpp.one_cycle(
        _integer(total_steps, "total_steps"), _real(max_value, "max_value"),
        _real(pct_start, "pct_start"), _choice(anneal, "anneal"),
        _real(div_factor, "div_factor"), _real(final_div_factor, "final_div_factor"),
        _flag(three_phase, "three_phase"), _real(base_momentum, "base_momentum"),
        _real(max_momentum, "max_momentum"))
    arguments = dict(total_steps=total_steps, max_value=max_value, pct_start=pct_start,
                     anneal=anneal, div_factor=div_factor, final_div_factor=final_div_factor,
                     three_phase=three_phase, base_momentum=base_momentum,
                     max_momentum=max_momentum)
    schedule = Schedule(lr, "one_cycle", arguments)
    schedule.momentum = Schedule(momentum, "one_cycle_momentum", arguments)
    return schedule


def cyclic(base_value: float, max_value: float, step_size_up: float = 2000,
           step_size_down: float | None = None,
           mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
           gamma: float = 1.0) -> Schedule:
    """torch CyclicLR: triangles between ``base_value`` and ``max_value`` (``mode``
    ``"triangular"``, ``"triangular2"`` halving each cycle, or ``"exp_range"`` scaled by
    ``gamma ** step``). The cycle, ``step_size_up + step_size_down``, must be a finite
    double."""
    core = _cpp.cyclic(_real(base_value, "base_value"), _real(max_value, "max_value"),
                       _real(step_size_up, "step_size_up"),
                       _optional_real(step_size_down, "step_size_down"), _choice(mode, "mode"),
                       _real(gamma, "gamma"))
    return _make("cyclic", core, base_value=base_value, max_value=max_value,
                 step_size_up=step_size_up, step_size_down=step_size_down, mode=mode,
                 gamma=gamma)


def multiplicative(init_value: float, factor: float | Sequence[float] | Callable[[int], float],
                   num_epochs: int | None = None) -> Schedule:
    """torch MultiplicativeLR: ``value(0) = init_value``, ``value(e) = value(e-1) * factor(e)``.

    ``factor`` is one of:

    - a number: the same factor every step, ``init_value * factor ** e`` (in C++);
    - a sequence: ``factor[e-1]`` multiplies step ``e``; the running products are computed once,
      in the order torch multiplies them (the same bits, until one leaves the double range),
      and the value is held after the last;
    - a callable ``e -> factor`` (torch's ``lr_lambda``): a Python function cannot run inside
      the C++ evaluation, so it is called once per epoch ``e = 1 .. num_epochs`` here, at
      construction, and the products are cached as the sequence above (``num_epochs``
      required, at most 10,000,000; the value is held after it).

    Each step of this schedule is meant as an epoch: drive a per-batch optimizer with
    ``.per_epoch(steps_per_epoch)``. Keras' time-based decay from the tutorials,
    ``LearningRateScheduler(lambda epoch, lr: lr / (1 + decay * epoch))``, is this product form,
    ``multiplicative(lr0, lambda e: 1 / (1 + decay * e), num_epochs)``: the lr of epoch e is
    ``lr0 / prod_{i<=e}(1 + decay * i)``, which falls much faster than
    ``inverse_time_decay(lr0, 1, decay)``, ``lr0 / (1 + decay * e)`` (Keras' InverseTimeDecay
    and Keras 2's ``decay=`` argument).

    >>> lr = adamkern.schedules.multiplicative(1e-3, 0.95)                 # torch lambda e: 0.95
    >>> lr = adamkern.schedules.multiplicative(1e-3, lambda e: 1 / (1 + 0.01 * e), 30)
    """
    init = _real(init_value, "init_value")
    if not callable(factor) and num_epochs is not None:
        raise ValueError("num_epochs is only for a callable factor (a number applies to every "
                         "epoch, a sequence has its length)")
    if isinstance(factor, numbers.Real) and not isinstance(factor, bool):
        return _make("multiplicative", _cpp.multiplicative(init, _real(factor, "factor")),
                     init_value=init_value, factor=factor)
    if callable(factor):
        if (not isinstance(num_epochs, numbers.Integral) or isinstance(num_epochs, bool)
                or not 0 <= num_epochs <= _MAX_CALLABLE_EPOCHS):
            raise ValueError("num_epochs (an int in [0, 10_000_000]) is required when factor is "
                             "a callable: it is evaluated once for epochs 1..num_epochs, at "
                             f"construction, got {num_epochs!r}")
        factors = []
        for epoch in range(1, int(num_epochs) + 1):
            factors.append(_real(factor(epoch), f"factor({epoch})"))
        return _make("multiplicative", _cpp.multiplicative_table(init, factors),
                     init_value=init_value, factor=factor, num_epochs=num_epochs)
    if isinstance(factor, (str, bytes)) or not isinstance(factor, (Sequence, np.ndarray)):
        raise TypeError("factor must be a number, a sequence of numbers or a callable, got "
                        f"{type(factor).__name__}")
    factors = _sequence(factor, "factor", _real)
    return _make("multiplicative", _cpp.multiplicative_table(init, factors),
                 init_value=init_value, factor=factors)


class _PerEpochCallable:
    """A plain callable of the epoch, called with ``step // steps_per_epoch``."""

    def __init__(self, function: Callable[[int], float], steps_per_epoch: int):
        self.function = function
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step: int | np.ndarray) -> float | np.ndarray:
        step = _step(step)
        if isinstance(step, np.ndarray):
            if (step < 0).any():
                raise ValueError("step must be >= 0 (steps count from 0)")
            return np.array([float(self.function(int(k) // self.steps_per_epoch))
                             for k in step.flat], np.float64).reshape(step.shape)
        return float(self.function(step // self.steps_per_epoch))

    def __repr__(self) -> str:
        return f"per_epoch({self.function!r}, steps_per_epoch={self.steps_per_epoch})"


def per_epoch(schedule: Schedule | Callable[[int], float], steps_per_epoch: int
              ) -> Schedule | Callable[[int], float]:
    """Any schedule, or any callable of the epoch, stepped per epoch: the value at step ``k`` is
    ``schedule(k // steps_per_epoch)``. A :class:`Schedule` stays in C++
    (``schedule.per_epoch(n)``); another callable (a Python function of the epoch) is called
    with the epoch.

    >>> lr = adamkern.schedules.per_epoch(lambda epoch: 1e-3 * 0.5 ** (epoch // 10), 390)
    >>> opt = adamkern.optim.Adam(params, lr=lr)
    """
    if isinstance(schedule, Schedule):
        return schedule.per_epoch(steps_per_epoch)
    if isinstance(schedule, ReduceLROnPlateau):
        raise TypeError("ReduceLROnPlateau is already driven per evaluation (update(metric)); "
                        "it has no per-step values to group into epochs")
    if not callable(schedule):
        raise TypeError(f"schedule must be a Schedule or a callable, got "
                        f"{type(schedule).__name__}")
    return _PerEpochCallable(schedule, _steps_per_epoch(steps_per_epoch))


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """optax join_schedules: ``schedules[i]`` from ``boundaries[i-1]`` on, called with the
    steps since that boundary."""
    parts = _sequence(schedules, "schedules", _schedule)
    boundaries = _sequence(boundaries, "boundaries", _integer)
    return _make("join", _cpp.join([p._core for p in parts], boundaries), schedules=parts,
                 boundaries=boundaries)


class ReduceLROnPlateau:
    """torch ReduceLROnPlateau: multiplies the value by ``factor`` once the metric has not
    improved for more than ``patience`` updates (then waits ``cooldown`` updates).
    ``threshold_mode="abs"`` with ``threshold=min_delta`` is Keras' ReduceLROnPlateau.

    ``update(metric)`` records one evaluation and returns the new value; calling the object
    (with any step) returns the current value, so it can drive an optimizer's ``lr``.

    >>> plateau = adamkern.schedules.ReduceLROnPlateau(1e-3, patience=2)
    >>> for loss in (1.0, 0.9, 0.9, 0.9, 0.9): lr = plateau.update(loss)   # lr is now 1e-4
    """

    _STATE = ("lr", "best", "num_bad_epochs", "cooldown_counter", "last_epoch")

    def __init__(self, init_value: float, mode: Literal["min", "max"] = "min",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8):
        self._arguments = dict(init_value=init_value, mode=mode, factor=factor,
                               patience=patience, threshold=threshold,
                               threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr,
                               eps=eps)
        self._core = _cpp.ReduceLROnPlateau(
            _real(init_value, "init_value"), _choice(mode, "mode"), _real(factor, "factor"),
            _integer(patience, "patience"), _real(threshold, "threshold"),
            _choice(threshold_mode, "threshold_mode"), _integer(cooldown, "cooldown"),
            _real(min_lr, "min_lr"), _real(eps, "eps"))

    def update(self, metric: float) -> float:
        """Records one evaluation of the metric; returns the (possibly reduced) value."""
        return self._core.update(float(metric))

    @property
    def lr(self) -> float:
        return self._core.lr

    def __call__(self, step: int | None = None) -> float:
        return self._core.lr

    def state_dict(self) -> dict[str, Any]:
        """The configuration and the counters, as plain Python values."""
        return {**self._arguments, **self._core.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a state_dict(); raises ValueError (and changes nothing) if it does not
        come from a ReduceLROnPlateau with the same configuration."""
        missing = [k for k in (*self._arguments, *self._STATE) if k not in state]
        if missing:
            raise ValueError(f"state_dict is missing {', '.join(missing)}")
        different = [k for k, v in self._arguments.items() if state[k] != v]
        if different:
            raise ValueError(f"state_dict has a different configuration: {', '.join(different)}")
        self._core.set_state(*(state[k] for k in self._STATE))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{k}={v!r}" for k, v in self._arguments.items())
        return f"ReduceLROnPlateau({arguments})"
