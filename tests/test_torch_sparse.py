"""Sparse COO grads in adamkern.torch: SparseAdam, and Adagrad and SGD with sparse grads.

Against torch 2.13's own classes on nn.Embedding(sparse=True) and nn.EmbeddingBag models with
duplicate-heavy (Zipf) lookups:

- SparseAdam and Adagrad agree with torch within 4 ULP of the magnitude
  (helpers.assert_close_to_reference), not bitwise: the row kernels run the dense ops'
  per-element math, which fuses the moment updates (fma), where torch's sparse paths round
  ``m + (g - m) * (1 - b1)``, ``s + g * g`` and apply ``p + (-step) * (m / denom)``; and
  torch sums repeated rows in input order, adamkern in a canonical order.
- SGD without momentum agrees within 4 ULP with torch given the coalesced grad (torch adds an
  uncoalesced grad's repeats into the param one by one, rounding each time); SGD with
  momentum runs torch's own step (its momentum buffer of a sparse grad is sparse): bitwise.

Errors are torch's where torch refuses an option with a sparse grad, raised before anything is
written.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
from helpers import assert_close_to_reference

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

# torch's own sparse Adagrad builds its sparse tensors without choosing invariant checks
pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")

ROWS, DIM = 300, 16


def zipf_batch(rng, shape, rows=ROWS):
    """Row indices with Zipf-distributed repeats (a few rows come many times)."""
    count = int(np.prod(shape))
    indices = rng.permutation(rows)[(rng.zipf(1.5, count) - 1) % rows]
    return torch.from_numpy(indices.reshape(shape).astype(np.int64))


def make_model(kind, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    weight = torch.randn(ROWS, DIM, dtype=dtype)
    if kind == "bag":
        return torch.nn.EmbeddingBag(ROWS, DIM, mode="sum", sparse=True, _weight=weight)
    return torch.nn.Embedding(ROWS, DIM, sparse=True, _weight=weight)


def loss_of(model, batch, readout, target):
    out = model(batch) if isinstance(model, torch.nn.EmbeddingBag) else model(batch).sum(dim=1)
    return ((out @ readout - target) ** 2).mean()


def train(model, optimizer, steps, seed=1, before_step=None):
    """``steps`` steps on Zipf batches (the same for every call with one seed)."""
    rng = np.random.default_rng(seed)
    readout = torch.from_numpy(rng.standard_normal(DIM)).to(model.weight.dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            batch = zipf_batch(rng, (64, 5))
            target = torch.from_numpy(rng.standard_normal(64)).to(model.weight.dtype)
            optimizer.zero_grad(set_to_none=True)
            loss_of(model, batch, readout, target).backward()
            assert model.weight.grad.is_sparse
            if before_step is not None:
                before_step(model)
            optimizer.step()
    finally:
        torch.set_num_threads(threads)


def pair(kind, make_torch, make_ours, steps, dtype=torch.float32, torch_hook=None,
         coalesce=True):
    """The same model trained by torch's optimizer and by adamkern's: (torch's, ours). Each
    step both get the grad of torch's model's backward pass, ours coalesced by torch: a few
    ULP of difference in a weight would otherwise change the next grads, and repeated rows
    summed in another order (torch: input order, adamkern: canonical) differ by a few ULP of
    the terms, which is many of the sum where they cancel; so the two would drift apart for
    reasons that are not the update's."""
    models = [make_model(kind, dtype) for _ in range(2)]
    optimizers = [make_torch(models[0].parameters()), make_ours(models[1].parameters())]

    def share(model):
        grad = model.weight.grad
        models[1].weight.grad = grad.coalesce() if coalesce else grad.clone()
        if torch_hook is not None:
            torch_hook(model)
        optimizers[1].step()

    train(models[0], optimizers[0], steps, before_step=share)
    assert not torch.equal(models[0].weight, make_model(kind, dtype).weight)
    return models, optimizers


def close(actual, expected, what):
    assert_close_to_reference(actual.detach().numpy(), expected.detach().numpy(), what)


# -- SparseAdam ----------------------------------------------------------------------------

SPARSE_ADAM_OPTIONS = [{}, {"lr": 1e-2}, {"lr": 3e-2, "betas": (0.5, 0.9), "eps": 1e-6},
                       {"lr": 1e-2, "maximize": True}]


@pytest.mark.parametrize("kind", ["embedding", "bag"])
@pytest.mark.parametrize("options", SPARSE_ADAM_OPTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_adam_trains_as_torch(kind, options, dtype):
    """50 steps: the weights and moments within 4 ULP of torch.optim.SparseAdam's, the step
    counts equal (ints, as torch keeps them)."""
    models, optimizers = pair(kind, lambda p: torch.optim.SparseAdam(p, **options),
                              lambda p: akt.SparseAdam(p, **options), 50, dtype)
    close(models[1].weight, models[0].weight, "weight")
    theirs, ours = (o.state[m.weight] for o, m in zip(optimizers, models))
    assert ours["step"] == theirs["step"] == 50 and type(ours["step"]) is int
    for name in ("exp_avg", "exp_avg_sq"):
        close(ours[name], theirs[name], name)


def test_sparse_adam_is_the_row_op():
    """Each step is adamkern.sparse.adam_rows_ on the grad's indices and values: bitwise."""
    from adamkern import sparse

    model = make_model("embedding")
    table = make_model("embedding").weight.detach().numpy().copy()
    m, v = np.zeros_like(table), np.zeros_like(table)
    optimizer = akt.SparseAdam(model.parameters(), lr=1e-2)
    count = [0]

    def follow(model):
        count[0] += 1
        grad = model.weight.grad
        sparse.adam_rows_(table, grad._indices()[0].numpy(), grad._values().numpy(), m, v,
                          step=count[0], lr=1e-2)

    train(model, optimizer, 10, before_step=follow)
    assert np.array_equal(model.weight.detach().numpy(), table)
    assert np.array_equal(optimizer.state[model.weight]["exp_avg_sq"].numpy(), v)


def test_sparse_adam_order_of_lookups_does_not_matter():
    """The (index, gradient row) pairs of a grad in any order step to the same bits (repeats
    summed in a canonical order)."""
    models = [make_model("embedding") for _ in range(2)]
    optimizers = [akt.SparseAdam(m.parameters(), lr=1e-2) for m in models]
    train(models[0], optimizers[0], 10)

    def shuffle(model):
        grad = model.weight.grad
        order = torch.randperm(grad._nnz(), generator=torch.Generator().manual_seed(grad._nnz()))
        model.weight.grad = torch.sparse_coo_tensor(grad._indices()[:, order],
                                                    grad._values()[order], grad.shape,
                                                    check_invariants=True)

    train(models[1], optimizers[1], 10, before_step=shuffle)
    assert torch.equal(models[0].weight, models[1].weight)


def test_sparse_adam_state_dict_round_trip_and_torch_checkpoints():
    """A checkpoint moves between adamkern.torch.SparseAdam and torch.optim.SparseAdam both
    ways (same layout); reloaded into adamkern, training continues bit for bit."""
    model = make_model("embedding")
    optimizer = akt.SparseAdam(model.parameters(), lr=1e-2)
    train(model, optimizer, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict()}, buffer)
    saved = optimizer.state_dict()
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}

    # adamkern -> adamkern: continues bitwise
    buffer.seek(0)
    checkpoint = torch.load(buffer)
    twin = make_model("embedding")
    twin.load_state_dict(checkpoint["model"])
    twin_optimizer = akt.SparseAdam(twin.parameters(), lr=1e-2)
    twin_optimizer.load_state_dict(checkpoint["opt"])
    train(model, optimizer, 5, seed=2)
    train(twin, twin_optimizer, 5, seed=2)
    assert torch.equal(model.weight, twin.weight)
    assert twin_optimizer.state[twin.weight]["step"] == 10

    # adamkern -> torch: torch's class takes the checkpoint and steps on as ours does (both
    # given the same grads, see pair)
    theirs, ours = make_model("embedding"), make_model("embedding")
    theirs.load_state_dict(checkpoint["model"])
    ours.load_state_dict(checkpoint["model"])
    torch_optimizer = torch.optim.SparseAdam(theirs.parameters(), lr=1e-2)
    torch_optimizer.load_state_dict(copy.deepcopy(checkpoint["opt"]))
    ours_optimizer = akt.SparseAdam(ours.parameters(), lr=1e-2)
    ours_optimizer.load_state_dict(copy.deepcopy(checkpoint["opt"]))

    def share(model):
        ours.weight.grad = model.weight.grad.coalesce()
        ours_optimizer.step()

    train(theirs, torch_optimizer, 5, seed=2, before_step=share)
    close(ours.weight, theirs.weight, "weight after the checkpoint")
    assert torch_optimizer.state[theirs.weight]["step"] == 10

    # torch -> adamkern: the same state, stepped on
    back = make_model("embedding")
    back.load_state_dict(theirs.state_dict())
    back_optimizer = akt.SparseAdam(back.parameters(), lr=1e-2)
    back_optimizer.load_state_dict(torch_optimizer.state_dict())
    assert back_optimizer.state[back.weight]["step"] == 10
    assert torch.equal(back_optimizer.state[back.weight]["exp_avg"],
                       torch_optimizer.state[theirs.weight]["exp_avg"])
    train(back, back_optimizer, 1, seed=3)
    assert back_optimizer.state[back.weight]["step"] == 11


