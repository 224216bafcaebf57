"""adamkern.schedules: every schedule value by value against torch.optim.lr_scheduler (torch 2.13,
skipped without torch) or against the published Keras/optax formulas written out below in plain
Python float64; scalar and array evaluation bitwise equal; the argument and step errors; repr
and plot; the values and errors at the extremes (inf, NaN and overflow cases, section 7).

Tolerance: 1e-12 relative, float64, value by value. (Near the end of a cosine 1 + cos(x)
cancels, so a formula other than torch's could differ by ~1e-11 relative there; the
implementation follows the source formulas, and none of these cases needs more than 1e-12.)
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right

import numpy as np
import pytest
from helpers import assert_bitwise_equal

from adamkern import schedules as S


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def assert_values(actual, expected, what):
    """Element k is step k: |got - want| <= 1e-12 |want|."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    error = np.abs(actual - expected)
    bad = np.argwhere(~(error <= 1e-12 * np.abs(expected)))
    assert bad.size == 0, (
        f"{what}: {len(bad)} of {expected.size} values differ; first at step {tuple(bad[0])}: "
        f"got {actual[tuple(bad[0])]!r}, expected {expected[tuple(bad[0])]!r}"
    )


def evaluate(sched, n):
    return np.array([sched(k) for k in range(n)])


def torch_values(torch, make, n, lr=1.0, optimizer="SGD", read=None):
    """torch's values at steps 0..n-1: a dummy optimizer on one float64 parameter, stepped
    normally (opt.step(); sched.step()) and read after each step."""
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, optimizer)([param], lr=lr)
    sched = make(torch.optim.lr_scheduler, opt)
    read = read or (lambda opt, sched: sched.get_last_lr()[0])
    values = [read(opt, sched)]
    for _ in range(n - 1):
        opt.step()
        sched.step()
        values.append(read(opt, sched))
    return np.array(values, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# 1. torch. Each case: (torch lr, torch scheduler factory, ours, steps).

TORCH_CASES = {
    "StepLR": (0.1, lambda L, o: L.StepLR(o, step_size=7, gamma=0.5),
               lambda: S.step_decay(0.1, 7, 0.5), 500),
    "StepLR-default-gamma": (0.3, lambda L, o: L.StepLR(o, step_size=30),
                             lambda: S.step_decay(0.3, 30), 400),
    "MultiStepLR": (0.05, lambda L, o: L.MultiStepLR(o, [30, 80, 200], gamma=0.3),
                    lambda: S.multistep_decay(0.05, [30, 80, 200], gamma=0.3), 400),
    # Counter semantics: a repeated milestone decays twice; milestones need not be sorted.
    "MultiStepLR-duplicates": (0.05, lambda L, o: L.MultiStepLR(o, [80, 30, 80, 200, 200, 200]),
                               lambda: S.multistep_decay(0.05, [80, 30, 80, 200, 200, 200]),
                               400),
    "MultiStepLR-milestone-0": (0.05, lambda L, o: L.MultiStepLR(o, [0, 10], gamma=0.5),
                                lambda: S.multistep_decay(0.05, [0, 10], gamma=0.5), 50),
    # torch multiplies recursively (k roundings, < 1e-13 relative at k = 1000).
    "ExponentialLR": (0.2, lambda L, o: L.ExponentialLR(o, gamma=0.99),
                      lambda: S.exponential_decay(0.2, 1, 0.99), 1000),
    "ExponentialLR-growing": (0.2, lambda L, o: L.ExponentialLR(o, gamma=1.003),
                              lambda: S.exponential_decay(0.2, 1, 1.003), 1000),
    "CosineAnnealingWarmRestarts-T_mult1": (
        0.1, lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=1, eta_min=0.001),
        lambda: S.cosine_restarts(0.1, 10, t_mul=1.0, m_mul=1.0, alpha=0.001 / 0.1), 600),
    "CosineAnnealingWarmRestarts-T_mult2": (
        0.1, lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.002),
        lambda: S.cosine_restarts(0.1, 5, t_mul=2.0, m_mul=1.0, alpha=0.002 / 0.1), 700),
    # Restarts at 1, 4, 13, 40, 121, 364: torch's closed-form step(121) lands a cycle short
    # (float log); stepped normally it is right.
    "CosineAnnealingWarmRestarts-T_mult3": (
        0.1, lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=1, T_mult=3),
        lambda: S.cosine_restarts(0.1, 1, t_mul=3.0, m_mul=1.0, alpha=0.0), 500),
    "CyclicLR-triangular": (
        0.1, lambda L, o: L.CyclicLR(o, 0.001, 0.006, step_size_up=20, cycle_momentum=False),
        lambda: S.cyclic(0.001, 0.006, step_size_up=20), 400),
    "CyclicLR-triangular-down": (
        0.1, lambda L, o: L.CyclicLR(o, 0.001, 0.006, step_size_up=15, step_size_down=35,
                                     cycle_momentum=False),
        lambda: S.cyclic(0.001, 0.006, step_size_up=15, step_size_down=35), 400),
    "CyclicLR-triangular2": (
        0.1, lambda L, o: L.CyclicLR(o, 0.001, 0.006, step_size_up=15, step_size_down=35,
                                     mode="triangular2", cycle_momentum=False),
        lambda: S.cyclic(0.001, 0.006, step_size_up=15, step_size_down=35, mode="triangular2"),
        400),
    "CyclicLR-triangular2-symmetric": (
        0.1, lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=25, mode="triangular2",
                                     cycle_momentum=False),
        lambda: S.cyclic(0.01, 0.1, step_size_up=25, mode="triangular2"), 400),
    "CyclicLR-exp_range": (
        0.1, lambda L, o: L.CyclicLR(o, 0.001, 0.006, step_size_up=10, step_size_down=30,
                                     mode="exp_range", gamma=0.99, cycle_momentum=False),
        lambda: S.cyclic(0.001, 0.006, step_size_up=10, step_size_down=30, mode="exp_range",
                         gamma=0.99), 400),
    "CyclicLR-exp_range-symmetric": (
        0.1, lambda L, o: L.CyclicLR(o, 0.001, 0.006, step_size_up=20, mode="exp_range",
                                     gamma=0.995, cycle_momentum=False),
        lambda: S.cyclic(0.001, 0.006, step_size_up=20, mode="exp_range", gamma=0.995),
        400),
}


