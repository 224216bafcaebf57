"""A row of ``python -m adamkern bench``: a :class:`MethodSpec` (name, builder, check, bytes moved
and held per element, which runs it joins), the check of a row's first step against adamkern's,
and the two groups a case times its rows in.

A case times its float32 rows in one interleaved loop, then, in a second loop, the rows of the
lower-precision storage modes (a spec with ``storage``) beside adamkern and torch fused again
and beside one roofline per storage mode: each mode's ratios compare medians of that loop.

>>> from adamkern.bench import groups, select_methods
>>> main, modes = groups(select_methods())
>>> [s.name for s in modes][:3]
['adamkern', 'torch fused', 'adamkern bf16 state']
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from adamkern.bench.cases import STREAMS, Case
from adamkern.bench.timing import Method

if TYPE_CHECKING:
    from adamkern.bench.storage import StorageMode

__all__ = ["REFERENCES", "MethodSpec", "Unavailable", "check", "close_to_reference", "groups",
           "import_torch", "quietly"]

REFERENCES = ("adamkern", "torch fused")  # timed again beside the storage modes


class Unavailable(Exception):
    """A method that cannot run here (library missing, unsupported dtype, failed build)."""


@dataclass(frozen=True)
class MethodSpec:
    """A row of the benchmark. `build(case, params, grads)` returns a Method over its own
    copies of the initial arrays (or raises Unavailable with the reason); `check` is how its
    first step is compared with adamkern's: "exact" (bitwise), "ulp" (close_to_reference),
    "self" (the method checks itself while building) or a callable(got, expected) -> bool.
    `bytes_per_element(itemsize)` is the traffic it must move per element (for GB/s);
    `held(itemsize)` the bytes per element its buffers occupy, `scratch(itemsize)` what one
    step allocates on top (for the memory estimate). `storage`: a lower-precision row, timed
    beside the storage modes and judged against that storage's roofline."""

    name: str
    build: Callable[[Case, list, list], Method]
    check: str | Callable[[list, list], bool] = "ulp"
    bytes_per_element: Callable[[int], float] = lambda itemsize: STREAMS * itemsize
    baseline: bool = True  # gets a "vs" column in the summary
    quick: bool = True  # part of --quick
    large: bool = False  # only with --large (or named in --methods)
    held: Callable[[int], float] = lambda itemsize: 4 * itemsize  # p, g, m, v
    scratch: Callable[[int], float] = lambda itemsize: 0
    opt_in: bool = False  # only with --8bit (or named in --methods)
    torch: bool = False  # needs torch: --no-torch leaves it out
    storage: StorageMode | None = None


def groups(specs: list[MethodSpec]) -> tuple[list[MethodSpec], list[MethodSpec]]:
    """The rows of a case's two timing loops: the float32 rows, and (when a storage mode is
    among `specs`) adamkern and torch fused again with the storage rows."""
    main = [s for s in specs if s.storage is None]
    modes = [s for s in specs if s.storage is not None]
    return main, ([s for s in main if s.name in REFERENCES] + modes) if modes else []


def close_to_reference(actual, expected, ulps=4) -> bool:
    """|actual - expected| <= ulps * eps * (|expected| + max|expected|): how far an
    implementation without fused multiply-adds may round away from adamkern."""
    eps = np.finfo(expected.dtype).eps
    scale = np.abs(expected) + (np.abs(expected).max() if expected.size else 0)
    return bool(np.all(np.abs(actual - expected) <= ulps * eps * scale))


def check(methods: list[Method], specs: list[MethodSpec]) -> None:
    """Runs one step of each method from the same start and checks it against adamkern's."""
    for m in methods:
        m.step()
    expected = next(m for m in methods if m.name == "adamkern").state()
    for m, spec in zip(methods, specs):
        if spec.check == "self" or m.name == "adamkern":
            continue
        got = m.state()
        if spec.check == "exact":
            ok = all(np.array_equal(a.view(np.uint8), b.view(np.uint8))
                     for a, b in zip(got, expected))
        elif spec.check == "ulp":
            ok = all(close_to_reference(a, b) for a, b in zip(got, expected))
        else:
            ok = spec.check(got, expected)
        if not ok:
            raise RuntimeError(f"benchmark check failed: {m.name} disagrees with adamkern")


def import_torch():
    try:
        import torch
    except ImportError as error:
        raise Unavailable("torch is not installed (pip install torch)") from error
    return torch


@contextlib.contextmanager
def quietly():
    """Silences what another library prints, warns and logs while it is imported or builds
    its op (the benchmark reports a failure as the row's reason instead)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