def test_sparse_adam_constructor_checks_are_torchs():
    weight = torch.nn.Parameter(torch.zeros(4, 2))
    for options in ({"lr": -1.0}, {"eps": 0.0}, {"betas": (1.0, 0.9)}, {"betas": (0.9, -0.1)}):
        with pytest.raises(ValueError) as theirs:
            torch.optim.SparseAdam([weight], **options)
        with pytest.raises(ValueError) as ours:
            akt.SparseAdam([weight], **options)
        assert str(ours.value) == str(theirs.value)


def test_sparse_adam_dense_grad_raises_torchs_error_and_changes_nothing():
    model = make_model("embedding")
    dense = torch.nn.Parameter(torch.ones(3))
    optimizer = akt.SparseAdam([{"params": model.parameters()}, {"params": [dense]}])
    model(torch.tensor([1, 2, 2])).sum().backward()
    dense.grad = torch.ones(3)
    before = model.weight.detach().clone()
    with pytest.raises(RuntimeError, match="SparseAdam does not support dense gradients"):
        optimizer.step()
    assert torch.equal(model.weight, before) and not optimizer.state


def test_sparse_adam_step_checks_every_param_first():
    """A param the row kernel cannot step (float16) raises before any param is written."""
    model = make_model("embedding")
    half = torch.nn.Parameter(torch.zeros(5, 2, dtype=torch.float16))
    optimizer = akt.SparseAdam([model.weight, half])
    model(torch.tensor([1, 2, 2])).sum().backward()
    half.grad = torch.sparse_coo_tensor([[0, 3]], torch.ones(2, 2, dtype=torch.float16), (5, 2),
                                        check_invariants=True)
    before = model.weight.detach().clone()
    with pytest.raises(TypeError, match="param 1 has dtype torch.float16"):
        optimizer.step()
    assert torch.equal(model.weight, before) and not optimizer.state


