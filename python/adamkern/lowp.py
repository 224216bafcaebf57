"""Lower precision: bfloat16/float16 params, bfloat16 and block-wise 8-bit optimizer state,
stochastic rounding.

fp32 Adam keeps 8 bytes of state per parameter and moves 28 bytes per element per step. The
formats here cut both, inside the same single pass over memory (the state is converted in
registers, one block of 256 elements at a time):

=============  ==============================  ===================  ======================
state_dtype    storage of each state buffer    state bytes/param    bytes moved (fp32 Adam)
=============  ==============================  ===================  ======================
``float32``    float32                         8                    28
``bfloat16``   bfloat16 (``ml_dtypes``)        4                    20
``int8``       :class:`Blockwise8`             2 + 8/256            16 + 8/256
=============  ==============================  ===================  ======================

:class:`Blockwise8` is the layout of bitsandbytes' and torchao's 8-bit optimizers: uint8 codes
into bitsandbytes' dynamic quantization map (``create_dynamic_map``: signed for first
moments, unsigned for second moments) and one float32 absmax per block of 256 elements;
element ``i`` is ``map[codes[i]] * absmax[i // 256]``. Codes are the nearest map value to
``x * (1 / absmax)`` (by magnitude, ties toward zero), so states convert to and from those
libraries.

Stochastic rounding (``rounding="stochastic"``) applies to every bfloat16 write: params and
state. Its random bits come from a counter-based hash (SplitMix64 and a 32-bit mixer) of the
seed, the step, the tensor's index in the call, the buffer and the element's index, so a run
is reproducible and the same for any thread count and ISA. Rounding to nearest even is the
default everywhere; float16 always rounds to nearest even.

>>> m = adamkern.Blockwise8.zeros((1000,), signed=True)       # an 8-bit first moment
>>> adamkern.adam_(p, g, m, v, step=1)                          # p: float32 or bfloat16
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from adamkern import _core

__all__ = [
    "BLOCK_SIZE",
    "Blockwise8",
    "STATE_DTYPES",
    "bfloat16",
    "dynamic_map",
    "state_dtype_name",
    "state_zeros",
]

BLOCK_SIZE = 256
STATE_DTYPES = ("float32", "bfloat16", "int8")

_MASK64 = (1 << 64) - 1


def bfloat16() -> np.dtype:
    """NumPy's bfloat16 dtype (from ``ml_dtypes``, a dependency of adamkern).

    >>> p = np.zeros(4, adamkern.lowp.bfloat16())
    """
    try:
        import ml_dtypes
    except ImportError as error:  # pragma: no cover - ml_dtypes is a dependency
        raise ImportError("bfloat16 arrays need ml_dtypes: pip install ml_dtypes") from error
    return np.dtype(ml_dtypes.bfloat16)


def dynamic_map(signed: bool = True) -> np.ndarray:
    """bitsandbytes' dynamic quantization map, ``create_dynamic_map(signed)``: 256 sorted
    float32 values in [-1, 1] (signed) or [0, 1] (unsigned), the code book of :class:`Blockwise8`.

    >>> adamkern.lowp.dynamic_map(True)[[0, 127, 255]]   # -0.99296875, 0, 1
    """
    return _core.dynamic_map(bool(signed))


def _nearest_codes(scaled: np.ndarray, signed: bool) -> np.ndarray:
    """Codes of values already divided by their absmax, as math/lowp.hpp: nearest_code: the
    nearest map value by magnitude, ties toward zero (and no -1 in the signed map)."""
    values = dynamic_map(signed)
    if not signed:
        midpoints = (values[:-1] + values[1:]) * np.float32(0.5)
        return np.searchsorted(midpoints, np.maximum(scaled, 0), side="left").astype(np.uint8)
    magnitudes = np.concatenate([np.zeros(1, np.float32), values[128:]])
    midpoints = (magnitudes[:-1] + magnitudes[1:]) * np.float32(0.5)
    q = np.searchsorted(midpoints, np.abs(scaled), side="left")
    negative = scaled < 0
    q = np.where(negative, np.minimum(q, 127), q)
    return np.where(negative, 127 - q, 127 + q).astype(np.uint8)


class Blockwise8:
    """Block-wise 8-bit state of one array: ``codes`` (uint8, the array's shape), ``absmax``
    (float32, one per 256 elements) and the map (``signed``: first moments; unsigned: second
    moments, which are never negative). Pass it wherever an op takes a state array.

    >>> v = adamkern.Blockwise8.zeros((3, 4), signed=False)
    >>> v.dequantize()                         # float32 zeros of shape (3, 4)
    """

    __slots__ = ("absmax", "codes", "signed")

    def __init__(self, codes: np.ndarray, absmax: np.ndarray, signed: bool = True) -> None:
        self.codes = codes
        self.absmax = absmax
        self.signed = bool(signed)

    @staticmethod
    def blocks(size: int) -> int:
        """Blocks (absmax values) of an array of ``size`` elements."""
        return -(-int(size) // BLOCK_SIZE)

    @classmethod
    def zeros(cls, shape: int | Sequence[int], signed: bool = True) -> Blockwise8:
        """All-zero state of ``shape`` (aligned allocations, see :func:`adamkern.zeros`)."""
        from adamkern.memory import empty, zeros

        codes = empty(shape, np.uint8)
        codes.fill(int(np.argmin(np.abs(dynamic_map(signed)))))  # the code of 0
        return cls(codes, zeros(cls.blocks(codes.size), np.float32), signed)

    @classmethod
    def quantize(cls, values: np.ndarray, signed: bool = True) -> Blockwise8:
        """The nearest codes of ``values`` (any float array), block by block, as the kernels
        quantize: ``codes = nearest(map, x * (1 / absmax))`` (nearest by magnitude, ties
        toward zero), an all-zero block staying zero.

        >>> q = adamkern.Blockwise8.quantize(np.linspace(-1, 1, 300, dtype=np.float32))
        """
        flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        size = flat.size
        padded = np.zeros(cls.blocks(size) * BLOCK_SIZE, np.float32)
        padded[:size] = flat
        blocks = padded.reshape(-1, BLOCK_SIZE)
        absmax = np.max(np.abs(blocks), axis=1, initial=np.float32(0)).astype(np.float32)
        with np.errstate(divide="ignore"):
            inverse = np.where(absmax > 0, np.float32(1) / absmax, np.float32(0)).astype(np.float32)
        scaled = (blocks * inverse[:, None]).reshape(-1)[:size]
        codes = _nearest_codes(scaled, signed)
        return cls(codes.reshape(np.shape(values)), absmax, signed)

    def dequantize(self) -> np.ndarray:
        """The float32 values: ``map[codes] * absmax`` of each element's block."""
        flat = self.codes.reshape(-1)
        scale = np.repeat(self.absmax, BLOCK_SIZE)[: flat.size]
        return (dynamic_map(self.signed)[flat] * scale).reshape(self.codes.shape)

    def copy(self) -> Blockwise8:
        return Blockwise8(self.codes.copy(), self.absmax.copy(), self.signed)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    @property
    def size(self) -> int:
        return self.codes.size

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.absmax.nbytes

    def __repr__(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return f"Blockwise8(shape={self.shape}, {kind}, blocks={self.absmax.size})"


State = Union[np.ndarray, Blockwise8]


def state_dtype_name(state_dtype: object) -> str:
    """``state_dtype`` as one of :data:`STATE_DTYPES` (a name or a NumPy dtype).

    >>> adamkern.lowp.state_dtype_name(np.float32)    # 'float32'
    """
    if isinstance(state_dtype, str) and state_dtype in STATE_DTYPES:
        return state_dtype
    try:
        name = np.dtype(state_dtype).name  # type: ignore[arg-type]
    except TypeError:
        name = None
    if name in STATE_DTYPES:
        return name
    raise ValueError(f"state_dtype must be one of {', '.join(STATE_DTYPES)} (a name or a NumPy "
                     f"dtype), got {state_dtype!r}")


def state_zeros(param: np.ndarray, state_dtype: object = "float32", signed: bool = True) -> State:
    """A zero state buffer for ``param`` in ``state_dtype`` (float64 params: float64 only).

    >>> m = adamkern.lowp.state_zeros(p, "int8", signed=True)
    """
    from adamkern.memory import zeros

    name = state_dtype_name(state_dtype)
    if param.dtype == np.float64:
        if name != "float32":
            raise ValueError(f"state_dtype {name!r} is for float32/bfloat16/float16 params; "
                             "float64 params keep float64 state")
        return zeros(param.shape, np.float64)
    if name == "int8":
        return Blockwise8.zeros(param.shape, signed)
    return zeros(param.shape, bfloat16() if name == "bfloat16" else np.float32)


def state_nbytes(state: State) -> int:
    """Bytes held by one state buffer (codes and absmax for :class:`Blockwise8`)."""
    return int(state.nbytes)


# ---- The hashes of stochastic rounding (the same arithmetic as math/lowp.hpp) ----

def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def call_seed(seed: int, step: object) -> int:
    """The seed a call passes to the kernels: ``seed``, mixed with ``step`` when the op has one."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed) & _MASK64
    if step is None:
        return seed
    return splitmix64(seed ^ splitmix64(int(step) & _MASK64))


def rounding_key(seed: int, tensor: int, buffer: int, high: int = 0) -> int:
    """Key of one buffer (0: param, 1 + k: state k) of one tensor, elements high * 2^32 on."""
    key = splitmix64(seed)
    key = splitmix64(key ^ tensor)
    key = splitmix64(key ^ (buffer | (high << 3)))
    return key >> 32


def rounding_bits(key: int, index: np.ndarray) -> np.ndarray:
    """16 random bits per element index (uint32 array), as the kernels draw them."""
    x = (index.astype(np.uint32) ^ np.uint32(key)).astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x >> np.uint32(16)


def round_bfloat16(values: np.ndarray, key: int | None = None, first_index: int = 0) -> np.ndarray:
    """float32 ``values`` rounded to bfloat16: to nearest even (``key`` None), or
    stochastically with the random bits of ``key`` for element indices from ``first_index``."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    if key is None:
        return x.astype(bfloat16())
    bits = x.view(np.uint32).reshape(-1)
    index = np.arange(first_index, first_index + bits.size, dtype=np.uint64)
    random = rounding_bits(key, (index & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    rounded = ((bits + random) >> np.uint32(16)).astype(np.uint16)
    nearest = x.reshape(-1).astype(bfloat16()).view(np.uint16)
    out = np.where(np.isnan(x.reshape(-1)), nearest, rounded)
    return out.view(bfloat16()).reshape(x.shape)
