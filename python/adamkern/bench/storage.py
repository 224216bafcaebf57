"""The lower-precision storage modes of :mod:`adamkern.lowp` as rows of the benchmark: the same
AdamW step moving fewer bytes (bfloat16 or block-wise 8-bit state, bfloat16/float16 params with
or without float32 master weights, stochastic rounding).

Each mode is judged against its own roofline: ``adamkern._core.roofline_`` on arrays of the
mode's storage (built and filled like the mode's, with random values), which moves the bytes
that mode's update moves. Before timing, two steps of each mode are checked bit for bit
against the float32 op on the decoded values, rounded back to each format (with stochastic
rounding: the documented hash of ``adamkern.lowp``), and one roofline call against the
streams it must move.

>>> from adamkern.bench.storage import LOWP_MODES
>>> mode = LOWP_MODES["adamkern bf16 params+state"]
>>> mode.bytes_moved(), mode.describe()
(14.0, 'bf16 params, bf16 state')
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import adamkern
from adamkern import _core, lowp
from adamkern.bench.cases import ADAMW
from adamkern.bench.rows import MethodSpec, Unavailable
from adamkern.bench.timing import Method, counter_step

__all__ = ["LARGE_ONLY", "LOWP_MODES", "SPECS", "Buffers", "StorageMode", "build_roofline",
           "buffers", "check_mode", "mode_builder", "runs_on"]

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "int8": 1 + 4 / lowp.BLOCK_SIZE}
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "int8": "int8"}
CHECK_ELEMENTS = 1 << 18  # the checks run on the first this many elements of a case


@dataclass(frozen=True)
class StorageMode:
    """How a mode stores its buffers: params and grads (float32, bfloat16, float16), the two
    state buffers (float32, bfloat16, or int8: :class:`adamkern.Blockwise8`), float32 master
    weights or none, and how bfloat16 writes round."""

    params: str = "float32"
    state: str = "float32"
    master: bool = False
    rounding: str = "nearest"

    @property
    def layout(self) -> tuple[str, str, bool]:
        """What the mode stores, hence what its roofline moves (rounding moves nothing)."""
        return self.params, self.state, self.master

    def describe(self) -> str:
        master = " + fp32 master" if self.master else ""
        return f"{_SHORT[self.params]} params{master}, {_SHORT[self.state]} state"

    def bytes_moved(self) -> float:
        """Bytes a step moves per element: params read (the master weights instead, when
        there are) and written, grads read, both states read and written (8-bit: with their
        absmax, one float32 per 256 elements)."""
        param, state = _BYTES[self.params], _BYTES[self.state]
        return float(param * (1 if self.master else 2) + param + 8 * self.master + 4 * state)

    def bytes_held(self) -> float:
        """Bytes per element of the buffers: params, grads, master weights, states."""
        return float(2 * _BYTES[self.params] + 4 * self.master + 2 * _BYTES[self.state])


class Buffers(NamedTuple):
    """A mode's arrays, in the order of ``adamw_`` and ``roofline_``."""

    params: list
    grads: list
    exp_avgs: list
    exp_avg_sqs: list
    master_params: list | None


def _dtype(name):
    return {"float32": np.float32, "bfloat16": lowp.bfloat16(), "float16": np.float16}[name]


def buffers(mode: StorageMode, params, grads) -> Buffers:
    """The mode's buffers for float32 `params` and `grads`: converted copies, zero state."""
    dtype = _dtype(mode.params)
    return Buffers([a.astype(dtype) for a in params], [a.astype(dtype) for a in grads],
                   [lowp.state_zeros(a, mode.state, signed=True) for a in params],
                   [lowp.state_zeros(a, mode.state, signed=False) for a in params],
                   [a.astype(np.float32) for a in params] if mode.master else None)


def _fill(b: Buffers, params, grads) -> None:
    """Random values into the state buffers (not zeros: stores of zero lines can be elided by
    the hardware): the params' and grads' values, 8-bit: random codes and absmax."""
    rng = np.random.default_rng(3)
    for states, values in ((b.exp_avgs, params), (b.exp_avg_sqs, grads)):
        for state, value in zip(states, values):
            if isinstance(state, lowp.Blockwise8):
                state.codes[...] = rng.integers(0, 256, state.codes.shape, dtype=np.uint8)
                state.absmax[...] = rng.random(state.absmax.shape) + 0.5
            else:
                state[...] = value.reshape(state.shape)


def _sample(params, grads, limit=CHECK_ELEMENTS):
    """The first `limit` elements of the tensors (whole tensors, then a head), flattened."""
    heads: tuple[list, list] = ([], [])
    for p, g in zip(params, grads):
        count = min(limit - sum(h.size for h in heads[0]), p.size)
        if count <= 0:
            break
        heads[0].append(p.reshape(-1)[:count])
        heads[1].append(g.reshape(-1)[:count])
    return heads


def _step(mode, b: Buffers, **kwargs) -> None:
    adamkern.adamw_(*b[:4], master_params=b.master_params, rounding=mode.rounding, **ADAMW,
                    **kwargs)


# -- the checks ---------------------------------------------------------------------------------

def _bits(buffer) -> np.ndarray:
    array = buffer.codes if isinstance(buffer, lowp.Blockwise8) else buffer
    return array.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[array.dtype.itemsize])


def _same_bits(actual, expected) -> bool:
    if isinstance(expected, lowp.Blockwise8):
        return (np.array_equal(_bits(actual), _bits(expected))
                and np.array_equal(actual.absmax.view(np.uint32), expected.absmax.view(np.uint32)))
    return np.array_equal(_bits(actual), _bits(expected))