def test_sparse_adam_element_sparse_grad_and_empty_grad():
    """A grad sparse in both dimensions (values one element each) steps those elements, as
    torch; an empty grad counts a step and writes nothing, as torch."""
    params = [torch.nn.Parameter(torch.randn(6, 4, generator=torch.Generator().manual_seed(5)))
              for _ in range(2)]
    optimizers = [torch.optim.SparseAdam([params[0]], lr=0.1), akt.SparseAdam([params[1]], lr=0.1)]
    for step in range(3):
        grad = torch.sparse_coo_tensor([[1, 5, 1, 0], [2, 3, 2, step]],
                                       torch.tensor([1.0, -2.0, 0.5, 3.0]), (6, 4),
                                       check_invariants=True)
        for p, o in zip(params, optimizers):
            p.grad = grad.clone()
            o.step()
    close(params[1], params[0], "element-sparse")
    untouched = params[1].detach().clone()
    params[1].grad = torch.sparse_coo_tensor(torch.zeros(1, 0, dtype=torch.int64),
                                             torch.zeros(0, 4), (6, 4),
                                             check_invariants=True)
    optimizers[1].step()
    assert torch.equal(params[1], untouched) and optimizers[1].state[params[1]]["step"] == 4


# -- Adagrad and SGD with sparse grads -----------------------------------------------------

