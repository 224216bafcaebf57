"""The wrapper torch puts around every optimizer's ``step`` (``Optimizer.profile_hook_step``:
the step pre- and post-hooks, global and per optimizer, and the profiler's range
``Optimizer.step#<class>.step``), as :mod:`adamkern.torch`'s optimizers wear it: the same,
except that the profiler's range is entered only while a profiler runs. Entering it costs
torch's dispatcher a call each step even then (about 5 µs in cache, and some 150 µs after a
backward pass of a large model has evicted that code and its data), so torch's compiled code
asks ``torch.autograd.profiler._is_profiler_enabled`` first too.

>>> class AdamW(torch.optim.Optimizer):
...     step = hooked_step(step)   # torch sees ``hooked`` and wraps it no further
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import chain
from typing import Any

import torch
from torch.autograd import profiler
from torch.optim import optimizer as torch_optimizer

__all__ = ["hooked_step"]


def hooked_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` with torch's step hooks around it (and, while a profiler runs, inside torch's
    own wrapper, profiler range included), marked ``hooked`` so that torch.optim.Optimizer
    does not wrap it again."""
    profiled = torch.optim.Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if profiler._is_profiler_enabled:
            return profiled(*args, **kwargs)
        self = args[0]
        for pre_hook in chain(torch_optimizer._global_optimizer_pre_hooks.values(),
                              self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(f"{step} must return None or a tuple of (new_args, "
                                       f"new_kwargs), but got {result}.")
        out = step(*args, **kwargs)
        self._optimizer_step_code()
        for post_hook in chain(self._optimizer_step_post_hooks.values(),
                               torch_optimizer._global_optimizer_post_hooks.values()):
            post_hook(self, args, kwargs)
        return out

    wrapper.hooked = True  # type: ignore[attr-defined]
    return wrapper
