"""adam_, adamax_, nadam_, radam_, rmsprop_, adagrad_, adadelta_ and sgd_ against their
torch.optim counterparts, stepped in lockstep over several steps with the same grads: bitwise
against Adam/Adagrad/SGD(fused=True) (also with AMP's grad scaling, and for random Adam
hyperparameters), and close to torch's single-tensor and foreach paths for all of them, for
every option combination torch has. ``decoupled_weight_decay``, which torch's
Adamax, RMSprop, Adagrad, Adadelta and SGD lack, against torch's step without weight decay
after ``p.add_(p, alpha=-lr * weight_decay)`` (the decayed lr for Adagrad). Skipped when torch
is not installed."""

from __future__ import annotations

import numpy as np
import pytest
from family import grid
from helpers import DTYPES, SIZES, assert_bitwise_equal, assert_close_to_reference

import adamkern

torch = pytest.importorskip("torch")

STEPS = 5
CASE_SIZES = [s for s in SIZES if s in (1, 17)] + [100003]


# name -> torch class, lr, state buffers (torch state name, our keyword or None for positional),
# whether the op takes `step`, and how many steps a case runs.
SPECS = {
    "adam": dict(cls="Adam", lr=1e-2, step=True,
                 state=lambda o: [("exp_avg", None), ("exp_avg_sq", None)]
                 + ([("max_exp_avg_sq", "max_exp_avg_sqs")] if o.get("amsgrad") else [])),
    "adamax": dict(cls="Adamax", lr=1e-2, step=True,
                   state=lambda o: [("exp_avg", None), ("exp_inf", None)]),
    "nadam": dict(cls="NAdam", lr=1e-2, step=True,
                  state=lambda o: [("exp_avg", None), ("exp_avg_sq", None)]),
    "radam": dict(cls="RAdam", lr=1e-2, step=True, steps=8,  # rho_t > 5 from step 6
                  state=lambda o: [("exp_avg", None), ("exp_avg_sq", None)]),
    "rmsprop": dict(cls="RMSprop", lr=1e-2, step=False,
                    state=lambda o: [("square_avg", None)]
                    + ([("momentum_buffer", "momentum_buffers")] if o["momentum"] > 0 else [])
                    + ([("grad_avg", "grad_avgs")] if o["centered"] else [])),
    "adagrad": dict(cls="Adagrad", lr=1e-1, step=True, state=lambda o: [("sum", None)]),
    "adadelta": dict(cls="Adadelta", lr=None, step=False,
                     state=lambda o: [("square_avg", None), ("acc_delta", None)]),
    "sgd": dict(cls="SGD", lr=1e-1, step=False,
                state=lambda o: [("momentum_buffer", None)] if o["momentum"] else []),
}

WD = [0.0, 0.1]
BOOL = [False, True]
OPTIONS = {
    "adam": [o for o in grid(weight_decay=WD, decoupled_weight_decay=BOOL, amsgrad=BOOL,
                                maximize=BOOL)
             if o["weight_decay"] or not o["decoupled_weight_decay"]],
    "adamax": grid(weight_decay=WD, maximize=BOOL),
    "nadam": [o for o in grid(weight_decay=WD, decoupled_weight_decay=BOOL, maximize=BOOL,
                                 momentum_decay=[4e-3, 0.1])
              if o["weight_decay"] or not o["decoupled_weight_decay"]],
    "radam": [o for o in grid(weight_decay=WD, decoupled_weight_decay=BOOL, maximize=BOOL)
              if o["weight_decay"] or not o["decoupled_weight_decay"]],
    "rmsprop": grid(momentum=[0.0, 0.9], centered=BOOL, weight_decay=WD, maximize=BOOL),
    "adagrad": grid(lr_decay=[0.0, 0.1], weight_decay=WD, initial_accumulator_value=[0.0, 0.1],
                       maximize=BOOL, eps=[1e-10, 1e-3]),
    "adadelta": grid(weight_decay=WD, maximize=BOOL, lr=[1.0, 0.5], rho=[0.9, 0.5]),
    "sgd": [o for o in grid(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=BOOL,
                               weight_decay=WD, maximize=BOOL)
            if (o["momentum"] or not (o["dampening"] or o["nesterov"]))
            and not (o["nesterov"] and o["dampening"])],
}
# decoupled weight decay where torch has only L2 (made of torch ops in run_case)
DECOUPLED = {"weight_decay": 0.1, "decoupled_weight_decay": True}
OPTIONS["adamax"] += [DECOUPLED]
OPTIONS["rmsprop"] += [{**DECOUPLED, "momentum": m, "centered": c, "maximize": False}
                       for m, c in ((0.0, False), (0.9, True))]
OPTIONS["adagrad"] += [{**DECOUPLED, "lr_decay": d, "initial_accumulator_value": 0.1,
                        "maximize": False, "eps": 1e-10} for d in (0.0, 0.1)]