@pytest.mark.parametrize("name", TORCH_CASES)
def test_against_torch(torch, name):
    lr, make_torch, make_ours, n = TORCH_CASES[name]
    assert_values(evaluate(make_ours(), n), torch_values(torch, make_torch, n, lr=lr), name)


# CosineAnnealingLR: torch's closed form at last_epoch = k <= T_max is the reference. Its
# recursive get_lr (a plain sched.step()) only approximates it; measured with torch 2.13 the
# drift is < 4e-15 relative for these cases, so it is checked too.
@pytest.mark.parametrize("init,t_max,eta_min", [(0.1, 400, 0.0), (0.05, 250, 0.002)])
def test_cosine_annealing_closed_form(torch, init, t_max, eta_min):
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.SGD([param], lr=init), T_max=t_max, eta_min=eta_min)
    expected = []
    for k in range(t_max + 1):
        sched.last_epoch = k
        expected.append(sched._get_closed_form_lr()[0])
    ours = evaluate(S.cosine_decay(init, t_max, alpha=eta_min / init), t_max + 1)
    assert_values(ours, expected, "CosineAnnealingLR closed form")
    stepped = torch_values(torch, lambda L, o: L.CosineAnnealingLR(o, t_max, eta_min), t_max + 1,
                           lr=init)
    assert_values(ours, stepped, "CosineAnnealingLR stepped")


ONE_CYCLE = {
    "cos": dict(total_steps=300, max_value=0.01),
    "linear": dict(total_steps=300, max_value=0.01, anneal="linear", pct_start=0.25,
                   div_factor=10.0, final_div_factor=100.0),
    "cos-three_phase": dict(total_steps=300, max_value=0.01, three_phase=True),
    "linear-three_phase": dict(total_steps=299, max_value=0.02, anneal="linear", pct_start=0.4,
                               three_phase=True, base_momentum=0.8, max_momentum=0.9),
}
TORCH_ONE_CYCLE_NAMES = dict(max_value="max_lr", anneal="anneal_strategy")


@pytest.mark.parametrize("name", ONE_CYCLE)
def test_one_cycle_against_torch(torch, name):
    kwargs = ONE_CYCLE[name]
    n = kwargs["total_steps"] + 1  # torch allows step == total_steps
    torch_kwargs = {TORCH_ONE_CYCLE_NAMES.get(k, k): v for k, v in kwargs.items()}
    expected = torch_values(
        torch, lambda L, o: L.OneCycleLR(o, **torch_kwargs), n, optimizer="Adam",
        read=lambda opt, sched: (sched.get_last_lr()[0], opt.param_groups[0]["betas"][0]))
    ours = S.one_cycle(**kwargs)
    assert_values(evaluate(ours, n), expected[:, 0], f"OneCycleLR {name} lr")
    assert_values(evaluate(ours.momentum, n), expected[:, 1], f"OneCycleLR {name} momentum")
    for sched in (ours, ours.momentum):
        with pytest.raises(ValueError):
            sched(n)
        with pytest.raises(ValueError):
            sched(np.array([0, n]))


PLATEAU = {
    "min-rel": dict(init_value=0.1, mode="min", factor=0.5, patience=5, threshold=1e-3),
    "max-abs-cooldown-min_lr": dict(init_value=0.1, mode="max", factor=0.3, patience=3,
                                    threshold=0.01, threshold_mode="abs", cooldown=4,
                                    min_lr=1e-4),
    "min-abs-patience0": dict(init_value=0.1, factor=0.1, patience=0, threshold=0.0,
                              threshold_mode="abs", cooldown=2, min_lr=1e-3),
    "max-rel-eps": dict(init_value=1e-7, mode="max", factor=0.5, patience=2, eps=1e-8),
    "defaults": dict(init_value=0.1),
}


def plateau_metrics(mode, n=400):
    rng = np.random.default_rng(1)
    metric = np.exp(-np.arange(n) / 80.0) + 0.03 * rng.random(n)
    metric[100:160] = metric[100]  # an exact plateau
    metric[200:203] = metric[199] * (1 - 1e-4)  # better by the default rel threshold exactly
    return list(1.0 - metric if mode == "max" else metric)


@pytest.mark.parametrize("name", PLATEAU)
def test_reduce_lr_on_plateau_against_torch(torch, name):
    kwargs = PLATEAU[name]
    metrics = plateau_metrics(kwargs.get("mode", "min"))
    param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([param], lr=kwargs["init_value"])
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, **{k: v for k, v in kwargs.items() if k != "init_value"})
    expected = []
    for m in metrics:
        opt.step()
        theirs.step(m)
        expected.append(theirs.get_last_lr()[0])
    assert len(set(expected)) > 2, "the metric sequence should reduce the lr several times"

    ours = S.ReduceLROnPlateau(**kwargs)
    assert ours(0) == kwargs["init_value"]
    got, restored = [], {}  # restored: checkpoint -> (fresh one loaded there, its values)
    for k, m in enumerate(metrics):
        if k in (7, 23, 101, 200):
            copy = S.ReduceLROnPlateau(**kwargs)
            copy.load_state_dict(ours.state_dict())
            assert copy(0) == ours(0)
            restored[k] = (copy, [])
        got.append(ours.update(m))
        assert ours(k) == got[-1] and ours(10**9) == got[-1], f"sched(step) at update {k}"
        for copy, values in restored.values():
            values.append(copy.update(m))
    assert_values(got, expected, f"ReduceLROnPlateau {name}")
    for k, (_, values) in restored.items():
        assert values == got[k:], f"ReduceLROnPlateau restored at update {k} diverged"


# ---------------------------------------------------------------------------------------------
# 2. The Keras / optax formulas, written out.

