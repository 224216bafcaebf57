"""The optimizer objects (adamkern.optim), the gradient helpers (grad_norm, clipping,
LossScaler) and the aligned-memory helpers (empty, zeros, flatten).

1. Every optimizer class, over a two-group model (different lr, shapes of size 1 and odd sizes),
   float32 and float64, every option combination of tests/family.py: N steps of the object are
   BITWISE N steps of the functional op called by hand, one call per group, with the state the
   op expects (Adagrad's sums at initial_accumulator_value, Yogi's moments at 1e-6, SGD's
   is_first_step on step 1, NAdam's mu_product per group). The defaults are the op's.
2. lr / weight_decay / betas as callables of the step index (0 at the first applied step):
   adamkern.schedules, a ReduceLROnPlateau, one_cycle's momentum as beta1; param_groups edits.
3. Clipping. max_grad_norm uses the global norm of all grads (of all groups) and torch's
   coefficient max_norm / (norm + 1e-6). The fused path divides the grads by 1/coef (the
   kernel's grad_scale) where the reference multiplies by coef, a last-bit difference in the
   grads, so that update is compared with helpers.assert_close_to_reference (4 ULP of the
   array's magnitude), the references' tolerance; everything else here is bitwise.
   grad_norm against an exactly rounded float64 sum (math.fsum) and np.linalg.norm, and the
   same bits for 1/2/3 threads (and every ISA, as grads.py documents); clip_grad_norm_ and
   clip_grad_value_ against NumPy and torch.nn.utils (skipped without torch).
4. LossScaler: its rule (and torch.amp.GradScaler's scale sequence, skipped without torch); in
   an optimizer, a step with inf/NaN grads changes nothing (bytes) and backs off, a good one
   equals the op on the unscaled grads bitwise (the scales are powers of two) and counts
   towards growth.
5. state_dict / load_state_dict / save / load: plain data; resumed runs continue bit for bit;
   mismatched states raise ValueError and change nothing; a crash during save (numpy's
   write_array failing midway, or os.replace failing) leaves the previous checkpoint loadable.
6. empty / zeros / flatten: 64-byte alignment, views; bad inputs.
"""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
from family import SPECS_BY_NAME, Spec, grid
from helpers import DTYPES, assert_bitwise_equal, assert_close_to_reference

import adamkern
from adamkern import schedules as S

DTYPE_IDS = {"ids": lambda d: np.dtype(d).name}


def optim():
    """adamkern.optim, imported inside each test: until it exists every test using it fails
    (not skips), and the helper tests of this file still run."""
    import adamkern.optim

    return adamkern.optim


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------------------------------------
# The classes, their ops, and their state.

_ADAM = SPECS_BY_NAME["adam"]
_ADAMW = Spec("adamw",
              grid(weight_decay=[0.0, 0.1], amsgrad=[False, True], maximize=[False, True],
                   epsilon_hat=[False, True]),
              bad=[b for b in _ADAM.bad if "step" not in b[0]])

# class name -> the family spec of its functional op
KINDS = {
    "Adam": _ADAM,
    "AdamW": _ADAMW,
    "Adamax": SPECS_BY_NAME["adamax"],
    "NAdam": SPECS_BY_NAME["nadam"],
    "RAdam": SPECS_BY_NAME["radam"],
    "RMSprop": SPECS_BY_NAME["rmsprop"],
    "Adagrad": SPECS_BY_NAME["adagrad"],
    "Adadelta": SPECS_BY_NAME["adadelta"],
    "SGD": SPECS_BY_NAME["sgd"],
    "Lion": SPECS_BY_NAME["lion"],
    "AdaBelief": SPECS_BY_NAME["adabelief"],
    "LAMB": SPECS_BY_NAME["lamb"],
    "Adan": SPECS_BY_NAME["adan"],
    "Yogi": SPECS_BY_NAME["yogi"],
    "ADOPT": SPECS_BY_NAME["adopt"],
    "AdEMAMix": SPECS_BY_NAME["ademamix"],
}
CLASSES = list(KINDS)


def options_of(kind):
    """The family's option grid for the class (Adagrad's also over initial_accumulator_value)."""
    options = KINDS[kind].options
    if kind == "Adagrad":
        return [dict(o, initial_accumulator_value=v) for o in options for v in (0.0, 0.1)]
    return options


# op keyword of a state list -> torch's state name in opt.state[i]
# op keyword -> the state name in opt.state (from the ops' descriptions)
STATE_NAMES = {b.argument: b.name for spec in SPECS_BY_NAME.values()
               for b in adamkern.registry.describe(spec.name).state}
# constructor keywords that are not op keywords
NOT_OP = {"initial_accumulator_value", "max_grad_norm", "max_grad_value"}


def initial_value(kind, hyper):
    if kind == "Adagrad":
        return hyper.get("initial_accumulator_value", 0.0)
    if kind == "Yogi":
        return 1e-6  # optax
    return 0.0


def required(kind, op_state, hyper):
    """Whether the object must keep (and the op reads) this state under these options."""
    if op_state == "max_exp_avg_sqs":
        return bool(hyper.get("amsgrad", False))
    if kind == "RMSprop" and op_state == "momentum_buffers":
        return hyper.get("momentum", 0.0) > 0
    if kind == "RMSprop" and op_state == "grad_avgs":
        return bool(hyper.get("centered", False))
    if kind == "SGD":
        return hyper.get("momentum", 0.0) != 0
    return True


# ---------------------------------------------------------------------------------------------
# The model, the grads, the object and the reference.

SHAPES = [[(3, 7), (1,), (17,), (257,)], [(5, 3, 3), (1,), (101,)]]
LR = 1e-2
OVERRIDES = [{}, {"lr": 3e-3}]


def model(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in group] for group in shapes]


def flat(groups):
    return [p for group in groups for p in group]


def random_grads(rng, groups, scale=1.0):
    return [(rng.standard_normal(p.shape) * scale).astype(p.dtype) for p in flat(groups)]


