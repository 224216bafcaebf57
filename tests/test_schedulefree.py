"""adamw_schedulefree_ / sgd_schedulefree_, schedulefree_eval_ / schedulefree_train_ and
adamkern.optim's AdamWScheduleFree / SGDScheduleFree against the schedulefree package 1.4
(AdamWScheduleFree, SGDScheduleFree; single-tensor path) over 50 steps: params and z within
4 ULP of magnitude (SGD bitwise), the package's running lr_max and weight_sum, eval() and
train(). Skipped without torch and schedulefree."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_bitwise_equal, assert_close_to_reference

import adamkern
from adamkern import optim

torch = pytest.importorskip("torch")
schedulefree = pytest.importorskip("schedulefree")

STEPS = 50
SIZES = [1, 7, 1000, 4099]
ADAMW = [{}, {"weight_decay": 0.1, "warmup_steps": 10, "r": 1.0},
         {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_lr_power": 1.0}]
SGD = [{"lr": 0.1}, {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1, "warmup_steps": 10,
                     "r": 0.5}]
CASES = ([pytest.param("adamw", o, id=f"adamw-{o}") for o in ADAMW]
         + [pytest.param("sgd", o, id=f"sgd-{o}") for o in SGD])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def package(kind, params, options):
    cls = schedulefree.AdamWScheduleFree if kind == "adamw" else schedulefree.SGDScheduleFree
    opt = cls(params, foreach=False, **options)
    opt.train()
    return opt


def grads_of(dtype, size, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(size).astype(dtype), [
        rng.standard_normal(size).astype(dtype) for _ in range(steps)]


def beta1_of(kind, options):
    return options.get("betas", (0.9,))[0] if kind == "adamw" else options.get("momentum", 0.9)


@pytest.mark.parametrize("kind, options", CASES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_functional_op_matches_the_package(kind, options, size, dtype):
    start, grads = grads_of(dtype, size)
    theirs = torch.nn.Parameter(torch.tensor(start.copy()))
    opt = package(kind, [theirs], options)
    y, z, sums = start.copy(), np.full_like(start, np.nan), np.array([-1.0, 0.0])
    extra = [[np.zeros_like(start)]] if kind == "adamw" else []
    op = adamkern.adamw_schedulefree_ if kind == "adamw" else adamkern.sgd_schedulefree_
    for step, g in enumerate(grads, start=1):
        theirs.grad = torch.tensor(g.copy())
        opt.step()
        op([y], [g.copy()], [z], *extra, step=step, weight_sums=sums,
           is_first_step=step == 1, **options)
    compare = assert_bitwise_equal if kind == "sgd" else assert_close_to_reference
    compare(y, theirs.detach().numpy(), "y")
    compare(z, opt.state[theirs]["z"].numpy(), "z")
    if kind == "adamw":
        compare(extra[0][0], opt.state[theirs]["exp_avg_sq"].numpy(), "exp_avg_sq")
    group = opt.param_groups[0]
    assert list(sums) == [group["lr_max"], group["weight_sum"]]
    # eval() and back: x = lerp(y, z, 1 - 1/beta1), then y again
    opt.eval()
    adamkern.schedulefree_eval_([y], [z], beta1=beta1_of(kind, options))
    assert_close_to_reference(y, theirs.detach().numpy(), "x")
    opt.train()
    adamkern.schedulefree_train_([y], [z], beta1=beta1_of(kind, options))
    assert_close_to_reference(y, theirs.detach().numpy(), "y after train()")


@pytest.mark.parametrize("kind, options", CASES)
def test_optimizer_class_matches_the_package(kind, options):
    shapes = [(33, 9), (17,)]
    rng = np.random.default_rng(1)
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    theirs = [torch.nn.Parameter(torch.tensor(a.copy())) for a in starts]
    opt = package(kind, theirs, options)
    ours = [a.copy() for a in starts]
    cls = optim.AdamWScheduleFree if kind == "adamw" else optim.SGDScheduleFree
    mine = cls(ours, **options)
    with pytest.raises(RuntimeError, match="train mode"):  # as the package: train() first
        mine.step([np.zeros_like(a) for a in ours])
    assert all(not s for s in mine.state)
    mine.train()
    for step in range(20):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p, g in zip(theirs, grads):
            p.grad = torch.tensor(g.copy())
        opt.step()
        mine.step([g.copy() for g in grads])
        if step == 9:  # an evaluation half-way, then training goes on
            opt.eval()
            mine.eval()
            for a, p in zip(ours, theirs):
                assert_close_to_reference(a, p.detach().numpy(), "x")
            opt.train()
            mine.train()
    for a, p in zip(ours, theirs):
        assert_close_to_reference(a, p.detach().numpy(), "y")
    assert list(mine.group_state[0]["weight_sums"]) == [opt.param_groups[0]["lr_max"],
                                                       opt.param_groups[0]["weight_sum"]]


def test_eval_and_train_are_idempotent_and_skip_unstepped_params():
    params = [np.ones(4, np.float32), np.full(3, 2.0, np.float32)]
    opt = optim.AdamWScheduleFree([{"params": params[:1]}, {"params": params[1:]}], lr=0.1)
    opt.train()
    for _ in range(2):  # after one step y is still z
        opt.step([np.ones(4, np.float32), np.ones(3, np.float32)])
    trained = [p.copy() for p in params]
    opt.eval()
    x = [p.copy() for p in params]
    assert not np.array_equal(x[0], trained[0])
    opt.eval()  # already in eval mode: nothing moves
    assert all(np.array_equal(a, b) for a, b in zip(params, x))
    opt.train()
    opt.train()
    for a, b in zip(params, trained):
        assert_close_to_reference(a, b, "back to y")
    fresh = optim.SGDScheduleFree([np.ones(2, np.float32)])
    fresh.train()
    fresh.eval()  # no step yet: no z, the params stay
    assert np.array_equal(fresh.params[0], np.ones(2, np.float32))


def test_checkpoints_are_taken_in_eval_mode_and_resume(tmp_path):
    params = [np.linspace(-1, 1, 7).astype(np.float32)]
    opt = optim.AdamWScheduleFree(params, lr=0.1, warmup_steps=2)
    opt.train()
    grads = [np.full(7, 0.5, np.float32)]
    for _ in range(3):
        opt.step([g.copy() for g in grads])
    with pytest.raises(RuntimeError, match="eval"):
        opt.save(tmp_path / "train.npz")
    opt.eval()
    opt.save(tmp_path / "ckpt.npz", params=True)
    twin_params = [np.zeros(7, np.float32)]
    twin = optim.AdamWScheduleFree(twin_params, lr=0.1, warmup_steps=2)
    twin.load(tmp_path / "ckpt.npz")
    for o in (opt, twin):
        o.train()
        o.step([g.copy() for g in grads])
        o.eval()
    assert_bitwise_equal(twin_params[0], params[0], "resumed")


def test_weight_sums_and_schedule_arguments_are_checked():
    p, g, z = np.ones(3, np.float32), np.ones(3, np.float32), np.zeros(3, np.float32)
    before = [a.copy() for a in (p, g, z)]
    for sums, error in [(np.zeros(2, np.float32), TypeError), ([-1.0, 0.0], TypeError),
                        (np.zeros(3), ValueError), (np.zeros(4)[::2], ValueError),
                        (np.frombuffer(bytearray(17), np.float64, 2, 1), ValueError)]:
        with pytest.raises(error, match="weight_sums must be a writable, contiguous, aligned"):
            adamkern.sgd_schedulefree_(p, g, z, step=1, weight_sums=sums)
    sums = np.array([-1.0, 0.0])
    for kwargs, error, match in [({"warmup_steps": -1}, ValueError, "warmup_steps"),
                                 ({"r": float("inf")}, ValueError, "r must be"),
                                 ({"weight_lr_power": "2"}, TypeError, "weight_lr_power"),
                                 ({"step": 0}, ValueError, "step must be"),
                                 ({"momentum": 0.0}, ValueError, "momentum")]:
        with pytest.raises(error, match=match):
            adamkern.sgd_schedulefree_(p, g, z, **{"step": 1, "weight_sums": sums, **kwargs})
    for a, b in zip((p, g, z), before):
        assert np.array_equal(a, b)
    assert list(sums) == [-1.0, 0.0]
    # a skipped step (found_inf) leaves the running weights too
    adamkern.sgd_schedulefree_(p, g, z, step=1, weight_sums=sums, found_inf=1.0)
    assert list(sums) == [-1.0, 0.0]


@pytest.mark.parametrize("kind, options", CASES)
def test_torch_class_trains_as_the_package_and_checkpoints_move_both_ways(kind, options):
    akt = pytest.importorskip("adamkern.torch")
    torch.manual_seed(0)
    ours_model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                     torch.nn.Linear(16, 1))
    their_model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(),
                                      torch.nn.Linear(16, 1))
    their_model.load_state_dict(ours_model.state_dict())
    cls = akt.AdamWScheduleFree if kind == "adamw" else akt.SGDScheduleFree
    ours = cls(ours_model.parameters(), **options)
    theirs = package(kind, their_model.parameters(), options)
    with pytest.raises(RuntimeError, match="train mode"):
        ours.step()
    ours.train()
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    for _ in range(20):
        for model, opt in ((ours_model, ours), (their_model, theirs)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
    for mode in ("eval", "train"):
        getattr(ours, mode)()
        getattr(theirs, mode)()
        for a, b in zip(ours_model.parameters(), their_model.parameters()):
            assert_close_to_reference(a.detach().numpy(), b.detach().numpy(), mode)
    ours_sd, their_sd = ours.state_dict(), theirs.state_dict()
    for key in ("k", "lr_max", "weight_sum", "scheduled_lr", "train_mode"):
        assert ours_sd["param_groups"][0][key] == their_sd["param_groups"][0][key], key
    # ours into the package and the package's into ours: the next steps agree again
    swapped_theirs = package(kind, their_model.parameters(), options)
    swapped_theirs.load_state_dict(ours_sd)
    swapped_ours = cls(ours_model.parameters(), **options)
    swapped_ours.load_state_dict(their_sd)
    for model, opt in ((ours_model, swapped_ours), (their_model, swapped_theirs)):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    for a, b in zip(ours_model.parameters(), their_model.parameters()):
        assert_close_to_reference(a.detach().numpy(), b.detach().numpy(), "after the swap")


def test_torch_class_refuses_what_it_cannot_step():
    akt = pytest.importorskip("adamkern.torch")
    half = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    opt = akt.AdamWScheduleFree([half])
    opt.train()
    half.grad = torch.ones(3, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 0: .*float32/float64"):
        opt.step()
    assert not opt.state[half]
    with pytest.raises(ValueError, match="momentum"):
        akt.SGDScheduleFree([torch.nn.Parameter(torch.ones(2))], momentum=1.0)