def exponential_ref(init, decay_steps, rate, staircase=False, begin=0, end=None):
    def f(step):  # optax exponential_decay (Keras ExponentialDecay: begin = 0, no end)
        d = step - begin
        if d <= 0:
            value = init
        else:
            p = d / decay_steps
            value = init * rate ** (math.floor(p) if staircase else p)
        if end is not None:
            value = max(value, end) if rate < 1 else min(value, end)
        return value
    return f


def inverse_time_ref(init, decay_steps, rate, staircase=False):
    def f(step):  # Keras InverseTimeDecay
        p = step / decay_steps
        return init / (1 + rate * (math.floor(p) if staircase else p))
    return f


def polynomial_ref(init, end, decay_steps, power=1.0, cycle=False, begin=0):
    def f(step):  # Keras PolynomialDecay, with optax's transition_begin
        s = max(step - begin, 0)
        if cycle:
            d = decay_steps * (1 if s == 0 else math.ceil(s / decay_steps))
        else:
            s, d = min(s, decay_steps), decay_steps
        return (init - end) * (1 - s / d) ** power + end
    return f


def linear_ref(init, end, steps, begin=0):
    def f(step):  # optax linear_schedule
        count = min(max(step - begin, 0), steps)
        return (init - end) * (1 - count / steps) + end
    return f


def cosine_ref(init, decay_steps, alpha=0.0, exponent=1.0):
    def f(step):  # optax cosine_decay_schedule
        c = min(step, decay_steps)
        return init * ((1 - alpha) * (0.5 * (1 + math.cos(math.pi * c / decay_steps)))
                       ** exponent + alpha)
    return f


def restarts_ref(init, first, t_mul=2.0, m_mul=1.0, alpha=0.0):
    def f(step):
        # Keras CosineDecayRestarts with the cycle found by exact subtraction; Keras's
        # floor(log(1 - fraction (1 - t_mul)) / log(t_mul)) agrees except where the float log
        # lands a cycle short at an exact restart (torch's closed-form bug).
        start, length, i = 0.0, first, 0
        while step >= start + length:
            start, length, i = start + length, length * t_mul, i + 1
        fraction = (step - start) / length
        return init * ((1 - alpha) * (0.5 * m_mul**i * (1 + math.cos(math.pi * fraction)))
                       + alpha)
    return f


def piecewise_ref(boundaries, values):
    return lambda step: values[bisect_right(boundaries, step)]


def join_ref(fns, boundaries):
    def f(step):  # optax join_schedules
        i = bisect_right(boundaries, step)
        return fns[i](step - (boundaries[i - 1] if i else 0))
    return f


def warmup_ref(fn, steps, init=0.0):
    return lambda step: init + (fn(0) - init) * step / steps if step < steps else fn(step - steps)


def warmup_cosine_ref(init, peak, warmup_steps, decay_steps, end=0.0):
    # optax warmup_cosine_decay_schedule
    alpha = 0.0 if peak == 0 else end / peak
    return join_ref([linear_ref(init, peak, warmup_steps),
                     cosine_ref(peak, decay_steps - warmup_steps, alpha)], [warmup_steps])


