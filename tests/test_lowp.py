"""Lower precision (adamkern.lowp): bfloat16/float16 params, bfloat16/float16/block-wise 8-bit
state, float32 master weights and stochastic rounding, in the functional ops and the optimizer
objects.

The contract: an update decodes every buffer to float32, runs the float32 kernel of the op and
encodes every buffer it writes back, once. So the exact reference of any op in any format is
the float32 op itself (tested elsewhere against NumPy and torch) run on float32 copies decoded
with NumPy, followed by NumPy's encodings: ``astype`` to bfloat16 (ml_dtypes) or float16 (round
to nearest even), ``Blockwise8.quantize``, or ``lowp.round_bfloat16`` with the documented
random bits for stochastic rounding. Every comparison here is bitwise.

1. Every op of tests/family.py, every params dtype x state format, with the options off and
   all on, over several steps (the state carried through its rounded values), sizes 0, 1, 17,
   255, 256, 257 and 70_001; master params; grad_scale (the grads written back rounded) and
   found_inf (nothing changes).
2. Stochastic rounding: the reference bits of every op; the same bits for 1 and 2 threads and
   every ISA; unbiased where rounding to nearest is not; seeds.
3. The conversions: float32 -> bfloat16 / float16 as ml_dtypes / NumPy (ties, subnormals,
   overflow, inf, NaN), exact decoding, Blockwise8 against its NumPy reference.
4. The dynamic map against bitsandbytes' create_dynamic_map (needs torch) and nearest codes.
5. The error contract of the new arguments: the exception, and no array changed.
6. The optimizer objects: state_dtype, master_weights, rounding and seed; state_nbytes;
   checkpoints of low-precision state.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest
from family import SPECS, SPECS_BY_NAME

import adamkern
import adamkern.optim
from adamkern import lowp
from adamkern.lowp import Blockwise8

BF16 = lowp.bfloat16()
PARAM_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": BF16,
                "float16": np.dtype(np.float16)}
STATE_FORMATS = ("float32", "bfloat16", "float16", "int8")
FORMAT_DTYPES = {**PARAM_DTYPES, "int8": None}
# Every params dtype with every state format (float32 with float32 is the plain float32 path).
COMBOS = [(p, s) for p in PARAM_DTYPES for s in STATE_FORMATS if (p, s) != ("float32", "float32")]
# State lists that are never negative: the unsigned 8-bit map (as adamkern.optim keeps them).
UNSIGNED = frozenset({"exp_avg_sqs", "max_exp_avg_sqs", "exp_infs", "square_avgs",
                      "state_sums", "acc_deltas", "exp_avg_vars"})
SHAPES = [(17,), (1,), (0,), (255,), (256,), (257,), (3, 7)]
LARGE_SHAPES = [(70_001,), (1,), (257,)]
LR = 1e-2
ISAS = adamkern.cpu_info()["available_isas"]
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def combo_id(combo):
    return "-".join(combo)


def option_sets(spec):
    """Every switch off (the first grid entry) and every switch on (the last)."""
    return {"plain": spec.options[0], "all": spec.options[-1]}


def used_states(spec, options):
    """The state lists the op reads or writes under ``options`` (the others are not passed)."""
    names = list(spec.states)
    if spec.name == "adam" and not options.get("amsgrad"):
        names.remove("max_exp_avg_sqs")
    if spec.name == "rmsprop":
        if not options.get("momentum"):
            names.remove("momentum_buffers")
        if not options.get("centered"):
            names.remove("grad_avgs")
    if spec.name == "sgd" and not options.get("momentum"):
        names.remove("momentum_buffers")
    return names


# ---------------------------------------------------------------------------------------------
# Formats: NumPy decodings and encodings, bitwise comparisons.


def decode(buffer):
    """float32 values of a buffer in any format (a new array)."""
    if isinstance(buffer, Blockwise8):
        return buffer.dequantize()
    return buffer.astype(np.float32)


def encode(values, fmt, signed=True, key=None):
    """float32 ``values`` in format ``fmt``: round to nearest even, or with ``key`` the
    stochastic rounding of bfloat16 (other formats ignore it)."""
    values = np.asarray(values, np.float32)
    if fmt == "int8":
        return Blockwise8.quantize(values, signed)
    if fmt == "bfloat16" and key is not None:
        return lowp.round_bfloat16(values, key, 0)
    with np.errstate(all="ignore"):
        return values.astype(FORMAT_DTYPES[fmt])


def assert_bits(actual, expected, what):
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        f"{what}: {actual.dtype} {actual.shape} != {expected.dtype} {expected.shape}")
    view = UINT[actual.dtype.itemsize]
    differ = np.flatnonzero(actual.view(view).reshape(-1) != expected.view(view).reshape(-1))
    assert differ.size == 0, (
        f"{what}: {differ.size} of {actual.size} elements differ, first at {differ[0]}: "
        f"{actual.reshape(-1)[differ[0]]!r} != {expected.reshape(-1)[differ[0]]!r}")


def assert_same(actual, expected, what):
    """Bitwise equality of two buffers, or of nested dicts/lists of them."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), what
        for key in expected:
            assert_same(actual[key], expected[key], f"{what}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{what}[{i}]")
    elif isinstance(expected, Blockwise8):
        assert isinstance(actual, Blockwise8), f"{what}: {actual!r} is not Blockwise8"
        assert actual.signed == expected.signed, f"{what}: signed {actual.signed}"
        assert_bits(actual.codes, expected.codes, f"{what}.codes")
        assert_bits(actual.absmax, expected.absmax, f"{what}.absmax")
    elif expected is None:
        assert actual is None, what
    else:
        assert_bits(actual, expected, what)


