"""The rows of ``python -m adamkern bench``, in table order, and the choice of rows for a run.

>>> from adamkern.bench import select_methods
>>> [s.name for s in select_methods(["numpy"])]
['roofline', 'adamkern', 'numpy']
"""

from __future__ import annotations

from adamkern.bench import baselines, eightbit, fp32, storage
from adamkern.bench.rows import MethodSpec

__all__ = ["METHODS", "register_method", "select_methods"]

METHODS: list[MethodSpec] = [
    fp32.ROOFLINE,
    fp32.ADAMKERN,
    fp32.ADAMKERN_OPTIM,
    *storage.SPECS,
    *eightbit.SPECS,
    baselines.TORCH_FUSED,
    baselines.TORCH_FOREACH,
    baselines.TORCH_SINGLE,
    baselines.DEEPSPEED,
    fp32.NUMPY,
]


def register_method(spec: MethodSpec, before: str | None = None) -> None:
    """Adds a row (before the named one, else at the end); replaces one of the same name."""
    names = [m.name for m in METHODS]
    if spec.name in names:
        METHODS[names.index(spec.name)] = spec
        return
    METHODS.insert(names.index(before) if before in names else len(METHODS), spec)


def select_methods(names=None, quick=False, large=False, opt_in=False) -> list[MethodSpec]:
    """The rows to run, in table order: the named ones (roofline and adamkern always), else
    the default rows (`quick`: the quick ones; `large`: with the large-only ones); `opt_in`
    adds the opt-in ones (--8bit) either way."""
    if names:
        unknown = [n for n in names if n not in [s.name for s in METHODS]]
        if unknown:
            raise ValueError(f"unknown method {unknown[0]!r}; the methods are "
                             f"{', '.join(s.name for s in METHODS)}")
        return [s for s in METHODS if s.name in names or s.name in ("roofline", "adamkern")
                or (opt_in and s.opt_in)]
    return [s for s in METHODS if (opt_in or not s.opt_in)
            and (s.quick if quick else large or not s.large)]