def copies(arrays):
    return [a.copy() for a in arrays]


def make_opt(kind, groups, overrides=None, **kwargs):
    cls = getattr(optim(), kind)
    overrides = overrides or [{} for _ in groups]
    return cls([{"params": list(g), **o} for g, o in zip(groups, overrides)], **kwargs)


class Reference:
    """The functional op driven by hand: one call per group, state allocated as the op
    expects, on copies of the model."""

    def __init__(self, kind, groups):
        self.kind = kind
        self.spec = KINDS[kind]
        self.params = [copies(g) for g in groups]
        self.states = None
        self.mu = None
        self.t = 0

    def step(self, grads, hypers, opt=None):
        """grads: every grad in param order; hypers: per group, op keywords with numbers."""
        self.t += 1
        if self.states is None:
            self.states = [{name: [np.full(p.shape, initial_value(self.kind, h), p.dtype)
                                   for p in params] for name in self.spec.states}
                           for params, h in zip(self.params, hypers)]
        if self.kind == "NAdam" and self.mu is None:
            # float32 (as torch keeps it) or float64: the op takes either; use the object's
            dtypes = [np.asarray(opt.group_state[g]["mu_product"]).dtype if opt else np.float32
                      for g in range(len(self.params))]
            self.mu = [np.ones(1, d) for d in dtypes]
        start = 0
        for g, params in enumerate(self.params):
            group_grads = copies(grads[start:start + len(params)])
            start += len(params)
            kwargs = dict(self.spec.step_kwargs(self.t))
            if self.kind == "NAdam":
                kwargs["mu_product"] = self.mu[g]
            hyper = {k: v for k, v in hypers[g].items() if k not in NOT_OP}
            self.spec.op(params, group_grads, **self.states[g], **kwargs, **hyper)


def state_entries(opt):
    state = opt.state
    return list(state.items()) if isinstance(state, dict) else list(enumerate(state))


def has_no_state(opt):
    return all(not entry for _, entry in state_entries(opt))


def assert_matches(opt, ref, params, hypers, what, compare=assert_bitwise_equal):
    """params (the arrays the object steps), every state array the options use and NAdam's
    mu_product equal the reference's; step_count is the reference's step."""
    assert opt.step_count == ref.t, f"{what}: step_count {opt.step_count} != {ref.t}"
    i = 0
    for g, ref_params in enumerate(ref.params):
        for j, expected in enumerate(ref_params):
            compare(params[i], expected, f"{what}: param {i}")
            state = opt.state[i]
            for op_name, arrays in ref.states[g].items():
                if not required(ref.kind, op_name, hypers[g]):
                    continue
                name = STATE_NAMES[op_name]
                assert name in state, f"{what}: opt.state[{i}] has no {name!r}: {list(state)}"
                compare(np.asarray(state[name]), arrays[j], f"{what}: state[{i}][{name!r}]")
            i += 1
    if ref.kind == "NAdam":
        for g, expected in enumerate(ref.mu):
            actual = np.asarray(opt.group_state[g]["mu_product"]).reshape(-1)
            compare(actual, expected, f"{what}: group_state[{g}]['mu_product']")


def run_lockstep(kind, dtype, options, steps=4, overrides=OVERRIDES, lr=LR, seed=0):
    groups = model(dtype, seed)
    ref = Reference(kind, groups)
    opt = make_opt(kind, groups, overrides, lr=lr, **options)
    assert has_no_state(opt), f"{kind}: state before the first step"
    hypers = [{"lr": lr, **options, **o} for o in overrides]
    rng = np.random.default_rng(seed + 100)
    for t in range(1, steps + 1):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} {options} step {t}")
    return opt, ref, groups


def freeze(value):
    """A comparable snapshot of anything an optimizer holds (arrays by their bytes)."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(freeze(v) for v in value))
    if isinstance(value, (int, float, bool, str, type(None), np.generic)):
        return ("value", repr(value))
    return ("object", id(value))


def opt_snapshot(opt, params):
    return {
        "params": freeze(list(params)),
        "state": freeze(dict(state_entries(opt))),
        "group_state": freeze(getattr(opt, "group_state", None)),
        "param_groups": freeze([{k: v for k, v in g.items() if k != "params"}
                                for g in opt.param_groups]),
        "step_count": opt.step_count,
    }


def assert_opt_unchanged(opt, params, before, what):
    after = opt_snapshot(opt, params)
    for key in before:
        assert after[key] == before[key], f"{what}: {key} changed"


# ---------------------------------------------------------------------------------------------
# 1. The object is the op.


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("kind", CLASSES)
def test_every_option_equals_the_op_bitwise(kind, dtype):
    for options in options_of(kind):
        opt, _, _ = run_lockstep(kind, dtype, options)
        assert opt.last_step_skipped is False
        assert opt.last_grad_norm is None


@pytest.mark.parametrize("kind", CLASSES)
def test_defaults_are_the_ops(kind):
    """Opt(list of arrays) with no keyword steps as the op with no keyword."""
    groups = model(np.float32, seed=2, shapes=[SHAPES[0] + SHAPES[1]])
    ref = Reference(kind, groups)
    opt = getattr(optim(), kind)(list(groups[0]))
    rng = np.random.default_rng(3)
    for t in range(1, 4):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, [{}], opt)
        assert_matches(opt, ref, groups[0], [{}], f"{kind} defaults, step {t}")
    assert opt.last_grad_norm is None and opt.last_step_skipped is False
    assert len(opt.param_groups) == 1


def group_overrides(kind):
    """Group 1 overrides lr, weight_decay and the class's other numeric hyperparameters."""
    override = {"lr": 3e-3, "weight_decay": 0.05}
    if kind == "Adan":
        override["betas"] = (0.9, 0.85, 0.95)
    elif kind == "AdEMAMix":
        override["betas"] = (0.8, 0.95, 0.99)
    elif kind in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Lion", "AdaBelief", "LAMB",
                  "Yogi", "ADOPT"):
        override["betas"] = (0.8, 0.95)
    if kind in ("SGD", "RMSprop"):
        override["momentum"] = 0.5  # group 0 has none: only group 1 keeps momentum buffers
    if kind == "Adadelta":
        override["rho"] = 0.8
    if kind == "Adagrad":
        override["initial_accumulator_value"] = 0.25
    return override