def arrays_of(value):
    """Every ndarray inside ``value`` (Blockwise8: codes and absmax), for snapshots."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, Blockwise8):
        return [a for a in (value.codes, value.absmax) if isinstance(a, np.ndarray)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in arrays_of(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in arrays_of(v)]
    return []


def snapshot(value):
    return [a.copy() for a in arrays_of(value)]


def assert_unchanged(value, before, what=""):
    arrays = arrays_of(value)
    assert len(arrays) == len(before)
    for i, (a, b) in enumerate(zip(arrays, before)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), f"{what}: array {i} changed"


# ---------------------------------------------------------------------------------------------
# One op's arrays in given formats, and the reference of one step.


class Case:
    """Params (and master params), the state lists ``options`` use in ``state_format`` (8-bit:
    signed or unsigned as the optimizer objects keep them), per-call state, and a grad stream."""

    def __init__(self, spec, shapes, param_dtype, state_format, options, master=False,
                 seed=0):
        self.spec = spec
        self.options = dict(options)
        self.shapes = shapes
        self.param_format = np.dtype(PARAM_DTYPES[param_dtype]).name
        self.state_format = state_format
        self.rng = np.random.default_rng(seed)
        start = [self.rng.standard_normal(s).astype(np.float32) for s in shapes]
        self.master = [a.copy() for a in start] if master else None
        self.params = [encode(a, self.param_format) for a in start]
        self.states = {}
        for name in used_states(spec, options):
            init = spec.states[name]
            self.states[name] = [self.initial_state(s, name, init) for s in shapes]
        self.call_states = {name: make(np.float32) for name, make in spec.call_states.items()}

    def initial_state(self, shape, name, init):
        if self.state_format == "int8":
            return Blockwise8.quantize(np.full(shape, init, np.float32), name not in UNSIGNED)
        return np.full(shape, init, FORMAT_DTYPES[self.state_format])

    def grads(self, scale=1.0):
        return [encode(self.rng.standard_normal(s).astype(np.float32) * np.float32(scale),
                       self.param_format) for s in self.shapes]

    def buffers(self, grads):
        """Everything a step may write, as a nested structure of buffers."""
        return {"params": self.params, "master": self.master, "grads": grads,
                "states": self.states, "call_states": self.call_states}

    def call(self, grads, step, **extra):
        kwargs = {**self.states, **self.call_states, **self.spec.step_kwargs(step),
                  "lr": LR, **self.options, **extra}
        if self.master is not None:
            kwargs["master_params"] = self.master
        self.spec.op(self.params, grads, **kwargs)

    def expected(self, grads, step, seed=None, **extra):
        """The buffers after one step: the float32 op on NumPy-decoded copies, encoded back
        with NumPy (to nearest even, or with seed the documented stochastic rounding)."""
        spec = self.spec
        params32 = ([m.copy() for m in self.master] if self.master is not None
                    else [decode(p) for p in self.params])
        grads32 = [decode(g) for g in grads]
        states32 = {name: [decode(s) for s in arrays] for name, arrays in self.states.items()}
        call_states = {name: a.copy() for name, a in self.call_states.items()}
        spec.op(params32, grads32, **states32, **call_states, **spec.step_kwargs(step),
                **{"lr": LR, **self.options, **extra})

        call_seed = None if seed is None else lowp.call_seed(
            seed, step if spec.takes_step else None)

        def key(tensor, buffer):
            return None if call_seed is None else lowp.rounding_key(call_seed, tensor, buffer)

        order = list(spec.states)
        states = {
            name: [encode(values, self.state_format, name not in UNSIGNED,
                          key(t, 1 + order.index(name)))
                   for t, values in enumerate(arrays)]
            for name, arrays in states32.items()}
        params = [encode(values, self.param_format, key=key(t, 0))
                  for t, values in enumerate(params32)]
        unscaled = extra.get("grad_scale") is not None
        return {"params": params,
                "master": params32 if self.master is not None else None,
                "grads": ([encode(g, self.param_format) for g in grads32] if unscaled
                          else [g.copy() for g in grads]),
                "states": states, "call_states": call_states}


def run_steps(case, steps, seed=None, grad_scale=None, **extra):
    """Steps ``case`` with the op and checks every buffer against the reference each step."""
    precision = {} if seed is None else {"rounding": "stochastic", "seed": seed}
    if grad_scale is not None:
        extra["grad_scale"] = grad_scale
    for step in range(1, steps + 1):
        grads = case.grads(scale=1.0 if grad_scale is None else grad_scale)
        expected = case.expected(grads, step, seed=seed, **extra)
        case.call(grads, step, **extra, **precision)
        assert_same(case.buffers(grads), expected,
                    f"{case.spec.name} {case.param_format} params, {case.state_format} state, "
                    f"{case.options}, step {step}")


# ---------------------------------------------------------------------------------------------
# 1. Every op, every format.


@pytest.mark.parametrize("option_set", ["plain", "all"])
@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_op_is_the_float32_op_on_decoded_values(spec, combo, option_set):
    case = Case(spec, SHAPES, *combo, option_sets(spec)[option_set], seed=1)
    run_steps(case, steps=3)


@pytest.mark.parametrize("combo", [("bfloat16", "bfloat16"), ("float32", "int8")],
                         ids=combo_id)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_large_tensors_split_over_threads_and_blocks(spec, combo):
    adamkern.set_num_threads(2)
    case = Case(spec, LARGE_SHAPES, *combo, spec.options[-1], seed=2)
    run_steps(case, steps=2)


@pytest.mark.parametrize("state_format", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("param_dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_master_params_are_updated_and_params_are_their_rounded_copy(spec, param_dtype,
                                                                     state_format):
    case = Case(spec, SHAPES, param_dtype, state_format, spec.options[-1], master=True,
                seed=3)
    # the master weights carry bits the params do not
    assert any((decode(p) != m).any() for p, m in zip(case.params, case.master))
    run_steps(case, steps=3)


# float32/bfloat16 params with float32/bfloat16 state take the one-pass loop (no span copies)
GRAD_SCALE_COMBOS = [("bfloat16", "bfloat16"), ("float16", "int8"), ("float32", "int8"),
                     ("float32", "bfloat16"), ("bfloat16", "float32"), ("bfloat16", "float16")]


@pytest.mark.parametrize("combo", GRAD_SCALE_COMBOS, ids=combo_id)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_grad_scale_unscales_the_grads_in_their_dtype(spec, combo):
    # 3 is not a power of two: the unscaled grads must be rounded back to their dtype
    case = Case(spec, SHAPES, *combo, spec.options[-1], seed=4)
    run_steps(case, steps=2, grad_scale=3.0, found_inf=0.0)


@pytest.mark.parametrize("combo,master", [
    (combo, master) for combo in GRAD_SCALE_COMBOS for master in (False, True)
    if not (master and combo[0] == "float32")  # master params are for bfloat16/float16
], ids=lambda v: combo_id(v) if isinstance(v, tuple) else ("master" if v else "no_master"))
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_found_inf_changes_nothing(spec, combo, master):
    case = Case(spec, SHAPES, *combo, spec.options[-1], master=master, seed=5)
    case.call(case.grads(), 1)  # state that is not the initial one
    grads = case.grads(scale=3.0)
    before = snapshot(case.buffers(grads))
    for rounding in ("nearest", "stochastic"):
        case.call(grads, 2, grad_scale=3.0, found_inf=1.0, rounding=rounding, seed=9)
        assert_unchanged(case.buffers(grads), before, f"{spec} {combo} found_inf, {rounding}")


# ---------------------------------------------------------------------------------------------
# 2. Stochastic rounding.


SR_COMBOS = [("bfloat16", "bfloat16", False), ("float32", "bfloat16", False),
             ("bfloat16", "int8", True), ("float16", "bfloat16", False),
             ("bfloat16", "float16", False)]


@pytest.mark.parametrize("combo", SR_COMBOS,
                         ids=lambda c: f"{c[0]}-{c[1]}" + ("-master" if c[2] else ""))
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_stochastic_rounding_is_the_documented_hash(spec, combo):
    """Every bfloat16 write (params, state) rounds with the bits of lowp.rounding_bits under
    rounding_key(call_seed(seed, step), tensor, buffer); float16 and 8-bit writes round as
    always."""
    param_dtype, state_format, master = combo
    case = Case(spec, SHAPES + [(600,)], param_dtype, state_format, spec.options[-1],
                master=master, seed=6)
    run_steps(case, steps=3, seed=20240607)


@pytest.mark.parametrize("seed", [0, 2**63 + 12345, 2**64 - 1])
@pytest.mark.parametrize("name", ["adam", "sgd", "lion"])
def test_stochastic_rounding_takes_any_64_bit_seed(name, seed):
    spec = SPECS_BY_NAME[name]
    case = Case(spec, SHAPES, "bfloat16", "bfloat16", spec.options[-1], seed=7)
    run_steps(case, steps=2, seed=seed)


def run_family_member(spec, combo, seed):
    case = Case(spec, [(70_001,), (17,), (257,), (1,)], *combo, spec.options[-1], seed=8)
    for step in (1, 2):
        case.call(case.grads(), step, rounding="stochastic", seed=seed)
    return case.buffers(None)


@pytest.mark.parametrize("combo", [("bfloat16", "bfloat16"), ("bfloat16", "int8"),
                                   ("float16", "bfloat16"), ("float32", "bfloat16"),
                                   ("bfloat16", "float32")], ids=combo_id)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_same_bits_for_any_thread_count_and_isa(spec, combo):
    results = {}
    for isa in ISAS:
        adamkern.set_isa(isa)
        for threads in (1, 2):
            adamkern.set_num_threads(threads)
            results[(isa, threads)] = run_family_member(spec, combo, seed=99)
    (first, expected), *others = results.items()
    for key, buffers in others:
        assert_same(buffers, expected, f"{spec} {combo}: {key} vs {first}")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_quantization_is_the_same_on_every_isa_for_special_values(signed):
    """The 8-bit codes of NaN, signed zeros, subnormals and values across all decades are the
    same bits on every ISA (AVX-512 finds the decade from register tables)."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal(4099) * np.exp(rng.uniform(-25, 0, 4099))).astype(np.float32)
    x[::17], x[5::19], x[7::23], x[9::29] = np.nan, -0.0, 0.0, np.float32(1e-42)
    x[11::31], x[13::37] = -np.inf, np.inf
    results = []
    for isa in ISAS:
        adamkern.set_isa(isa)
        buffer = Blockwise8.zeros(x.size, signed)
        adamkern.sgd_(np.zeros_like(x), x.copy(), buffer, lr=0.0, momentum=0.9,
                      is_first_step=True)
        results.append((isa, buffer.codes.copy(), buffer.absmax.copy()))
    first, codes, absmax = results[0]
    for isa, other_codes, other_absmax in results[1:]:
        assert np.array_equal(other_codes, codes), f"{isa} vs {first}"
        assert np.array_equal(other_absmax.view(np.uint32), absmax.view(np.uint32))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_every_code_decodes_to_its_map_value_times_absmax_on_every_isa(signed):
    """Each of the 256 codes, at every position of a block and in blocks of partial groups,
    decodes to ``map[code] * absmax`` (one float32 product), on every ISA (AVX-512 looks the
    map up by register or byte permutes): SGD with momentum 1 and a zero grad writes
    ``0 - decoded`` into params that start at 0."""
    rng = np.random.default_rng(5)
    size = 5 * 256 + 77  # whole blocks, then a partial block (groups of 64 and 16, a tail)
    codes = np.concatenate([np.arange(256), rng.permutation(256), rng.integers(0, 256, 256),
                            np.arange(255, -1, -1), rng.integers(0, 256, size - 1024)])
    absmax = rng.uniform(0.5, 2.0, Blockwise8.blocks(size)).astype(np.float32)
    table = lowp.dynamic_map(signed)
    expected = np.float32(0.0) - table[codes] * np.repeat(absmax, 256)[:size]
    for isa in ISAS:
        adamkern.set_isa(isa)
        buffer = Blockwise8(codes.astype(np.uint8), absmax.copy(), signed)
        params = np.zeros(size, np.float32)
        adamkern.sgd_(params, np.zeros(size, np.float32), buffer, lr=1.0, momentum=1.0)
        assert_bits(params, expected, f"decoded codes, {isa}")


