"""adamkern.torch under the conditions a training loop meets besides the plain one: params that
start getting grads late (per-param first steps and step counts), steps that raise (nothing may
change, in any group), params sharing memory, and checkpoints older torch versions wrote.
Compared with torch.optim itself: bitwise with its fused path where torch has one, within a few
ULP of its single-tensor path otherwise."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

SIZE = 37  # not a multiple of any SIMD width

# name, hyperparameters, whether torch has a fused path (compared bitwise) or not (close)
CASES = [
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3), True),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1), True),
    ("SGD", dict(lr=0.1, momentum=0.9), True),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), True),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3), True),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), True),
    ("NAdam", dict(lr=1e-2, weight_decay=1e-2), False),
    ("RAdam", dict(lr=1e-2), False),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True), False),
    ("Adamax", dict(lr=1e-2), False),
    ("Adadelta", dict(weight_decay=1e-2), False),
]
IDS = [f"{name}-{i}" for i, (name, _, _) in enumerate(CASES)]
ALL = [(name, kwargs) for name, kwargs, _ in CASES] + [("Lion", dict(lr=1e-3))]
ALL_IDS = [f"{name}-{i}" for i, (name, _) in enumerate(ALL)]

# Which params have a grad at each step: param 0 always, param 1 from step 2 on (a layer
# unfrozen late), param 2 not at steps 2 and 3 (so the three params' step counts all differ).
SCHEDULE = [(True, False, True), (True, False, True), (True, True, False), (True, True, False),
            (True, True, True), (True, True, True)]


def initial(count=3, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(SIZE, generator=generator, dtype=dtype) for _ in range(count)]


def grad(step, index, dtype=torch.float32):
    generator = torch.Generator().manual_seed(100 * step + index + 1)
    return torch.randn(SIZE, generator=generator, dtype=dtype)


class PerParam:
    """One optimizer per param, each stepped only when its param has a grad: how each param is
    stepped on its own (torch's fused kernels are elementwise, so a param stepped alone is
    stepped as in any group)."""

    def __init__(self, make, params):
        self.optimizers = [(p, make([p])) for p in params]

    def step(self):
        for p, opt in self.optimizers:
            if p.grad is not None:
                opt.step()


def train(make, schedule=SCHEDULE, dtype=torch.float32, before_step=None):
    params = [torch.nn.Parameter(x) for x in initial(len(schedule[0]), dtype)]
    opt = make(params)
    for step, has_grads in enumerate(schedule):
        for index, (p, has) in enumerate(zip(params, has_grads)):
            p.grad = grad(step, index, dtype) if has else None
        if before_step is not None:
            before_step(step, opt)
        opt.step()
    return params, opt


def ours(name, kwargs):
    return lambda params: getattr(akt, name)(params, **kwargs)


def torchs(name, kwargs, fused):
    flags = {"fused": True} if fused else {"foreach": False}
    return lambda params: getattr(torch.optim, name)(params, **kwargs, **flags)


def assert_params(actual, expected, bitwise, dtype=torch.float32):
    for a, b in zip(actual, expected):
        if bitwise:
            assert torch.equal(a, b)
        else:  # a few ULP per step (torch's single-tensor path has no fma)
            eps = torch.finfo(dtype).eps
            assert torch.allclose(a, b, rtol=0, atol=50 * eps * b.abs().max().item())


def snapshot(opt, params):
    """Everything a step could change: params, grads, the state (keys, entries, contents)."""
    state = {id(p): {k: (v, v.clone()) if isinstance(v, torch.Tensor) else (v, v)
                     for k, v in s.items()} for p, s in opt.state.items()}
    return ([p.detach().clone() for p in params],
            [None if p.grad is None else (p.grad, p.grad.clone()) for p in params], state)


def assert_unchanged(opt, params, before):
    after_params, after_grads, after_state = snapshot(opt, params)
    old_params, old_grads, old_state = before
    assert all(torch.equal(a, b) for a, b in zip(after_params, old_params))
    for now, then in zip(after_grads, old_grads):
        assert (now is None) == (then is None)
        if now is not None:
            assert now[0] is then[0] and torch.equal(now[0], then[1])
    assert after_state.keys() == old_state.keys()
    for key, entries in old_state.items():
        assert after_state[key].keys() == entries.keys()
        for name, (obj, copied) in entries.items():
            assert after_state[key][name][0] is obj
            if isinstance(obj, torch.Tensor):
                assert torch.equal(obj, copied), name
            else:
                assert obj == copied, name


# -- first steps and step counts are per param --------------------------------------------------


def test_sgd_momentum_starts_per_param():
    """A param stepped for the first time does not reset the other params' momentum."""
    def run(make):
        a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
        opt = make([a, b])
        a.grad = torch.ones(3)
        opt.step()
        a.grad, b.grad = torch.ones(3), torch.ones(3)  # b's first step, a's second
        opt.step()
        return opt.state[a]["momentum_buffer"], a.detach()

    buffer, a = run(lambda p: akt.SGD(p, lr=1.0, momentum=0.9))
    for foreach in (True, False):  # torch's fused SGD refuses a group where some buffers exist
        expected_buffer, expected_a = run(
            lambda p, foreach=foreach: torch.optim.SGD(p, lr=1.0, momentum=0.9, foreach=foreach))
        assert torch.equal(buffer, expected_buffer)  # 1.9, not 1.0
        assert torch.equal(a, expected_a)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, kwargs, fused", CASES, ids=IDS)