OPTIONS["adadelta"] += [{**DECOUPLED, "lr": 0.5}]
OPTIONS["sgd"] += [{**DECOUPLED, "momentum": m, "dampening": 0.0, "nesterov": m > 0,
                    "maximize": False} for m in (0.0, 0.9)]
FUSED = ["adam", "adagrad", "sgd"]


def options_id(options):
    return "-".join(f"{k}={v}" for k, v in options.items())


CASES = [pytest.param(name, o, id=f"{name}-{options_id(o)}")
         for name, options in OPTIONS.items() for o in options]
FUSED_CASES = [case for case in CASES if case.values[0] in FUSED]


@pytest.fixture(autouse=True)
def _torch_single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_case(name, dtype, shapes, options, implementation, assert_fn, *, grad_scales=None,
             found_infs=None, seed=0):
    """Steps torch's optimizer and our op in lockstep on the same params and grads, then
    compares params, every state buffer (and step count, mu_product) and the grads."""
    spec = SPECS[name]
    steps = spec.get("steps", STEPS) if grad_scales is None else len(grad_scales)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads_per_step = [[rng.standard_normal(s).astype(dtype) for s in shapes]
                      for _ in range(steps)]
    if grad_scales is not None:
        grads_per_step = [[g * dtype(s) for g in grads]
                          for grads, s in zip(grads_per_step, grad_scales)]
    options = dict(options)
    if spec["lr"] is not None:
        options.setdefault("lr", spec["lr"])
    ours_only = {"initial_accumulator_value"}  # torch's kwarg; ours is the state's initial value

    # torch
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    flags = {"fused": True} if implementation == "fused" else {"foreach": False}
    torch_options = dict(options)
    # torch's Adam, NAdam and RAdam have decoupled_weight_decay; the others get it made of
    # torch ops
    decoupled = (options.get("decoupled_weight_decay")
                 and name not in ("adam", "nadam", "radam"))
    if decoupled:
        del torch_options["decoupled_weight_decay"]
        weight_decay = torch_options.pop("weight_decay")
    opt = getattr(torch.optim, spec["cls"])(tparams, **torch_options, **flags)
    torch_grads = []
    for k, grads in enumerate(grads_per_step):
        if decoupled:  # the decay adamkern applies before the update, made of torch ops
            lr = options.get("lr", 1.0) / (1.0 + k * options.get("lr_decay", 0.0))
            with torch.no_grad():
                for p in tparams:
                    p.add_(p, alpha=-lr * weight_decay)
        for p, g in zip(tparams, grads):
            p.grad = torch.tensor(g.copy())
        if grad_scales is not None:
            opt.grad_scale = torch.tensor(grad_scales[k], dtype=torch.float32)
            opt.found_inf = torch.tensor(found_infs[k], dtype=torch.float32)
        opt.step()
        torch_grads.append([p.grad.numpy().copy() for p in tparams])

    # ours
    names = spec["state"](options)
    init = options.get("initial_accumulator_value", 0.0)
    # SGD's buffers are set from the grad on the first step: their initial contents must not
    # matter, so they start as NaN.
    fill = np.nan if name == "sgd" else init
    state = {tn: [np.full_like(p, fill) for p in params] for tn, _ in names}
    our_options = {k: v for k, v in options.items() if k not in ours_only}
    mu_product = np.ones(1, np.float32)
    step, updated = 0, False
    our_grads = []
    for k, grads in enumerate(grads_per_step):
        grads = [g.copy() for g in grads]
        skip = found_infs is not None and found_infs[k] != 0.0
        step += 1
        kwargs = dict(our_options)
        if spec["step"]:
            kwargs["step"] = step
        if name == "nadam":
            kwargs["mu_product"] = mu_product
        if name == "sgd" and options["momentum"]:
            kwargs["is_first_step"] = not updated
        if grad_scales is not None:
            kwargs.update(grad_scale=grad_scales[k], found_inf=found_infs[k])
        kwargs.update({kw: state[tn] for tn, kw in names if kw is not None})
        positional = [state[tn] for tn, kw in names if kw is None]
        if name == "sgd" and not names:
            positional = [None]
        getattr(adamkern, f"{name}_")(params, grads, *positional, **kwargs)
        if skip:
            step -= 1  # torch's AMP path rolls the step count back on a skipped step
        updated = updated or not skip
        our_grads.append(grads)

    for i, tp in enumerate(tparams):
        tstate = opt.state[tp]
        assert_fn(params[i], tp.detach().numpy(), f"params[{i}]")
        for tn, _ in names:
            assert_fn(state[tn][i], tstate[tn].numpy(), f"{tn}[{i}]")
        if spec["step"]:
            assert tstate["step"].item() == step
        if name == "nadam":
            # torch keeps it in float32 (for float64 params too): the same bits
            assert_bitwise_equal(mu_product, tstate["mu_product"].numpy().reshape(1),
                                 f"mu_product[{i}]")
    for ours_step, torch_step in zip(our_grads, torch_grads):  # unscaled in place, or not
        for a, b in zip(ours_step, torch_step):
            assert_bitwise_equal(a, b, "grads")