def stochastic_copies(x, count, seed, rounding="stochastic"):
    """``count`` roundings of the float32 value ``x`` to bfloat16: SGD's first step writes the
    gradient into the (bfloat16) momentum buffer, one random draw per element."""
    params = np.zeros(count, np.float32)
    grads = np.full(count, x, np.float32)
    buffer = np.zeros(count, BF16)
    adamkern.sgd_(params, grads, buffer, lr=0.0, momentum=0.9, is_first_step=True,
                  rounding=rounding, seed=seed)
    return buffer.astype(np.float64)


@pytest.mark.parametrize("x", [1.0 + 0.3 * 2.0**-7, -0.012345, 0.7 * 2.0**-130, 3.0e38],
                         ids=["above_one", "negative", "subnormal", "large"])
def test_stochastic_rounding_is_unbiased(x):
    x32 = np.float32(x)
    bits = int(np.asarray(x32).view(np.uint32))
    toward_zero = np.asarray(bits & 0xFFFF0000, np.uint32).view(np.float32).astype(np.float64)
    away = np.asarray((bits & 0xFFFF0000) + 0x10000, np.uint32).view(np.float32).astype(
        np.float64)
    assert toward_zero != x32 != away
    count = 200_000
    values = stochastic_copies(x32, count, seed=11)
    assert np.all((values == toward_zero) | (values == away)), "not one of the two neighbours"
    # each draw is one of two values: the mean's standard error
    p = (float(x32) - toward_zero) / (away - toward_zero)
    standard_error = abs(away - toward_zero) * np.sqrt(p * (1 - p) / count)
    assert abs(values.mean() - float(x32)) < 5 * standard_error, (values.mean(), float(x32))
    # rounding to nearest is biased by far more than that
    nearest = stochastic_copies(x32, count, seed=11, rounding="nearest")
    assert np.all(nearest == float(x32.astype(BF16)))
    assert abs(nearest.mean() - float(x32)) > 50 * standard_error


def test_stochastic_rounding_of_representable_values_is_exact():
    values = np.array([0.0, -0.0, 1.0, -2.5, 0.15625, np.inf, -np.inf,
                       float(np.float32(3.0).astype(BF16))], np.float32)
    params = np.zeros(values.size, np.float32)
    buffer = np.zeros(values.size, BF16)
    for seed in range(20):
        adamkern.sgd_(params, values.copy(), buffer, lr=0.0, momentum=0.9, is_first_step=True,
                      rounding="stochastic", seed=seed)
        assert_bits(buffer, values.astype(BF16), f"seed {seed}")
    nan = np.full(4, np.nan, np.float32)
    buffer = np.zeros(4, BF16)
    adamkern.sgd_(np.zeros(4, np.float32), nan, buffer, lr=0.0, momentum=0.9,
                  is_first_step=True, rounding="stochastic", seed=3)
    assert np.isnan(buffer.astype(np.float32)).all()


def adam_bits(seed, step=1, rounding="stochastic"):
    spec = SPECS_BY_NAME["adam"]
    case = Case(spec, [(1000,), (300,)], "bfloat16", "bfloat16", spec.options[0], seed=12)
    case.call(case.grads(), step, rounding=rounding, seed=seed)
    return case.buffers(None)


def any_bit_differs(a, b):
    """Whether two nested buffer structures differ somewhere (bitwise)."""
    try:
        assert_same(a, b, "")
    except AssertionError:
        return True
    return False


def test_same_seed_same_bits_other_seed_or_step_other_bits():
    assert not any_bit_differs(adam_bits(5), adam_bits(5))
    assert any_bit_differs(adam_bits(5), adam_bits(6))
    assert any_bit_differs(adam_bits(5, step=1), adam_bits(5, step=2))
    assert any_bit_differs(adam_bits(5), adam_bits(5, rounding="nearest"))
    # most elements of the param round differently under another seed (half of them on
    # average, where the update is not representable)
    a, b = adam_bits(5)["params"][0], adam_bits(6)["params"][0]
    assert 0.2 < np.mean(a.view(np.uint16) != b.view(np.uint16)) < 0.8


def test_ops_without_a_step_draw_from_the_seed_alone():
    """sgd_/rmsprop_/adadelta_/lion_ have no step to mix in: the same seed repeats the bits,
    which is why the optimizer objects pass a new seed every step."""
    def sgd_buffer(seed):
        params = np.zeros(5000, np.float32)
        grads = np.full(5000, 1.0 + 0.5 * 2.0**-7, np.float32)
        buffer = np.zeros(5000, BF16)
        adamkern.sgd_(params, grads, buffer, lr=0.0, momentum=0.9, is_first_step=True,
                      rounding="stochastic", seed=seed)
        return buffer
    assert_bits(sgd_buffer(4), sgd_buffer(4), "same seed")
    assert (sgd_buffer(4).view(np.uint16) != sgd_buffer(5).view(np.uint16)).any()
    key = lowp.rounding_key(lowp.call_seed(4, None), 0, 1)
    expected = lowp.round_bfloat16(np.full(5000, 1.0 + 0.5 * 2.0**-7, np.float32), key, 0)
    assert_bits(sgd_buffer(4), expected, "reference")


def test_tensors_draw_different_bits_and_params_use_buffer_zero():
    """The same value in two tensors of one call rounds with independent bits; a param rounds
    with the key of buffer 0 (each state k with 1 + k: see the reference test above)."""
    x = np.float32(1.0 + 0.5 * 2.0**-7)
    n = 4096
    params = [np.zeros(n, np.float32), np.zeros(n, np.float32)]
    grads = [np.full(n, x), np.full(n, x)]
    buffers = [np.zeros(n, BF16), np.zeros(n, BF16)]
    adamkern.sgd_(params, grads, buffers, lr=0.0, momentum=0.9, is_first_step=True,
                  rounding="stochastic", seed=1)
    assert (buffers[0].view(np.uint16) != buffers[1].view(np.uint16)).any()
    # Adam's first step from p = 1 with g = 1: p = 1 - lr = 1 - 2^-9, halfway between the
    # bfloat16 values 1 - 2^-8 and 1, rounded with the bits of buffer 0 (the param).
    p = np.full(n, 1.0, BF16)
    g = np.full(n, 1.0, BF16)
    m, v = np.zeros(n, BF16), np.zeros(n, BF16)
    adamkern.adam_(p, g, m, v, step=1, lr=2.0**-9, rounding="stochastic", seed=3)
    call_seed = lowp.call_seed(3, 1)
    expected_p = lowp.round_bfloat16(np.full(n, 1.0 - 2.0**-9, np.float32),
                                     lowp.rounding_key(call_seed, 0, 0), 0)
    assert_bits(p, expected_p, "param, buffer 0")
    assert 0.4 < np.mean(p.astype(np.float32) < 1.0) < 0.6


# ---------------------------------------------------------------------------------------------
# 3. Conversions, through an op that copies values: SGD's first step sets the momentum buffer
# to the gradient (b = g), so b = encode(g) in the buffer's format.


def copy_through_sgd(values, buffer):
    """``buffer`` (any state format) after SGD's first step with float32 grads ``values``."""
    params = np.zeros(values.shape, np.float32)
    with np.errstate(all="ignore"):
        adamkern.sgd_(params, values.copy(), buffer, lr=0.0, momentum=0.9, is_first_step=True)
    return buffer


def assert_same_or_both_nan(actual, expected, what):
    a, e = actual.astype(np.float32), expected.astype(np.float32)
    nan = np.isnan(e)
    assert np.array_equal(np.isnan(a), nan), f"{what}: NaN positions differ"
    assert_bits(actual[~nan], expected[~nan], what)


def float32_bit_patterns(rng, count):
    return rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32).view(np.float32)


def bfloat16_test_values(rng):
    upper = rng.integers(0, 2**16, 20_000, dtype=np.uint32) << np.uint32(16)
    ties = np.concatenate([upper | np.uint32(0x8000), upper | np.uint32(0x7FFF),
                           upper | np.uint32(0x8001)])
    subnormals = rng.integers(1, 2**23, 20_000, dtype=np.uint32) | (
        rng.integers(0, 2, 20_000, dtype=np.uint32) << np.uint32(31))
    specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                         0xFFC00001, 0x7F800001, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000,
                         0x7F7F7FFF, 0x7F7E8000, 0x00800000, 0x00008000, 0x00018000,
                         0x00007FFF, 0x3F808000, 0x3F818000], np.uint32)
    return np.concatenate([float32_bit_patterns(rng, 100_000), ties.view(np.float32),
                           subnormals.view(np.float32), specials.view(np.float32),
                           rng.standard_normal(10_000).astype(np.float32)])


def test_bfloat16_round_to_nearest_is_ml_dtypes():
    values = bfloat16_test_values(np.random.default_rng(13))
    buffer = copy_through_sgd(values, np.zeros(values.size, BF16))
    with np.errstate(all="ignore"):
        expected = values.astype(ml_dtypes.bfloat16)
    assert_same_or_both_nan(buffer, expected, "float32 -> bfloat16")
    # the documented cases, spelled out
    cases = {0x7F7FFFFF: 0x7F80, 0x7F7F8000: 0x7F80, 0x7F7E8000: 0x7F7E, 0x3F808000: 0x3F80,
             0x3F818000: 0x3F82, 0x00008000: 0x0000, 0x00018000: 0x0002, 0xFF800000: 0xFF80}
    for bits, half in cases.items():
        value = np.array([bits], np.uint32).view(np.float32)
        out = copy_through_sgd(value, np.zeros(1, BF16)).view(np.uint16)[0]
        assert out == half, f"{bits:#010x} -> {out:#06x}, expected {half:#06x}"