def test_params_joining_late_step_like_torch(name, kwargs, fused, dtype):
    """One group whose params have different first steps and step counts."""
    params, opt = train(ours(name, kwargs), dtype=dtype)
    if fused:  # torch's fused SGD refuses a group where only some buffers exist: per param
        expected, _ = train(lambda p: PerParam(torchs(name, kwargs, True), p), dtype=dtype)
    else:
        expected, _ = train(torchs(name, kwargs, False), dtype=dtype)
    assert_params(params, expected, fused, dtype)
    if fused and name != "SGD":  # torch's fused path takes the group whole
        in_one_group, _ = train(torchs(name, kwargs, True), dtype=dtype)
        assert_params(params, in_one_group, True)
    counts = [sum(has[i] for has in SCHEDULE) for i in range(3)]
    if "step" in opt.state[params[0]]:
        assert [float(opt.state[p]["step"]) for p in params] == counts


@pytest.mark.parametrize("name, kwargs", ALL, ids=ALL_IDS)
def test_a_group_steps_each_param_as_on_its_own(name, kwargs):
    params, _ = train(ours(name, kwargs))
    alone, _ = train(lambda p: PerParam(ours(name, kwargs), p))
    assert_params(params, alone, True)


def test_nadam_mu_product_is_per_param():
    """Two params with equal step counts but different momentum histories (beta1 changed while
    one of them had no grad) keep their own mu_product."""
    schedule = [(True, False), (True, True), (False, True), (True, True), (True, True)]

    def change_beta1(step, opt):
        if step == 2:
            for group in opt.param_groups:
                group["betas"] = (0.7, 0.999)

    params, opt = train(ours("NAdam", dict(lr=1e-2)), schedule, before_step=change_beta1)
    expected, reference = train(torchs("NAdam", dict(lr=1e-2), False), schedule,
                                before_step=change_beta1)
    assert_params(params, expected, False)
    for p, q in zip(params, reference.param_groups[0]["params"]):
        assert float(opt.state[p]["step"]) == float(reference.state[q]["step"]) == 4.0
        assert torch.equal(opt.state[p]["mu_product"], reference.state[q]["mu_product"])


# -- a step that raises changes nothing ---------------------------------------------------------


