"""adamkern.torch: drop-in torch.optim optimizers. Trained side by side with torch's own
(bitwise against fused=True where torch has it, close otherwise), with LR schedulers, closures,
zero_grad, add_param_group, GradScaler, checkpoints in both directions, and the errors."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

STEPS = 50


def make_model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 33), torch.nn.ReLU(),
                               torch.nn.Linear(33, 3)).to(dtype)


def data(dtype=torch.float32):
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(256, 20, generator=generator, dtype=dtype),
            torch.randint(0, 3, (256,), generator=generator))


def train(make_optimizer, steps=STEPS, dtype=torch.float32, scheduler=True):
    model = make_model(dtype)
    x, y = data(dtype)
    opt = make_optimizer(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5) if scheduler else None
    losses = []
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
        if sched is not None:
            sched.step()
    return model, opt, losses


# name, our constructor, torch's, whether torch's is fused (bitwise) or not (close)
CASES = [
    ("AdamW", dict(lr=1e-2, weight_decay=0.1), True),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3), True),
    ("Adam", dict(lr=1e-2, decoupled_weight_decay=True, weight_decay=0.1, maximize=False), True),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3), True),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3), True),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), True),
    ("NAdam", dict(lr=1e-2, weight_decay=1e-2, decoupled_weight_decay=True), False),
    ("RAdam", dict(lr=1e-2), False),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True), False),
    ("Adamax", dict(lr=1e-2, weight_decay=1e-2), False),
    ("Adadelta", dict(weight_decay=1e-2), False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, kwargs, fused", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_trains_like_torch(name, kwargs, fused, dtype):
    flags = {"fused": True} if fused else {"foreach": False}
    ours, _, our_losses = train(lambda p: getattr(akt, name)(p, **kwargs), dtype=dtype)
    theirs, _, their_losses = train(lambda p: getattr(torch.optim, name)(p, **kwargs, **flags),
                                    dtype=dtype)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        if fused:
            assert torch.equal(a, b), f"{name}: params differ from torch fused"
        else:
            # 50 steps of a few-ULP difference per step (no fma in torch's single-tensor path)
            eps = torch.finfo(dtype).eps
            assert torch.allclose(a, b, rtol=0, atol=200 * eps * b.abs().max().item())
    if fused:
        assert our_losses == their_losses


@pytest.mark.parametrize("name, kwargs, fused", [c for c in CASES if c[0] != "SGD"] + [
    ("SGD", dict(lr=0.1, momentum=0.9), True)])
def test_checkpoints_move_both_ways(name, kwargs, fused):
    """A state_dict saved by torch's optimizer loads into ours and continues like torch's,
    and the other way round."""
    flags = {"fused": True} if fused else {"foreach": False}
    ours = lambda p: getattr(akt, name)(p, **kwargs)  # noqa: E731
    theirs = lambda p: getattr(torch.optim, name)(p, **kwargs, **flags)  # noqa: E731
    for first, second in ((theirs, ours), (ours, theirs)):
        model, opt, _ = train(first, steps=10, scheduler=False)
        resumed_model = make_model()
        resumed_model.load_state_dict(model.state_dict())
        resumed = second(resumed_model.parameters())
        checkpoint = io.BytesIO()  # through a file, as a real checkpoint (state_dict() aliases
        torch.save(opt.state_dict(), checkpoint)  # the live state tensors)
        checkpoint.seek(0)
        resumed.load_state_dict(torch.load(checkpoint))
        x, y = data()
        for m, o in ((model, opt), (resumed_model, resumed)):
            for _ in range(5):
                o.zero_grad()
                torch.nn.functional.cross_entropy(m(x), y).backward()
                o.step()
        for a, b in zip(model.parameters(), resumed_model.parameters()):
            if fused:
                assert torch.equal(a, b)
            else:
                assert torch.allclose(a, b, rtol=0, atol=1e-5)


def test_state_layout_is_torchs():
    _, ours, _ = train(lambda p: akt.AdamW(p, amsgrad=True), steps=3)
    _, theirs, _ = train(lambda p: torch.optim.AdamW(p, amsgrad=True, fused=True), steps=3)
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for name in a["state"][k]:
            assert a["state"][k][name].dtype == b["state"][k][name].dtype
            assert torch.equal(a["state"][k][name], b["state"][k][name]), name


def test_zero_copy_and_param_groups():
    model = make_model()
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    opt = akt.AdamW([{"params": first, "lr": 1e-1}], lr=1e-3)
    opt.add_param_group({"params": rest})
    pointers = [p.data_ptr() for p in model.parameters()]
    x, y = data()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert [p.data_ptr() for p in model.parameters()] == pointers  # updated in place
    assert all(not torch.equal(a, b) for a, b in zip(model.parameters(), before))
    assert opt.param_groups[0]["lr"] == 1e-1 and opt.param_groups[1]["lr"] == 1e-3
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_grad_scaler_skips_and_unscales():
    def run(make):
        model = make_model()
        x, y = data()
        opt = make(model.parameters())
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
        for step in range(6):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            if step == 2:  # an overflowing step: skipped
                next(model.parameters()).grad[0, 0] = float("inf")
            scaler.step(opt)
            scaler.update()
        return model, opt, scaler.get_scale()

    ours = run(lambda p: akt.AdamW(p, lr=1e-2))
    theirs = run(lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True))
    assert ours[2] == theirs[2]
    for a, b in zip(ours[0].parameters(), theirs[0].parameters()):
        assert torch.equal(a, b)
    steps = {float(s["step"]) for s in ours[1].state.values()}
    assert steps == {5.0}


def test_lion_trains():
    _, opt, losses = train(lambda p: akt.Lion(p, lr=1e-3))
    assert losses[-1] < losses[0]
    assert set(next(iter(opt.state.values()))) == {"exp_avg"}


def test_bad_inputs():
    with pytest.raises(ValueError, match="capturable"):
        akt.AdamW(make_model().parameters(), capturable=True)
    with pytest.raises(ValueError, match="differentiable"):
        akt.SGD(make_model().parameters(), differentiable=True)
    with pytest.raises(TypeError):
        akt.AdamW(make_model().parameters(), not_an_argument=1)
    # (transposed and other dense layouts, slices, float16 and bfloat16 are stepped: see
    # tests/test_torch_layouts.py)
    e = torch.nn.Parameter(torch.randn(4, 1).expand(4, 4))  # every row is the same memory
    e.grad = torch.randn(4, 4)
    with pytest.raises(ValueError):
        akt.AdamW([e]).step()
    c = torch.nn.Parameter(torch.randn(4, dtype=torch.complex64))
    c.grad = torch.randn(4, dtype=torch.complex64)
    with pytest.raises(ValueError, match="complex"):
        akt.AdamW([c]).step()
    s = torch.nn.Parameter(torch.randn(4, 4))
    s.grad = torch.randn(4, 4).to_sparse()
    before = s.detach().clone()
    with pytest.raises(ValueError, match="sparse"):  # (SGD and Adagrad step sparse grads)
        akt.AdamW([s], lr=0.1).step()
    assert torch.equal(s, before)  # nothing was written by the refused step