ADAGRAD_OPTIONS = [{"lr": 0.1}, {"lr": 0.05, "lr_decay": 0.01, "eps": 1e-6},
                   {"lr": 0.1, "initial_accumulator_value": 0.5, "maximize": True}]


@pytest.mark.parametrize("kind", ["embedding", "bag"])
@pytest.mark.parametrize("options", ADAGRAD_OPTIONS)
def test_adagrad_sparse_grads_as_torch(kind, options):
    """20 steps: within 4 ULP of torch.optim.Adagrad with the same sparse grads; state
    ``step`` and ``sum`` as torch's."""
    models, optimizers = pair(kind, lambda p: torch.optim.Adagrad(p, **options),
                              lambda p: akt.Adagrad(p, **options), 20)
    close(models[1].weight, models[0].weight, "weight")
    theirs, ours = (o.state[m.weight] for o, m in zip(optimizers, models))
    assert torch.equal(ours["step"], theirs["step"])
    close(ours["sum"], theirs["sum"], "sum")


@pytest.mark.parametrize("options", [{"lr": 0.1}, {"lr": 0.1, "maximize": True}])
def test_sgd_sparse_grads_as_torch(options):
    """Without momentum: within 4 ULP of torch given the coalesced grad (ours the
    uncoalesced one)."""

    def coalesce(model):
        model.weight.grad = model.weight.grad.coalesce()

    models, _ = pair("embedding", lambda p: torch.optim.SGD(p, **options),
                     lambda p: akt.SGD(p, **options), 20, torch_hook=coalesce)
    close(models[1].weight, models[0].weight, "weight")


@pytest.mark.parametrize("options", [{"momentum": 0.9}, {"momentum": 0.5, "dampening": 0.5},
                                     {"momentum": 0.9, "nesterov": True, "maximize": True}])
def test_sgd_sparse_grads_with_momentum_are_torchs(options):
    """With momentum torch's own step runs (its momentum buffer is sparse): bitwise."""
    models, optimizers = pair("bag", lambda p: torch.optim.SGD(p, lr=0.01, **options),
                              lambda p: akt.SGD(p, lr=0.01, **options), 20, coalesce=False)
    assert torch.equal(models[1].weight, models[0].weight)
    theirs, ours = (o.state[m.weight]["momentum_buffer"] for o, m in zip(optimizers, models))
    assert torch.equal(ours.to_dense(), theirs.to_dense())


