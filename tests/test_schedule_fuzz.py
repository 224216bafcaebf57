"""adamkern.schedules at the extremes. Every schedule factory, found in the module's ``__all__``
and built from its type hints, is fuzzed with extreme but accepted arguments (0, 5e-324,
1e-300, 1e300, the largest double, t_mul = 1 + 2**-52, ...) and evaluated at extreme steps
(0, 1, 2**31, 2**53, 2**62, 2**63 - 1, as Python ints, NumPy scalars and integer arrays of
every width). The properties:

- every call returns within CALL_BOUND seconds (a hang fails the test instead of freezing it);
- a value is a finite Python float (values past the double range saturate at +-DBL_MAX, the
  documented behaviour), within the schedule's range where it has a simple one;
- scalar and array evaluation agree bitwise, whatever the array's dtype and layout;
- a step outside [0, 2**63) is a ValueError, and so is a step past a schedule's end (one_cycle)
  and every step after it;
- a rejected constructor argument is a ValueError or TypeError whose message names it.

A C++ loop that never ends holds the GIL: a hang inside this process would freeze the whole
suite, and no thread could time it out. So every construction and evaluation runs in a worker
subprocess (this file, run as a script), answered within TIMEOUT seconds or killed and
restarted. The three hangs of cosine_restarts that were reported have their own tests.
Shrinking is off: an example that hangs would be retried for minutes, and the specs are small
enough to read unshrunk.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections.abc import Callable, Sequence
from types import NoneType, UnionType

import numpy as np
import pytest

from adamkern import schedules as S

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

LARGEST = sys.float_info.max
TIMEOUT = 10.0  # seconds for one request (a construction and its ~40 evaluations)
CALL_BOUND = 2.0  # seconds for any one call; a normal call takes microseconds
STARTUP_TIMEOUT = 120.0

STEPS = [0, 1, 2, 3, 7, 10, 1000, 2**31 - 1, 2**31, 2**53 - 1, 2**53, 2**53 + 1, 2**53 + 2,
         2**62, 2**63 - 2, 2**63 - 1]
OUT_OF_RANGE_STEPS = [-1, -(2**63), 2**63, 2**64 - 1]
ARRAY_DTYPES = {"int64": np.int64, "uint64": np.uint64, "int32": np.int32, "uint16": np.uint16,
                "int8": np.int8}


# ---------------------------------------------------------------------------------------------
# The factories, from the module.

def _is_factory(name):
    value = getattr(S, name)
    if not inspect.isfunction(value):
        return False
    return "Schedule" in repr(typing.get_type_hints(value).get("return"))


FACTORIES = {name: getattr(S, name) for name in S.__all__ if _is_factory(name)}
PARAMETERS = {name: inspect.signature(fn).parameters for name, fn in FACTORIES.items()}
PARAMETERS["ReduceLROnPlateau"] = {
    k: v for k, v in inspect.signature(S.ReduceLROnPlateau).parameters.items()}


def _hints(name):
    target = S.ReduceLROnPlateau.__init__ if name == "ReduceLROnPlateau" else FACTORIES[name]
    return {k: v for k, v in typing.get_type_hints(target).items() if k != "return"}


def _mentions_schedule(hint):
    return "Schedule" in repr(hint)


LEAF_FACTORIES = sorted(name for name in FACTORIES
                        if not any(_mentions_schedule(h) for h in _hints(name).values()))


def test_factories_are_discovered():
    assert {"cosine_restarts", "cosine_decay", "one_cycle", "cyclic", "warmup", "join",
            "multiplicative", "per_epoch"} <= set(FACTORIES)
    assert {"Schedule", "ReduceLROnPlateau"} == set(S.__all__) - set(FACTORIES)


# ---------------------------------------------------------------------------------------------
# The worker: builds a schedule from a JSON spec and evaluates it, in a subprocess.
#
# A spec is {"schedule": factory name, "args": {name: value}, "momentum": bool}; a value is JSON,
# a spec, {"callable": x} for ``lambda epoch: x``, or {"numpy": dtype name, "value": v}.

class _Rejected(Exception):
    def __init__(self, factory, error):
        super().__init__(factory)
        self.factory, self.error = factory, error


def _build(value):
    if isinstance(value, dict) and "schedule" in value:
        name = value["schedule"]
        args = {key: _build(v) for key, v in value["args"].items()}
        try:
            made = getattr(S, name)(**args)
        except (ValueError, TypeError) as error:
            raise _Rejected(name, error) from None
        return made.momentum if value.get("momentum") else made
    if isinstance(value, dict) and "callable" in value:
        result = value["callable"]
        return lambda epoch: result
    if isinstance(value, dict) and "numpy" in value:
        return getattr(np, value["numpy"])(value["value"])
    if isinstance(value, list):
        return [_build(v) for v in value]
    return value


def _timed_call(schedule, step, clock):
    start = time.perf_counter()
    try:
        result = schedule(step)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which judges it
        reply = {"error": type(error).__name__, "message": str(error)}
    else:
        if isinstance(result, np.ndarray):
            reply = {"dtype": str(result.dtype), "shape": list(result.shape),
                     "values": [float(v).hex() for v in result.flat]}
        else:
            reply = {"type": type(result).__name__, "value": float(result).hex()}
    clock[0] = max(clock[0], time.perf_counter() - start)
    return reply


def _fits(step, dtype):
    info = np.iinfo(dtype)
    return info.min <= step <= info.max


def _evaluate(schedule, steps):
    clock = [0.0]
    scalar = [_timed_call(schedule, step, clock) for step in steps]
    valid = [step for step, reply in zip(steps, scalar) if "value" in reply]
    invalid = [step for step, reply in zip(steps, scalar) if "value" not in reply]
    arrays = []
    inputs = {name: np.array([step for step in valid if _fits(step, dtype)], dtype)
              for name, dtype in ARRAY_DTYPES.items()}
    if valid:
        base = np.array(valid, np.int64)
        inputs.update({"reversed-view": base[::-1], "strided-view": base[::2],
                       "2-D": base.reshape(len(valid), 1),
                       "2-D-transposed": base.reshape(1, -1).T})
    for name, array in inputs.items():
        arrays.append((name, [int(k) for k in array.flat], list(array.shape),
                       _timed_call(schedule, array, clock)))
    bad_arrays = []
    for step in invalid:
        dtype = np.int64 if _fits(step, np.int64) else np.uint64
        if _fits(step, dtype):
            bad_arrays.append((step, _timed_call(schedule, np.array([0, step], dtype), clock)))
    numpy_scalars = []
    for step in valid[:6]:
        for dtype in (np.int64, np.uint64):
            numpy_scalars.append((step, _timed_call(schedule, dtype(step), clock)))
    return {"scalar": scalar, "arrays": arrays, "bad_arrays": bad_arrays,
            "numpy_scalars": numpy_scalars, "slowest": clock[0]}


def _handle(request):
    try:
        schedule = _build(request["spec"])
    except _Rejected as rejected:
        return {"rejected": rejected.factory, "error": type(rejected.error).__name__,
                "message": str(rejected.error)}
    return {"built": repr(schedule), **_evaluate(schedule, request["steps"])}


def _serve():
    import traceback

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            reply = _handle(json.loads(line))
        except Exception as error:  # noqa: BLE001 - anything else is a failure to report
            reply = {"crashed": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc()}
        print(json.dumps(reply), flush=True)


class Hang(AssertionError):
    pass


class _Worker:
    def __init__(self):
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._start()

    def _start(self):
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(self._process.stdout, self._lines),
                         daemon=True).start()
        assert self._receive(STARTUP_TIMEOUT, "start") == {"ready": True}

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _receive(self, timeout, what):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self._restart()
            raise Hang(f"no answer within {timeout:g} s (the call hangs) to {what}") from None
        if line is None:
            self._stderr.seek(0)
            detail = self._stderr.read()[-3000:]
            self._restart()
            raise AssertionError(f"the worker died on {what}:\n{detail}")
        return json.loads(line)

    def ask(self, spec, steps, timeout=TIMEOUT):
        request = {"spec": spec, "steps": steps}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        reply = self._receive(timeout, json.dumps(request))
        assert "crashed" not in reply, f"{spec}: {reply.get('traceback')}"
        return reply

    def _stop(self):
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        self._process.stdin.close()
        self._process.stdout.close()

    def _restart(self):
        self._stop()
        self._start()

    def close(self):
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        self._stderr.close()


@pytest.fixture(scope="module")
def worker():
    w = _Worker()
    yield w
    w.close()


# ---------------------------------------------------------------------------------------------
# Checking a reply.

def _float(text):
    return float.fromhex(text)


def _named(message, factory):
    return any(name in message for name in PARAMETERS[factory])


def check_rejection(spec, reply):
    assert reply["error"] in ("ValueError", "TypeError"), (spec, reply)
    assert "incompatible function arguments" not in reply["message"], (spec, reply)
    assert _named(reply["message"], reply["rejected"]), (
        f"{reply['rejected']}'s error does not name any of its arguments: {reply['message']!r}"
        f" ({spec})")


def check_evaluation(spec, steps, reply, value_range=None):
    """The properties of the module docstring, for one built schedule."""
    where = f"{reply['built']} ({json.dumps(spec)})"
    assert reply["slowest"] < CALL_BOUND, f"{where}: a call took {reply['slowest']:.2f} s"
    values, rejected = {}, []
    for step, result in zip(steps, reply["scalar"]):
        if "value" in result:
            assert 0 <= step < 2**63, f"{where}: step {step} accepted"
            assert result["type"] == "float", f"{where}({step}) is a {result['type']}"
            value = _float(result["value"])
            assert math.isfinite(value), f"{where}({step}) = {value}"
            if value_range is not None:
                lo, hi = value_range
                slack = 1e-9 * max(abs(lo), abs(hi))
                assert lo - slack <= value <= hi + slack, \
                    f"{where}({step}) = {value!r} outside [{lo!r}, {hi!r}]"
            values[step] = result["value"]
        else:
            assert result["error"] == "ValueError" and "step" in result["message"], \
                f"{where}({step}): {result}"
            if 0 <= step < 2**63:
                rejected.append(step)
    assert 0 in values, f"{where}: step 0 rejected"
    # A step past a one-cycle's end, and every later one (except in a join, whose parts count
    # from each boundary again).
    if rejected and '"join"' not in json.dumps(spec):
        assert all(step < min(rejected) for step in values), f"{where}: {sorted(rejected)}"
    for name, subset, shape, result in reply["arrays"]:
        assert "values" in result, f"{where} on a {name} array: {result}"
        assert (result["dtype"], result["shape"]) == ("float64", shape), \
            f"{where} on a {name} array of shape {shape}: {result['dtype']} {result['shape']}"
        assert result["values"] == [values[step] for step in subset], \
            f"{where}: the {name} array differs from the scalar values"
    for step, result in reply["bad_arrays"]:
        assert result.get("error") == "ValueError" and "step" in result["message"], \
            f"{where}: an array holding step {step}: {result}"
    for step, result in reply["numpy_scalars"]:
        assert result.get("value") == values[step], f"{where}: NumPy scalar {step}: {result}"
    return values


# Bounds of the schedules with a simple range, from their arguments (defaults filled in), or None.
def _saturated(x):
    return min(max(x, -LARGEST), LARGEST)


def _between(*values):
    values = [_saturated(v) for v in values]
    return min(values), max(values)


def _range_of(name, args):
    if name == "constant":
        return _between(args["value"])
    if name == "cosine_decay":
        return _between(args["init_value"], args["init_value"] * args["alpha"])
    if name == "cosine_restarts" and args["m_mul"] <= 1.0:
        return _between(args["init_value"], args["init_value"] * args["alpha"])
    if name in ("polynomial_decay", "linear"):
        return _between(args["init_value"], args["end_value"])
    if name == "warmup_cosine_decay":
        return _between(args["init_value"], args["peak_value"], args["end_value"],
                        0.0 if args["peak_value"] == 0.0 else args["end_value"])
    if name == "cyclic" and (args["mode"] != "exp_range" or args["gamma"] <= 1.0):
        return _between(args["base_value"], args["max_value"])
    if name == "inverse_time_decay":
        return _between(0.0, args["init_value"])
    if name == "step_decay" and abs(args["gamma"]) <= 1.0:
        return _between(-abs(args["init_value"]), abs(args["init_value"]))
    if name == "multiplicative" and isinstance(args["factor"], float) and args["factor"] <= 1:
        return _between(0.0, args["init_value"])
    if name == "exponential_decay" and args["decay_rate"] <= 1.0 and args["end_value"] is None:
        return _between(0.0, args["init_value"])
    return None


def value_range(spec):
    """The range of a top-level spec whose arguments are plain numbers, or None."""
    if spec.get("momentum"):
        return None
    arguments = {k: p.default for k, p in PARAMETERS[spec["schedule"]].items()
                 if p.default is not inspect.Parameter.empty}
    for key, value in spec["args"].items():
        if isinstance(value, dict) and "numpy" in value:
            value = value["value"]
        arguments[key] = value
    plain = all(isinstance(v, (int, float, str, bool, type(None))) for v in arguments.values())
    return _range_of(spec["schedule"], arguments) if plain else None


# ---------------------------------------------------------------------------------------------
# 1. The three reported hangs of cosine_restarts (each hung forever, holding the GIL).

def _restarts(init_value, first_decay_steps, t_mul, m_mul=1.0, alpha=0.0):
    return {"schedule": "cosine_restarts",
            "args": dict(init_value=init_value, first_decay_steps=first_decay_steps,
                         t_mul=t_mul, m_mul=m_mul, alpha=alpha)}


@pytest.mark.parametrize("spec,step,expected", [
    # t_mul = 1 at step 2**53: i + 1.0 == i in the correction loop. 2**53 is a restart.
    (_restarts(1.0, 1.0, 1.0), 2**53, 1.0),
    # step / first_decay_steps overflows to inf: inf - 1 == inf. The value is that of the
    # step's exact remainder by first_decay_steps.
    (_restarts(1.0, 1e-300, 1.0), 10,
     0.5 * (1.0 + math.cos(math.pi * math.fmod(10.0, 1e-300) / 1e-300))),
    # step * (t_mul - 1) overflows: the closed form gave inf cycles. Step 10**18 is 1e-282 of
    # the way into the second cycle (steps 1 .. 1 + 1e300).
    (_restarts(1.0, 1.0, 1e300), 10**18, 1.0),
], ids=["t_mul1-step2**53", "first1e-300", "t_mul1e300"])
def test_reported_cosine_restarts_hangs(worker, spec, step, expected):
    steps = sorted({step, *STEPS})
    reply = worker.ask(spec, steps)
    values = check_evaluation(spec, steps, reply, value_range=(0.0, 1.0))
    assert _float(values[step]) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("first,t_mul", [(1.0, 1.0), (1e-300, 1.0), (5e-324, 1.0),
                                         (1e-300, 2.0), (1.0, 1e300), (1e-300, 1e300),
                                         (1e300, 1.0), (1.0, 1.0 + 2**-52), (1e-300, 1.0 + 2**-52),
                                         (3.0, LARGEST), (7.5, 1.5)])
@pytest.mark.parametrize("m_mul,alpha", [(1.0, 0.0), (0.5, 0.1), (0.0, -1e300)])
def test_cosine_restarts_extremes(worker, first, t_mul, m_mul, alpha):
    spec = _restarts(0.1, first, t_mul, m_mul, alpha)
    reply = worker.ask(spec, STEPS)
    check_evaluation(spec, STEPS, reply, value_range=value_range(spec))


def test_cosine_restarts_growing_peaks_saturate(worker):
    spec = _restarts(0.1, 1.0, 1.0, m_mul=2.0)
    values = check_evaluation(spec, STEPS, worker.ask(spec, STEPS))
    assert _float(values[2**62]) == LARGEST  # 0.1 * 2**(2**62): past the double range
    assert _float(values[3]) == 0.1 * 2.0**3  # a restart: the peak of cycle 3


# ---------------------------------------------------------------------------------------------
# 2. Every factory fuzzed.

# Hypothesis draws the first entries most: an ordinary value first, then the extremes.
POSITIVE = [1.0, 0.5, 1e-300, 1e300, 5e-324, 2.2250738585072014e-308, 1e-10, 0.1,
            1.0 - 2**-53, 1.0 + 2**-52, 1.5, 2.0, 10.0, 1e10, LARGEST, 0.0]
NEGATIVE = [-1.0, -0.0, -1e-300, -0.5, -2.0, -1e300, -LARGEST]
INTEGERS = [10, 1, 2**31, 2**53, 2**62, 2**63 - 1, 0, 2, 3, 7, 100, 1000, 2**31 - 1,
            2**53 + 1]

# Values every argument of the hinted type rejects (beyond the range checks of each factory).
BAD = {
    float: [math.nan, math.inf, -math.inf, "0.5", True, 10**400],
    int: [2.5, "3", True, 2**63, -(2**63) - 1],
    bool: [1, "yes"],
    str: [1, "bogus"],
    "sequence": ["abc", 5],
    "schedule": [0.5, "constant"],
}


def _union_members(hint):
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _strategy(hint, depth):
    """Accepted-looking values of the hinted type (extremes included: many are still rejected
    by the factory's range checks, which is checked too)."""
    members = _union_members(hint)
    if len(members) > 1:
        return st.one_of([_strategy(m, depth) for m in members])
    if hint is NoneType:
        return st.none()
    if hint is float:
        return st.one_of(st.sampled_from(POSITIVE), st.sampled_from(POSITIVE),
                         st.sampled_from(NEGATIVE), st.floats(-1e6, 1e6))
    if hint is int:
        return st.one_of(st.sampled_from(INTEGERS), st.integers(0, 10_000),
                         st.sampled_from(INTEGERS).map(lambda v: {"numpy": "int64", "value": v}))
    if hint is bool:
        return st.booleans()
    if typing.get_origin(hint) is typing.Literal:
        return st.sampled_from(typing.get_args(hint))
    if hint is S.Schedule:
        return st.deferred(lambda: spec_strategy(LEAF_FACTORIES, depth + 1))
    if typing.get_origin(hint) is Callable:
        return st.sampled_from(POSITIVE).map(lambda v: {"callable": v})
    if typing.get_origin(hint) is Sequence:
        (item,) = typing.get_args(hint)
        # Half the time the lengths the module's sequences go by (n boundaries or milestones
        # between n + 1 values or schedules, increasing), half any.
        length = st.shared(st.integers(0, 3), key="length")
        if item is int:
            matched = length.flatmap(lambda n: st.lists(
                st.one_of(st.sampled_from(INTEGERS[1:]), st.integers(1, 10_000)),
                min_size=n, max_size=n, unique=True).map(sorted))
        else:
            matched = length.flatmap(lambda n: st.lists(_strategy(item, depth),
                                                        min_size=n + 1, max_size=n + 1))
        return st.one_of(matched, st.lists(_strategy(item, depth), max_size=3))
    raise AssertionError(f"no strategy for {hint!r}: teach this test the new argument type")


@functools.cache
def _spec_of(name, depth):
    parameters = PARAMETERS[name]
    strategies = {k: _strategy(h, depth) for k, h in _hints(name).items()}
    required = {k: v for k, v in strategies.items()
                if parameters[k].default is inspect.Parameter.empty}
    optional = {k: v for k, v in strategies.items() if k not in required}
    momentum = st.booleans() if name == "one_cycle" else st.just(False)
    return st.builds(lambda args, m: {"schedule": name, "args": args, "momentum": m},
                     st.fixed_dictionaries(required, optional=optional), momentum)


def spec_strategy(names, depth):
    """Specs of a factory among ``names``, its arguments drawn by type."""
    return st.one_of([_spec_of(name, depth) for name in names])


# 30 fixed examples per factory keep the file to a few seconds; ADAMKERN_FUZZ_EXAMPLES=5000
# runs that many random ones instead (the per-call timeout is the deadline either way).
_EXAMPLES = os.environ.get("ADAMKERN_FUZZ_EXAMPLES")
FUZZ = hypothesis.settings(
    max_examples=int(_EXAMPLES or 30), deadline=None, derandomize=not _EXAMPLES, database=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])


