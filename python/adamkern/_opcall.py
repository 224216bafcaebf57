"""What every functional op of :mod:`adamkern.ops` does around its one C++ call: array
arguments as lists, ``betas`` as floats, the mixed-precision options as the bindings take them,
the backend (host or CUDA) the arrays belong to, and a binding's refusal of a scalar as an
error that names it."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, Union

import numpy as np

from adamkern import _core
from adamkern.lowp import call_seed

Arrays = Union[np.ndarray, Sequence[np.ndarray]]
Scalar = Union[float, np.ndarray, None]
Op = TypeVar("Op", bound=Callable[..., None])
_PRECISION = ("master_params", "rounding", "seed")


def precision_options(master_params, rounding: str, seed: int, step) -> tuple | None:
    """The mixed-precision options of a call, as _core takes them (None: the defaults)."""
    if master_params is None and rounding == "nearest":  # the common case first
        if seed != 0:
            call_seed(seed, None)  # checked all the same
        return None
    if rounding not in ("nearest", "stochastic"):
        raise ValueError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    if step is not None and not is_real(step):
        raise TypeError(f"step must be a whole number >= 1, got {step!r} ({type(step).__name__})")
    if step is not None and not (1 <= step < 2**63 and step % 1 == 0):
        # the seed mixes in int(step): a step the kernels will refuse is refused here first
        raise ValueError(f"step must be a whole number >= 1 (the step count after "
                         f"increment), got {step!r}")
    return (master_params, rounding == "stochastic", call_seed(seed, step))


def kernel_op(kernel: str | None = None, **fixed: Any) -> Callable[[Op], Op]:
    """The body of a functional op whose signature and docstring are written out: one call of
    the backend's ``kernel`` (the op's own name by default; :func:`backend` picks host or
    CUDA) that passes every argument by its name, ``betas`` as ``beta1``... (as many as the
    default has), ``master_params``, ``rounding`` and ``seed`` as the binding's precision
    options, and ``fixed`` as given. The body is compiled once, here, as if written by hand:
    the call costs what a written-out call costs."""

    def make(op: Op) -> Op:
        signature = inspect.signature(op)
        parameters = signature.parameters
        lines, keywords = [], []
        for name in parameters:
            if name == "betas":
                betas = [f"beta{k + 1}" for k in range(len(parameters[name].default))]
                lines.append(f"{', '.join(betas)}, = float_betas(betas, {len(betas)})")
                keywords += [f"{b}={b}" for b in betas]
            elif name not in _PRECISION:
                keywords.append(f"{name}={name}")
        step = "step" if "step" in parameters else "None"
        keywords.append(f"precision=precision_options(master_params, rounding, seed, {step})")
        keywords += [f"{name}=fixed[{name!r}]" for name in fixed]
        empty = inspect.Parameter.empty
        bare = signature.replace(
            parameters=[p.replace(default=empty, annotation=empty) for p in parameters.values()],
            return_annotation=inspect.Signature.empty)
        call = f"backend(params).{kernel or op.__name__}({', '.join(keywords)})"
        source = "".join([
            "def make(float_betas, precision_options, backend, fixed):\n",
            f"    def {op.__name__}{bare}:\n", *(f"        {line}\n" for line in lines),
            f"        {call}\n", f"    return {op.__name__}\n"])
        namespace: dict[str, Any] = {}  # the op's globals are its module's, as written out
        exec(compile(source, f"<{op.__module__}.{op.__name__}>", "exec"), op.__globals__,
             namespace)
        made = namespace["make"](float_betas, precision_options, backend, fixed)
        made.__defaults__, made.__kwdefaults__ = op.__defaults__, op.__kwdefaults__
        return functools.update_wrapper(made, op)

    return make


def as_list(arrays: Arrays | None) -> list[np.ndarray]:
    """An array argument as a list of arrays (None: empty)."""
    if arrays is None:
        return []
    return [arrays] if isinstance(arrays, np.ndarray) else list(arrays)


def backend(params: Arrays) -> Any:
    """The kernels for these params: adamkern._core for host arrays, adamkern.cuda (same
    signatures) for CUDA arrays (``__cuda_array_interface__``, torch CUDA tensors, DLPack)."""
    first = params[0] if isinstance(params, (list, tuple)) and params else params
    if isinstance(first, np.ndarray):
        return _core
    from adamkern import cuda  # no CUDA import unless a non-NumPy array comes

    return cuda if cuda.on_device(params) else _core


def is_real(value: Any) -> bool:
    """A real number as the kernels take one: a Python or NumPy int or float, or a 0-d real
    array; never a bool."""
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "fiu"
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


_FLOAT_MAX = sys.float_info.max


def named_type_error(error: TypeError, op: Any, arguments: dict[str, Any]) -> Exception:
    """The error to raise for ``error``, raised by op's binding: where the binding refused a
    scalar argument, a TypeError naming it instead of the binding's list of signatures."""
    if "incompatible function arguments" not in str(error):
        return error
    for name, parameter in inspect.signature(op).parameters.items():
        value = arguments.get(name)
        if name == "step" or type(parameter.default) in (float, int):
            if not is_real(value):
                return TypeError(f"{op.__name__}: {name} must be a real number, got {value!r} "
                                 f"({type(value).__name__})")
            if not -_FLOAT_MAX <= value <= _FLOAT_MAX and value == value:  # beyond a double
                return ValueError(f"{op.__name__}: {name} must be a finite number, got "
                                  f"{value!r}")
        elif type(parameter.default) is bool and not isinstance(value, (bool, np.bool_)):
            return TypeError(f"{op.__name__}: {name} must be True or False, got {value!r}")
    return TypeError(f"{op.__name__}: an argument has the wrong type")


def float_betas(betas: Sequence[float], count: int = 2) -> tuple[float, ...]:
    if (type(betas) is tuple and len(betas) == count == 2 and type(betas[0]) is float
            and type(betas[1]) is float):
        return betas  # the common case, without the conversions below
    try:
        values = tuple(float(b) for b in betas if is_real(b))
    except (TypeError, ValueError):
        values = ()
    if len(values) != count:
        names = ", ".join(f"beta{k + 1}" for k in range(count))
        kind = "a pair" if count == 2 else "a triple"
        raise ValueError(f"betas must be {kind} ({names}), got {betas!r}")
    return values