def _decode(buffer) -> np.ndarray:
    return buffer.dequantize() if isinstance(buffer, lowp.Blockwise8) else \
        buffer.astype(np.float32)


def _encode(values, fmt, signed, key):
    """float32 `values` in format `fmt`: to nearest even, or with `key` the stochastic rounding
    of bfloat16."""
    if fmt == "int8":
        return lowp.Blockwise8.quantize(values, signed)
    if fmt == "bfloat16" and key is not None:
        return lowp.round_bfloat16(values, key, 0)
    return values.astype(_dtype(fmt))


def _expected(mode, b: Buffers, step) -> Buffers:
    """`b` after `step`: the float32 op on decoded copies, encoded back."""
    weights = [w.copy() for w in b.master_params] if mode.master else [_decode(p) for p in b.params]
    exp_avgs, exp_avg_sqs = [_decode(m) for m in b.exp_avgs], [_decode(v) for v in b.exp_avg_sqs]
    adamkern.adamw_(weights, [_decode(g) for g in b.grads], exp_avgs, exp_avg_sqs, step=step,
                    **ADAMW)
    seed = lowp.call_seed(0, step) if mode.rounding == "stochastic" else None

    def encode(arrays, fmt, buffer, signed=True):
        keys = [None if seed is None else lowp.rounding_key(seed, t, buffer)
                for t in range(len(arrays))]
        return [_encode(x, fmt, signed, key) for x, key in zip(arrays, keys)]
    return Buffers(encode(weights, mode.params, 0), b.grads, encode(exp_avgs, mode.state, 1),
                   encode(exp_avg_sqs, mode.state, 2, signed=False),
                   weights if mode.master else None)


def check_mode(label, mode: StorageMode, params, grads) -> None:
    """Two steps of the mode on the first CHECK_ELEMENTS elements, bit for bit against the
    float32 op on the decoded values (raises RuntimeError if they differ)."""
    b = buffers(mode, *_sample(params, grads))
    for step in (1, 2):
        expected = _expected(mode, b, step)
        _step(mode, b, step=step)
        if not all(_same_bits(x, e) for xs, es in zip(b, expected) if es is not None
                   for x, e in zip(xs, es)):
            raise RuntimeError(f"benchmark check failed: {label} ({mode.describe()}) disagrees "
                               f"with the float32 op on the decoded values")


def _check_roofline(mode, params, grads) -> None:
    """One roofline call on a sample moves the streams: params <- params ^ grads and
    exp_avgs <- exp_avg_sqs, as raw bits."""
    sample = _sample(params, grads)
    b = buffers(mode, *sample)
    _fill(b, *sample)
    before = [[_bits(x).copy() for x in xs] for xs in (b.params, b.grads, b.exp_avg_sqs)]
    _core.roofline_(*b)
    ok = all(np.array_equal(_bits(p), p0 ^ g0) for p, p0, g0 in zip(b.params, *before[:2])) \
        and all(np.array_equal(_bits(m), v0) for m, v0 in zip(b.exp_avgs, before[2]))
    if not ok:
        raise RuntimeError(f"benchmark check failed: the roofline of {mode.describe()} wrote "
                           f"wrong values")


# -- the rows -----------------------------------------------------------------------------------

def runs_on(case) -> bool:
    """Whether the storage rows run on `case`: they compute in float32 (float32 cases only)."""
    return case.dtype == "float32"


def _float32_only(case):
    if not runs_on(case):
        raise Unavailable("the storage modes compute in float32 (float32 cases only)")


def build_roofline(mode: StorageMode, case, params, grads) -> Method:
    """The roofline of `mode`: roofline_ on buffers built as the mode's, with random state."""
    _float32_only(case)
    _check_roofline(mode, params, grads)
    b = buffers(mode, params, grads)
    _fill(b, params, grads)
    return Method(f"roofline, {mode.describe()}", lambda: _core.roofline_(*b))


def mode_builder(label, mode: StorageMode):
    def build(case, params, grads):
        _float32_only(case)
        check_mode(label, mode, params, grads)
        return Method(label, counter_step(functools.partial(_step, mode,
                                                            buffers(mode, params, grads))))
    return build


LOWP_MODES = {
    "adamkern bf16 state": StorageMode("float32", "bfloat16"),
    "adamkern int8 state": StorageMode("float32", "int8"),
    "adamkern bf16 params": StorageMode("bfloat16", "float32"),
    "adamkern bf16 params+state": StorageMode("bfloat16", "bfloat16"),
    "adamkern bf16 master": StorageMode("bfloat16", "float32", master=True),
    "adamkern fp16 master": StorageMode("float16", "float32", master=True),
    "adamkern bf16 stochastic": StorageMode("bfloat16", "bfloat16", rounding="stochastic"),
}

# bfloat16 params with float32 state and no master weights: with --large (or named), which
# keeps the default run's peak memory (the model list's storage loop) well under 3 GB
LARGE_ONLY = ("adamkern bf16 params",)

SPECS = [MethodSpec(label, mode_builder(label, mode), check="self", baseline=False,
                    bytes_per_element=lambda itemsize, m=mode: m.bytes_moved(),
                    held=lambda itemsize, m=mode: m.bytes_held(), storage=mode,
                    quick=label not in LARGE_ONLY, large=label in LARGE_ONLY)
         for label, mode in LOWP_MODES.items()]
