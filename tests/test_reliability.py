"""A rejected call changes nothing, and a failed step leaves no trace: adamkern.optim's objects
and the functional ops' scalar arguments. Each test was written against a reproduced defect;
the optimizer tests compare with a twin that never saw the bad call."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import adamkern
from adamkern import optim


def _arrays(seed: int, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def _snapshot(opt: optim.Optimizer) -> tuple:
    """Everything a step may change: params, step count, every state and group-state array."""
    def flat(states):
        return [{k: np.array(getattr(v, "codes", v), copy=True) for k, v in s.items()}
                for s in states]
    return ([p.copy() for p in opt.params], opt.step_count, flat(opt.state),
            flat(opt.group_state))


def _assert_same(a: tuple, b: tuple) -> None:
    params_a, count_a, state_a, group_a = a
    params_b, count_b, state_b, group_b = b
    assert count_a == count_b
    for x, y in zip(params_a, params_b):
        np.testing.assert_array_equal(x, y, strict=True)
    for states_a, states_b in ((state_a, state_b), (group_a, group_b)):
        assert [sorted(s) for s in states_a] == [sorted(s) for s in states_b]
        for s, t in zip(states_a, states_b):
            for key in s:
                np.testing.assert_array_equal(s[key], t[key], strict=True)


def _twins(cls, groups, **options):
    """Two optimizers over equal copies of the same params (groups: list of lists of arrays,
    each with its overrides as a dict after the arrays)."""
    def build():
        return cls([{"params": [p.copy() for p in arrays], **overrides}
                    for arrays, overrides in groups], **options)
    return build(), build()


def _grads(opt, seed):
    return _arrays(seed, *(p.shape for p in opt.params))


# -- a failed step leaves no state behind ---------------------------------------------------

@pytest.mark.parametrize("cls, options", [
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (optim.NAdam, {}),
    (optim.AdamW, {"amsgrad": True}),
    (optim.RMSprop, {"momentum": 0.5, "centered": True}),
    (optim.Yogi, {}),
])
@pytest.mark.parametrize("groups", [1, 2])
def test_rejected_first_step_leaves_no_state(cls, options, groups):
    shapes = [(5,), (3, 4)][:groups]
    opt, twin = _twins(cls, [(_arrays(k, shape), {}) for k, shape in enumerate(shapes)],
                       **options)
    before = _snapshot(opt)
    opt.param_groups[-1]["lr"] = lambda step: -1.0  # the last group's call is refused
    with pytest.raises(ValueError, match="lr"):
        opt.step(_grads(opt, 7))
    _assert_same(_snapshot(opt), before)
    opt.param_groups[-1]["lr"] = twin.param_groups[-1]["lr"]
    for seed in (8, 9, 10):
        opt.step(_grads(opt, seed))
        twin.step(_grads(twin, seed))
        _assert_same(_snapshot(opt), _snapshot(twin))


def test_sgd_momentum_after_a_rejected_first_step():
    # the reproduced case: 0.95 instead of 0.9 after one step (a zero buffer from the failed
    # step made the next step take the "not first" branch)
    p = np.zeros(1, np.float32)
    opt = optim.SGD([p], lr=1.0, momentum=0.9, dampening=0.5)
    opt.param_groups[0]["lr"] = lambda step: float("nan")  # a schedule gone wrong
    with pytest.raises(ValueError):
        opt.step([np.ones(1, np.float32)])
    assert opt.state == [{}]
    opt.param_groups[0]["lr"] = 1.0
    opt.step([np.ones(1, np.float32)])
    np.testing.assert_array_equal(opt.state[0]["momentum_buffer"], [1.0])
    np.testing.assert_array_equal(p, [-1.0])


def test_rejected_step_with_a_schedule_leaves_no_state():
    def bad_schedule(step: int) -> float:
        return float("nan") if step == 0 else 1e-2

    p = _arrays(0, (6,))[0]
    opt = optim.Adam([p], lr=bad_schedule)
    with pytest.raises(ValueError, match="lr"):
        opt.step(_arrays(1, (6,)))
    assert opt.state == [{}] and opt.step_count == 0


@pytest.mark.parametrize("key, value", [("lr", "1e-3"), ("lr", None), ("lr", -5.0),
                                        ("betas", (2, "x")), ("eps", "nope"), ("lr", True),
                                        ("weight_decay", float("nan"))])
def test_hyperparameters_are_checked_where_given(key, value):
    params = _arrays(0, (3,))
    with pytest.raises((TypeError, ValueError), match=key.rstrip("s")):
        optim.AdamW(params, **{key: value})
    with pytest.raises((TypeError, ValueError), match=key.rstrip("s")):
        optim.AdamW([{"params": params, key: value}])
    opt = optim.AdamW(params)
    with pytest.raises((TypeError, ValueError), match=key.rstrip("s")):
        opt.param_groups[0][key] = value
    with pytest.raises((TypeError, ValueError), match=key.rstrip("s")):
        opt.param_groups[0].update({key: value})
    assert opt.param_groups[0][key] == opt.defaults[key]


def test_group_edits_are_checked_one_value_at_a_time():
    # turning momentum off before nesterov must not be refused half-way: combinations are
    # checked when the group steps
    opt = optim.SGD(_arrays(0, (3,)), lr=0.1, momentum=0.9, nesterov=True)
    opt.param_groups[0]["momentum"] = 0.0
    with pytest.raises(ValueError, match="nesterov"):
        opt.step(_arrays(1, (3,)))
    opt.param_groups[0]["nesterov"] = False
    opt.step(_arrays(1, (3,)))
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        opt.param_groups[0]["nesterov"] = "yes"
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optim.Adagrad(_arrays(0, (3,)), initial_accumulator_value=-1.0)


def test_a_whole_group_replaced_is_checked_where_it_is_given():
    params = _arrays(0, (3,), (4,))
    opt = optim.AdamW([{"params": [params[0]]}, {"params": [params[1]], "lr": 0.2}], lr=0.1,
                      weight_decay=0.5)
    before = [dict(g) for g in opt.param_groups]
    for group, error, match in [({"lr": "1e-3"}, TypeError, "lr must be a real number"),
                                ({"lr": None}, TypeError, "lr"),
                                ({"betas": (1.5, 0.9)}, ValueError, "beta"),
                                ({"lrr": 0.1}, ValueError, "unknown keys \\['lrr'\\]"),
                                ({"params": [params[1]]}, ValueError, "keep the group's params"),
                                ({"params": [params[0].copy()]}, ValueError, "params"),
                                ([("lr", 0.1)], TypeError, "must be a dict")]:
        with pytest.raises(error, match=match):
            opt.param_groups[0] = group
    assert [dict(g) for g in opt.param_groups] == before  # nothing changed
    # a replacement keeps the params; what it leaves out takes the optimizer's defaults
    opt.param_groups[1] = {"lr": 0.3}
    assert opt.param_groups[1]["params"][0] is params[1]
    assert opt.param_groups[1]["lr"] == 0.3 and opt.param_groups[1]["weight_decay"] == 0.5
    opt.param_groups[-2] = {**opt.param_groups[0], "lr": 0.05}
    with pytest.raises(TypeError, match="lr must be a real number"):  # still checked per value
        opt.param_groups[1]["lr"] = "0.1"
    opt.step(_arrays(1, (3,), (4,)))
    reference = optim.AdamW([{"params": [p.copy()], "lr": lr} for p, lr in
                             zip(_arrays(0, (3,), (4,)), (0.05, 0.3))], weight_decay=0.5)
    reference.step(_arrays(1, (3,), (4,)))
    for ours, theirs in zip(params, reference.params):
        np.testing.assert_array_equal(ours, theirs)


def test_groups_are_not_added_or_removed_through_the_list():
    opt = optim.SGD(_arrays(0, (3,)), lr=0.1)
    group = opt.param_groups[0]
    for change in (lambda g: g.append({"params": _arrays(1, (2,))}), lambda g: g.pop(),
                   lambda g: g.clear(), lambda g: g.insert(0, {}), lambda g: g.reverse(),
                   lambda g: g.__delitem__(0), lambda g: g.extend([]),
                   lambda g: g.__setitem__(slice(0, 1), [])):
        with pytest.raises(TypeError, match="param groups"):
            change(opt.param_groups)
    assert opt.param_groups == [group] and opt.param_groups[0] is group
    opt.add_param_group({"params": _arrays(1, (2,))})
    assert len(opt.param_groups) == 2 and len(opt.state) == 2


@pytest.mark.parametrize("duplicate", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))])
def test_copied_groups_keep_their_checks(duplicate):
    opt = optim.AdamW([{"params": _arrays(0, (3,))}, {"params": _arrays(1, (2,)), "lr": 0.2}])
    twin = duplicate(opt)
    assert [g["lr"] for g in twin.param_groups] == [1e-3, 0.2]
    with pytest.raises(TypeError, match="lr must be a real number"):
        twin.param_groups[1]["lr"] = "0.1"
    with pytest.raises(ValueError, match="keep the group's params"):
        twin.param_groups[0] = {"params": opt.param_groups[0]["params"]}  # the original's
    twin.param_groups[0] = {"lr": 0.5}
    twin.step(_arrays(2, (3,), (2,)))
    assert opt.param_groups[0]["lr"] == 1e-3


# -- clipping happens only once the step is known to pass -------------------------------------

@pytest.mark.parametrize("clip", [{"max_grad_norm": 0.5}, {"max_grad_value": 0.1},
                                  {"max_grad_norm": 0.5, "max_grad_value": 0.1}])
def test_rejected_step_does_not_clip_the_grads(clip):
    params = _arrays(0, (50,), (7, 3))
    opt = optim.AdamW(params, **clip)
    opt.step(_arrays(1, (50,), (7, 3)))  # state exists: the op's own checks are the last line
    opt.param_groups[0]["lr"] = lambda step: -5.0
    grads = [10 * g for g in _arrays(2, (50,), (7, 3))]
    grads_before = [g.copy() for g in grads]
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="lr"):
        opt.step(grads)
    for g, b in zip(grads, grads_before):
        np.testing.assert_array_equal(g, b)
    _assert_same(_snapshot(opt), before)


def test_grad_aliasing_its_param_is_refused_before_clipping():
    p = np.full(8, 4.0, np.float32)
    opt = optim.SGD([p], lr=0.1, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="overlap"):
        opt.step([p])  # the grad is the param itself: clipping would scale the param
    np.testing.assert_array_equal(p, np.full(8, 4.0, np.float32))


# -- one step never touches the same memory twice ---------------------------------------------

def test_params_overlapping_across_groups_are_refused():
    base = np.arange(8, dtype=np.float32)
    with pytest.raises(ValueError, match=r"param_groups\[1\] params\[0\] overlaps"):
        optim.AdamW([{"params": [base]}, {"params": [base[:4]]}])
    with pytest.raises(ValueError, match="overlaps"):
        optim.AdamW([base[:4], base[2:6]])  # within one group too
    opt = optim.AdamW([base[:4]])
    with pytest.raises(ValueError, match="overlaps"):
        opt.add_param_group({"params": [base[3:5]]})
    assert len(opt.param_groups) == 1
    optim.AdamW([{"params": [base[:4]]}, {"params": [base[4:]]}])  # adjacent is fine


def test_grads_overlapping_across_groups_are_refused():
    a, b = _arrays(0, (4,), (4,))
    opt = optim.AdamW([{"params": [a]}, {"params": [b]}], lr=0.1)
    before = _snapshot(opt)
    with pytest.raises(ValueError, match="overlaps"):
        opt.step([np.ones(4, np.float32), a])  # group 1's grad is group 0's param
    _assert_same(_snapshot(opt), before)
    shared = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        opt.step([shared, shared])
    _assert_same(_snapshot(opt), before)


# -- NAdam's mu_product is in the overlap check ------------------------------------------------

@pytest.mark.parametrize("where", ["params", "grads", "exp_avgs", "exp_avg_sqs"])
def test_nadam_mu_product_aliasing_a_tensor_is_refused(where):
    p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    arrays = {"params": p, "grads": g, "exp_avgs": m, "exp_avg_sqs": v}
    arrays[where][2] = 1.0  # a valid mu_product value, so only the overlap can refuse it
    before = {k: a.copy() for k, a in arrays.items()}
    with pytest.raises(ValueError, match=f"mu_product overlaps {where}\\[0\\]"):
        adamkern.nadam_(p, g, m, v, mu_product=arrays[where][2:3], step=1)
    for k, a in arrays.items():
        np.testing.assert_array_equal(a, before[k])


def test_nadam_mu_product_of_its_own_is_updated():
    p, g = np.ones(4, np.float32), np.full(4, 0.5, np.float32)
    m, v, mu = np.zeros(4, np.float32), np.zeros(4, np.float32), np.ones(1, np.float32)
    adamkern.nadam_(p, g, m, v, mu_product=mu, step=1)
    assert 0.0 < mu[0] < 1.0


# -- scalar arguments: named errors, never a binding's signature list --------------------------

def _adam_arrays():
    p = np.ones(4, np.float32)
    return p, p.copy(), np.zeros(4, np.float32), np.zeros(4, np.float32)


@pytest.mark.parametrize("name, value", [
    ("lr", True), ("lr", np.bool_(True)), ("lr", None), ("lr", "1e-3"), ("lr", 1e-3 + 0j),
    ("eps", np.array([1e-8])), ("eps", np.array(True)), ("weight_decay", [0.1]),
    ("step", True), ("step", "1"), ("step", None),
])
def test_scalar_of_the_wrong_type_is_named(name, value):
    arrays = _adam_arrays()
    before = [a.copy() for a in arrays]
    arguments = {"step": 1, name: value}
    with pytest.raises(TypeError) as error:
        adamkern.adamw_(*arrays, **arguments)
    message = str(error.value)
    assert f"adamw_: {name} must be a real number" in message
    assert "incompatible function arguments" not in message
    assert error.value.__cause__ is None  # no dump shown: nothing chained, or chained and hidden
    assert error.value.__context__ is None or error.value.__suppress_context__
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op, states", [(adamkern.sgd_, [None]), (adamkern.rmsprop_, 1),
                                        (adamkern.adadelta_, 2), (adamkern.lion_, 1)])
def test_other_ops_name_the_refused_scalar(op, states):
    p = np.ones(3, np.float32)
    if isinstance(states, int):
        states = [np.zeros(3, np.float32) for _ in range(states)]
    with pytest.raises(TypeError, match=f"{op.__name__}: lr must be a real number"):
        op(p, p.copy(), *states, lr="0.1")
    np.testing.assert_array_equal(p, np.ones(3, np.float32))


@pytest.mark.parametrize("name", ["grad_scale", "found_inf"])
@pytest.mark.parametrize("value", [1j, np.complex64(1), np.complex128(1), np.array(1 + 0j),
                                   np.array([1], np.complex64)],
                         ids=["complex", "complex64", "complex128", "0-d", "1-element"])
def test_complex_amp_scalars_are_refused(name, value):
    arrays = _adam_arrays()
    before = [a.copy() for a in arrays]
    with pytest.raises(TypeError, match=f"{name} must be None, a real number"):
        adamkern.adamw_(*arrays, step=1, **{name: value})
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))


def test_boolean_option_of_the_wrong_type_is_named():
    with pytest.raises(TypeError, match="adam_: amsgrad must be True or False"):
        adamkern.adam_(*_adam_arrays(), step=1, amsgrad="yes")


def test_numpy_scalars_and_zero_d_arrays_are_real_numbers():
    reference, arrays = _adam_arrays(), _adam_arrays()
    adamkern.adamw_(*reference, step=3, lr=1e-2, eps=1e-8)
    adamkern.adamw_(*arrays, step=np.int64(3), lr=np.float32(1e-2), eps=np.array(1e-8))
    np.testing.assert_array_equal(arrays[0], reference[0])


@pytest.mark.parametrize("step", [float("inf"), float("nan"), 0, -3, 2.0**70, 1.5])
@pytest.mark.parametrize("mode", ["stochastic", "master"])
def test_bad_step_with_rounding_options_names_step(step, mode):
    bf16 = adamkern.lowp.bfloat16()
    p = np.ones(4, np.float32).astype(bf16)
    g, m, v = p.copy(), np.zeros(4, np.float32), np.zeros(4, np.float32)
    extra = ({"rounding": "stochastic"} if mode == "stochastic"
             else {"master_params": np.ones(4, np.float32)})
    before = p.copy()
    with pytest.raises(ValueError, match="step must be"):
        adamkern.adamw_(p, g, m, v, step=step, **extra)
    np.testing.assert_array_equal(p.view(np.uint16), before.view(np.uint16))


@pytest.mark.parametrize("step", [1.5, 0.5, np.float32(2.25), 0, -1, float("inf")])
def test_steps_are_whole_numbers(step):
    arrays = _adam_arrays()
    before = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match="step must be a whole number >= 1"):
        adamkern.adam_(*arrays, step=step)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("step", [3, np.int64(3), np.uint8(3), 3.0, np.float32(3.0),
                                  np.array(3)])
def test_a_whole_step_of_any_numeric_type_is_the_same_step(step):
    reference, arrays = _adam_arrays(), _adam_arrays()
    adamkern.adam_(*reference, step=3)
    adamkern.adam_(*arrays, step=step)
    np.testing.assert_array_equal(arrays[0], reference[0], strict=True)


def test_boolean_betas_are_refused():
    with pytest.raises(ValueError, match="betas"):
        adamkern.adam_(*_adam_arrays(), step=1, betas=(True, 0.9))


# -- the optimizer objects under random sequences of good and bad calls ------------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
stateful = pytest.importorskip("hypothesis.stateful")

# (class, constructor options): every class, with the options that change its state or its
# path through step (clipping, lower-precision state, stochastic rounding)
_FUZZED = [
    (optim.Adam, {"amsgrad": True, "weight_decay": 0.1}),
    (optim.AdamW, {"max_grad_norm": 1.0}),
    (optim.AdamW, {"state_dtype": "bfloat16", "rounding": "stochastic", "seed": 3}),
    (optim.AdamW, {"state_dtype": "int8", "max_grad_value": 0.5}),
    (optim.Adamax, {}),
    (optim.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.01}),
    (optim.RAdam, {}),
    (optim.RMSprop, {"momentum": 0.9, "centered": True}),
    (optim.Adagrad, {"initial_accumulator_value": 0.1, "lr_decay": 0.01}),
    (optim.Adadelta, {}),
    (optim.SGD, {"momentum": 0.9, "dampening": 0.1, "max_grad_norm": 0.5}),
    (optim.Lion, {}),
    (optim.AdaBelief, {}),
    (optim.LAMB, {}),
    (optim.Adan, {}),
    (optim.Yogi, {}),
]
_SHAPES = st.sampled_from([(1,), (7,), (17,), (4, 5), (33,), (2, 3, 3)])


class OptimizerTwins(stateful.RuleBasedStateMachine):
    """``opt`` gets every call, good or bad; ``twin`` only the good ones. Bad calls must raise
    TypeError/ValueError, and after every call both must hold the same bytes."""

    @stateful.initialize(kind=st.sampled_from(_FUZZED),
                         groups=st.lists(st.lists(_SHAPES, min_size=1, max_size=3),
                                         min_size=1, max_size=3),
                         seed=st.integers(0, 2**16))
    def build(self, kind, groups, seed):
        cls, options = kind
        self.cls, self.options, self.seed = cls, options, seed
        arrays = [(_arrays(seed + k, *shapes), {"lr": 1e-2 * (k + 1)})
                  for k, shapes in enumerate(groups)]
        self.opt, self.twin = _twins(cls, arrays, **options)

    def _grads(self, seed):
        return _arrays(seed, *(p.shape for p in self.opt.params))

    @stateful.invariant()
    def same_bytes(self):
        if hasattr(self, "opt"):
            _assert_same(_snapshot(self.opt), _snapshot(self.twin))

    @stateful.rule(seed=st.integers(0, 2**16))
    def good_step(self, seed):
        self.opt.step(self._grads(seed))
        self.twin.step(self._grads(seed))

    def _refused(self, call):
        with pytest.raises((TypeError, ValueError)):
            call()

    @stateful.rule(seed=st.integers(0, 2**16),
                   bad=st.sampled_from(["count", "dtype", "shape", "alias_param",
                                        "read_only", "strided"]))
    def bad_grads(self, seed, bad):
        grads = self._grads(seed)
        k = seed % len(grads)
        if bad == "count":
            grads = grads[:-1]
        elif bad == "dtype":
            grads[k] = grads[k].astype(np.float64)
        elif bad == "shape":
            grads[k] = np.zeros(grads[k].size + 1, np.float32)
        elif bad == "alias_param":  # a grad that is the param itself
            grads[k] = self.opt.params[k]
        elif bad == "read_only":
            grads[k].flags.writeable = False
            if not (self.opt.max_grad_norm or self.opt.max_grad_value):
                return  # read-only grads are fine unless the step writes them
        elif bad == "strided":
            grads[k] = np.repeat(grads[k], 2).reshape(*grads[k].shape, 2)[..., 0]
        self._refused(lambda: self.opt.step(grads))

    @stateful.rule(group=st.integers(0, 2),
                   key_value=st.sampled_from([("lr", -1.0), ("lr", float("nan")),
                                              ("lr", True), ("lr", "1e-3"), ("lr", None),
                                              ("weight_decay", -0.5),
                                              ("lr", lambda step: float("inf"))]),
                   seed=st.integers(0, 2**16))
    def bad_hyperparameter(self, group, key_value, seed):
        group = self.opt.param_groups[group % len(self.opt.param_groups)]
        key, value = key_value
        if key not in group:
            return
        kept = group[key]
        try:
            group[key] = value  # refused here, unless a callable: then at the step
        except (TypeError, ValueError):
            assert group[key] is kept
            return
        try:
            self._refused(lambda: self.opt.step(self._grads(seed)))
        finally:
            group[key] = kept

    @stateful.rule(group=st.integers(0, 2), lr=st.floats(1e-4, 1e-1))
    def edit_lr(self, group, lr):
        for opt in (self.opt, self.twin):
            opt.param_groups[group % len(opt.param_groups)]["lr"] = lr

    @stateful.rule(shapes=st.lists(_SHAPES, min_size=1, max_size=2), seed=st.integers(0, 99))
    def add_group(self, shapes, seed):
        arrays = _arrays(seed, *shapes)
        for opt in (self.opt, self.twin):
            opt.add_param_group({"params": [a.copy() for a in arrays]})

    @stateful.rule(group=st.integers(0, 2))
    def add_overlapping_group(self, group):
        param = self.opt.param_groups[group % len(self.opt.param_groups)]["params"][0]
        self._refused(lambda: self.opt.add_param_group({"params": [param.reshape(-1)[:1]]}))

    @stateful.rule()
    def save_and_load(self):
        import tempfile

        with tempfile.TemporaryDirectory() as directory:
            path = f"{directory}/checkpoint.npz"
            self.opt.save(path)
            self.opt.load(path)

    @stateful.rule(bad=st.sampled_from(["kind", "groups", "step_count", "shape"]))
    def load_bad_state_dict(self, bad):
        sd = self.opt.state_dict()
        sd = {**sd, "state": [dict(s) for s in sd["state"]]}
        if bad == "kind":
            sd["optimizer"] = "Other"
        elif bad == "groups":
            sd["param_groups"] = sd["param_groups"][:-1] + sd["param_groups"][-1:] * 2
        elif bad == "step_count":
            sd["step_count"] = None
        elif not any(sd["state"]):
            return
        else:
            entry = next(s for s in sd["state"] if s)
            name = next(iter(entry))
            if isinstance(entry[name], np.ndarray):
                entry[name] = np.zeros(entry[name].size + 1, entry[name].dtype)
        self._refused(lambda: self.opt.load_state_dict(sd))


TestOptimizerTwins = OptimizerTwins.TestCase
TestOptimizerTwins.settings = hypothesis.settings(
    max_examples=60, stateful_step_count=12, deadline=None, derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck))


def test_nadam_runs_past_the_underflow_of_mu_product():
    # float32 mu_product reaches 0 at step 133 with the defaults; torch goes on with it
    rng = np.random.default_rng(0)
    p = rng.standard_normal(5).astype(np.float32)
    opt = optim.NAdam([p])
    for _ in range(200):
        opt.step([rng.standard_normal(5).astype(np.float32)])
    assert opt.group_state[0]["mu_product"][0] == 0.0 and np.isfinite(p).all()
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    tp = torch.tensor(rng.standard_normal(5).astype(np.float32), requires_grad=True)
    reference = torch.optim.NAdam([tp])
    for _ in range(200):
        tp.grad = torch.tensor(rng.standard_normal(5).astype(np.float32))
        reference.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_state_of_part_of_a_group_is_refused():
    # SGD steps a group in one call with one first-step flag: state for only some params
    # would restart the others' momentum (1.0 instead of torch's 1.9)
    params = [np.ones(3, np.float32), np.ones(2, np.float32)]
    opt = optim.SGD([p.copy() for p in params], lr=0.1, momentum=0.9)
    opt.step([np.ones(3, np.float32), np.ones(2, np.float32)])
    sd = opt.state_dict()
    sd["state"][1] = {}
    other = optim.SGD([p.copy() for p in params], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"'momentum_buffer' for some params of "
                                         r"param_groups\[0\] but not for state\[1\]"):
        other.load_state_dict(sd)
    assert other.state == [{}, {}]