# Each case: (ours, reference, steps).
FORMULA_CASES = {
    "constant": (lambda: S.constant(0.5), lambda s: 0.5, 50),
    "piecewise_constant-seed": (lambda: S.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4]),
                                piecewise_ref([10, 20], [1e-3, 5e-4, 1e-4]), 100),
    "piecewise_constant-0": (lambda: S.piecewise_constant([0, 7, 8], [9.0, 1.0, 2.0, 3.0]),
                             piecewise_ref([0, 7, 8], [9.0, 1.0, 2.0, 3.0]), 20),
    "piecewise_constant-none": (lambda: S.piecewise_constant([], [0.25]), lambda s: 0.25, 20),
    "exponential_decay": (lambda: S.exponential_decay(1.0, 100, 0.5),
                          exponential_ref(1.0, 100, 0.5), 600),
    "exponential_decay-staircase": (lambda: S.exponential_decay(1.0, 37.5, 0.5, staircase=True),
                                    exponential_ref(1.0, 37.5, 0.5, staircase=True), 600),
    "exponential_decay-begin": (lambda: S.exponential_decay(0.1, 50, 0.3, transition_begin=40),
                                exponential_ref(0.1, 50, 0.3, begin=40), 600),
    "exponential_decay-end-lower": (
        lambda: S.exponential_decay(1.0, 20, 0.5, staircase=True, transition_begin=15,
                                    end_value=0.01),
        exponential_ref(1.0, 20, 0.5, staircase=True, begin=15, end=0.01), 400),
    "exponential_decay-end-upper": (lambda: S.exponential_decay(0.1, 10, 1.5, end_value=4.0),
                                    exponential_ref(0.1, 10, 1.5, end=4.0), 300),
    "inverse_time_decay": (lambda: S.inverse_time_decay(0.1, 10, 0.5),
                           inverse_time_ref(0.1, 10, 0.5), 500),
    "inverse_time_decay-staircase": (lambda: S.inverse_time_decay(0.1, 7, 2.0, staircase=True),
                                     inverse_time_ref(0.1, 7, 2.0, staircase=True), 500),
    "polynomial_decay-power2": (lambda: S.polynomial_decay(0.1, 0.001, 200, power=2.0),
                                polynomial_ref(0.1, 0.001, 200, 2.0), 400),
    "polynomial_decay-cycle": (
        lambda: S.polynomial_decay(0.1, 0.001, 100, power=2.0, cycle=True),
        polynomial_ref(0.1, 0.001, 100, 2.0, cycle=True), 450),
    "polynomial_decay-begin": (
        lambda: S.polynomial_decay(0.1, 0.0, 150, power=0.5, transition_begin=30),
        polynomial_ref(0.1, 0.0, 150, 0.5, begin=30), 400),
    "polynomial_decay-cycle-begin": (
        lambda: S.polynomial_decay(0.1, 0.01, 60, cycle=True, transition_begin=25),
        polynomial_ref(0.1, 0.01, 60, cycle=True, begin=25), 400),
    "linear-up": (lambda: S.linear(0.0, 0.01, 100), linear_ref(0.0, 0.01, 100), 300),
    "linear-down-begin": (lambda: S.linear(0.01, 0.0005, 200, transition_begin=50),
                          linear_ref(0.01, 0.0005, 200, begin=50), 400),
    "cosine_decay": (lambda: S.cosine_decay(0.1, 300), cosine_ref(0.1, 300), 400),
    "cosine_decay-alpha": (lambda: S.cosine_decay(0.1, 300, alpha=0.1),
                           cosine_ref(0.1, 300, 0.1), 400),
    "cosine_decay-exponent2": (lambda: S.cosine_decay(0.1, 250, exponent=2.0),
                               cosine_ref(0.1, 250, exponent=2.0), 400),
    "cosine_decay-alpha-exponent2": (lambda: S.cosine_decay(0.1, 250, alpha=0.05, exponent=2.0),
                                     cosine_ref(0.1, 250, 0.05, 2.0), 400),
    "cosine_restarts-t_mul1": (lambda: S.cosine_restarts(0.1, 20, t_mul=1.0),
                               restarts_ref(0.1, 20, 1.0), 500),
    "cosine_restarts-default": (lambda: S.cosine_restarts(0.1, 10), restarts_ref(0.1, 10),
                                700),
    "cosine_restarts-m_mul-alpha": (
        lambda: S.cosine_restarts(0.1, 10, t_mul=2.0, m_mul=0.5, alpha=0.05),
        restarts_ref(0.1, 10, 2.0, 0.5, 0.05), 700),
    "cosine_restarts-t_mul1-m_mul": (
        lambda: S.cosine_restarts(0.1, 30, t_mul=1.0, m_mul=0.5, alpha=0.1),
        restarts_ref(0.1, 30, 1.0, 0.5, 0.1), 500),
    "cosine_restarts-t_mul1.5": (lambda: S.cosine_restarts(0.1, 7, t_mul=1.5, m_mul=0.9),
                                 restarts_ref(0.1, 7, 1.5, 0.9), 600),
    "warmup-cosine": (lambda: S.warmup(S.cosine_decay(0.1, 200, alpha=0.1), 30),
                      warmup_ref(cosine_ref(0.1, 200, 0.1), 30), 400),
    "warmup-cosine-init": (
        lambda: S.warmup(S.cosine_decay(0.1, 200), 25, init_value=0.001),
        warmup_ref(cosine_ref(0.1, 200), 25, 0.001), 400),
    "warmup_cosine_decay": (
        lambda: S.warmup_cosine_decay(0.0, 0.1, 50, 300, end_value=0.001),
        warmup_cosine_ref(0.0, 0.1, 50, 300, 0.001), 400),
    "warmup_cosine_decay-end0": (lambda: S.warmup_cosine_decay(1e-4, 0.02, 10, 100),
                                 warmup_cosine_ref(1e-4, 0.02, 10, 100), 300),
    "join": (
        lambda: S.join([S.linear(0.0, 0.1, 20), S.constant(0.1), S.cosine_decay(0.1, 100)],
                       [20, 50]),
        join_ref([linear_ref(0.0, 0.1, 20), lambda s: 0.1, cosine_ref(0.1, 100)], [20, 50]),
        300),
    "join-one": (lambda: S.join([S.step_decay(0.1, 7, 0.5)], []),
                 lambda s: 0.1 * 0.5 ** (s // 7), 100),
}


@pytest.mark.parametrize("name", FORMULA_CASES)
def test_against_formula(name):
    make, ref, n = FORMULA_CASES[name]
    assert_values(evaluate(make(), n), [ref(k) for k in range(n)], name)


def test_piecewise_constant_seed_example():
    sched = S.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4])
    assert [sched(k) for k in (0, 9, 10, 19, 20, 10**6)] == [1e-3, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4]


# ---------------------------------------------------------------------------------------------
# 3. Scalar and array evaluation agree bitwise, for every schedule.

ALL_SCHEDULES = {
    **{f"torch-{k}": v[2] for k, v in TORCH_CASES.items()},
    **{k: v[0] for k, v in FORMULA_CASES.items()},
    **{f"one_cycle-{k}": (lambda kw=kw: S.one_cycle(**{**kw, "total_steps": 500}))
       for k, kw in ONE_CYCLE.items()},
    **{f"one_cycle-momentum-{k}":
       (lambda kw=kw: S.one_cycle(**{**kw, "total_steps": 500}).momentum)
       for k, kw in ONE_CYCLE.items()},
}
FAR_STEPS = [10**6, 2**31 + 5, 10**12]


@pytest.mark.parametrize("name", ALL_SCHEDULES)
def test_scalar_and_array_agree(name):
    sched = ALL_SCHEDULES[name]()
    rng = np.random.default_rng(0)
    steps = np.arange(400, dtype=np.int64)
    shuffled = rng.permutation(np.concatenate(
        [steps, [] if name.startswith("one_cycle") else FAR_STEPS]).astype(np.int64))
    for what, array in [("arange", steps), ("shuffled", shuffled),
                        ("int32", steps.astype(np.int32)), ("strided", steps[::3]),
                        ("2-D", steps.reshape(20, 20)), ("2-D transposed", steps.reshape(20, 20).T),
                        ("empty", steps[:0])]:
        got = sched(array)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, what
        expected = np.array([sched(int(k)) for k in array.flat], np.float64).reshape(array.shape)
        assert_bitwise_equal(got, expected, f"{name} {what}")
    assert all(type(sched(k)) is float for k in (0, 1, 399))


# ---------------------------------------------------------------------------------------------
# 4. Errors.

def constant():
    return S.constant(1.0)