def test_sparse_and_dense_params_in_one_step():
    """The dense params of a step with sparse ones get the dense kernel's step: bitwise
    torch's fused Adagrad on them; the sparse one as adagrad_rows_ would step it."""
    model = make_model("embedding")
    head = torch.nn.Linear(DIM, 1)
    twin_head = copy.deepcopy(head)
    optimizer = akt.Adagrad(list(model.parameters()) + list(head.parameters()), lr=0.1)
    fused = torch.optim.Adagrad(twin_head.parameters(), lr=0.1, fused=True)
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = zipf_batch(rng, (8, 3))
        optimizer.zero_grad()
        head(model(batch).sum(dim=1)).square().mean().backward()
        for p, q in zip(head.parameters(), twin_head.parameters()):
            q.grad = p.grad.clone()
        optimizer.step()
        fused.step()
    for p, q in zip(head.parameters(), twin_head.parameters()):
        assert torch.equal(p, q)
    assert optimizer.state[model.weight]["step"].item() == 5


REFUSED = [
    ("Adagrad", {"weight_decay": 0.1}, "weight_decay option is not compatible"),
    ("Adagrad", {"fused": True}, "`fused` does not support sparse grad"),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}, r"add\(sparse, dense\) is not supported"),
    ("SGD", {"lr": 0.1, "fused": True}, "`_fused_sgd` does not support sparse"),
]


@pytest.mark.parametrize("name, options, message", REFUSED)
def test_refused_with_sparse_grads_as_torch_and_nothing_written(name, options, message):
    """What torch refuses with a sparse grad raises torch's RuntimeError (checked against
    torch's class), and neither the sparse param nor a dense param of the same step is
    written; the state the step would have made is not kept."""
    for module in (torch.optim, akt):
        model = make_model("embedding")
        dense = torch.nn.Parameter(torch.ones(3))
        optimizer = getattr(module, name)([model.weight, dense], **options)
        model(torch.tensor([1, 2, 2])).sum().backward()
        dense.grad = torch.ones(3)
        before = model.weight.detach().clone()
        with pytest.raises(RuntimeError, match=message):
            optimizer.step()
        if module is akt:
            assert torch.equal(model.weight, before) and torch.equal(dense, torch.ones(3))
            assert all(not s.get("step", torch.zeros(())).item() for s in optimizer.state.values())
            assert "momentum_buffer" not in optimizer.state.get(dense, {})


def test_default_fused_record_does_not_refuse_sparse_grads():
    """adamkern records fused=True for Adagrad/SGD when it is not given (for checkpoints);
    that does not refuse sparse grads, which torch's default (non-fused) path steps."""
    model = make_model("embedding")
    optimizer = akt.Adagrad(model.parameters())
    assert optimizer.param_groups[0]["fused"] is True
    model(torch.tensor([0, 1])).sum().backward()
    optimizer.step()
    assert optimizer.state[model.weight]["step"].item() == 1


# -- Adagrad(rowwise=True) -----------------------------------------------------------------


def test_rowwise_adagrad_is_the_row_op_on_sparse_and_dense_grads():
    """rowwise=True steps a sparse grad's rows and every row of a dense grad (a Linear in
    the same group) as adamkern.sparse.rowwise_adagrad_rows_ does: bitwise, state
    ``step`` and ``row_sum`` (one value a row)."""
    from adamkern import sparse

    model = make_model("embedding")
    head = torch.nn.Linear(DIM, 3)
    optimizer = akt.Adagrad(list(model.parameters()) + list(head.parameters()), lr=0.1,
                            rowwise=True, weight_decay=0.01, initial_accumulator_value=0.1)
    tables = [p.detach().numpy().copy().reshape(p.shape[0], -1)
              for p in (model.weight, head.weight, head.bias)]
    sums = [np.full(len(t), 0.1, np.float32) for t in tables]
    rng = np.random.default_rng(0)
    for _ in range(10):
        optimizer.zero_grad()
        head(model(zipf_batch(rng, (8, 3))).sum(dim=1)).square().mean().backward()
        grad = model.weight.grad
        sparse.rowwise_adagrad_rows_(tables[0], grad._indices()[0].numpy(),
                                     grad._values().numpy(), sums[0], lr=0.1, eps=1e-10,
                                     weight_decay=0.01)
        for k, p in ((1, head.weight), (2, head.bias)):
            sparse.rowwise_adagrad_rows_(tables[k], np.arange(len(tables[k])),
                                         p.grad.numpy().reshape(len(tables[k]), -1), sums[k],
                                         lr=0.1, eps=1e-10, weight_decay=0.01)
        optimizer.step()
    for p, table, row_sum in zip((model.weight, head.weight, head.bias), tables, sums):
        assert np.array_equal(p.detach().numpy().reshape(table.shape), table)
        state = optimizer.state[p]
        assert state["row_sum"].shape == (p.shape[0],) and state["step"].item() == 10
        assert np.array_equal(state["row_sum"].numpy(), row_sum)