def float16_test_values(rng):
    exponents = rng.integers(127 - 30, 127 + 18, 100_000, dtype=np.uint32)
    mantissas = rng.integers(0, 2**23, 100_000, dtype=np.uint32)
    signs = rng.integers(0, 2, 100_000, dtype=np.uint32) << np.uint32(31)
    in_range = (signs | (exponents << np.uint32(23)) | mantissas).view(np.float32)
    # ties of float16 normals (13 dropped bits = 0x1000) and subnormals (k + 1/2) * 2^-24
    tie_bits = (rng.integers(127 - 14, 127 + 16, 20_000, dtype=np.uint32) << np.uint32(23)) | (
        rng.integers(0, 2**10, 20_000, dtype=np.uint32) << np.uint32(13)) | np.uint32(0x1000)
    k = np.arange(0, 1024, dtype=np.float64)
    subnormal_ties = np.concatenate([(k + 0.5) * 2.0**-24, -(k + 0.5) * 2.0**-24,
                                     (k + 0.25) * 2.0**-24, (k + 0.75) * 2.0**-24])
    specials = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, -65520.0, 65536.0, 1e5,
                         3.4e38, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26,
                         2.0**-14, 2.0**-14 * (1 - 2.0**-11), 6.1e-5, 1.0 + 2.0**-11,
                         1.0 + 3 * 2.0**-11, np.inf, -np.inf, np.nan, -np.nan, 1e-45])
    return np.concatenate([in_range, tie_bits.view(np.float32),
                           subnormal_ties.astype(np.float32), specials.astype(np.float32),
                           float32_bit_patterns(rng, 50_000)])


def test_float16_round_to_nearest_is_numpy():
    values = float16_test_values(np.random.default_rng(14))
    buffer = copy_through_sgd(values, np.zeros(values.size, np.float16))
    with np.errstate(all="ignore"):
        expected = values.astype(np.float16)
    assert_same_or_both_nan(buffer, expected, "float32 -> float16")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_param_writes_round_to_nearest(dtype):
    """Params written from float32 master weights (SGD with lr 0 keeps them) are their
    conversion, 32 at a time by the CPU's own instruction where it has one, element by element
    in lines holding a value that instruction treats otherwise (subnormals, NaN)."""
    rng = np.random.default_rng(16)
    values = bfloat16_test_values(rng) if dtype == "bfloat16" else float16_test_values(rng)
    params = np.zeros(values.size, PARAM_DTYPES[dtype])
    adamkern.sgd_(params, np.zeros_like(params), lr=0.0, master_params=values.copy())
    with np.errstate(all="ignore"):
        expected = values.astype(PARAM_DTYPES[dtype])
    assert_same_or_both_nan(params, expected, f"float32 -> {dtype}")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_decoding_is_exact_for_every_bit_pattern(dtype):
    """Params/grads in ``dtype`` are read exactly: SGD's first step copies every one of the
    65536 grads into a float32 momentum buffer."""
    grads = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(PARAM_DTYPES[dtype])
    params = np.zeros(grads.size, PARAM_DTYPES[dtype])
    buffer = np.zeros(grads.size, np.float32)
    with np.errstate(all="ignore"):
        adamkern.sgd_(params, grads, buffer, lr=0.0, momentum=0.9, is_first_step=True)
    assert_same_or_both_nan(buffer, grads.astype(np.float32), f"{dtype} -> float32")
    # and the grads were not written (no grad_scale)
    assert_bits(grads, np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(
        PARAM_DTYPES[dtype]), "grads")


def decoded_through_sgd(buffer):
    """-decode(buffer) + 0, read back through float32 params: SGD with momentum 1 and
    dampening 1 keeps the buffer (b = b * 1 + g * 0) and steps p = fma(b, -1, 0)."""
    params = np.zeros(buffer.shape, np.float32)
    grads = np.zeros(buffer.shape, np.float32)
    with np.errstate(all="ignore"):
        adamkern.sgd_(params, grads, buffer, lr=1.0, momentum=1.0, dampening=1.0)
    return params


@pytest.mark.parametrize("fmt", ["bfloat16", "float16", "int8-signed", "int8-unsigned"])
def test_state_decoding_is_exact(fmt):
    rng = np.random.default_rng(15)
    if fmt.startswith("int8"):
        size = 70_001
        signed = fmt.endswith("-signed")
        codes = rng.integers(0, 256, size, dtype=np.uint8)
        absmax = (np.exp(rng.uniform(-20, 20, Blockwise8.blocks(size)))).astype(np.float32)
        absmax[:3] = [0.0, 1.0, np.float32(3.4e38)]
        buffer = Blockwise8(codes, absmax, signed)
        values = buffer.dequantize()
    else:
        buffer = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(FORMAT_DTYPES[fmt])
        buffer = buffer.copy()
        values = buffer.astype(np.float32)
    with np.errstate(all="ignore"):
        expected = -values + np.float32(0.0)
    assert_same_or_both_nan(decoded_through_sgd(buffer), expected, f"{fmt} -> float32")


def blockwise_test_values(rng, size=70_001):
    values = rng.standard_normal(size).astype(np.float32)
    blocks = Blockwise8.blocks(size)
    scales = np.exp(rng.uniform(-25, 25, blocks)).astype(np.float32)
    values *= np.repeat(scales, 256)[:size]
    values[256:512] = 0.0                             # an all-zero block
    values[512:768] = 0.0
    values[600] = -3.0                                # one nonzero element, negative
    values[768:1024] = np.abs(values[768:1024])       # the largest magnitude negative
    values[800] = -2 * np.abs(values[768:1024]).max()
    values[1024:1280] = np.float32(1e-37) * rng.standard_normal(256).astype(np.float32)
    values[1280:1536] = np.float32(1e38) * rng.uniform(-3, 3, 256).astype(np.float32)
    values[1536:1792] = np.linspace(-1, 1, 256, dtype=np.float32)
    return values


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_blockwise8_encoding_is_its_numpy_reference(signed):
    values = blockwise_test_values(np.random.default_rng(16))
    buffer = copy_through_sgd(values, Blockwise8.zeros(values.shape, signed))
    expected = Blockwise8.quantize(values, signed)
    assert_same(buffer, expected, "Blockwise8")
    np.testing.assert_array_equal(
        buffer.absmax, np.max(np.abs(np.pad(values, (0, 255 - (values.size - 1) % 256))
                                     ).reshape(-1, 256), axis=1))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_blockwise8_of_blocks_with_a_subnormal_absmax(signed):
    """A block whose absmax is below 1 / FLT_MAX (its reciprocal overflows to inf), as second
    moments of tiny gradients are: the kernel and the NumPy reference agree, without a
    warning from either."""
    rng = np.random.default_rng(31)
    values = np.concatenate([np.float32(1e-40) * rng.standard_normal(256).astype(np.float32),
                             rng.standard_normal(100).astype(np.float32)])
    buffer = copy_through_sgd(values, Blockwise8.zeros(values.shape, signed))
    assert_same(buffer, Blockwise8.quantize(values, signed), "Blockwise8, tiny block")


def test_blockwise8_of_a_multidimensional_array():
    values = np.random.default_rng(17).standard_normal((33, 40)).astype(np.float32)
    buffer = copy_through_sgd(values, Blockwise8.zeros(values.shape, True))
    assert buffer.codes.shape == (33, 40) and buffer.absmax.shape == (6,)
    assert_same(buffer, Blockwise8.quantize(values, True), "Blockwise8 (33, 40)")


# ---------------------------------------------------------------------------------------------
# 4. The dynamic map and its nearest codes.