@pytest.mark.parametrize("kind", CLASSES)
def test_per_group_hyperparameters(kind):
    run_lockstep(kind, np.float64, {}, steps=3, overrides=[{}, group_overrides(kind)])


@pytest.mark.parametrize("kind", CLASSES)
def test_state_is_lazy_and_aligned(kind):
    groups = model(np.float32)
    opt = make_opt(kind, groups, [{}, group_overrides(kind)])  # SGD/RMSprop: momentum in group 1
    assert has_no_state(opt) and opt.step_count == 0
    opt.step(random_grads(np.random.default_rng(0), groups))
    assert opt.step_count == 1
    for i, p in enumerate(flat(groups)):
        for name, value in opt.state[i].items():
            if not isinstance(value, np.ndarray) or value.shape != p.shape:
                continue  # a per-param scalar (torch's 'step'), not a state array
            assert value.dtype == p.dtype, f"{kind} state[{i}][{name!r}] dtype {value.dtype}"
            assert value.flags.c_contiguous and value.flags.writeable
            assert value.ctypes.data % 64 == 0, f"{kind} state[{i}][{name!r}] not 64-byte aligned"
            assert not np.shares_memory(value, p)


@pytest.mark.parametrize("kind", CLASSES)
def test_zero_state_starts_over(kind):
    groups = model(np.float32, seed=4)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR)
    rng = np.random.default_rng(5)
    for _ in range(3):
        opt.step(random_grads(rng, groups))
    opt.zero_state()
    assert opt.step_count == 0 and has_no_state(opt)
    ref = Reference(kind, groups)  # a fresh start from the current params
    hypers = [{"lr": LR, **o} for o in OVERRIDES]
    for t in range(1, 4):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} after zero_state, step {t}")


@pytest.mark.parametrize("kind", CLASSES)
def test_zero_size_param(kind):
    shapes = [[(0,), (3,)], [(1,), (0,), (5, 0)]]
    groups = model(np.float32, shapes=shapes)
    ref = Reference(kind, groups)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR)
    hypers = [{"lr": LR, **o} for o in OVERRIDES]
    rng = np.random.default_rng(6)
    for t in range(1, 3):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} with empty params, step {t}")


@pytest.mark.parametrize("kind", CLASSES)
def test_one_kernel_call_per_group(kind, monkeypatch):
    """Each group is updated by ONE call into the C++ module, whatever its number of tensors.
    (With several groups, each call is first made once with found_inf=1, which validates
    everything and writes nothing, so a bad later group leaves earlier groups untouched;
    those calls run no parallel region and are not counted here.)"""
    core = adamkern.ops._core
    name = "adam_" if kind == "AdamW" else KINDS[kind].name + "_"
    calls = []
    original = getattr(core, name)

    def counting(*args, **kwargs):
        # the ops pass every argument by keyword
        if kwargs["found_inf"] is None:
            calls.append(len(kwargs["params"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(core, name, counting)
    groups = model(np.float32, seed=52)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR)
    rng = np.random.default_rng(53)
    for _ in range(2):
        opt.step(random_grads(rng, groups))
    assert calls == [len(g) for g in groups] * 2, calls


def test_flatten_views_as_params():
    """An engine keeping its params in flatten() views: the object steps them in place."""
    groups = model(np.float32)
    flat_buffer, views = adamkern.flatten(flat(groups))
    ref = Reference("AdamW", [copies(views)])
    opt = optim().AdamW(views, lr=LR)
    rng = np.random.default_rng(7)
    for t in range(1, 4):
        grads = random_grads(rng, [views])
        opt.step(copies(grads))
        ref.step(grads, [{"lr": LR}], opt)
        assert_matches(opt, ref, views, [{"lr": LR}], f"AdamW on views, step {t}")
    assert all(np.shares_memory(v, flat_buffer) for v in views)


# ---------------------------------------------------------------------------------------------
# 2. Schedules and param_groups edits.


@pytest.mark.parametrize("kind", CLASSES)
def test_lr_and_weight_decay_schedules(kind):
    lr0 = S.warmup_cosine_decay(1e-4, 1e-2, warmup_steps=2, decay_steps=7)
    lr1 = S.exponential_decay(3e-3, 1, 0.8)
    wd = S.linear(0.1, 0.0, 5)
    groups = model(np.float32, seed=8)
    opt = make_opt(kind, groups, [{}, {"lr": lr1}], lr=lr0, weight_decay=wd)
    ref = Reference(kind, groups)
    rng = np.random.default_rng(9)
    for t in range(1, 8):
        hypers = [{"lr": lr0(t - 1), "weight_decay": wd(t - 1)},
                  {"lr": lr1(t - 1), "weight_decay": wd(t - 1)}]
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} scheduled, step {t}")


BETA_SCHEDULES = {
    "Adam": lambda oc: (oc.momentum, S.linear(0.99, 0.999, 4)),
    "Lion": lambda oc: (oc.momentum, 0.99),
    "Adan": lambda oc: (S.linear(0.9, 0.98, 5), 0.92, S.linear(0.95, 0.99, 3)),
}


@pytest.mark.parametrize("kind", list(BETA_SCHEDULES))
def test_one_cycle_lr_and_momentum_as_betas(kind):
    oc = S.one_cycle(total_steps=8, max_value=1e-2)
    betas = BETA_SCHEDULES[kind](oc)
    groups = model(np.float64, seed=10)
    opt = make_opt(kind, groups, lr=oc, betas=betas)
    ref = Reference(kind, groups)
    rng = np.random.default_rng(11)
    used = set()
    for t in range(1, 9):
        values = tuple(b(t - 1) if callable(b) else b for b in betas)
        used.add(values[0])
        hypers = [{"lr": oc(t - 1), "betas": values}] * 2
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} one_cycle, step {t}")
    assert len(used) > 4  # beta1 did move