def alias_grad(param):
    """A grad that is the param's own memory: torch accepts it, the kernels refuse it."""
    param.grad = param.detach()


@pytest.mark.parametrize("name, kwargs", ALL, ids=ALL_IDS)
def test_failed_first_step_leaves_no_state(name, kwargs):
    def fail_once(step, opt):
        if step == 0:
            good = [p.grad for p in params]
            alias_grad(params[2])
            before = snapshot(opt, params)
            with pytest.raises(ValueError, match=r"param_groups\[0\] param 2"):
                opt.step()
            assert_unchanged(opt, params, before)
            assert len(opt.state) == 0
            for p, g in zip(params, good):
                p.grad = g

    params = [torch.nn.Parameter(x) for x in initial()]
    make = ours(name, kwargs)
    opt = make(params)
    for step, has_grads in enumerate(SCHEDULE):
        for index, (p, has) in enumerate(zip(params, has_grads)):
            p.grad = grad(step, index) if has else None
        fail_once(step, opt)
        opt.step()
    clean, _ = train(make)
    assert_params(params, clean, True)


@pytest.mark.parametrize("name, kwargs", ALL, ids=ALL_IDS)
def test_failed_step_of_a_late_param_leaves_the_others_unstepped(name, kwargs):
    """At step 2 param 1 is new (its own call, besides the others'): its failure must not leave
    the other call done, nor its state created (SGD's momentum, NAdam's mu_product)."""
    params = [torch.nn.Parameter(x) for x in initial()]
    make = ours(name, kwargs)
    opt = make(params)
    for step, has_grads in enumerate(SCHEDULE):
        for index, (p, has) in enumerate(zip(params, has_grads)):
            p.grad = grad(step, index) if has else None
        if step == 2:
            good = params[1].grad
            alias_grad(params[1])
            before = snapshot(opt, params)
            with pytest.raises(ValueError, match=r"param_groups\[0\] param 1"):
                opt.step()
            assert_unchanged(opt, params, before)
            assert params[1] not in opt.state
            params[1].grad = good
        opt.step()
    clean, _ = train(make)
    assert_params(params, clean, True)


@pytest.mark.parametrize("name, kwargs", ALL, ids=ALL_IDS)
def test_error_in_a_later_group_steps_no_group(name, kwargs):
    def groups(params):
        return getattr(akt, name)([{"params": params[:2]}, {"params": params[2:]}], **kwargs)

    params = [torch.nn.Parameter(x) for x in initial()]
    opt = groups(params)
    for step, has_grads in enumerate(SCHEDULE):
        for index, (p, has) in enumerate(zip(params, has_grads)):
            p.grad = grad(step, index) if has else None
        if step in (0, 4):  # the first step (no state yet) and a later one
            good = params[2].grad
            alias_grad(params[2])
            before = snapshot(opt, params)
            with pytest.raises(ValueError, match=r"param_groups\[1\] param 0"):
                opt.step()
            assert_unchanged(opt, params, before)
            params[2].grad = good
        opt.step()
    clean, _ = train(groups)
    assert_params(params, clean, True)


def test_bad_hyperparameter_in_a_later_group_names_it():
    params = [torch.nn.Parameter(x) for x in initial()]
    opt = akt.AdamW([{"params": params[:2]}, {"params": params[2:]}])
    opt.param_groups[1]["lr"] = -1.0  # torch's groups are plain dicts: checked at the step
    for index, p in enumerate(params):
        p.grad = grad(0, index)
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"param_groups\[1\].*lr"):
        opt.step()
    assert_unchanged(opt, params, before)
    assert len(opt.state) == 0


def test_failed_step_records_no_history():
    params = [torch.nn.Parameter(x) for x in initial()]
    opt = akt.AdamW(params)
    history = opt.record_history()
    for index, p in enumerate(params):
        p.grad = grad(0, index)
    opt.step()
    alias_grad(params[0])
    with pytest.raises(ValueError):
        opt.step()
    assert len(history) == 1


