"""The error contract for every optimizer of the family: each bad input raises the documented
exception with a message naming the argument, and no array (params, grads, state) changes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from family import SPECS, SPECS_BY_NAME, Problem
from helpers import assert_unchanged, snapshot

SHAPES = [(4, 5), (9,)]


def attempt(spec, problem, grads, error, match, **overrides):
    """Calls the op with `overrides` replacing arguments; checks the error (`match`: literal
    text, or a compiled regex) and that nothing was written."""
    arrays = problem.arrays() + grads
    before = snapshot(arrays)
    kwargs = {"params": problem.params, "grads": grads, **problem.states,
              **problem.call_states, **spec.step_kwargs(2), **spec.options[-1]}
    kwargs.update({name.removeprefix("call_"): value for name, value in overrides.items()})
    pattern = match if isinstance(match, re.Pattern) else re.escape(match)
    with pytest.raises(error, match=pattern):
        spec.op(**kwargs)
    assert_unchanged(arrays, before)


@pytest.fixture(params=SPECS, ids=str)
def case(request):
    spec = request.param
    problem = Problem(spec, SHAPES, np.float32)
    return spec, problem, problem.grads()


def test_bad_hyperparameters(case):
    spec, problem, grads = case
    assert spec.bad
    for overrides, match in spec.bad:
        attempt(spec, problem, grads, ValueError, match, **overrides)


def test_wrong_dtypes(case):
    spec, problem, grads = case
    attempt(spec, problem, grads, TypeError, "params[0] has dtype int32",
            params=[p.astype(np.int32) for p in problem.params])
    attempt(spec, problem, grads, TypeError, "grads[0] has dtype float32 but params[0] has "
            "float16", params=[p.astype(np.float16) for p in problem.params])
    for name, arrays in problem.states.items():
        mixed = [arrays[0], arrays[1].astype(np.float64)]
        attempt(spec, problem, grads, TypeError, f"{name}[1] has dtype float64",
                **{name: mixed})
    attempt(spec, problem, grads, TypeError, "grads must be a numpy.ndarray",
            call_grads=3.0)
    attempt(spec, problem, grads, TypeError, "grads[1] must be a numpy.ndarray",
            call_grads=[grads[0], [1.0] * 9])


def test_bad_layouts(case):
    spec, problem, grads = case
    for name, arrays in problem.states.items():
        attempt(spec, problem, grads, ValueError, f"{name}[0] has shape",
                **{name: [np.zeros(20, np.float32), arrays[1]]})
        attempt(spec, problem, grads, ValueError, f"{name} has 1 arrays",
                **{name: arrays[:1]})
        strided = np.zeros((4, 10), np.float32)[:, ::2]
        attempt(spec, problem, grads, ValueError, f"{name}[0] is not C-contiguous",
                **{name: [strided, arrays[1]]})
        frozen = arrays[0].copy()
        frozen.flags.writeable = False
        attempt(spec, problem, grads, ValueError, f"{name}[0] is read-only",
                **{name: [frozen, arrays[1]]})


def test_aliasing_is_rejected(case):
    spec, problem, grads = case
    for name, arrays in problem.states.items():
        attempt(spec, problem, grads, ValueError, "overlap",
                **{name: [problem.params[0], arrays[1]]})
    # grads[1] starting inside params[1] (a view, not a copy)
    flat = np.zeros(20, np.float32)
    params = [problem.params[0], flat[:9]]
    attempt(spec, problem, grads, ValueError, "overlap", params=params,
            call_grads=[grads[0], flat[4:13]])


def test_missing_state(case):
    spec, problem, grads = case
    first = next(iter(spec.states))
    attempt(spec, problem, grads, ValueError, f"needs {first}", **{first: None})


@pytest.mark.parametrize("name, options, state", [
    ("adam", {"amsgrad": True}, "max_exp_avg_sqs"),
    ("rmsprop", {"momentum": 0.5}, "momentum_buffers"),
    ("rmsprop", {"centered": True}, "grad_avgs"),
    ("sgd", {"momentum": 0.5}, "momentum_buffers"),
])
def test_option_that_needs_a_state(name, options, state):
    spec = SPECS_BY_NAME[name]
    problem = Problem(spec, SHAPES, np.float64)
    attempt(spec, problem, problem.grads(), ValueError, f"needs {state}",
            **{**options, state: None})


def test_nadam_mu_product():
    spec = SPECS_BY_NAME["nadam"]
    problem = Problem(spec, SHAPES, np.float32)
    grads = problem.grads()
    attempt(spec, problem, grads, ValueError, "mu_product must be one array holding one value",
            mu_product=np.ones(2, np.float32))
    frozen = np.ones(1, np.float32)
    frozen.flags.writeable = False
    attempt(spec, problem, grads, ValueError, "read-only", mu_product=frozen)
    attempt(spec, problem, grads, TypeError, "dtype float16",
            mu_product=np.ones(1, np.float16))
    attempt(spec, problem, grads, ValueError, "mu_product must be in",
            mu_product=np.full(1, 2.0, np.float32))