@pytest.mark.parametrize("kind", ["Adam", "SGD"])
def test_reduce_lr_on_plateau_drives_lr(kind):
    plateau = S.ReduceLROnPlateau(1e-2, factor=0.5, patience=1)
    groups = model(np.float32, seed=12)
    opt = make_opt(kind, groups, [{}, {"lr": 3e-3}], lr=plateau)
    ref = Reference(kind, groups)
    rng = np.random.default_rng(13)
    used = []
    for t, metric in enumerate([1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8], start=1):
        used.append(plateau.lr)
        hypers = [{"lr": plateau.lr}, {"lr": 3e-3}]
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} plateau, step {t}")
        plateau.update(metric)
    assert len(set(used)) >= 3  # it did reduce, twice


@pytest.mark.parametrize("kind", CLASSES)
def test_editing_param_groups_between_steps(kind):
    groups = model(np.float32, seed=14)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR)
    ref = Reference(kind, groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(15)
    edits = {3: (1, "lr", 1e-4), 4: (0, "lr", 5e-2), 5: (0, "weight_decay", 0.2)}
    for t in range(1, 7):
        if t in edits:
            g, key, value = edits[t]
            opt.param_groups[g][key] = value
            hypers[g] = dict(hypers[g], **{key: value})
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} edited groups, step {t}")


# ---------------------------------------------------------------------------------------------
# 3. Gradient norm and clipping.


def exact_norm(grads):
    """sqrt of the exactly rounded float64 sum of squares."""
    squares = np.concatenate([np.square(np.asarray(g, np.float64)).ravel() for g in grads])
    return math.sqrt(math.fsum(squares))


def assert_rel(actual, expected, rel, what):
    assert abs(actual - expected) <= rel * abs(expected), (
        f"{what}: {actual!r} vs {expected!r} (relative {abs(actual - expected) / expected:.3g})")


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("kind", CLASSES)
def test_max_grad_norm_clips_with_the_global_norm(kind, dtype):
    max_norm = 1.0
    groups = model(dtype, seed=16)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR, max_grad_norm=max_norm)
    ref = Reference(kind, groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(17)
    for t in range(1, 4):
        grads = random_grads(rng, groups, scale=3.0)
        norm = exact_norm(grads)  # over both groups
        coefficient = max_norm / (norm + 1e-6)
        assert coefficient < 0.1
        opt.step(copies(grads))
        assert opt.last_grad_norm is not None
        assert_rel(opt.last_grad_norm, norm, 1e-12, f"{kind} last_grad_norm, step {t}")
        ref.step([(g.astype(np.float64) * coefficient).astype(dtype) for g in grads], hypers,
                 opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} clipped, step {t}",
                       compare=assert_close_to_reference)


@pytest.mark.parametrize("kind", CLASSES)
def test_max_grad_norm_not_reached_changes_nothing(kind):
    """Below max_grad_norm the grads are not scaled: bitwise the unclipped op."""
    groups = model(np.float64, seed=18)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR, max_grad_norm=1e6)
    ref = Reference(kind, groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(19)
    for t in range(1, 4):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        assert_rel(opt.last_grad_norm, exact_norm(grads), 1e-12, f"{kind} last_grad_norm")
        ref.step(grads, hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} unclipped, step {t}")


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("kind", CLASSES)
def test_max_grad_value_clips_each_element(kind, dtype):
    """Clamping is exact: bitwise the op on np.clip(grads)."""
    groups = model(dtype, seed=20)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR, max_grad_value=0.5)
    ref = Reference(kind, groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(21)
    for t in range(1, 4):
        grads = random_grads(rng, groups)
        opt.step(copies(grads))
        ref.step([np.clip(g, -0.5, 0.5) for g in grads], hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"{kind} value-clipped, step {t}")


def test_max_grad_norm_with_loss_scaler_uses_the_unscaled_norm():
    max_norm, scale = 1.0, 2.0**12
    groups = model(np.float32, seed=22)
    opt = make_opt("Adam", groups, OVERRIDES, lr=LR, max_grad_norm=max_norm)
    scaler = adamkern.LossScaler(init_scale=scale)
    ref = Reference("Adam", groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(23)
    for t in range(1, 4):
        grads = random_grads(rng, groups, scale=3.0)
        norm = exact_norm(grads)
        opt.step([g * np.float32(scale) for g in grads], scaler=scaler)
        assert not opt.last_step_skipped
        assert_rel(opt.last_grad_norm, norm, 1e-12, f"unscaled norm, step {t}")
        coefficient = max_norm / (norm + 1e-6)
        ref.step([(g.astype(np.float64) * coefficient).astype(np.float32) for g in grads],
                 hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"scaled + clipped, step {t}",
                       compare=assert_close_to_reference)


def test_max_grad_value_with_loss_scaler_clips_the_unscaled_grads():
    """max_grad_value bounds the unscaled grads: bitwise the op on np.clip(grads) (a
    power-of-two scale)."""
    groups = model(np.float64, seed=54)
    opt = make_opt("Adam", groups, OVERRIDES, lr=LR, max_grad_value=0.5)
    scaler = adamkern.LossScaler(init_scale=2.0**12)
    ref = Reference("Adam", groups)
    hypers = [{"lr": LR}, {"lr": 3e-3}]
    rng = np.random.default_rng(55)
    for t in range(1, 4):
        grads = random_grads(rng, groups)
        opt.step([g * scaler.scale for g in grads], scaler=scaler)
        ref.step([np.clip(g, -0.5, 0.5) for g in grads], hypers, opt)
        assert_matches(opt, ref, flat(groups), hypers, f"scaled + value-clipped, step {t}")


def norm_grads(dtype, seed=24, shapes=((1000,), (17,), (1,), (0,), (33, 3))):
    """Values over six orders of magnitude, so the summation order shows in the bits."""
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 3, s)).astype(dtype)
            for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_grad_norm_against_numpy(dtype):
    grads = norm_grads(dtype)
    expected = exact_norm(grads)
    norm = adamkern.grad_norm(grads)
    assert isinstance(norm, float)
    assert_rel(norm, expected, 1e-12, "grad_norm vs fsum")
    as_f64 = np.concatenate([g.ravel().astype(np.float64) for g in grads])
    assert_rel(norm, float(np.linalg.norm(as_f64)), 1e-12, "grad_norm vs np.linalg.norm")
    assert_rel(adamkern.grad_norm(grads[0]), exact_norm(grads[:1]), 1e-12, "one array")
    assert adamkern.grad_norm([np.zeros(5, dtype)]) == 0.0


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_grad_norm_same_bits_for_any_threads_and_isa(dtype):
    grads = norm_grads(dtype, seed=25, shapes=((1_000_003,), (70_001,), (17,), (1,)))
    norms = {}
    for isa in adamkern.cpu_info()["available_isas"]:
        adamkern.set_isa(isa)
        for threads in (1, 2, 3):
            adamkern.set_num_threads(threads)
            norms[(isa, threads)] = adamkern.grad_norm(grads)
    assert len({n.hex() for n in norms.values()}) == 1, norms
    assert_rel(next(iter(norms.values())), exact_norm(grads), 1e-12, "large grad_norm")


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("max_norm", [1.0, 1e9])
def test_clip_grad_norm_against_numpy(dtype, max_norm):
    grads = norm_grads(dtype, seed=26)
    before = copies(grads)
    norm = adamkern.clip_grad_norm_(grads, max_norm)
    assert_rel(norm, exact_norm(before), 1e-12, "returned norm")
    coefficient = max_norm / (norm + 1e-6)
    for g, b in zip(grads, before):
        expected = b * dtype(coefficient) if coefficient < 1 else b
        assert_bitwise_equal(g, expected, f"clip_grad_norm_({max_norm})")
    if max_norm > 1e6:
        assert all(g.tobytes() == b.tobytes() for g, b in zip(grads, before))