BAD_ARGUMENTS = [
    ("step_size", lambda: S.step_decay(0.1, 0)),
    ("step_size", lambda: S.step_decay(0.1, -3, 0.5)),
    ("milestones", lambda: S.multistep_decay(0.1, [10, -1])),
    ("boundaries|values", lambda: S.piecewise_constant([10, 20], [1.0, 2.0])),
    ("boundaries|values", lambda: S.piecewise_constant([10], [1.0, 2.0, 3.0])),
    ("boundaries", lambda: S.piecewise_constant([10, 10], [1.0, 2.0, 3.0])),
    ("boundaries", lambda: S.piecewise_constant([20, 10], [1.0, 2.0, 3.0])),
    ("decay_steps", lambda: S.exponential_decay(1.0, 0, 0.5)),
    ("decay_steps", lambda: S.exponential_decay(1.0, -10, 0.5)),
    ("decay_rate", lambda: S.exponential_decay(1.0, 10, 0.0)),
    ("decay_rate", lambda: S.exponential_decay(1.0, 10, -0.5)),
    ("transition_begin", lambda: S.exponential_decay(1.0, 10, 0.5, transition_begin=-1)),
    ("decay_steps", lambda: S.inverse_time_decay(1.0, 0, 0.5)),
    ("decay_steps", lambda: S.inverse_time_decay(1.0, -1, 0.5, staircase=True)),
    ("t_mul", lambda: S.cosine_restarts(1.0, 10, t_mul=0.5)),
    ("first_decay_steps", lambda: S.cosine_restarts(1.0, 0)),
    ("first_decay_steps", lambda: S.cosine_restarts(1.0, -5, t_mul=1.0)),
    ("decay_steps", lambda: S.warmup_cosine_decay(0.0, 1.0, 100, 100)),
    ("decay_steps", lambda: S.warmup_cosine_decay(0.0, 1.0, 100, 50)),
    ("anneal", lambda: S.one_cycle(100, 0.1, anneal="exp")),
    ("pct_start", lambda: S.one_cycle(100, 0.1, pct_start=-0.1)),
    ("pct_start", lambda: S.one_cycle(100, 0.1, pct_start=1.5)),
    ("mode", lambda: S.cyclic(0.1, 1.0, mode="sawtooth")),
    ("boundaries|schedules", lambda: S.join([constant(), constant()], [])),
    ("boundaries|schedules", lambda: S.join([constant()], [10])),
    ("boundaries", lambda: S.join([constant(), constant(), constant()], [20, 10])),
    ("factor", lambda: S.ReduceLROnPlateau(0.1, factor=1.0)),
    ("factor", lambda: S.ReduceLROnPlateau(0.1, factor=2.0)),
    ("mode", lambda: S.ReduceLROnPlateau(0.1, mode="avg")),
    ("threshold_mode", lambda: S.ReduceLROnPlateau(0.1, threshold_mode="pct")),
]


