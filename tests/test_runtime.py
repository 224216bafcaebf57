"""Dispatch and threading: every ISA and thread count gives the same bits; the GIL is released."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import DTYPES, AdamState, assert_bitwise_equal

import adamkern

ISAS = adamkern.cpu_info()["available_isas"]
# Many small tensors, odd sizes and a large one: threads split inside and across tensors.
SHAPES = [(1,), (15,), (16,), (17,), (3, 7), (100003,), (40000,), (0,), (262147,)]


def step_all(state, steps=3, **options):
    for step in range(1, steps + 1):
        adamkern.adam_(state.params, state.grads(), state.exp_avgs, state.exp_avg_sqs,
                       step=step, lr=1e-2, weight_decay=0.1, amsgrad=True,
                       max_exp_avg_sqs=state.max_exp_avg_sqs, **options)
    return state.arrays()


def test_cpu_info_reports_the_dispatch():
    info = adamkern.cpu_info()
    assert info["isa"] in info["available_isas"]
    assert info["available_isas"][0] == "baseline"
    assert set(info["available_isas"]) <= set(info["compiled_isas"])
    assert info["isa"] == info["available_isas"][-1] or os.environ.get("ADAMKERN_ISA")
    assert info["num_threads"] == adamkern.get_num_threads() >= 1
    assert "-ffp-contract=off" in info["common_flags"]
    assert "-march=native" not in " ".join([info["common_flags"], *info["isa_flags"].values()])
    if "avx512" in info["compiled_isas"]:
        assert "-mavx512f" in info["isa_flags"]["avx512"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoupled", [False, True])
def test_every_isa_gives_identical_bits(dtype, decoupled):
    results = {}
    for isa in ISAS:
        adamkern.set_isa(isa)
        results[isa] = step_all(AdamState(SHAPES, dtype), decoupled_weight_decay=decoupled,
                                maximize=decoupled)
    for isa in ISAS[1:]:
        for i, (a, b) in enumerate(zip(results[isa], results[ISAS[0]])):
            assert_bitwise_equal(a, b, f"{isa} vs {ISAS[0]}, array {i}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_counts_give_identical_bits(dtype):
    results = []
    for threads in (1, 2, 3):
        adamkern.set_num_threads(threads)
        results.append(step_all(AdamState(SHAPES, dtype)))
    for other in results[1:]:
        for i, (a, b) in enumerate(zip(other, results[0])):
            assert_bitwise_equal(a, b, f"array {i}")


@pytest.mark.parametrize("offset", range(0, 16))
def test_alignment_peeling_any_offset(offset):
    # Streams at every offset modulo 64 bytes, shared or not, give the same bits as aligned ones.
    size = 70001
    def buffers(shift):
        base = AdamState([(size,)], np.float32)
        out = []
        for k, a in enumerate(base.params + base.exp_avgs + base.exp_avg_sqs):
            raw = np.zeros(size + 32, np.float32)
            start = (shift + 3 * k) % 16 if shift else 0
            view = raw[start:start + size]
            view[...] = a
            out.append(view)
        return out
    grads = AdamState([(size,)], np.float32, seed=5).grads()
    results = []
    for shift in (0, offset):
        p, m, v = buffers(shift)
        adamkern.set_num_threads(2)
        adamkern.adam_(p, grads[0].copy(), m, v, step=1)
        adamkern.adam_(p, grads[0].copy(), m, v, step=2)
        results.append((p, m, v))
    for a, b in zip(*results):
        assert_bitwise_equal(a, b)


def _second_moments(dtype) -> np.ndarray:
    """Every float32 mantissa of [1, 2) (float64: 2^22 random ones), then zero, infinity, NaN
    and the smallest subnormal."""
    if dtype == np.float32:
        v = (np.arange(1 << 23, dtype=np.uint32) + np.uint32(0x3F800000)).view(np.float32)
    else:
        mantissas = np.random.default_rng(0).integers(0, 1 << 52, 1 << 22, dtype=np.uint64)
        v = (mantissas | np.uint64(0x3FF0000000000000)).view(np.float64)
    specials = [0.0, np.inf, np.nan, np.finfo(dtype).smallest_subnormal]
    return np.concatenate([v, np.array(specials, dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step, beta2", [(1, 0.999), (9, 0.95), (2, 1 - 1e-12)])
def test_the_bias_correction_division_has_the_bits_of_a_division(dtype, step, beta2):
    """sqrt(v) / sqrt(1 - beta2^step), which the fma ISAs compute by a multiply and two fmas
    (math/common.hpp's divide), on every ISA against NumPy's division: with a zero
    param and a zero grad, the new param is exactly (-lr/bias_correction1 * m) / that
    quotient (eps, the smallest subnormal, is lost in any sum but v = 0's)."""
    v = _second_moments(dtype)
    options = dict(step=step, betas=(0.9, beta2), eps=float(np.finfo(dtype).smallest_subnormal),
                   lr=1.0)
    expected = None
    for isa in ISAS:
        adamkern.set_isa(isa)
        arrays = [np.zeros_like(v), np.zeros_like(v), np.ones_like(v), v.copy()]
        adamkern.adam_(*arrays, **options)
        if expected is None:
            expected = [np.zeros_like(v), np.zeros_like(v), np.ones_like(v), v.copy()]
            with np.errstate(over="ignore", invalid="ignore"):  # v = 0, NaN
                adamkern.reference.adam(*[[a] for a in expected], **options)
            assert np.unique(expected[0]).size > v.size // 4  # the quotients differ
        for name, a, b in zip(("param", "grad", "exp_avg", "exp_avg_sq"), arrays, expected):
            assert_bitwise_equal(a, b, f"{isa}: {name}")


def test_list_call_equals_one_call_per_tensor():
    a = AdamState(SHAPES, np.float32)
    b = a.copy()
    grads = a.grads()
    adamkern.adam_(a.params, [g.copy() for g in grads], a.exp_avgs, a.exp_avg_sqs, step=1)
    for i in range(len(SHAPES)):
        adamkern.adam_(b.params[i], grads[i].copy(), b.exp_avgs[i], b.exp_avg_sqs[i], step=1)
    for x, y in zip(a.arrays(), b.arrays()):
        assert_bitwise_equal(x, y)


@pytest.mark.parametrize("isa", ISAS)
def test_adamkern_isa_environment_variable(isa):
    code = ("import json, adamkern; print(json.dumps(adamkern.cpu_info()['isa']))")
    env = dict(os.environ, ADAMKERN_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == isa


def test_bad_adamkern_isa_fails_the_import_clearly():
    env = dict(os.environ, ADAMKERN_ISA="avx1024")
    out = subprocess.run([sys.executable, "-c", "import adamkern"], env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "unknown ISA 'avx1024'" in out.stderr


def test_gil_is_released_two_python_threads_match_serial():
    shapes = [(300007,), (1000,), (5, 5)]
    serial = [AdamState(shapes, np.float32, seed=s) for s in (1, 2)]
    threaded = [s.copy() for s in serial]
    grads = [[s.grads() for _ in range(5)] for s in serial]

    def run(state, grad_steps):
        for step, gs in enumerate(grad_steps, start=1):
            adamkern.adamw_(state.params, [g.copy() for g in gs], state.exp_avgs,
                            state.exp_avg_sqs, step=step)

    for state, gs in zip(serial, grads):
        run(state, gs)
    workers = [threading.Thread(target=run, args=(state, gs)) for state, gs in zip(threaded, grads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for a, b in zip(serial, threaded):
        for x, y in zip(a.arrays(), b.arrays()):
            assert_bitwise_equal(x, y)


def test_common_value_and_fill_values():
    """The step-count helpers of adamkern.torch's steady step: the value every one-element
    float32/float64 array holds (None where they differ or it is NaN), and a write into all of
    them that checks every array before it writes any."""
    from adamkern import _core

    counts = [np.zeros((), np.float32), np.zeros(1, np.float64), np.zeros((1, 1), np.float32)]
    assert _core.common_value(counts) == 0.0 and _core.common_value([]) is None
    _core.fill_values_(counts, 7.0)
    assert [c.item() for c in counts] == [7.0] * 3 and _core.common_value(counts) == 7.0
    counts[1][0] = 6.0
    assert _core.common_value(counts) is None
    assert _core.common_value([np.full((), np.nan, np.float32)]) is None
    read_only = np.zeros((), np.float32)
    read_only.flags.writeable = False
    bad_arrays = [([np.zeros(2, np.float32)], TypeError), ([np.zeros((), np.int64)], TypeError),
                  ([1.0], TypeError), ([read_only], ValueError)]
    for bad, error in bad_arrays:
        if error is TypeError:
            with pytest.raises(TypeError, match="expected"):
                _core.common_value([counts[0], *bad])
        with pytest.raises(error, match="expected"):
            _core.fill_values_([counts[0], *bad], 1.0)
        assert float(counts[0]) == 7.0  # nothing written