def bitsandbytes_dynamic_map(torch, signed, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, as published."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    assert additional_items == 0
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_map_is_bitsandbytes(signed):
    torch = pytest.importorskip("torch")
    expected = bitsandbytes_dynamic_map(torch, signed)
    actual = lowp.dynamic_map(signed)
    assert actual.dtype == np.float32 and actual.shape == (256,)
    assert_bits(actual, expected, f"dynamic_map({signed})")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_map_shape(signed):
    values = lowp.dynamic_map(signed).astype(np.float64)
    assert np.all(np.diff(values) > 0)
    assert values[-1] == 1.0
    assert values[0] == (np.float32(-0.99296875) if signed else 0.0)
    assert np.count_nonzero(values == 0) == 1
    zero = int(np.flatnonzero(values == 0)[0])
    assert zero == (127 if signed else 0)
    assert Blockwise8.zeros(3, signed).codes.tolist() == [zero] * 3


def nearest_code_by_brute_force(values, signed):
    """The code of the map value nearest to each of ``values`` (exact distances, float64);
    among equally near ones, the smallest magnitude."""
    table = lowp.dynamic_map(signed).astype(np.float64)
    distance = np.abs(table[None, :] - values.astype(np.float64)[:, None])
    nearest = distance == distance.min(axis=1, keepdims=True)
    magnitude = np.where(nearest, np.abs(table)[None, :], np.inf)
    return np.argmin(magnitude, axis=1).astype(np.uint8)


def float32_midpoints(signed):
    table = lowp.dynamic_map(signed)
    return table[:-1], table[1:], (table[:-1] + table[1:]) * np.float32(0.5)


def in_unit_blocks(values):
    """``values`` (all in [-1, 1]) laid out in blocks whose first element is 1: every block's
    absmax is exactly 1, so the kernel quantizes the values themselves."""
    per_block = 255
    blocks = -(-values.size // per_block)
    padded = np.zeros(blocks * per_block, np.float32)
    padded[:values.size] = values
    return np.concatenate([np.ones((blocks, 1), np.float32),
                           padded.reshape(blocks, per_block)], axis=1).reshape(-1)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_codes_are_the_nearest_map_values(signed):
    rng = np.random.default_rng(18)
    table = lowp.dynamic_map(signed)
    lower, upper, midpoints = float32_midpoints(signed)
    exact_ties = midpoints[(midpoints.astype(np.float64) - lower == upper - midpoints.astype(
        np.float64))]
    assert exact_ties.size > 50
    values = np.concatenate([
        rng.uniform(-1, 1, 30_000).astype(np.float32),
        table, -table, exact_ties, -exact_ties,
        np.nextafter(midpoints, np.float32(2)), np.nextafter(midpoints, np.float32(-2)),
        -np.nextafter(midpoints, np.float32(2)), -np.nextafter(midpoints, np.float32(-2)),
        np.float32(10.0) ** rng.uniform(-9, 0, 5000).astype(np.float32),
        np.array([0.0, -0.0, 1e-45, -1e-45, 1e-8, -1e-8, 1.0, -1.0], np.float32)])
    values = in_unit_blocks(values)
    buffer = copy_through_sgd(values, Blockwise8.zeros(values.shape, signed))
    assert np.all(buffer.absmax == 1.0)
    expected = nearest_code_by_brute_force(values, signed)
    differ = np.flatnonzero(buffer.codes != expected)
    assert differ.size == 0, (
        f"{differ.size} codes are not the nearest, first x={values[differ[0]]!r}: code "
        f"{buffer.codes[differ[0]]} ({table[buffer.codes[differ[0]]]!r}) vs "
        f"{expected[differ[0]]} ({table[expected[differ[0]]]!r})")
    assert_same(buffer, Blockwise8.quantize(values, signed), "NumPy reference")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_codes_at_float32_midpoints_go_toward_zero(signed):
    """At x = (a + b) * 0.5f, bitsandbytes' comparison rule: the code of the map value nearer
    zero (an exact tie, or the midpoint rounded to float32)."""
    lower, upper, midpoints = float32_midpoints(signed)
    toward_zero = np.where(np.abs(lower) <= np.abs(upper), lower, upper)
    table = lowp.dynamic_map(signed)
    values = in_unit_blocks(midpoints)
    buffer = copy_through_sgd(values, Blockwise8.zeros(values.shape, signed))
    codes = buffer.codes.reshape(-1, 256)[:, 1:].reshape(-1)[:midpoints.size]
    assert_bits(table[codes], toward_zero, "codes at the midpoints")


# ---------------------------------------------------------------------------------------------
# 5. The error contract.

ERROR_SHAPES = [(4, 5), (9,), (300,)]


def error_call():
    """A valid adam_ call with bfloat16 params, 8-bit first moments, bfloat16 second moments."""
    rng = np.random.default_rng(19)
    params = [rng.standard_normal(s).astype(BF16) for s in ERROR_SHAPES]
    return {
        "params": params,
        "grads": [rng.standard_normal(s).astype(BF16) for s in ERROR_SHAPES],
        "exp_avgs": [Blockwise8.quantize(rng.standard_normal(s), True) for s in ERROR_SHAPES],
        "exp_avg_sqs": [rng.random(s).astype(BF16) for s in ERROR_SHAPES],
        "step": 3, "lr": 1e-2, "weight_decay": 0.1,
    }


def attempt(error, match, op=adamkern.adam_, **overrides):
    kwargs = {**error_call(), **overrides}
    before = snapshot(kwargs)
    with pytest.raises(error, match=re.escape(match)):
        op(**kwargs)
    assert_unchanged(kwargs, before)


def replaced(arrays, index, value):
    out = list(arrays)
    out[index] = value
    return out


def readonly(array):
    array = array.copy()
    array.flags.writeable = False
    return array


def test_valid_error_call_runs():
    kwargs = error_call()
    kwargs.update(master_params=[p.astype(np.float32) for p in kwargs["params"]],
                  rounding="stochastic", seed=1)
    grads, params = snapshot(kwargs["grads"]), snapshot(kwargs["params"])
    adamkern.adam_(**kwargs)
    assert_unchanged(kwargs["grads"], grads)
    assert all((a.view(np.uint16) != b.view(np.uint16)).any()
               for a, b in zip(kwargs["params"], params))


def test_grads_must_have_the_params_dtype():
    call = error_call()
    attempt(TypeError, "grads[0] has dtype float16 but params[0] has bfloat16",
            grads=[g.astype(np.float16) for g in call["grads"]])
    attempt(TypeError, "grads[0] has dtype float32 but params[0] has bfloat16",
            grads=[g.astype(np.float32) for g in call["grads"]])
    attempt(TypeError, "grads[2] has dtype float16",
            grads=replaced(call["grads"], 2, call["grads"][2].astype(np.float16)))


def test_state_dtypes_of_each_params_dtype():
    call = error_call()
    f32 = [p.astype(np.float32) for p in call["params"]]
    f64 = [p.astype(np.float64) for p in call["params"]]
    attempt(TypeError, "exp_avg_sqs[0] has dtype float64 but params[0] has float32",
            params=f32, grads=[g.astype(np.float32) for g in call["grads"]],
            exp_avg_sqs=[s.astype(np.float64) for s in call["exp_avg_sqs"]])
    attempt(TypeError, "exp_avg_sqs[0] has dtype float64 but params[0] has bfloat16",
            exp_avg_sqs=[s.astype(np.float64) for s in call["exp_avg_sqs"]])
    attempt(TypeError, "exp_avg_sqs[0] has dtype bfloat16 but params[0] has float64",
            params=f64, grads=[g.astype(np.float64) for g in call["grads"]],
            exp_avgs=[np.zeros(s) for s in ERROR_SHAPES])
    attempt(TypeError, "exp_avgs[0].codes has dtype uint8 but params[0] has float64",
            params=f64, grads=[g.astype(np.float64) for g in call["grads"]],
            exp_avg_sqs=[np.zeros(s) for s in ERROR_SHAPES])
    attempt(TypeError, "exp_avg_sqs[0] has dtype uint8",
            exp_avg_sqs=[np.zeros(s, np.uint8) for s in ERROR_SHAPES])
    attempt(TypeError, "exp_avg_sqs[1] has dtype float32 but exp_avg_sqs[0] has bfloat16",
            exp_avg_sqs=replaced(call["exp_avg_sqs"], 1, np.zeros(9, np.float32)))
    attempt(TypeError, "params[0] has dtype int8",
            params=[p.astype(np.int8) for p in call["params"]])


def test_blockwise8_layout():
    call = error_call()
    m = call["exp_avgs"]
    attempt(ValueError, "exp_avgs[2].absmax must be a float32 array of shape (2,)",
            exp_avgs=replaced(m, 2, Blockwise8(m[2].codes, np.zeros(3, np.float32))))
    attempt(ValueError, "exp_avgs[2].absmax must be a float32 array of shape (2,)",
            exp_avgs=replaced(m, 2, Blockwise8(m[2].codes, np.zeros((2, 1), np.float32))))
    attempt(ValueError, "exp_avgs[0].absmax must be a float32 array of shape (1,)",
            exp_avgs=replaced(m, 0, Blockwise8(m[0].codes, np.zeros(1, np.float64))))
    attempt(ValueError, "exp_avgs[1].codes has shape (10,) but params[1] has shape (9,)",
            exp_avgs=replaced(m, 1, Blockwise8(np.zeros(10, np.uint8), m[1].absmax)))
    attempt(ValueError, "exp_avgs[0].codes has shape",
            exp_avgs=replaced(m, 0, Blockwise8(np.zeros(20, np.uint8), m[0].absmax)))
    attempt(TypeError, "exp_avgs[1] has dtype int8 but exp_avgs[0] has uint8",
            exp_avgs=replaced(m, 1, Blockwise8(m[1].codes.view(np.int8), m[1].absmax)))
    attempt(TypeError, "exp_avgs[0].codes has dtype int8",
            exp_avgs=replaced(m, 0, Blockwise8(m[0].codes.view(np.int8), m[0].absmax)))
    attempt(ValueError, "exp_avgs[1].absmax must be contiguous, aligned and writable",
            exp_avgs=replaced(m, 1, Blockwise8(m[1].codes, readonly(m[1].absmax))))
    attempt(ValueError, "exp_avgs[2].codes is read-only",
            exp_avgs=replaced(m, 2, Blockwise8(readonly(m[2].codes), m[2].absmax)))
    attempt(ValueError, "exp_avgs[2].absmax must be contiguous, aligned and writable",
            exp_avgs=replaced(m, 2, Blockwise8(m[2].codes, np.zeros(4, np.float32)[::2])))
    attempt(TypeError, "exp_avgs[0].codes and .absmax must be numpy.ndarray",
            exp_avgs=replaced(m, 0, Blockwise8([0] * 20, m[0].absmax)))


def test_one_format_per_list():
    call = error_call()
    m, v = call["exp_avgs"], call["exp_avg_sqs"]
    attempt(TypeError, "exp_avgs[1] is not blockwise 8-bit but exp_avgs[0] is",
            exp_avgs=replaced(m, 1, np.zeros(9, BF16)))
    attempt(TypeError, "exp_avg_sqs[2] is blockwise 8-bit but exp_avg_sqs[0] is not",
            exp_avg_sqs=replaced(v, 2, Blockwise8.zeros(300, False)))
    attempt(TypeError, "exp_avgs[2] is blockwise 8-bit but exp_avgs[0] is not the same kind",
            exp_avgs=replaced(m, 2, Blockwise8(m[2].codes, m[2].absmax, signed=False)))


def test_master_params_contract():
    call = error_call()
    master = [p.astype(np.float32) for p in call["params"]]
    f32 = [p.astype(np.float32) for p in call["params"]]
    attempt(ValueError, "master_params are for bfloat16 or float16 params, but params[0] has "
            "dtype float32", params=f32, grads=[g.astype(np.float32) for g in call["grads"]],
            master_params=master)
    attempt(ValueError, "master_params are for bfloat16 or float16 params",
            params=[p.astype(np.float64) for p in call["params"]],
            grads=[g.astype(np.float64) for g in call["grads"]],
            exp_avgs=[np.zeros(s) for s in ERROR_SHAPES],
            exp_avg_sqs=[np.zeros(s) for s in ERROR_SHAPES], master_params=master)
    attempt(TypeError, "master_params[1] has dtype float64; master weights are float32",
            master_params=replaced(master, 1, master[1].astype(np.float64)))
    attempt(TypeError, "master_params[0] has dtype bfloat16; master weights are float32",
            master_params=[p.copy() for p in call["params"]])
    attempt(ValueError, "master_params[1] has shape (3, 3) but params[1] has shape (9,)",
            master_params=replaced(master, 1, np.zeros((3, 3), np.float32)))
    attempt(ValueError, "master_params has 2 arrays but params has 3",
            master_params=master[:2])
    attempt(ValueError, "master_params[0] is read-only",
            master_params=replaced(master, 0, readonly(master[0])))
    attempt(ValueError, "master_params[0] is not C-contiguous",
            master_params=replaced(master, 0, np.zeros((5, 4), np.float32).T))
    # the master weights overlapping a float32 state buffer, or each other
    state = [np.zeros(s, np.float32) for s in ERROR_SHAPES]
    attempt(ValueError, "overlap", exp_avg_sqs=state, master_params=replaced(master, 2,
                                                                              state[2]))
    attempt(ValueError, "overlap", master_params=replaced(master, 1, master[0].reshape(-1)[:9]))


def test_overlapping_blockwise8_buffers_are_rejected():
    call = error_call()
    m = call["exp_avgs"]
    unsigned = [Blockwise8.zeros(s, False) for s in ERROR_SHAPES]
    shared_absmax = Blockwise8(unsigned[2].codes, m[2].absmax, False)
    attempt(ValueError, "overlap in memory", exp_avgs=m,
            exp_avg_sqs=replaced(unsigned, 2, shared_absmax))
    shared_codes = Blockwise8(m[2].codes, np.zeros(2, np.float32), False)
    attempt(ValueError, "overlap in memory", exp_avgs=m,
            exp_avg_sqs=replaced(unsigned, 2, shared_codes))
    # an absmax inside its own codes, or inside a param
    memory = np.zeros(320, np.uint8)
    inside_codes = Blockwise8(memory[:300], memory[296:304].view(np.float32), False)
    attempt(ValueError, "overlap", exp_avg_sqs=replaced(unsigned, 2, inside_codes))
    params = call["params"]
    inside_param = Blockwise8(unsigned[2].codes, params[2].reshape(-1)[:4].view(np.float32),
                              False)
    attempt(ValueError, "overlap", params=params,
            exp_avg_sqs=replaced(unsigned, 2, inside_param))


@pytest.mark.parametrize("arguments", [
    {"rounding": "up"}, {"rounding": "Stochastic"}, {"rounding": None},
    {"rounding": "stochastic", "seed": -1}, {"rounding": "stochastic", "seed": 1.5},
    {"rounding": "stochastic", "seed": True}, {"seed": -1},
], ids=repr)
def test_rounding_and_seed_are_checked(arguments):
    match = "rounding must be" if "rounding" in arguments and arguments["rounding"] != (
        "stochastic") else "seed must be a non-negative int"
    attempt(ValueError, match, **arguments)


def test_seed_is_checked_with_master_params():
    call = error_call()
    attempt(ValueError, "seed must be a non-negative int", seed=-1,
            master_params=[p.astype(np.float32) for p in call["params"]])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_op_checks_the_new_arguments(spec):
    """The same contract through every op: a bad state list, master params, rounding."""
    options = spec.options[-1]
    case = Case(spec, [(4, 5), (300,)], "bfloat16", "int8", options, master=True, seed=20)
    grads = case.grads()
    buffers = case.buffers(grads)
    before = snapshot(buffers)
    first = next(iter(case.states))
    bad_lists = {
        TypeError: {first: replaced(case.states[first], 1, np.zeros(300, BF16))},
        ValueError: {"master_params": case.master[:1]},
    }
    kwargs = {**case.states, **case.call_states, **spec.step_kwargs(2), **options}
    for error, override in bad_lists.items():
        with pytest.raises(error):
            spec.op(case.params, grads, **{**kwargs, "master_params": case.master, **override})
        assert_unchanged(buffers, before, f"{spec} {override}")
    with pytest.raises(ValueError, match="rounding must be"):
        spec.op(case.params, grads, **kwargs, rounding="up")
    with pytest.raises(TypeError):
        spec.op(case.params, [g.astype(np.float16) for g in grads], **kwargs)
    assert_unchanged(buffers, before, f"{spec}")


# ---------------------------------------------------------------------------------------------
# 6. The optimizer objects.

# class -> (functional op, its state lists with their initial values, the op's hyperparameters
# for this test, constructor-only arguments)
OBJECTS = {
    "Adam": (adamkern.adam_, {"exp_avgs": 0.0, "exp_avg_sqs": 0.0},
             {"lr": 1e-2, "weight_decay": 0.1}, {}),
    "AdamW": (adamkern.adamw_, {"exp_avgs": 0.0, "exp_avg_sqs": 0.0}, {"lr": 1e-2}, {}),
    "SGD": (adamkern.sgd_, {"momentum_buffers": 0.0},
            {"lr": 1e-2, "momentum": 0.9, "nesterov": True}, {}),
    "RMSprop": (adamkern.rmsprop_, {"square_avgs": 0.0, "momentum_buffers": 0.0,
                                    "grad_avgs": 0.0},
                {"lr": 1e-2, "momentum": 0.9, "centered": True}, {}),
    "Adagrad": (adamkern.adagrad_, {"state_sums": 0.1}, {"lr": 1e-2},
                {"initial_accumulator_value": 0.1}),
    "Yogi": (adamkern.yogi_, {"exp_avgs": 1e-6, "exp_avg_sqs": 1e-6}, {"lr": 1e-2}, {}),
    "LAMB": (adamkern.lamb_, {"exp_avgs": 0.0, "exp_avg_sqs": 0.0},
             {"lr": 1e-2, "weight_decay": 0.01}, {}),
    "NAdam": (adamkern.nadam_, {"exp_avgs": 0.0, "exp_avg_sqs": 0.0}, {"lr": 1e-2}, {}),
    "Adan": (adamkern.adan_, {"exp_avgs": 0.0, "exp_avg_diffs": 0.0, "exp_avg_sqs": 0.0,
                              "prev_grads": 0.0}, {"lr": 1e-2, "weight_decay": 0.02}, {}),
}
# op keyword of a state list -> its name in opt.state[i] (torch's)
STATE_NAMES = {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq", "square_avgs": "square_avg",
               "momentum_buffers": "momentum_buffer", "grad_avgs": "grad_avg",
               "state_sums": "sum", "exp_avg_diffs": "exp_avg_diff", "prev_grads": "prev_grad"}
OBJECT_SHAPES = [(3, 7), (1,), (257,), (40, 10)]
NO_STEP = {"SGD", "RMSprop"}


def object_params(param_dtype, seed=21):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(PARAM_DTYPES[param_dtype]) for s in OBJECT_SHAPES]


def object_grads(rng, params):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


class ByHand:
    """A class's functional op driven by hand, with the state the object should keep."""

    def __init__(self, kind, params, state_dtype, master_weights):
        self.kind = kind
        self.op, inits, self.hyper, _ = OBJECTS[kind]
        self.params = [p.copy() for p in params]
        self.master = [p.astype(np.float32) for p in params] if master_weights else None
        self.states = {}
        for name, init in inits.items():
            if state_dtype == "int8":
                self.states[name] = [Blockwise8.quantize(np.full(p.shape, init, np.float32),
                                                         name not in UNSIGNED) for p in params]
            else:
                dtype = BF16 if state_dtype == "bfloat16" else np.float32
                self.states[name] = [np.full(p.shape, init, dtype) for p in params]
        self.mu_product = np.ones(1, np.float32)
        self.t = 0

    def step(self, grads):
        self.t += 1
        kwargs = dict(self.hyper)
        if self.kind not in NO_STEP:
            kwargs["step"] = self.t
        if self.kind == "SGD":
            kwargs["is_first_step"] = self.t == 1
        if self.kind == "NAdam":
            kwargs["mu_product"] = self.mu_product
        if self.master is not None:
            kwargs["master_params"] = self.master
        self.op(self.params, [g.copy() for g in grads], **self.states, **kwargs)


def make_object(kind, params, **kwargs):
    _, _, hyper, extra = OBJECTS[kind]
    return getattr(adamkern.optim, kind)(params, **hyper, **extra, **kwargs)


def assert_object_matches(opt, params, ref, what):
    assert_same(params, ref.params, f"{what}: params")
    for i in range(len(params)):
        for name, arrays in ref.states.items():
            assert_same(opt.state[i][STATE_NAMES[name]], arrays[i],
                        f"{what}: state[{i}][{STATE_NAMES[name]!r}]")
        if ref.master is not None:
            assert_same(opt.state[i]["master"], ref.master[i], f"{what}: master {i}")
        else:
            assert "master" not in opt.state[i]
    if ref.kind == "NAdam":
        assert_same(np.asarray(opt.group_state[0]["mu_product"]).reshape(-1), ref.mu_product,
                    f"{what}: mu_product")


OBJECT_FORMATS = ([(p, s, False) for p in PARAM_DTYPES for s in lowp.STATE_DTYPES]
                  + [(p, s, True) for p in ("bfloat16", "float16") for s in lowp.STATE_DTYPES])


@pytest.mark.parametrize("formats", OBJECT_FORMATS,
                         ids=lambda f: f"{f[0]}-{f[1]}" + ("-master" if f[2] else ""))
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_object_is_the_op_with_the_same_state_formats(kind, formats):
    param_dtype, state_dtype, master_weights = formats
    params = object_params(param_dtype)
    ref = ByHand(kind, params, state_dtype, master_weights)
    opt = make_object(kind, params, state_dtype=state_dtype, master_weights=master_weights)
    assert opt.state_dtype == state_dtype and opt.master_weights == master_weights
    rng = np.random.default_rng(22)
    for t in range(1, 4):
        grads = object_grads(rng, params)
        opt.step([g.copy() for g in grads])
        ref.step(grads)
        assert_object_matches(opt, params, ref, f"{kind} {formats} step {t}")


@pytest.mark.parametrize("state_dtype", lowp.STATE_DTYPES)
@pytest.mark.parametrize("kind", list(OBJECTS))
def test_object_state_types(kind, state_dtype):
    params = object_params("bfloat16")
    opt = make_object(kind, params, state_dtype=state_dtype, master_weights=True)
    opt.step(object_grads(np.random.default_rng(23), params))
    signed = {STATE_NAMES[name]: name not in UNSIGNED for name in OBJECTS[kind][1]}
    for i, p in enumerate(params):
        assert set(opt.state[i]) == set(signed) | {"master"}
        master = opt.state[i]["master"]
        assert master.dtype == np.float32 and master.shape == p.shape
        assert not np.shares_memory(master, p)
        for name, is_signed in signed.items():
            value = opt.state[i][name]
            if state_dtype == "int8":
                assert isinstance(value, Blockwise8), (name, value)
                assert value.signed == is_signed, f"{kind} {name}: signed {value.signed}"
                assert value.codes.dtype == np.uint8 and value.codes.shape == p.shape
                assert value.absmax.dtype == np.float32
                assert value.absmax.shape == (Blockwise8.blocks(p.size),)
            else:
                assert isinstance(value, np.ndarray) and value.shape == p.shape
                assert value.dtype == (BF16 if state_dtype == "bfloat16" else np.float32)


@pytest.mark.parametrize("master_weights", [False, True])
@pytest.mark.parametrize("state_dtype", lowp.STATE_DTYPES)
def test_state_nbytes(state_dtype, master_weights):
    params = object_params("bfloat16")
    opt = adamkern.optim.Adam(params, state_dtype=state_dtype, master_weights=master_weights)
    assert opt.state_nbytes() == 0  # allocated at the first step
    opt.step(object_grads(np.random.default_rng(24), params))
    sizes = [p.size for p in params]
    n = sum(sizes)
    per_buffer = {"float32": 4 * n, "bfloat16": 2 * n,
                  "int8": n + 4 * sum(-(-s // 256) for s in sizes)}[state_dtype]
    assert opt.state_nbytes() == 2 * per_buffer + (4 * n if master_weights else 0)


def test_state_nbytes_per_param_for_a_large_tensor():
    n = 1_000_003
    for state_dtype, expected in (("float32", 8.0), ("bfloat16", 4.0),
                                  ("int8", 2 + 8 * (-(-n // 256)) / n)):
        params = [np.zeros(n, BF16)]
        opt = adamkern.optim.AdamW(params, state_dtype=state_dtype)
        opt.step([np.zeros(n, BF16)])
        assert opt.state_nbytes() / n == pytest.approx(expected, rel=1e-12)


def run_object(opt, params, grads_list):
    for grads in grads_list:
        opt.step([g.copy() for g in grads])


def object_state(opt, params):
    return {"params": [p.copy() for p in params],
            "state": [{k: v.copy() for k, v in s.items()} for s in opt.state],
            "group_state": [{k: np.array(v, copy=True) for k, v in s.items()}
                            for s in opt.group_state]}


@pytest.mark.parametrize("via", ["state_dict", "npz"])
@pytest.mark.parametrize("formats", [("bfloat16", "int8", False), ("bfloat16", "bfloat16", True),
                                     ("float32", "int8", False), ("float16", "int8", True),
                                     ("bfloat16", "bfloat16", False)],
                         ids=lambda f: f"{f[0]}-{f[1]}" + ("-master" if f[2] else ""))
@pytest.mark.parametrize("kind", ["Adam", "NAdam", "SGD", "Adan"])
def test_resume_is_bit_for_bit(kind, formats, via, tmp_path):
    param_dtype, state_dtype, master_weights = formats
    rng = np.random.default_rng(25)
    params = object_params(param_dtype)
    grads = [object_grads(rng, params) for _ in range(4)]
    settings = {"state_dtype": state_dtype, "master_weights": master_weights}
    opt = make_object(kind, params, **settings)
    run_object(opt, params, grads[:2])
    resumed_params = [p.copy() for p in params]
    resumed = make_object(kind, resumed_params, **settings)
    if via == "npz":
        opt.save(tmp_path / "checkpoint.npz")
        resumed.load(tmp_path / "checkpoint.npz")
    else:
        resumed.load_state_dict(opt.state_dict())
    assert resumed.step_count == 2
    assert_same(object_state(resumed, resumed_params), object_state(opt, params), "loaded")
    run_object(opt, params, grads[2:])
    run_object(resumed, resumed_params, grads[2:])
    assert_same(object_state(resumed, resumed_params), object_state(opt, params), "resumed")


@pytest.mark.parametrize("pair", [("float32", "int8"), ("int8", "bfloat16"),
                                  ("bfloat16", "float32"), ("int8", "float32")],
                         ids=combo_id)
def test_checkpoint_of_another_state_dtype_is_rejected(pair, tmp_path):
    saved_dtype, own_dtype = pair
    rng = np.random.default_rng(26)
    params = object_params("bfloat16")
    grads = object_grads(rng, params)
    other = adamkern.optim.Adam([p.copy() for p in params], state_dtype=saved_dtype)
    other.step([g.copy() for g in grads])
    other.save(tmp_path / "other.npz")
    opt = adamkern.optim.Adam(params, state_dtype=own_dtype)
    opt.step([g.copy() for g in grads])
    before = snapshot(object_state(opt, params))
    with pytest.raises(ValueError, match="state_dtype"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="state_dtype"):
        opt.load(tmp_path / "other.npz")
    assert_unchanged(object_state(opt, params), before)
    assert opt.step_count == 1 and opt.state_dtype == own_dtype


def test_checkpoint_with_master_weights_needs_master_weights():
    params = object_params("bfloat16")
    grads = object_grads(np.random.default_rng(27), params)
    with_master = adamkern.optim.Adam([p.copy() for p in params], master_weights=True)
    with_master.step([g.copy() for g in grads])
    opt = adamkern.optim.Adam(params)
    opt.step([g.copy() for g in grads])
    before = snapshot(object_state(opt, params))
    with pytest.raises(ValueError, match="master_weights"):
        opt.load_state_dict(with_master.state_dict())
    assert_unchanged(object_state(opt, params), before)


def test_checkpoint_with_a_wrong_blockwise8_buffer_is_rejected():
    params = object_params("bfloat16")
    grads = object_grads(np.random.default_rng(28), params)
    other = adamkern.optim.Adam([p.copy() for p in params], state_dtype="int8")
    other.step([g.copy() for g in grads])
    opt = adamkern.optim.Adam(params, state_dtype="int8")
    opt.step([g.copy() for g in grads])
    before = snapshot(object_state(opt, params))
    sd = other.state_dict()
    sd["state"][3]["exp_avg_sq"] = Blockwise8(sd["state"][3]["exp_avg_sq"].codes,
                                              sd["state"][3]["exp_avg_sq"].absmax, signed=True)
    with pytest.raises(ValueError, match="blockwise 8-bit"):
        opt.load_state_dict(sd)
    sd = other.state_dict()
    sd["state"][2]["exp_avg"] = Blockwise8(sd["state"][2]["exp_avg"].codes,
                                           np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="blockwise 8-bit"):
        opt.load_state_dict(sd)
    assert_unchanged(object_state(opt, params), before)


@pytest.mark.parametrize("state_dtype", ["int8", "bfloat16"])
def test_float64_params_keep_float64_state(state_dtype):
    with pytest.raises(ValueError, match="float64"):
        adamkern.optim.Adam([np.zeros(3)], state_dtype=state_dtype)
    with pytest.raises(ValueError, match="float64"):
        lowp.state_zeros(np.zeros(3), state_dtype)
    assert lowp.state_zeros(np.zeros(3), "float32").dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_master_weights_are_for_low_precision_params(dtype):
    with pytest.raises(ValueError, match="master_weights"):
        adamkern.optim.AdamW([np.zeros(3, dtype)], master_weights=True)
    with pytest.raises(ValueError, match="master_weights"):
        adamkern.optim.AdamW([np.zeros(3, BF16), np.zeros(3, dtype)], master_weights=True)


@pytest.mark.parametrize("state_dtype,name", [
    ("float32", "float32"), ("bfloat16", "bfloat16"), ("int8", "int8"),
    (np.float32, "float32"), (np.dtype(np.float32), "float32"),
    (ml_dtypes.bfloat16, "bfloat16"), (BF16, "bfloat16"),
], ids=repr)
def test_state_dtype_accepts_names_and_dtypes(state_dtype, name):
    opt = adamkern.optim.Adam([np.zeros(3, BF16)], state_dtype=state_dtype)
    assert opt.state_dtype == name
    assert lowp.state_dtype_name(state_dtype) == name


@pytest.mark.parametrize("state_dtype", ["float16", np.float16, "int4", "uint8", np.uint8,
                                         "float64", np.float64, None, 8],
                         ids=repr)
def test_state_dtype_rejects_others(state_dtype):
    with pytest.raises(ValueError, match="state_dtype must be one of"):
        adamkern.optim.Adam([np.zeros(3, np.float32)], state_dtype=state_dtype)


@pytest.mark.parametrize("arguments", [{"rounding": "up"}, {"seed": -1}, {"seed": 1.5}],
                         ids=repr)
def test_object_rejects_bad_rounding_and_seed(arguments):
    with pytest.raises(ValueError):
        adamkern.optim.Adam([np.zeros(3, BF16)], **arguments)


def stochastic_run(kind, seed, state_dtype="bfloat16", rounding="stochastic"):
    params = object_params("bfloat16", seed=29)
    opt = make_object(kind, params, state_dtype=state_dtype, rounding=rounding, seed=seed)
    run_object(opt, params, [object_grads(np.random.default_rng(30), params)
                             for _ in range(3)])
    return object_state(opt, params)


@pytest.mark.parametrize("state_dtype", ["bfloat16", "int8"])
@pytest.mark.parametrize("kind", ["Adam", "SGD", "RMSprop", "Adan"])
def test_stochastic_rounding_objects_are_reproducible(kind, state_dtype):
    first = stochastic_run(kind, 7, state_dtype)
    assert_same(stochastic_run(kind, 7, state_dtype), first, f"{kind} seed 7 twice")
    assert any_bit_differs(stochastic_run(kind, 8, state_dtype), first)
    assert any_bit_differs(stochastic_run(kind, 7, state_dtype, rounding="nearest"), first)


def test_stochastic_rounding_objects_draw_new_bits_every_step():
    """SGD's op has no step: the object must still not round one step with the bits of the
    previous one. Each param is 1 - 2^-9 before rounding, halfway between two bfloat16 values;
    a param that stayed at 1 in step 1 drew bits that keep it there, and would again with the
    same bits."""
    params = [np.full(4096, 1.0, BF16)]
    opt = adamkern.optim.SGD(params, lr=2.0**-10, rounding="stochastic", seed=3)
    opt.step([np.full(4096, 2.0, BF16)])
    stayed = params[0].astype(np.float32) == 1.0
    assert 0.3 < stayed.mean() < 0.7
    opt.step([np.full(4096, 2.0, BF16)])
    moved = params[0].astype(np.float32) < 1.0
    assert 0.3 < moved[stayed].mean() < 0.7


# -- the roofline of each storage mode (the benchmark's bandwidth limit) ----------------------

_ROOFLINE_MODES = [  # params, state, master weights
    ("float32", "bfloat16", False), ("float32", "int8", False), ("bfloat16", "bfloat16", False),
    ("bfloat16", "float32", True), ("float16", "float32", True), ("bfloat16", "int8", False),
]


def _bits(a):
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


@pytest.mark.parametrize("param_dtype, state_dtype, master", _ROOFLINE_MODES)
def test_roofline_moves_the_streams_of_each_storage_mode(param_dtype, state_dtype, master):
    """p <- p ^ g, m <- v, v <- m + p and master <- master + p on the raw bits (8-bit codes,
    and their absmax + 1): every stream the mode's update reads is read and every one it
    writes is written, in the mode's storage."""
    rng = np.random.default_rng(7)
    size = 3 * lowp.BLOCK_SIZE + 5
    dtype = {"float32": np.float32, "bfloat16": lowp.bfloat16(), "float16": np.float16}
    p = rng.standard_normal(size).astype(dtype[param_dtype])
    g = rng.standard_normal(size).astype(dtype[param_dtype])
    m, v = (lowp.state_zeros(p.astype(np.float32), state_dtype, signed=s) for s in (True, False))
    if state_dtype == "int8":
        m.codes[:] = rng.integers(0, 256, size, dtype=np.uint8)
        v.codes[:] = rng.integers(0, 256, size, dtype=np.uint8)
    else:
        m[:], v[:] = rng.standard_normal((2, size)).astype(m.dtype)
    w = rng.standard_normal(size).astype(np.float32) if master else None
    before = [_bits(x).copy() for x in (p, g)]
    states = [x.codes if state_dtype == "int8" else x for x in (m, v)]
    state_before = [_bits(x).astype(np.uint64) for x in states]
    absmax_before = [x.absmax.copy() for x in (m, v)] if state_dtype == "int8" else []
    w_before = None if w is None else _bits(w).copy()
    adamkern._core.roofline_([p], [g], [m], [v], None if w is None else [w])
    wide = before[0].astype(np.uint64)
    np.testing.assert_array_equal(_bits(p), before[0] ^ before[1])
    np.testing.assert_array_equal(_bits(g), before[1])
    mask = (1 << 8 * states[0].dtype.itemsize) - 1
    np.testing.assert_array_equal(_bits(states[0]), state_before[1].astype(_bits(states[0]).dtype))
    np.testing.assert_array_equal(_bits(states[1]).astype(np.uint64),
                                  (state_before[0] + wide) & mask)
    for x, a in zip((m, v), absmax_before):
        np.testing.assert_array_equal(x.absmax, a + 1)
    if w is not None:
        np.testing.assert_array_equal(_bits(w),
                                      (w_before.astype(np.uint64) + wide).astype(np.uint32))


def test_roofline_refuses_what_the_update_refuses_and_writes_nothing():
    p = np.zeros(300, lowp.bfloat16())
    m = lowp.state_zeros(p.astype(np.float32), "int8")
    before = m.codes.copy()
    with pytest.raises(ValueError, match="exp_avg_sqs"):
        adamkern._core.roofline_([p], [p.copy()], [m], [m])  # one buffer twice
    with pytest.raises(ValueError, match="master_params"):
        adamkern._core.roofline_([np.zeros(3, np.float32)], [np.zeros(3, np.float32)],
                                 [np.zeros(3, np.float32)], [np.zeros(3, np.float32)],
                                 [np.zeros(3, np.float32)])
    np.testing.assert_array_equal(m.codes, before)
