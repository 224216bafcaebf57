"""The error contract: every bad input raises the documented exception, naming the argument,
and leaves every array of the call unchanged (including arrays earlier in the lists)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import AdamState, assert_unchanged, snapshot

import adamkern


def make(n_tensors=3, dtype=np.float32):
    state = AdamState([(33,), (4, 5), (1000,)][:n_tensors], dtype)
    grads = state.grads()
    return state, grads


def call(state, default_grads, /, **overrides):
    kwargs = dict(params=state.params, grads=default_grads, exp_avgs=state.exp_avgs,
                  exp_avg_sqs=state.exp_avg_sqs, step=1)
    kwargs.update(overrides)
    params, grads, exp_avgs, exp_avg_sqs = (kwargs.pop(k) for k in
                                            ("params", "grads", "exp_avgs", "exp_avg_sqs"))
    adamkern.adam_(params, grads, exp_avgs, exp_avg_sqs, **kwargs)


def expect_error(exception, match, mutate=None, /, **overrides):
    state, grads = make()
    if mutate is not None:
        mutate(state, grads)
    arrays = state.arrays() + grads
    before = snapshot(arrays)
    with pytest.raises(exception, match=match):
        call(state, grads, **overrides)
    assert_unchanged(arrays, before)


@pytest.mark.parametrize("name,value,match", [
    ("lr", -1e-3, r"lr must be a finite number >= 0, got -0.001"),
    ("lr", float("nan"), r"lr must be"),
    ("lr", float("inf"), r"lr must be"),
    ("betas", (1.0, 0.999), r"betas\[0\] must be in \[0, 1\), got 1"),
    ("betas", (-0.1, 0.999), r"betas\[0\] must be in \[0, 1\)"),
    ("betas", (0.9, 1.5), r"betas\[1\] must be in \[0, 1\), got 1.5"),
    ("betas", (0.9, float("nan")), r"betas\[1\] must be"),
    ("betas", (0.9,), r"betas must be a pair"),
    ("eps", 0.0, r"eps must be a finite number > 0, got 0"),
    ("eps", -1e-8, r"eps must be"),
    ("eps", float("inf"), r"eps must be"),
    ("weight_decay", -0.01, r"weight_decay must be a finite number >= 0"),
    ("weight_decay", float("nan"), r"weight_decay must be"),
    ("step", 0, r"step must be a whole number >= 1"),
    ("step", 1.5, r"step must be a whole number >= 1 \(the step count after increment\), got 1.5"),
    ("step", -3, r"step must be"),
    ("step", float("nan"), r"step must be"),
    ("grad_scale", 0.0, r"grad_scale must be a finite number > 0"),
    ("grad_scale", float("inf"), r"grad_scale must be"),
    ("grad_scale", np.ones(2, np.float32), r"grad_scale must hold one value"),
    ("found_inf", np.ones(3, np.float32), r"found_inf must hold one value"),
])
def test_hyperparameters_out_of_range(name, value, match):
    expect_error(ValueError, match, **{name: value})


def test_amsgrad_without_max_exp_avg_sqs():
    expect_error(ValueError, r"amsgrad=True needs max_exp_avg_sqs", amsgrad=True)


def test_non_array_inputs():
    state, grads = make()
    expect_error(TypeError, r"grads must be a numpy.ndarray, a CPU torch.Tensor or a list/tuple "
                 r"of them, got int", grads=3)
    expect_error(TypeError, r"grads\[1\] must be a numpy.ndarray or a CPU torch.Tensor, got list",
                 grads=[grads[0], [1.0] * 20, grads[2]])
    expect_error(TypeError, r"found_inf must be None, a real number", found_inf="yes")


@pytest.mark.parametrize("dtype", [np.int32, np.complex64, ">f4"])
def test_wrong_dtype(dtype):
    def mutate(state, grads):
        state.params[0] = state.params[0].astype(dtype)
    expect_error(TypeError, r"params\[0\] has dtype .*; expected float32, float64, bfloat16 or "
                 r"float16", mutate)


def test_low_precision_param_needs_low_precision_grad():
    def mutate(state, grads):
        state.params[0] = state.params[0].astype(np.float16)
    expect_error(TypeError, r"grads\[0\] has dtype float32 but params\[0\] has float16; grads "
                 r"have their params' dtype", mutate)


def test_mixed_dtypes():
    def mutate(state, grads):
        state.exp_avg_sqs[2] = state.exp_avg_sqs[2].astype(np.float64)
    expect_error(TypeError, r"exp_avg_sqs\[2\] has dtype float64 but exp_avg_sqs\[0\] has float32",
                 mutate)

    def mutate_state(state, grads):
        state.exp_avgs = [a.astype(np.float64) for a in state.exp_avgs]
    expect_error(TypeError, r"exp_avgs\[0\] has dtype float64 but params\[0\] has float32; the "
                 r"state of float32 params is float32, bfloat16, float16 or blockwise 8-bit",
                 mutate_state)

    def mutate_params(state, grads):
        state.params[1] = state.params[1].astype(np.float64)
    expect_error(TypeError, r"params\[1\] has dtype float64", mutate_params)


def test_shape_mismatch():
    def mutate(state, grads):
        grads[1] = grads[1].reshape(5, 4).copy()
    expect_error(ValueError, r"grads\[1\] has shape \(5, 4\) but params\[1\] has shape \(4, 5\)",
                 mutate)


def test_list_length_mismatch():
    state, grads = make()
    expect_error(ValueError, r"grads has 2 arrays but params has 3", grads=grads[:2])


def test_non_contiguous():
    def mutate(state, grads):
        state.exp_avgs[2] = np.zeros(2000, np.float32)[::2]
    expect_error(ValueError, r"exp_avgs\[2\] is not C-contiguous", mutate)

    def transposed(state, grads):
        state.params[1] = np.asfortranarray(state.params[1])  # (4, 5), Fortran order
    expect_error(ValueError, r"params\[1\] is not C-contiguous", transposed)


def test_misaligned():
    def mutate(state, grads):
        raw = np.zeros(33 * 4 + 1, np.uint8)
        state.exp_avg_sqs[0] = raw[1:].view(np.float32)
    expect_error(ValueError, r"exp_avg_sqs\[0\] is not aligned", mutate)


def test_read_only():
    def mutate(state, grads):
        state.params[2].flags.writeable = False
    expect_error(ValueError, r"params\[2\] is read-only", mutate)


def test_read_only_grads_are_fine_unless_unscaled():
    state, grads = make()
    for g in grads:
        g.flags.writeable = False
    call(state, grads)  # grads are only read
    expect_error(ValueError, r"grads\[0\] is read-only",
                 lambda s, g: [x.flags.__setattr__("writeable", False) for x in g],
                 grad_scale=2.0)


@pytest.mark.parametrize("overlap", [
    lambda s, g: g.__setitem__(1, s.params[1]),                    # a param as its own grad
    lambda s, g: s.exp_avgs.__setitem__(2, s.exp_avg_sqs[2]),       # shared state
    lambda s, g: s.params.__setitem__(0, s.params[2][:33]),         # views of one buffer
    lambda s, g: s.exp_avgs.__setitem__(0, s.params[2][10:43]),     # partial overlap
])
def test_overlapping_buffers(overlap):
    expect_error(ValueError, r"overlap in memory", overlap)


def test_overlap_message_names_both_arrays():
    expect_error(ValueError, r"params\[1\] and grads\[1\] overlap in memory",
                 lambda s, g: g.__setitem__(1, s.params[1]))


def test_overlap_is_checked_again_after_a_passing_call():
    # The overlap check remembers the buffers of the last call that passed; a call that differs
    # in one buffer (same count, one moved onto another) is checked in full.
    state, grads = make()
    call(state, grads)
    call(state, grads, step=2)  # the same buffers: passes again
    aliased = list(state.exp_avgs)
    aliased[1] = state.exp_avg_sqs[1]
    arrays = state.arrays() + grads
    before = snapshot(arrays)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\] and exp_avg_sqs\[1\] overlap"):
        call(state, grads, step=3, exp_avgs=aliased)
    assert_unchanged(arrays, before)
    # and on another thread, whose remembered call is its own
    import threading

    errors = []

    def worker():
        try:
            call(state, grads, step=3, exp_avgs=aliased)
        except ValueError as error:
            errors.append(error)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "overlap" in str(errors[0])
    assert_unchanged(arrays, before)


def test_max_exp_avg_sqs_are_checked_too():
    state, grads = make()
    bad = [m.copy() for m in state.max_exp_avg_sqs]
    bad[2] = bad[2][:10].copy()
    expect_error(ValueError, r"max_exp_avg_sqs\[2\] has shape \(10,\)", amsgrad=True,
                 max_exp_avg_sqs=bad)
    expect_error(ValueError, r"max_exp_avg_sqs has 2 arrays", amsgrad=True,
                 max_exp_avg_sqs=state.max_exp_avg_sqs[:2])


def test_no_silent_conversion_of_in_place_arrays():
    # A float64 state with float32 params must not be converted to a copy that is then lost.
    def mutate(state, grads):
        state.exp_avgs = [a.astype(np.float64) for a in state.exp_avgs]
    expect_error(TypeError, r"exp_avgs\[0\] has dtype float64", mutate)


def test_runtime_settings_reject_bad_values():
    with pytest.raises(ValueError, match=r"num_threads must be >= 1, got 0"):
        adamkern.set_num_threads(0)
    with pytest.raises(ValueError, match=r"unknown ISA 'sse9'"):
        adamkern.set_isa("sse9")
