"""Run-time configuration: instruction set, threads, and what this build was compiled with."""

from __future__ import annotations

import os
from typing import Any

from adamkern import _core

__all__ = ["cpu_info", "get_num_threads", "set_isa", "set_num_threads"]


def set_num_threads(num_threads: int) -> None:
    """Set how many threads one adamkern call may use (default: the usable cores).

    >>> adamkern.set_num_threads(1)
    >>> adamkern.get_num_threads()
    1
    """
    _core.set_num_threads(int(num_threads))


def get_num_threads() -> int:
    """Threads one call may use. Calls smaller than ~32K elements per thread use fewer."""
    return _core.get_num_threads()


def set_isa(name: str) -> None:
    """Force the kernel variant: ``"baseline"``, ``"avx2"`` or ``"avx512"`` (if available).

    The environment variable ``ADAMKERN_ISA`` does the same at import. Results are bitwise
    identical across variants; only the speed differs.

    >>> adamkern.set_isa(adamkern.cpu_info()["available_isas"][0])
    """
    _core.set_isa(name)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """What adamkern runs on: chosen ISA, available ISAs, threads, build flags.

    >>> info = adamkern.cpu_info()
    >>> info["isa"], info["num_threads"]
    ('avx512', 2)
    """
    build = _core.build_info()
    return {
        "isa": _core.active_isa(),
        "available_isas": list(_core.available_isas()),
        "compiled_isas": list(build["isa_flags"]),
        "num_threads": _core.get_num_threads(),
        "usable_cores": _usable_cores(),
        "openmp": build["openmp"],
        "openmp_version": build["openmp_version"],
        "compiler": build["compiler"],
        "common_flags": build["common_flags"],
        "isa_flags": dict(build["isa_flags"]),
    }