# -- errors name the param ----------------------------------------------------------------------


def test_errors_name_the_group_and_param():
    fine = [torch.nn.Parameter(x) for x in initial(2)]
    complex_ = torch.nn.Parameter(torch.zeros(SIZE, dtype=torch.complex64))
    for p in [*fine, complex_]:
        p.grad = torch.zeros_like(p)
    opt = akt.AdamW([{"params": fine[:1]}, {"params": [fine[1], complex_]}])
    with pytest.raises(ValueError, match=r"^param_groups\[1\] param 1 is complex"):
        opt.step()  # the param, not the exp_avg made from it
    assert len(opt.state) == 0

    # the op counts the params of its call; the message counts the group's
    params = [torch.nn.Parameter(x) for x in initial()]
    params[0].grad = grad(0, 0)
    alias_grad(params[2])  # params[1] has no grad: params[2] is the call's params[1]
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 2 and param_groups\[0\] "
                                         r"param 2's grad overlap"):
        akt.SGD(params, lr=0.1).step()


# -- params sharing memory ----------------------------------------------------------------------


def views_of_one_storage():
    base = torch.zeros(8)
    return torch.nn.Parameter(base), torch.nn.Parameter(base[4:])


def test_overlapping_params_are_refused_when_added():
    whole, half = views_of_one_storage()
    message = r"param_groups\[0\] param 0 and param_groups\[1\] param 0 overlap in memory"
    with pytest.raises(ValueError, match=message):
        akt.AdamW([{"params": [whole]}, {"params": [half]}])
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 0 and param_groups\[0\] "
                                         r"param 1 overlap in memory"):
        akt.SGD([whole, half], lr=0.1)
    opt = akt.AdamW([whole])
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": [half]})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(4))]})  # disjoint: fine
    akt.SGD([torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(0))], lr=0.1)


@pytest.mark.parametrize("grouped", [False, True], ids=["one-group", "two-groups"])
def test_memory_is_never_stepped_twice(grouped):
    """Params made to share memory after construction (``.data`` replaced) are refused at the
    step, and nothing is stepped."""
    whole = torch.nn.Parameter(torch.zeros(8))
    half = torch.nn.Parameter(torch.zeros(4))
    opt = akt.SGD([{"params": [whole]}, {"params": [half]}] if grouped else [whole, half], lr=0.1)
    whole.grad, half.grad = torch.ones(8), torch.ones(4)
    opt.step()
    half.data = whole.data[4:]
    half.grad = torch.ones(4)
    before = snapshot(opt, [whole, half])
    with pytest.raises(ValueError, match="overlap"):
        opt.step()
    assert_unchanged(opt, [whole, half], before)


# -- checkpoints of older torch versions --------------------------------------------------------

STEPS = {
    "int": lambda step: int(step),
    "float": lambda step: float(step),
    "int64": lambda step: torch.tensor(int(step)),
}


# where torch has a fused path, checkpoints recording fused=True (torch then continues on it:
# bitwise) and False (its single-tensor path: close); elsewhere, its single-tensor path
RESUMED = [(name, kwargs, fused, recorded) for name, kwargs, fused in CASES if name != "SGD"
           for recorded in ((True, False) if fused else (False,))]


@pytest.mark.parametrize("kind", STEPS)
@pytest.mark.parametrize("name, kwargs, fused, recorded_fused", RESUMED,
                         ids=[f"{name}-{i}-{'fused' if recorded else 'single'}"
                              for i, (name, _, _, recorded) in enumerate(RESUMED)])
