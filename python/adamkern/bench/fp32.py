"""The float32 (and float64) rows of adamkern: the roofline kernel, the functional
``adamkern.adamw_``, the ``adamkern.optim.AdamW`` object, and the NumPy reference.

The roofline (``adamkern._core.roofline_``) reads param, grad, exp_avg and exp_avg_sq and writes
param, exp_avg and exp_avg_sq like the update, with no math: the machine's limit for the step.
It runs on random data: stores of constant (zero) lines can be elided by the hardware, which
would make the limit look faster than memory.

>>> from adamkern.bench import Case, fp32
>>> case = Case(4096, 1, "float32"); params, grads = case.initial()
>>> fp32.build_roofline(case, params, grads).step()
"""

from __future__ import annotations

import numpy as np

import adamkern
from adamkern import _core, reference
from adamkern.bench.cases import ADAMW
from adamkern.bench.rows import MethodSpec
from adamkern.bench.timing import Method, concat, counter_step

__all__ = ["ADAMKERN", "ADAMKERN_OPTIM", "NUMPY", "ROOFLINE", "build_adamkern",
           "build_adamkern_optim", "build_numpy", "build_roofline", "random_like"]


def random_like(arrays, seed=1) -> list[np.ndarray]:
    """Standard normal arrays of the shapes and dtypes of `arrays`."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(a.shape).astype(a.dtype) for a in arrays]


def build_roofline(case, params, grads) -> Method:
    p, g = [a.copy() for a in params], [a.copy() for a in grads]
    m, v = random_like(params, seed=1), random_like(params, seed=2)
    expected = [a.copy() for a in m], [a.copy() for a in v]
    _core.roofline_(p, g, m, v)  # check: p <- m, m <- v, v <- p + g
    for k in range(len(p)):
        if not (np.array_equal(p[k], expected[0][k]) and np.array_equal(m[k], expected[1][k])
                and np.array_equal(v[k], params[k] + grads[k])):
            raise RuntimeError("benchmark check failed: the roofline kernel wrote wrong values")
    return Method("roofline", lambda: _core.roofline_(p, g, m, v))


def _functional(name, fn):
    def build(case, params, grads):
        p, g = [a.copy() for a in params], [a.copy() for a in grads]
        m, v = [np.zeros_like(a) for a in params], [np.zeros_like(a) for a in params]
        return Method(name, counter_step(fn, p, g, m, v, decoupled_weight_decay=True, **ADAMW),
                      lambda: [concat(p), concat(m), concat(v)])
    return build


build_adamkern = _functional("adamkern", adamkern.adam_)
build_numpy = _functional("numpy", reference.adam)


def build_adamkern_optim(case, params, grads) -> Method:
    from adamkern import optim

    opt = optim.AdamW([a.copy() for a in params], **ADAMW)
    g = [a.copy() for a in grads]

    def state():
        return [concat(opt.params), concat(s["exp_avg"] for s in opt.state),
                concat(s["exp_avg_sq"] for s in opt.state)]
    return Method("adamkern optim", lambda: opt.step(g), state)


ROOFLINE = MethodSpec("roofline", build_roofline, check="self", baseline=False)
ADAMKERN = MethodSpec("adamkern", build_adamkern, check="exact", baseline=False)
ADAMKERN_OPTIM = MethodSpec("adamkern optim", build_adamkern_optim, check="exact",
                            baseline=False)
NUMPY = MethodSpec("numpy", build_numpy, scratch=lambda itemsize: 3 * itemsize)