def test_clip_grad_norm_eps_and_single_array():
    g = np.array([3.0, 4.0])  # norm 5
    assert adamkern.clip_grad_norm_(g, 1.0, eps=1.0) == 5.0
    assert_bitwise_equal(g, np.array([3.0, 4.0]) * (1.0 / 6.0), "eps=1")
    g = np.array([3.0, 4.0], np.float32)
    assert adamkern.clip_grad_norm_(g, 10.0) == 5.0
    assert_bitwise_equal(g, np.array([3.0, 4.0], np.float32), "not clipped")


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_clip_grad_value_against_numpy(dtype):
    grads = norm_grads(dtype, seed=27)
    grads[0][:3] = [np.inf, -np.inf, 0.5]
    expected = [np.clip(g, -0.5, 0.5) for g in grads]
    assert adamkern.clip_grad_value_(grads, 0.5) is None
    for g, e in zip(grads, expected):
        assert_bitwise_equal(g, e, "clip_grad_value_")
    one = np.array([-2.0, 0.25, 2.0], dtype)
    adamkern.clip_grad_value_(one, 1.0)
    assert_bitwise_equal(one, np.array([-1.0, 0.25, 1.0], dtype), "one array")


# Tolerance against torch: torch computes the norm (and so the coefficient) in the grads'
# dtype; float32: a few float32 ULP over a cascade sum of ~4000 squares; float64: 1e-12.
TORCH_REL = {np.float32: 1e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("max_norm", [1.0, 1e9])
def test_clip_grad_norm_against_torch(torch, dtype, max_norm):
    grads = norm_grads(dtype, seed=28)
    tensors = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
        t.grad = torch.from_numpy(g.copy())
        tensors.append(t)
    expected = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    norm = adamkern.clip_grad_norm_(grads, max_norm)
    rel = TORCH_REL[dtype]
    assert_rel(norm, expected, rel, "norm vs torch")
    for i, (g, t) in enumerate(zip(grads, tensors)):
        want = t.grad.numpy()
        assert np.all(np.abs(g - want) <= rel * np.abs(want)), f"grad {i} vs torch"


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_clip_grad_value_against_torch(torch, dtype):
    grads = norm_grads(dtype, seed=29)
    tensors = []
    for g in grads:
        t = torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
        t.grad = torch.from_numpy(g.copy())
        tensors.append(t)
    torch.nn.utils.clip_grad_value_(tensors, 0.75)
    adamkern.clip_grad_value_(grads, 0.75)
    for i, (g, t) in enumerate(zip(grads, tensors)):
        assert_bitwise_equal(g, t.grad.numpy(), f"grad {i} vs torch")


# ---------------------------------------------------------------------------------------------
# 4. LossScaler.


def documented_rule(flags, scale, growth_factor, backoff_factor, growth_interval):
    scales, tracker = [], 0
    for found_inf in flags:
        if found_inf:
            scale *= backoff_factor
            tracker = 0
        else:
            tracker += 1
            if tracker == growth_interval:
                scale *= growth_factor
                tracker = 0
        scales.append(scale)
    return scales


FLAGS = [bool(f) for f in np.random.default_rng(30).random(60) < 0.15] + [False] * 7 + [True]


def test_loss_scaler_rule():
    scaler = adamkern.LossScaler()
    assert scaler.scale == 2.0**16 and isinstance(scaler.scale, float)
    config = dict(growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    scaler = adamkern.LossScaler(init_scale=2.0**10, **config)
    got = []
    for found_inf in FLAGS:
        scaler.update(found_inf)
        got.append(scaler.scale)
    assert got == documented_rule(FLAGS, 2.0**10, **config)
    assert max(got) > 2.0**10 and min(got) < 2.0**10


def test_loss_scaler_state_dict_round_trip():
    config = dict(init_scale=1000.0, growth_factor=3.0, backoff_factor=0.25, growth_interval=4)
    scaler = adamkern.LossScaler(**config)
    for found_inf in FLAGS[:10]:
        scaler.update(found_inf)
    state = scaler.state_dict()
    for value in state.values():
        assert isinstance(value, (int, float, bool, str, type(None))), state
    pickle.dumps(state)
    other = adamkern.LossScaler()
    other.load_state_dict(state)
    assert other.state_dict() == state
    for found_inf in FLAGS[10:]:
        scaler.update(found_inf)
        other.update(found_inf)
        assert other.scale == scaler.scale


@pytest.mark.parametrize("config", [
    dict(init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=3),
    dict(init_scale=1000.0, growth_factor=3.0, backoff_factor=0.25, growth_interval=2),
])
def test_loss_scaler_against_torch_grad_scaler(torch, config):
    reference = torch.amp.GradScaler("cpu", **config)
    param = torch.zeros(3, requires_grad=True)
    sgd = torch.optim.SGD([param], lr=0.0)
    reference.scale(torch.ones(()))  # torch creates its scale tensor lazily
    scaler = adamkern.LossScaler(**config)
    for k, found_inf in enumerate(FLAGS):
        param.grad = torch.full((3,), float("inf") if found_inf else 1.0)
        reference.step(sgd)
        reference.update()
        scaler.update(found_inf)
        assert scaler.scale == reference.get_scale(), f"update {k}"


@pytest.mark.parametrize("bad", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("kind", CLASSES)
def test_scaler_skips_a_step_with_non_finite_grads(kind, bad):
    groups = model(np.float32, seed=31)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR, max_grad_norm=10.0)
    scaler = adamkern.LossScaler(init_scale=2.0**8)
    rng = np.random.default_rng(32)
    for _ in range(2):
        opt.step([g * np.float32(scaler.scale) for g in random_grads(rng, groups)],
                 scaler=scaler)
    assert opt.step_count == 2 and not opt.last_step_skipped
    before = opt_snapshot(opt, flat(groups))
    grads = random_grads(rng, groups)
    grads[-1][0] = float(bad)  # in group 1's last param
    opt.step(grads, scaler=scaler)
    assert opt.last_step_skipped is True
    assert scaler.scale == 2.0**7
    assert_opt_unchanged(opt, flat(groups), before, f"{kind} skipped step")


@pytest.mark.parametrize("kind", CLASSES)
def test_scaler_unscales_and_skips_like_the_op(kind):
    """Bad steps (the first among them) are skipped without advancing step_count or the
    schedules; good steps equal the op on the unscaled grads, bitwise (power-of-two scales)."""
    lr = S.exponential_decay(1e-2, 1, 0.7)
    groups = model(np.float32, seed=33)
    opt = make_opt(kind, groups, lr=lr)
    scaler = adamkern.LossScaler(init_scale=2.0**10, growth_interval=2)
    ref = Reference(kind, groups)
    rng = np.random.default_rng(34)
    expected_scale = 2.0**10
    good_in_a_row = 0
    for k, good in enumerate([False, True, True, False, True, True, True]):
        grads = random_grads(rng, groups)
        scaled = [g * np.float32(scaler.scale) for g in grads]
        if not good:
            scaled[k % len(scaled)][0] = np.nan
        opt.step(scaled, scaler=scaler)
        assert opt.last_step_skipped is (not good)
        assert opt.last_grad_norm is None  # no max_grad_norm
        if good:
            ref.step(grads, [{"lr": lr(ref.t)}] * 2, opt)
            good_in_a_row += 1
            if good_in_a_row == 2:
                expected_scale *= 2.0
                good_in_a_row = 0
        else:
            expected_scale *= 0.5
            good_in_a_row = 0
        assert scaler.scale == expected_scale, f"{kind} update {k}"
        if ref.t:
            assert_matches(opt, ref, flat(groups), [{}] * 2, f"{kind} update {k}")
        else:
            assert opt.step_count == 0


# ---------------------------------------------------------------------------------------------
# 5. state_dict, load_state_dict, save, load.


def leaves(value, path="sd"):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def resume_case(kind, dtype):
    lr = S.cosine_decay(1e-2, 10)  # the step index must resume too
    overrides = [{}, {"lr": 3e-3, "weight_decay": 0.01}]
    grads = [random_grads(np.random.default_rng(35 + t), model(dtype)) for t in range(10)]
    return lr, overrides, grads


def straight_run(kind, dtype):
    lr, overrides, grads = resume_case(kind, dtype)
    groups = model(dtype)
    opt = make_opt(kind, groups, overrides, lr=lr)
    for g in grads:
        opt.step(copies(g))
    return opt, groups


def assert_same_run(opt, params, other, other_params, what):
    assert opt.step_count == other.step_count
    for i, (a, b) in enumerate(zip(params, other_params)):
        assert_bitwise_equal(a, b, f"{what}: param {i}")
    mine, theirs = dict(state_entries(opt)), dict(state_entries(other))
    for i in theirs:
        for name, value in theirs[i].items():
            if isinstance(value, np.ndarray):
                assert_bitwise_equal(np.asarray(mine[i][name]), value, f"{what}: {i} {name}")


@pytest.mark.parametrize("via", ["state_dict", "save"])
@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
@pytest.mark.parametrize("kind", CLASSES)
def test_resume_is_bit_for_bit(kind, dtype, via, tmp_path):
    straight, straight_params = straight_run(kind, dtype)

    lr, overrides, grads = resume_case(kind, dtype)
    groups = model(dtype)
    first = make_opt(kind, groups, overrides, lr=lr)
    for g in grads[:5]:
        first.step(copies(g))
    if via == "state_dict":
        checkpoint = first.state_dict()
        for where, value in leaves(checkpoint):
            assert isinstance(value, (int, float, bool, str, type(None), np.ndarray,
                                      np.generic)), f"{where} is a {type(value).__name__}"
            assert not (isinstance(value, np.ndarray) and value.dtype == object), where
        pickle.dumps(checkpoint)
    else:
        path = tmp_path / "opt.npz"
        first.save(path)
        assert path.exists()
    del first
    resumed_groups = [copies(g) for g in groups]  # the model's own checkpoint
    resumed = make_opt(kind, resumed_groups, overrides, lr=lr)
    if via == "state_dict":
        resumed.load_state_dict(checkpoint)
    else:
        resumed.load(path)
    assert resumed.step_count == 5
    for i, entry in state_entries(resumed):
        for name, value in entry.items():
            if isinstance(value, np.ndarray) and value.size > 1:
                assert value.ctypes.data % 64 == 0, f"loaded state[{i}][{name!r}] unaligned"
    for g in grads[5:]:
        resumed.step(copies(g))
    assert_same_run(resumed, flat(resumed_groups), straight, flat(straight_params),
                    f"{kind} resumed via {via}")


def mismatches():
    """name -> (kind, dtype, shapes) of an optimizer that must refuse an Adam float32 state
    over SHAPES."""
    changed_shape = [list(SHAPES[0]), list(SHAPES[1])]
    changed_shape[1][2] = (100,)
    return {
        "kind AdamW": ("AdamW", np.float32, SHAPES),
        "kind SGD": ("SGD", np.float32, SHAPES),
        "kind NAdam": ("NAdam", np.float32, SHAPES),
        "shape": ("Adam", np.float32, changed_shape),
        "dtype": ("Adam", np.float64, SHAPES),
        "one more param": ("Adam", np.float32, [SHAPES[0], SHAPES[1] + [(4,)]]),
        "one fewer param": ("Adam", np.float32, [SHAPES[0], SHAPES[1][:-1]]),
    }


def adam_checkpoint(tmp_path=None):
    groups = model(np.float32)
    source = make_opt("Adam", groups, OVERRIDES, lr=LR, amsgrad=True)
    rng = np.random.default_rng(40)
    for _ in range(3):
        source.step(random_grads(rng, groups))
    if tmp_path is not None:
        source.save(tmp_path / "adam.npz")
    return source.state_dict()


@pytest.mark.parametrize("stepped", [True, False], ids=["stepped", "fresh"])
@pytest.mark.parametrize("case", list(mismatches()))
def test_mismatched_state_raises_and_changes_nothing(case, stepped, tmp_path):
    kind, dtype, shapes = mismatches()[case]
    checkpoint = adam_checkpoint(tmp_path)
    groups = model(dtype, seed=41, shapes=shapes)
    overrides = [{} for _ in shapes]
    target = make_opt(kind, groups, overrides, lr=LR, amsgrad=True) if kind.startswith("Adam") \
        else make_opt(kind, groups, overrides, lr=LR)
    if stepped:
        rng = np.random.default_rng(42)
        for _ in range(2):
            target.step(random_grads(rng, groups))
    before = opt_snapshot(target, flat(groups))
    with pytest.raises(ValueError):
        target.load_state_dict(checkpoint)
    assert_opt_unchanged(target, flat(groups), before, f"{case}: load_state_dict")
    with pytest.raises(ValueError):
        target.load(tmp_path / "adam.npz")
    assert_opt_unchanged(target, flat(groups), before, f"{case}: load")


@pytest.mark.parametrize("change", ["dtype", "shape"])
def test_one_bad_array_in_a_state_dict_changes_nothing(change):
    """The last state array of the checkpoint is corrupted: nothing may be loaded before it is
    found."""
    checkpoint = adam_checkpoint()
    arrays = [(where, value) for where, value in leaves(checkpoint)
              if isinstance(value, np.ndarray) and value.size > 1]
    assert arrays, "the state_dict holds the state arrays"
    where, victim = arrays[-1]
    bad = victim.astype(np.float64) if change == "dtype" else victim.ravel()[:-1]

    def replace(value):
        if value is victim:
            return bad
        if isinstance(value, dict):
            return {k: replace(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(replace(v) for v in value)
        return value

    groups = model(np.float32, seed=43)
    target = make_opt("Adam", groups, OVERRIDES, lr=LR, amsgrad=True)
    rng = np.random.default_rng(44)
    for _ in range(2):
        target.step(random_grads(rng, groups))
    before = opt_snapshot(target, flat(groups))
    with pytest.raises(ValueError):
        target.load_state_dict(replace(checkpoint))
    assert_opt_unchanged(target, flat(groups), before, f"{where} with another {change}")


def crash_case(tmp_path):
    """An AdamW saved after 3 steps (the good checkpoint), then stepped twice more."""
    groups = model(np.float32, seed=45)
    opt = make_opt("AdamW", groups, OVERRIDES, lr=LR)
    rng = np.random.default_rng(46)
    grads = [random_grads(rng, groups) for _ in range(8)]
    for g in grads[:3]:
        opt.step(copies(g))
    path = tmp_path / "ckpt.npz"
    opt.save(path)
    saved = copies(flat(groups))
    good = path.read_bytes()
    for g in grads[3:5]:
        opt.step(copies(g))
    return opt, path, good, saved, grads


def check_old_checkpoint(path, good, saved, grads):
    """`path` still holds the 3-step checkpoint, and resuming from it is the straight run."""
    assert path.read_bytes() == good, "the checkpoint at path was modified"
    groups = [copies(saved[:len(SHAPES[0])]), copies(saved[len(SHAPES[0]):])]
    resumed = make_opt("AdamW", groups, OVERRIDES, lr=LR)
    resumed.load(path)
    assert resumed.step_count == 3
    straight_groups = model(np.float32, seed=45)
    straight = make_opt("AdamW", straight_groups, OVERRIDES, lr=LR)
    for g in grads[:3]:
        straight.step(copies(g))
    for g in grads[5:]:
        resumed.step(copies(g))
        straight.step(copies(g))
    assert_same_run(resumed, flat(groups), straight, flat(straight_groups), "from the old file")


def test_crash_inside_numpy_savez_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    opt, path, good, saved, grads = crash_case(tmp_path)
    original = np.lib.format.write_array
    calls = []

    def write_array(*args, **kwargs):  # writes two arrays of the archive, then "crashes"
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("simulated crash inside numpy.savez")
        return original(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_array)
    with pytest.raises(RuntimeError, match="simulated crash"):
        opt.save(path)
    monkeypatch.undo()
    check_old_checkpoint(path, good, saved, grads)

    fresh = tmp_path / "never-written.npz"
    monkeypatch.setattr(np.lib.format, "write_array", write_array)
    with pytest.raises(RuntimeError, match="simulated crash"):
        opt.save(fresh)
    monkeypatch.undo()
    assert not fresh.exists(), "a crashed first save left a file at path"


def test_crash_at_rename_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    opt, path, good, saved, grads = crash_case(tmp_path)

    def fail(*args, **kwargs):
        raise OSError("simulated crash at rename")

    monkeypatch.setattr(os, "replace", fail)
    monkeypatch.setattr(os, "rename", fail)
    with pytest.raises(OSError, match="simulated crash"):
        opt.save(path)
    monkeypatch.undo()
    check_old_checkpoint(path, good, saved, grads)


# ---------------------------------------------------------------------------------------------
# 6. Aligned memory and bad inputs.


@pytest.mark.parametrize("make", ["empty", "zeros"])
@pytest.mark.parametrize("shape", [0, 1, 17, (3, 5), (2, 0, 3), 100_003])
@pytest.mark.parametrize("dtype", DTYPES + [None], ids=["float32", "float64", "default"])
def test_aligned_allocation(make, shape, dtype):
    for _ in range(20):  # NumPy's own allocations are line-aligned by chance, at times
        a = getattr(adamkern, make)(shape) if dtype is None else \
            getattr(adamkern, make)(shape, dtype)
        assert a.dtype == (np.float32 if dtype is None else dtype)
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,))
        assert a.ctypes.data % 64 == 0
        assert a.flags.c_contiguous and a.flags.writeable
        if make == "zeros":
            assert not a.any()
        a[...] = 1  # writable throughout


@pytest.mark.parametrize("dtype", DTYPES, **DTYPE_IDS)
def test_flatten(dtype):
    rng = np.random.default_rng(47)
    arrays = [rng.standard_normal(s).astype(dtype) for s in [(3, 4), (1,), (17,), (0,), (2, 3, 5)]]
    arrays.append(rng.standard_normal((5, 4)).astype(dtype).T)  # not contiguous
    originals = copies(arrays)
    buffer, views = adamkern.flatten(arrays)
    assert buffer.ndim == 1 and buffer.dtype == dtype and buffer.ctypes.data % 64 == 0
    assert len(views) == len(arrays)
    for i, (view, a) in enumerate(zip(views, arrays)):
        assert view.shape == a.shape and view.dtype == dtype
        assert_bitwise_equal(view, a, f"view {i}")
        assert view.ctypes.data % 64 == 0, f"view {i} not aligned"
        assert a.size == 0 or np.shares_memory(view, buffer)
        assert not np.shares_memory(view, a)
    for i in range(len(views)):
        for j in range(i + 1, len(views)):
            assert not np.shares_memory(views[i], views[j])
    for view in views:  # writes through a view land in the buffer
        view[...] = 7
    for i, a in enumerate(arrays):
        assert_bitwise_equal(a, originals[i], f"input {i} untouched")
    # the padding: zero (memory.py's contract)
    mask = buffer != 7
    assert not buffer[mask].any()


def test_flatten_mixed_dtypes():
    with pytest.raises(TypeError):
        adamkern.flatten([np.zeros(3, np.float32), np.zeros(3, np.float64)])


@pytest.mark.parametrize("kind", ["Adam", "SGD", "Adan"])
def test_wrong_grads_raise_and_change_nothing(kind):
    groups = model(np.float32, seed=48)
    opt = make_opt(kind, groups, OVERRIDES, lr=LR)
    rng = np.random.default_rng(49)
    opt.step(random_grads(rng, groups))
    params = flat(groups)
    before = opt_snapshot(opt, params)
    grads = random_grads(rng, groups)
    bad_shape = copies(grads)
    bad_shape[-1] = bad_shape[-1][:-1]
    bad_dtype = copies(grads)
    bad_dtype[-1] = bad_dtype[-1].astype(np.float64)
    for what, bad, error in [("one grad too few", grads[:-1], ValueError),
                             ("one grad too many", grads + [grads[0]], ValueError),
                             ("a grad of another shape (group 1)", bad_shape, ValueError),
                             ("a grad of another dtype (group 1)", bad_dtype, TypeError)]:
        with pytest.raises(error):
            opt.step(bad)
        assert_opt_unchanged(opt, params, before, f"{kind}: {what}")


@pytest.mark.parametrize("kind", CLASSES)
def test_bad_hyperparameters_raise(kind):
    spec = KINDS[kind]
    rng = np.random.default_rng(50)
    for overrides, _ in spec.bad:
        if "step" in overrides:
            continue
        groups = model(np.float32, seed=51)
        before = copies(flat(groups))
        with pytest.raises(ValueError):
            opt = make_opt(kind, groups, **overrides)
            opt.step(random_grads(rng, groups))
        for a, b in zip(flat(groups), before):
            assert a.tobytes() == b.tobytes(), f"{kind} {overrides}: a param changed"


def test_non_array_params():
    cls = optim().Adam
    for bad in ([[1.0, 2.0]], [1.0], [np.zeros(3, np.float32), "x"],
                [{"params": [[1.0, 2.0]]}]):
        with pytest.raises(TypeError):
            cls(bad)
    integers = np.zeros(3, np.int32)
    with pytest.raises(TypeError):  # at construction or at the step
        cls([integers]).step([np.ones(3, np.int32)])
    assert not integers.any()
    read_only = np.zeros(3, np.float32)
    read_only.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        cls([read_only]).step([np.ones(3, np.float32)])
    assert not read_only.any()