@pytest.mark.parametrize("factory", sorted(FACTORIES))
@FUZZ
@hypothesis.given(data=st.data())
def test_fuzz_every_schedule(worker, factory, data):
    spec = data.draw(spec_strategy([factory], 0), label="spec")
    extra = data.draw(st.lists(st.integers(0, 2**63 - 1), max_size=3), label="extra steps")
    steps = sorted({*STEPS, *extra}) + OUT_OF_RANGE_STEPS
    reply = worker.ask(spec, steps)
    if "rejected" in reply:
        check_rejection(spec, reply)
    else:
        check_evaluation(spec, steps, reply, value_range=value_range(spec))


# ---------------------------------------------------------------------------------------------
# 3. Rejected arguments name themselves: each argument of a valid call replaced by a value its
# type never accepts.

SIMPLE = {float: [1.0, 0.5], int: [1, 10], bool: [False]}


def _simple_values(hint):
    members = _union_members(hint)
    if len(members) > 1:
        return _simple_values(members[0])
    if hint in SIMPLE:
        return SIMPLE[hint]
    if typing.get_origin(hint) is typing.Literal:
        return [typing.get_args(hint)[0]]
    if hint is S.Schedule:
        return [S.constant(1.0)]
    if typing.get_origin(hint) is Sequence:
        return [[]] if typing.get_args(hint)[0] is int else [[S.constant(1.0)], [1.0]]
    raise AssertionError(f"no simple value for {hint!r}")