@pytest.mark.parametrize("name,make", BAD_ARGUMENTS,
                         ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_argument(name, make):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("name", ALL_SCHEDULES)
def test_bad_steps(name):
    sched = ALL_SCHEDULES[name]()
    for step in (-1, np.array([0, 5, -1]), np.array([[3], [-2]], np.int32)):
        with pytest.raises(ValueError):
            sched(step)
    for step in (1.0, 0.5, np.array([1.0, 2.0]), np.arange(3, dtype=np.float32)):
        with pytest.raises(TypeError):
            sched(step)


# ---------------------------------------------------------------------------------------------
# 5. repr and plot.

def test_repr_seed_example():
    expected = "step_decay(init_value=0.001, step_size=10, gamma=0.5)"
    assert repr(S.step_decay(0.001, 10, 0.5)) == expected


REPRS = [
    ("constant", dict(value=0.25)),
    ("multistep_decay", dict(init_value=0.1, milestones=[30, 80], gamma=0.2)),
    ("piecewise_constant", dict(boundaries=[10, 20], values=[0.001, 0.0005, 0.0001])),
    ("exponential_decay", dict(init_value=0.1, decay_steps=100, decay_rate=0.5, staircase=True,
                               transition_begin=5, end_value=0.01)),
    ("inverse_time_decay", dict(init_value=0.1, decay_steps=10, decay_rate=0.5)),
    ("polynomial_decay", dict(init_value=0.1, end_value=0.001, decay_steps=100, power=2.0,
                              cycle=True)),
    ("linear", dict(init_value=0.0, end_value=0.01, transition_steps=100)),
    ("cosine_decay", dict(init_value=0.1, decay_steps=300, alpha=0.1, exponent=2.0)),
    ("cosine_restarts", dict(init_value=0.1, first_decay_steps=10, t_mul=1.5, m_mul=0.5)),
    ("warmup_cosine_decay", dict(init_value=0.0, peak_value=0.1, warmup_steps=50,
                                 decay_steps=300, end_value=0.001)),
    ("one_cycle", dict(total_steps=100, max_value=0.01, anneal="linear")),
    ("cyclic", dict(base_value=0.001, max_value=0.006, step_size_up=20, mode="triangular2")),
]


def _texts(value):
    if isinstance(value, (list, tuple)):
        return None  # checked element by element below
    if isinstance(value, str):
        return {repr(value), value}
    return {repr(value), repr(float(value))} if not isinstance(value, bool) else {repr(value)}


@pytest.mark.parametrize("factory,kwargs", REPRS, ids=[f for f, _ in REPRS])
def test_repr(factory, kwargs):
    text = repr(getattr(S, factory)(**kwargs))
    assert text.startswith(factory + "("), text
    for key, value in kwargs.items():
        assert f"{key}=" in text, f"{key} missing from {text}"
        shown = text.split(f"{key}=", 1)[1]
        if isinstance(value, (list, tuple)):
            assert all(repr(v) in shown for v in value), f"{key}={value} not shown in {text}"
        else:
            assert any(shown.startswith(t) for t in _texts(value)), \
                f"{key}={value!r} not shown in {text}"


def test_repr_nested():
    inner = S.cosine_decay(0.1, 200)
    text = repr(S.warmup(inner, 30, init_value=0.001))
    assert text.startswith("warmup(") and repr(inner) in text and "30" in text, text
    text = repr(S.join([inner, S.constant(0.5)], [100]))
    assert text.startswith("join(") and repr(inner) in text and "100" in text, text


def test_plot(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sched = S.warmup_cosine_decay(0.0, 0.1, 10, 100)
    path = tmp_path / "schedule.png"
    fig = sched.plot(120, path=str(path))
    try:
        assert hasattr(fig, "savefig")
        data = path.read_bytes()
        assert len(data) > 100 and data.startswith(b"\x89PNG\r\n\x1a\n")
    finally:
        plt.close(fig)
    fig = sched.plot(np.arange(0, 200, 5))
    assert hasattr(fig, "savefig")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# 6. multiplicative (torch MultiplicativeLR) and per-epoch evaluation.

def torch_multiplicative(torch, lr, lr_lambda, n):
    return torch_values(torch, lambda L, o: L.MultiplicativeLR(o, lr_lambda), n, lr=lr)


@pytest.mark.parametrize("lr_lambda,n", [
    (lambda e: 0.95, 200),
    (lambda e: 1.0 / (1.0 + 0.05 * e), 60),
    (lambda e: 0.9 if e % 3 else 1.1, 100),
])
def test_multiplicative_callable_is_torchs_bits(torch, lr_lambda, n):
    ours = S.multiplicative(0.1, lr_lambda, num_epochs=n)
    expected = torch_multiplicative(torch, 0.1, lr_lambda, n)
    assert_bitwise_equal(ours(np.arange(n)), expected, "multiplicative callable")
    assert_bitwise_equal(np.array([ours(k) for k in range(n)]), expected, "scalar")
    # held after the last epoch it was evaluated for
    assert ours(n + 5) == ours(10**9) == ours(n)


def test_multiplicative_sequence_and_constant(torch):
    factors = [0.5, 0.9, 1.0, 2.0, 0.1]
    ours = S.multiplicative(0.3, factors)
    expected = torch_multiplicative(torch, 0.3, lambda e: factors[e - 1], 6)
    assert_bitwise_equal(ours(np.arange(6)), expected, "multiplicative sequence")
    assert ours(100) == expected[-1]
    constant = S.multiplicative(0.2, 0.97)  # torch multiplies recursively: k roundings
    assert_values(evaluate(constant, 1000),
                  torch_multiplicative(torch, 0.2, lambda e: 0.97, 1000), "constant factor")
    assert constant(10**12) == 0.0  # 0.2 * 0.97**1e12 underflows; no table, no loop


def test_keras_time_based_decay_is_the_product_form():
    # The Keras tutorial's LearningRateScheduler, written out literally: at the start of epoch
    # e (from 0) Keras calls schedule(e, lr) with the current lr.
    lr0, decay, epochs = 0.1, 0.01, 50

    def keras_schedule(epoch, lr):
        return lr / (1 + decay * epoch)

    keras, lr = [], lr0
    for epoch in range(epochs):
        lr = keras_schedule(epoch, lr)
        keras.append(lr)
    ours = S.multiplicative(lr0, lambda e: 1 / (1 + decay * e), num_epochs=epochs)
    assert_values(ours(np.arange(epochs)), keras, "Keras time-based decay")
    # ... and not inverse_time_decay, the closed form lr0 / (1 + decay * e)
    inverse = S.inverse_time_decay(lr0, 1, decay)
    assert_values(inverse(np.arange(epochs)), [lr0 / (1 + decay * e) for e in range(epochs)],
                  "inverse time decay")
    assert ours(49) < 1e-3 * inverse(49)  # 2.5e-6 against 6.7e-2


@pytest.mark.parametrize("make,error,match", [
    (lambda: S.multiplicative(0.1, lambda e: 0.9), ValueError, "num_epochs"),
    (lambda: S.multiplicative(0.1, lambda e: 0.9, num_epochs=-1), ValueError, "num_epochs"),
    (lambda: S.multiplicative(0.1, [0.9], num_epochs=3), ValueError, "num_epochs"),
    (lambda: S.multiplicative(0.1, lambda e: "x", num_epochs=3), TypeError, "factor\\(1\\)"),
    (lambda: S.multiplicative(0.1, "0.9"), TypeError, "factor"),
    (lambda: S.multiplicative(0.1, None), TypeError, "factor"),
    (lambda: S.multiplicative(0.1, math.nan), ValueError, "factor"),
    (lambda: S.multiplicative(0.1, -0.5), ValueError, "factor"),
    (lambda: S.multiplicative(0.1, [0.9, math.inf]), ValueError, "factors.*index 1"),
    (lambda: S.multiplicative(math.nan, 0.9), ValueError, "init_value"),
])
def test_multiplicative_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_per_epoch_thirty_epoch_recipe():
    # "1e-3 for epochs 1-10, 5e-4 for 11-20, 1e-4 for 21-30", 391 batches per epoch
    steps_per_epoch = 391
    lr = S.piecewise_constant([10, 20], [1e-3, 5e-4, 1e-4]).per_epoch(steps_per_epoch)
    steps = np.arange(30 * steps_per_epoch)
    epoch = steps // steps_per_epoch + 1  # the recipe counts epochs from 1
    expected = np.where(epoch <= 10, 1e-3, np.where(epoch <= 20, 5e-4, 1e-4))
    assert_bitwise_equal(lr(steps), expected, "recipe")
    assert [lr(k) for k in (0, 3909, 3910, 7819, 7820, 11729)] == \
        [1e-3, 1e-3, 5e-4, 5e-4, 1e-4, 1e-4]
    # and as an optimizer's lr: the lr each step used, read from the optimizer's history
    from adamkern import optim

    param = np.zeros(3, np.float32)
    opt = optim.SGD([param], lr=lr, history=True)
    grad = np.ones(3, np.float32)
    for _ in range(30 * steps_per_epoch):
        opt.step([grad])
    assert_bitwise_equal(opt.history["lr"], expected, "optimizer")


@pytest.mark.parametrize("name", ALL_SCHEDULES)
def test_per_epoch_every_schedule(name):
    sched = ALL_SCHEDULES[name]()
    stepped = sched.per_epoch(7)
    steps = np.arange(7 * 400 if name.startswith("one_cycle") else 7 * 450, dtype=np.int64)
    if not name.startswith("one_cycle"):
        steps = np.concatenate([steps, FAR_STEPS]).astype(np.int64)
    expected = np.array([sched(int(k) // 7) for k in steps], np.float64)
    assert_bitwise_equal(stepped(steps), expected, f"{name} per_epoch array")
    assert_bitwise_equal(np.array([stepped(int(k)) for k in steps[::97]]), expected[::97],
                         f"{name} per_epoch scalar")
    assert repr(stepped) == f"{sched!r}.per_epoch(7)"


def test_per_epoch_checks_steps():
    stepped = S.one_cycle(10, 0.1).per_epoch(5)
    assert stepped(54) == S.one_cycle(10, 0.1)(10)
    for step in (55, np.array([0, 55]), -1):
        with pytest.raises(ValueError, match="step"):
            stepped(step)
    with pytest.raises(TypeError):
        stepped(1.0)
    assert stepped.momentum(54) == S.one_cycle(10, 0.1).momentum(10)


@pytest.mark.parametrize("steps_per_epoch,error", [(0, ValueError), (-3, ValueError),
                                                   (2.5, TypeError), (True, TypeError)])
def test_per_epoch_bad_steps_per_epoch(steps_per_epoch, error):
    with pytest.raises(error, match="steps_per_epoch"):
        S.constant(1.0).per_epoch(steps_per_epoch)
    with pytest.raises(error, match="steps_per_epoch"):
        S.per_epoch(lambda epoch: 1.0, steps_per_epoch)


def test_per_epoch_of_a_python_callable():
    lr = S.per_epoch(lambda epoch: 1e-3 * 0.5 ** (epoch // 10), 100)
    assert lr(999) == 1e-3 and lr(1000) == 5e-4
    assert_bitwise_equal(lr(np.array([0, 999, 1000, 2500])), np.array([1e-3, 1e-3, 5e-4, 2.5e-4]),
                         "callable array")
    assert "steps_per_epoch=100" in repr(lr)
    assert S.per_epoch(S.constant(2.0), 3)(10) == 2.0
    with pytest.raises(ValueError):
        lr(-1)
    with pytest.raises(TypeError):
        S.per_epoch(S.ReduceLROnPlateau(0.1), 10)
    with pytest.raises(TypeError):
        S.per_epoch(0.1, 10)


def test_multiplicative_repr():
    assert repr(S.multiplicative(0.1, 0.9)) == "multiplicative(init_value=0.1, factor=0.9)"
    assert repr(S.multiplicative(0.1, (0.5, 0.25))) == \
        "multiplicative(init_value=0.1, factor=[0.5, 0.25])"
    text = repr(S.multiplicative(0.1, abs, num_epochs=3).per_epoch(10))
    assert text.startswith("multiplicative(init_value=0.1, factor=<built-in function abs>")
    assert text.endswith("num_epochs=3).per_epoch(10)")


# ---------------------------------------------------------------------------------------------
# 7. Extremes: each case gave inf, NaN, a value outside the schedule's range, or no error,
# before the schedules handled them (the hangs of cosine_restarts and the fuzzing of every
# schedule are in test_schedule_fuzz.py, which runs them in a subprocess).

LARGEST = sys.float_info.max

def triangle(x):  # torch CyclicLR's scale factor at position x of a symmetric cycle
    return x / 0.5 if x <= 0.5 else (x - 1.0) / (0.5 - 1.0)


EXTREME_VALUES = [
    # 0 * inf: a zero init times a power past the double range is 0.
    ("step_decay init 0", lambda: S.step_decay(0.0, 1, 1e300)(5), 0.0),
    ("multistep_decay init 0", lambda: S.multistep_decay(0.0, [1, 2], 1e300)(5), 0.0),
    ("exponential_decay init 0", lambda: S.exponential_decay(0.0, 1e-300, 2.0)(5), 0.0),
    ("exponential_decay init 0 end", lambda: S.exponential_decay(0.0, 1e-300, 2.0,
                                                                 end_value=1.0)(5), 0.0),
    ("multiplicative init 0", lambda: S.multiplicative(0.0, 2.0)(2000), 0.0),
    ("inverse_time_decay rate 0", lambda: S.inverse_time_decay(1.0, 1e-300, 0.0)(2**62), 1.0),
    # The power overflows, the value does not: 1e-300 * 1e10**31 = 1e10.
    ("step_decay tiny init", lambda: S.step_decay(1e-300, 1, 1e10)(31), 1e10),
    ("multiplicative table back in range",
     lambda: S.multiplicative(1.0, [1e300, 1e300, 1e-300, 1e-300])(4), 1.0),
    ("inverse_time_decay tiny decay_steps",
     lambda: S.inverse_time_decay(0.5, 1e-300, 5e-324)(2**31 - 1),
     0.5 / (1.0 + 5e-324 * (2**31 - 1) / 1e-300)),
    # Past the double range: +-DBL_MAX.
    ("exponential_decay grows", lambda: S.exponential_decay(1.0, 1e-300, 2.0)(5), LARGEST),
    ("exponential_decay grows negative", lambda: S.exponential_decay(-1.0, 1.0, 2.0)(2000),
     -LARGEST),
    ("multiplicative grows", lambda: S.multiplicative(1.0, 2.0)(2000), LARGEST),
    ("multiplicative table", lambda: S.multiplicative(1.0, [1e300, 1e300, 0.0])(2), LARGEST),
    ("multiplicative table then 0", lambda: S.multiplicative(1.0, [1e300, 1e300, 0.0])(3), 0.0),
    ("cosine_decay end past the range", lambda: S.cosine_decay(1e300, 10, alpha=1e10)(10),
     LARGEST),
    ("cosine_restarts m_mul", lambda: S.cosine_restarts(1.0, 1.0, 2.0, m_mul=1e300)(10),
     LARGEST),
    ("cyclic exp_range gamma > 1", lambda: S.cyclic(0.0, 1.0, 10, mode="exp_range",
                                                    gamma=2.0)(2005), LARGEST),
    # A restart of exp_range with gamma > 1: (max - base) * 0 * inf was NaN.
    ("cyclic exp_range restart", lambda: S.cyclic(0.0, 1.0, 10, mode="exp_range",
                                                  gamma=2.0)(2000), 0.0),
    # Bounds of opposite signs near the range: max - base overflows.
    ("polynomial_decay span end", lambda: S.polynomial_decay(1.7e308, -1.7e308, 10)(10),
     -1.7e308),
    ("polynomial_decay span start", lambda: S.polynomial_decay(1.7e308, -1.7e308, 10)(0),
     1.7e308),
    ("linear span", lambda: S.linear(1.7e308, -1.7e308, 10)(0), 1.7e308),
    ("warmup span", lambda: S.warmup(S.constant(1.7e308), 10, -1.7e308)(0), -1.7e308),
    ("warmup step * span", lambda: S.warmup(S.constant(1e300), 2**40)(2**39), 5e299),
    ("cyclic span", lambda: S.cyclic(-1.7e308, 1.7e308, 10)(0), -1.7e308),
    ("one_cycle momentum span", lambda: S.one_cycle(10, 1.0, base_momentum=-1.7e308,
                                                    max_momentum=1.7e308).momentum(0), 1.7e308),
    # Cycles shorter than a step: the position in them is exact, not NaN or a lost phase.
    ("polynomial_decay cycle tiny decay_steps",
     lambda: S.polynomial_decay(1.0, 0.5, 1e-300, cycle=True)(2**62), 0.5),
    ("cyclic tiny steps", lambda: S.cyclic(0.0, 1.0, 1e-300, 1e-300)(2**62),
     triangle(math.fmod(2.0**62, 2e-300) / 2e-300)),
    ("cyclic up underflows", lambda: S.cyclic(0.0, 1.0, 1e-300, 1e300)(0), 0.0),
    # At decay_steps the cosine is 0, also where pi * t rounds (a subnormal decay_steps).
    ("cosine_decay subnormal decay_steps", lambda: S.cosine_decay(1.0, 5e-324)(3), 0.0),
    # |alpha| past 2**53: (1 - alpha) + alpha lost the 1 (0 at step 0 instead of init).
    ("cosine_decay huge alpha", lambda: S.cosine_decay(1.0, 100, alpha=1e16)(0), 1.0),
    ("cosine_decay huge negative alpha", lambda: S.cosine_decay(1.0, 100, alpha=-1e16)(0), 1.0),
    ("cosine_restarts huge alpha", lambda: S.cosine_restarts(2.0, 10, alpha=1e17)(10), 2.0),
]


@pytest.mark.parametrize("name,value,expected", EXTREME_VALUES,
                         ids=[name for name, _, _ in EXTREME_VALUES])
def test_extreme_values(name, value, expected):
    got = value()
    assert type(got) is float and math.isfinite(got), f"{name}: {got}"
    assert got == pytest.approx(expected, rel=1e-13, abs=0.0), name


EXTREME_REJECTIONS = [
    ("power", lambda: S.polynomial_decay(1.0, 0.0, 10, power=-1.0)),  # inf at decay_steps
    ("exponent", lambda: S.cosine_decay(1.0, 10, exponent=-0.5)),  # inf at decay_steps
    ("end_value / peak_value", lambda: S.warmup_cosine_decay(0.0, 1e-300, 1, 10, 1e10)),
    ("div_factor", lambda: S.one_cycle(10, 1e300, div_factor=1e-300)),
    ("final_div_factor", lambda: S.one_cycle(10, 1.0, div_factor=1e-300,
                                             final_div_factor=1e-300)),
    ("step_size_up \\+ step_size_down", lambda: S.cyclic(0.0, 1.0, 1.7e308, 1.7e308)),
    ("num_epochs", lambda: S.multiplicative(0.1, 0.9, num_epochs=3)),
    ("num_epochs", lambda: S.multiplicative(0.1, lambda e: 0.9, num_epochs=10**8)),
    ("step_size", lambda: S.step_decay(0.1, 2**64)),
]


@pytest.mark.parametrize("name,make", EXTREME_REJECTIONS,
                         ids=[f"{i}-{name}" for i, (name, _) in enumerate(EXTREME_REJECTIONS)])
def test_extreme_rejections(name, make):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("make,error,match", [
    (lambda: S.constant(True), TypeError, "value must be a number"),
    (lambda: S.constant("0.5"), TypeError, "value must be a number"),
    (lambda: S.step_decay(0.1, True), TypeError, "step_size must be an int"),
    (lambda: S.step_decay(0.1, 2.0), TypeError, "step_size must be an int"),
    (lambda: S.exponential_decay(0.1, 10, 0.5, staircase=1), TypeError, "staircase"),
    (lambda: S.one_cycle(10, 0.1, anneal=None), TypeError, "anneal"),
    (lambda: S.multistep_decay(0.1, [10, 2.5]), TypeError, "milestones\\[1\\]"),
    (lambda: S.piecewise_constant([10], [1.0, "x"]), TypeError, "values\\[1\\]"),
    (lambda: S.join([S.constant(1.0), 0.5], [10]), TypeError, "schedules\\[1\\]"),
    (lambda: S.cosine_decay(10**400, 10), ValueError, "init_value must be a finite number"),
])
def test_argument_types_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_zero_dimensional_array_arguments_are_numbers():
    assert S.cosine_decay(np.array(0.1), np.array(100))(0) == 0.1


def test_steps_past_int64_are_value_errors():
    sched = S.cosine_decay(0.1, 100)
    for step in (2**63, 2**64, np.uint64(2**63), np.array([5, 2**63], np.uint64)):
        with pytest.raises(ValueError, match="< 2\\*\\*63"):
            sched(step)
    assert sched(2**63 - 1) == sched(np.array([2**63 - 1], np.uint64))[0] == 0.0


@pytest.mark.parametrize("make,last", [
    (lambda: S.warmup(S.one_cycle(10, 0.1), 5), 15),
    (lambda: S.join([S.constant(1.0), S.one_cycle(10, 0.1)], [5]), 15),
    (lambda: S.one_cycle(10, 0.1).per_epoch(3), 32),
], ids=["warmup", "join", "per_epoch"])
def test_steps_past_the_end_of_a_part(make, last):
    sched = make()
    assert math.isfinite(sched(last))
    for steps in (last + 1, np.array([0, last + 1]), np.array([last + 1, 0])):
        with pytest.raises(ValueError, match="past total_steps"):
            sched(steps)