def test_checkpoints_with_numeric_steps_continue_like_torch(name, kwargs, fused, recorded_fused,
                                                            kind):
    """state['step'] as a number or an int64 tensor (and NAdam's mu_product as a number), as
    older torch versions saved them: loaded, and trained on like torch loading the same."""
    params, saved = train(torchs(name, kwargs, fused), [(True, True, True)] * 2)
    checkpoint = copy.deepcopy(saved.state_dict())
    for state in checkpoint["state"].values():
        state["step"] = STEPS[kind](state["step"])
        if "mu_product" in state:
            state["mu_product"] = float(state["mu_product"])
    if fused:
        checkpoint["param_groups"][0]["fused"] = recorded_fused
    start = [p.detach().clone() for p in params]
    results = []
    for make in (ours(name, kwargs), torchs(name, kwargs, fused)):
        resumed = [torch.nn.Parameter(p.clone()) for p in start]
        opt = make(resumed)
        opt.load_state_dict(copy.deepcopy(checkpoint))
        for step in range(4):
            for index, p in enumerate(resumed):
                p.grad = grad(10 + step, index)
            opt.step()
        results.append((resumed, opt))
    (mine, opt), (theirs, _) = results
    assert_params(mine, theirs, recorded_fused)
    for p in mine:
        assert opt.state[p]["step"].dtype == torch.float32
        assert float(opt.state[p]["step"]) == 6.0


@pytest.mark.parametrize("name, kwargs", ALL, ids=ALL_IDS)
def test_deepcopy_continues_like_the_original(name, kwargs):
    """copy.deepcopy (and pickle) of an optimizer, as of torch's, trains on like it."""
    params, opt = train(ours(name, kwargs), SCHEDULE[:3])
    twin = copy.deepcopy((params, opt))
    for copied_params, copied_opt in ((params, opt), twin):
        for step, has_grads in enumerate(SCHEDULE[3:]):
            for index, (p, has) in enumerate(zip(copied_params, has_grads)):
                p.grad = grad(10 + step, index) if has else None
            copied_opt.step()
    assert_params(twin[0], params, True)


@pytest.mark.parametrize("cls, bad", [
    ("AdamW", {"lr": -1.0}), ("AdamW", {"betas": (1.5, 0.9)}), ("Adam", {"eps": 0.0}),
    ("SGD", {"lr": "0.1"}), ("SGD", {"lr": 0.1, "momentum": 0.0, "nesterov": True}),
    ("Adagrad", {"initial_accumulator_value": -1.0}), ("RMSprop", {"alpha": 2.0}),
    ("NAdam", {"momentum_decay": -1.0}), ("Lion", {"weight_decay": float("nan")}),
])
def test_hyperparameters_are_checked_at_construction(cls, bad):
    model = torch.nn.Linear(3, 2)
    with pytest.raises((TypeError, ValueError), match=r"^param_groups\[0\]: "):
        getattr(akt, cls)(model.parameters(), **bad)
    opt = getattr(akt, cls)(model.parameters(), lr=0.1)
    extra = torch.zeros(4, requires_grad=True)
    with pytest.raises((TypeError, ValueError), match=r"^param_groups\[1\]: "):
        opt.add_param_group({"params": [extra], **bad})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", ["AdamW", "SGD", "Adagrad"])
def test_float32_and_float64_params_in_one_group(name):
    # torch's fused optimizers take mixed dtypes in a group (one kernel per dtype); so do these
    kwargs = {"lr": 0.1, "momentum": 0.9} if name == "SGD" else {"lr": 0.1}
    values = [torch.randn(5, generator=torch.Generator().manual_seed(k), dtype=dtype)
              for k, dtype in enumerate((torch.float32, torch.float64, torch.float32))]
    ours = [torch.nn.Parameter(v.clone()) for v in values]
    theirs = [torch.nn.Parameter(v.clone()) for v in values]
    opt = getattr(akt, name)(ours, **kwargs)
    reference = getattr(torch.optim, name)(theirs, fused=True, **kwargs)
    for step in range(3):
        for a, b in zip(ours, theirs):
            grad = torch.randn(5, generator=torch.Generator().manual_seed(10 + step),
                               dtype=a.dtype)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        reference.step()
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