def _make(name, **args):
    return S.ReduceLROnPlateau(**args) if name == "ReduceLROnPlateau" else FACTORIES[name](**args)


def valid_arguments(name):
    """Simple required arguments the factory accepts, found by trying a few of each type."""
    hints, parameters = _hints(name), PARAMETERS[name]
    required = [k for k in hints if parameters[k].default is inspect.Parameter.empty]

    def search(chosen):
        if len(chosen) == len(required):
            try:
                _make(name, **chosen)
            except (ValueError, TypeError):
                return None
            return chosen
        key = required[len(chosen)]
        for value in _simple_values(hints[key]):
            found = search({**chosen, key: value})
            if found is not None:
                return found
        return None

    found = search({})
    assert found is not None, f"no simple valid call of {name}"
    return found


def _bad_values(hint):
    members = [m for m in _union_members(hint) if m is not NoneType]
    if any(typing.get_origin(m) is Callable for m in members):  # a number, sequence or callable
        return [None, "0.5"] if NoneType not in _union_members(hint) else ["0.5"]
    if any(m is S.Schedule or typing.get_origin(m) is Callable for m in members):
        return BAD["schedule"]
    bad = []
    for member in members:
        if typing.get_origin(member) is typing.Literal:
            bad += BAD[str]
        elif typing.get_origin(member) is Sequence:
            item = typing.get_args(member)[0]
            bad += BAD["sequence"] + [[v] for v in BAD["schedule" if item is S.Schedule else item]
                                      if not (item is float and v == 10**400)]
        else:
            bad += BAD[member]
    if NoneType not in _union_members(hint):
        bad.append(None)
    return bad


