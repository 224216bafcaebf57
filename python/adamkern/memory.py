"""Aligned allocation and flat buffers.

NumPy places large arrays 16 bytes past a cache line; the kernels peel a few elements to run
aligned, but state that adamkern allocates, and buffers built by :func:`flatten`, start on a
64-byte line so every stream of a step is line-aligned from its first element.

Huge pages: an allocation of 2 MB or more is its own private anonymous mapping, aligned to
2 MB and madvised ``MADV_HUGEPAGE``, so the kernel backs it with whole 2 MB pages where
/sys/kernel/mm/transparent_hugepage/enabled is ``madvise`` or ``always``. NumPy madvises its
large allocations too, but they start 16 bytes into a 4 KB page of a malloc'd block and,
measured in a long-running process, were often not backed at all; torch's CPU allocator does
not madvise. ``python -m adamkern bench --placement`` measures what alignment, huge pages and
first-touch placement are worth on a machine (BENCHMARKS.md, section 6: on one host the Adam
step ran 16-20% faster at 16M elements in these mappings than in NumPy's, which puts
consecutive 64 MiB arrays 64 MiB + 4 KiB apart, a spacing that host's streams run slowly at;
4 KB pages alone cost 9% there).

>>> params, views = adamkern.flatten([np.ones((3, 4), np.float32), np.zeros(5, np.float32)])
>>> views[0].shape, views[0].ctypes.data % 64
((3, 4), 0)
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

import numpy as np

__all__ = ["ALIGNMENT", "HUGE_PAGE", "empty", "empty_like_all", "flatten", "zeros"]

ALIGNMENT = 64  # bytes: one cache line
HUGE_PAGE = 2 << 20  # bytes: x86-64's transparent huge page; allocations this large use them


def _huge_page_buffer(nbytes: int) -> np.ndarray | None:
    """`nbytes` of fresh (zero) memory starting on a 2 MB boundary, madvised MADV_HUGEPAGE;
    None where the platform has no such advice. The mapping lives as long as the array."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    flags = getattr(mmap, "MAP_PRIVATE", None), getattr(mmap, "MAP_ANONYMOUS", None)
    if advice is None or None in flags:
        return None
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=flags[0] | flags[1])
    try:
        region.madvise(advice)
    except OSError:
        pass  # transparent huge pages disabled: still a valid, aligned mapping
    raw = np.frombuffer(region, np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start:start + nbytes]


def empty(shape: int | Sequence[int], dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary (on a
    2 MB boundary, backed by huge pages where the OS allows, from 2 MB on)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize >= HUGE_PAGE:
        raw = _huge_page_buffer(count * dtype.itemsize)
        if raw is not None:
            return raw.view(dtype).reshape(shape)
    raw = np.empty(max(count, 1) * dtype.itemsize + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    # sliced from a one-element view: an empty slice of raw itself would keep raw's address
    return raw[start:start + max(count, 1) * dtype.itemsize].view(dtype)[:count].reshape(shape)


def empty_like_all(arrays: Sequence[np.ndarray],
                   dtype: np.typing.DTypeLike | None = None) -> list[np.ndarray]:
    """Uninitialised arrays of the shapes (and dtypes, or ``dtype``) of ``arrays``, each
    64-byte aligned, all
    views into ONE buffer. One large allocation is what NumPy backs with huge pages (it
    madvises allocations of 4 MB and more), where a hundred small ones are not: measured on a
    150-tensor model, an Adam step over state kept this way took 11% less time than over
    separately allocated state. (Placing each view at its param's offset in the cache line
    instead measured the same.)"""
    arrays = list(arrays)
    dtypes = [np.dtype(a.dtype if dtype is None else dtype) for a in arrays]
    starts, total = [], 0
    for a, kind in zip(arrays, dtypes):
        total += -total % ALIGNMENT
        starts.append(total)
        total += a.size * kind.itemsize
    raw = empty(max(total, 1), np.uint8)
    return [raw[start:start + a.size * kind.itemsize].view(kind).reshape(a.shape)
            for a, kind, start in zip(arrays, dtypes, starts)]


def zeros(shape: int | Sequence[int], dtype: np.typing.DTypeLike = np.float32) -> np.ndarray:
    """:func:`empty`, filled with zeros."""
    out = empty(shape, dtype)
    out.fill(0)
    return out


def flatten(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Copies ``arrays`` into one 64-byte-aligned buffer; returns it and a view per array
    (same shape and values, each starting on a 64-byte line; the padding is zero).

    An engine keeps its params (or grads, or state) in the views and can step the whole model
    as one tensor, or the views as a list, without copies."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("flatten needs at least one array")
    dtypes = {np.dtype(a.dtype) for a in arrays}
    if len(dtypes) != 1:
        raise TypeError(f"flatten needs arrays of one dtype, got {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    per_line = ALIGNMENT // dtype.itemsize if ALIGNMENT % dtype.itemsize == 0 else 1
    offsets, total = [], 0
    for a in arrays:
        offsets.append(total)
        total += -(-a.size // per_line) * per_line
    flat = zeros(total, dtype)
    views = []
    for a, start in zip(arrays, offsets):
        view = flat[start:start + a.size].reshape(a.shape)
        view[...] = a
        views.append(view)
    return flat, views