@pytest.mark.parametrize("size", CASE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options", CASES)
def test_close_to_torch_single_tensor(name, options, dtype, size):
    run_case(name, dtype, [(size,), (2, 3)], options, "single", assert_close_to_reference)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options", CASES)
def test_close_to_torch_foreach(name, options, dtype):
    run_case(name, dtype, [(1037,), (64, 33)], options, "foreach", assert_close_to_reference)


@pytest.mark.parametrize("size", CASE_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options", FUSED_CASES)
def test_bitwise_equal_to_torch_fused(name, options, dtype, size):
    run_case(name, dtype, [(size,), (2, 3)], options, "fused", assert_bitwise_equal)


@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.9])
def test_adam_lerp_branches_bitwise_equal_to_torch_fused(beta1):
    # 1 - beta1 below and above 0.5 take the two branches of torch's lerp.
    run_case("adam", np.float32, [(1037,)], {"betas": (beta1, 0.99)}, "fused",
             assert_bitwise_equal)


GRAD_SCALING = [
    ("adam", dict(weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adam", dict(weight_decay=0.1, decoupled_weight_decay=True)),
    ("adagrad", dict(lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.1,
                     maximize=True, eps=1e-10)),
    ("adagrad", dict(lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                     maximize=False, eps=1e-3)),
    ("sgd", dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.1, maximize=True)),
    ("sgd", dict(momentum=0.9, dampening=0.3, nesterov=False, weight_decay=0.1, maximize=False)),
    ("sgd", dict(momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.1, maximize=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, options", GRAD_SCALING,
                         ids=[f"{n}-{options_id(o)}" for n, o in GRAD_SCALING])
def test_bitwise_equal_to_torch_fused_with_grad_scaling(name, options, dtype):
    # the third step overflowed: skipped (not the first, where torch's fused SGD would leave
    # its freshly allocated momentum buffers uninitialised)
    run_case(name, dtype, [(1037,), (17,)], options, "fused", assert_bitwise_equal,
             grad_scales=[65536.0, 3.0, 1000.5, 3.0, 0.25], found_infs=[0.0, 0.0, 1.0, 0.0, 0.0])


def test_radam_steps_cover_both_branches():
    beta2, steps = 0.999, SPECS["radam"]["steps"]
    rho_inf = 2 / (1 - beta2) - 1
    rho = [rho_inf - 2 * t * beta2**t / (1 - beta2**t) for t in range(1, steps + 1)]
    assert rho[0] <= 5 and rho[-1] > 5


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    shapes=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 1.0),
    momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    dampening=st.floats(0.0, 0.9),
    nesterov=st.booleans(),
    weight_decay=st.floats(0.0, 0.5),
    maximize=st.booleans(),
)
def test_random_sgd_bitwise_equal_to_torch_fused(shapes, dtype, lr, momentum, dampening,
                                                 nesterov, weight_decay, maximize):
    nesterov = nesterov and momentum > 0
    options = dict(lr=lr, momentum=momentum, dampening=0.0 if nesterov else dampening,
                   nesterov=nesterov, weight_decay=weight_decay, maximize=maximize)
    run_case("sgd", dtype, [(s,) for s in shapes], options, "fused", assert_bitwise_equal)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    shapes=st.lists(st.integers(1, 300), min_size=1, max_size=3),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 1.0),
    lr_decay=st.floats(0.0, 1.0),
    weight_decay=st.floats(0.0, 0.5),
    eps=st.floats(1e-12, 1e-2),
    initial_accumulator_value=st.floats(0.0, 1.0),
    maximize=st.booleans(),
)
def test_random_adagrad_bitwise_equal_to_torch_fused(shapes, dtype, lr, lr_decay, weight_decay,
                                                     eps, initial_accumulator_value, maximize):
    options = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                   initial_accumulator_value=initial_accumulator_value, maximize=maximize)
    run_case("adagrad", dtype, [(s,) for s in shapes], options, "fused", assert_bitwise_equal)



@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    shapes=st.lists(st.integers(1, 300), min_size=1, max_size=4),
    dtype=st.sampled_from(DTYPES),
    lr=st.floats(0.0, 1.0),
    beta1=st.floats(0.0, 0.999),
    beta2=st.floats(0.0, 0.9999),
    weight_decay=st.floats(0.0, 0.5),
    decoupled=st.booleans(),
    amsgrad=st.booleans(),
    maximize=st.booleans(),
)
def test_random_adam_hyperparameters_bitwise_equal_to_torch_fused(shapes, dtype, lr, beta1,
                                                                  beta2, weight_decay,
                                                                  decoupled, amsgrad, maximize):
    options = dict(lr=lr, betas=(beta1, beta2), weight_decay=weight_decay,
                   decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
    run_case("adam", dtype, [(s,) for s in shapes], options, "fused", assert_bitwise_equal)