REJECTION_CASES = [(name, key, bad) for name in [*sorted(FACTORIES), "ReduceLROnPlateau"]
                   for key, hint in _hints(name).items() for bad in _bad_values(hint)]


@pytest.mark.parametrize("name,key,bad", REJECTION_CASES,
                         ids=[f"{n}-{k}-{b!r}" for n, k, b in REJECTION_CASES])
def test_rejected_argument_is_named(name, key, bad):
    arguments = valid_arguments(name)
    if key == "num_epochs":  # it goes with a callable factor
        arguments["factor"] = lambda epoch: 0.5
    with pytest.raises((ValueError, TypeError)) as error:
        _make(name, **{**arguments, key: bad})
    assert key in str(error.value), f"{name}({key}={bad!r}): {error.value}"
    assert "incompatible function arguments" not in str(error.value)


def test_literal_choices_are_the_cpp_choices():
    """A choice written in Python's hints and in C++'s parser is tied here: every hinted choice
    is accepted, and a bad one's message lists exactly the hinted ones."""
    for name in [*FACTORIES, "ReduceLROnPlateau"]:
        for key, hint in _hints(name).items():
            if typing.get_origin(hint) is not typing.Literal:
                continue
            for choice in typing.get_args(hint):
                _make(name, **{**valid_arguments(name), key: choice})
            with pytest.raises(ValueError) as error:
                _make(name, **{**valid_arguments(name), key: "bogus"})
            listed = " or ".join(f"'{c}'" for c in typing.get_args(hint))
            assert f"{key} must be {listed}, got 'bogus'" == str(error.value), name