def test_rowwise_state_dict_round_trip():
    models = [make_model("embedding") for _ in range(2)]
    optimizers = [akt.Adagrad(m.parameters(), lr=0.1, rowwise=True) for m in models]
    train(models[0], optimizers[0], 3)
    models[1].load_state_dict(models[0].state_dict())
    optimizers[1].load_state_dict(copy.deepcopy(optimizers[0].state_dict()))
    assert optimizers[1].param_groups[0]["rowwise"] is True
    train(models[0], optimizers[0], 3, seed=2)
    train(models[1], optimizers[1], 3, seed=2)
    assert torch.equal(models[0].weight, models[1].weight)


def test_rowwise_refusals():
    weight = torch.nn.Parameter(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="rowwise=True does not take lr_decay"):
        akt.Adagrad([weight], rowwise=True, lr_decay=0.1)
    with pytest.raises(ValueError, match="rowwise=True keeps its state"):
        akt.Adagrad([weight], rowwise=True, state_dtype="bfloat16")
    with pytest.raises(TypeError, match="rowwise must be True or False"):
        akt.Adagrad([weight], rowwise=1)
    # a param whose state was made without rowwise is not stepped row-wise
    optimizer = akt.Adagrad([weight])
    weight.grad = torch.ones(4, 2)
    optimizer.step()
    optimizer.param_groups[0]["rowwise"] = True
    before = weight.detach().clone()
    with pytest.raises(ValueError, match="no row_sum"):
        optimizer.step()
    assert torch.equal(weight, before)


@pytest.mark.parametrize("name", ["Adagrad", "SGD"])
def test_a_sparse_grad_after_steady_dense_steps(name):
    """Steps that reuse their views (dense grads only) and then a sparse grad: the sparse
    step is taken (the reused views refuse it, writing nothing), the dense param stepped once
    as torch's fused step."""
    from adamkern import sparse

    model = make_model("embedding")
    dense = torch.nn.Parameter(torch.linspace(-1, 1, 5))
    twin = torch.nn.Parameter(dense.detach().clone())
    optimizer = getattr(akt, name)([model.weight, dense], lr=0.1)
    reference = getattr(torch.optim, name)([twin], lr=0.1, fused=True)
    for _ in range(3):  # steady: model.weight has no grad
        dense.grad = torch.sin(dense.detach())
        twin.grad = dense.grad.clone()
        optimizer.step()
        reference.step()
    assert optimizer._steady is not None
    table = model.weight.detach().numpy().copy()
    model(torch.tensor([4, 7, 4])).sum().backward()
    dense.grad = torch.sin(dense.detach())
    twin.grad = dense.grad.clone()
    optimizer.step()
    reference.step()
    assert torch.equal(dense, twin)
    grad = model.weight.grad
    if name == "Adagrad":
        state_sum = np.zeros_like(table)
        sparse.adagrad_rows_(table, grad._indices()[0].numpy(), grad._values().numpy(),
                             state_sum, step=1.0, lr=0.1)
    else:
        sparse.sgd_rows_(table, grad._indices()[0].numpy(), grad._values().numpy(), lr=0.1)
    assert np.array_equal(model.weight.detach().numpy(), table)