# ---------------------------------------------------------------------------------------------
# 4. Steps and step arrays outside int64.

@pytest.mark.parametrize("make", [lambda: S.constant(1.0), lambda: S.per_epoch(abs, 3)],
                         ids=["Schedule", "per_epoch-callable"])
def test_steps_outside_int64(make):
    sched = make()
    for step in (-1, -(2**63), -(2**64), 2**63, 2**64, np.uint64(2**63)):
        with pytest.raises(ValueError, match="step"):
            sched(step)
    for steps in (np.array([0, 2**63], np.uint64), np.array([2**64 - 1], np.uint64),
                  np.array([0, -1], np.int8)):
        with pytest.raises(ValueError, match="step"):
            sched(steps)
    assert sched(2**63 - 1) == sched(np.array([2**63 - 1], np.uint64))[0]


# ---------------------------------------------------------------------------------------------
# 5. ReduceLROnPlateau: no step loop (it runs here), fed extreme metrics.

@FUZZ
@hypothesis.given(data=st.data())
def test_fuzz_reduce_lr_on_plateau(data):
    hints = _hints("ReduceLROnPlateau")
    optional = {k: _strategy(h, 0) for k, h in hints.items() if k != "init_value"}
    arguments = data.draw(st.fixed_dictionaries(
        {"init_value": _strategy(float, 0)}, optional=optional), label="arguments")
    arguments = {k: _build(v) for k, v in arguments.items()}
    try:
        plateau = S.ReduceLROnPlateau(**arguments)
    except (ValueError, TypeError) as error:
        assert _named(str(error), "ReduceLROnPlateau"), str(error)
        return
    metrics = data.draw(st.lists(st.one_of(st.sampled_from([*POSITIVE, *NEGATIVE, math.inf,
                                                            -math.inf, math.nan]),
                                           st.floats()), max_size=12), label="metrics")
    for metric in metrics:
        lr = plateau.update(metric)
        assert isinstance(lr, float) and math.isfinite(lr), (arguments, metric, lr)
        assert plateau(2**63 - 1) == lr
    copy = S.ReduceLROnPlateau(**arguments)
    copy.load_state_dict(plateau.state_dict())
    assert copy.lr == plateau.lr


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
