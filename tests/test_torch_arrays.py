"""CPU torch tensors as the functional ops' array arguments: viewed in place by the binding
(as ``.numpy()`` views them), bitwise the same step as NumPy arrays of the same memory, the
same errors, nothing written on error, no reference kept after the call."""

import sys

import pytest

import adamkern

torch = pytest.importorskip("torch")
from adamkern._torch_tensors import as_numpy  # noqa: E402 - needs torch

SHAPES = [(5, 7), (33,), (2, 3, 4), ()]


def tensors(dtype=torch.float32, state_dtype=None, seed=0):
    """params, grads, exp_avgs, exp_avg_sqs: one tensor per shape."""
    generator = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=generator).to(dtype) for s in SHAPES]
    grads = [torch.randn(s, generator=generator).to(dtype) for s in SHAPES]
    state_dtype = state_dtype or (dtype if dtype is torch.float64 else torch.float32)
    exp_avgs = [torch.randn(s, generator=generator).abs().to(state_dtype) for s in SHAPES]
    exp_avg_sqs = [torch.randn(s, generator=generator).square().to(state_dtype) for s in SHAPES]
    return params, grads, exp_avgs, exp_avg_sqs


def numpy_views(lists):
    """The same memory as NumPy arrays."""
    return [[as_numpy(t) for t in tensors] for tensors in lists]


def cloned(lists):
    return [[t.clone() for t in tensors] for tensors in lists]


@pytest.mark.parametrize("dtype,state_dtype", [(torch.float32, None), (torch.float64, None),
                                               (torch.bfloat16, torch.float32),
                                               (torch.bfloat16, torch.bfloat16),
                                               (torch.float16, torch.float32)])
def test_a_step_on_tensors_is_the_step_on_their_numpy_views(dtype, state_dtype):
    ours = tensors(dtype, state_dtype)
    theirs = cloned(ours)
    for step in (1, 2, 3):
        adamkern.adamw_(*ours, step=step, lr=0.1, weight_decay=0.1)
        adamkern.adamw_(*numpy_views(theirs), step=step, lr=0.1, weight_decay=0.1)
    for a, b in zip(sum(ours, []), sum(theirs, [])):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0][0], tensors(dtype, state_dtype)[0][0])  # it stepped


def test_tensors_step_bitwise_as_torch_fused_adamw():
    ours = tensors()
    params = [torch.nn.Parameter(p.clone()) for p in ours[0]]
    reference = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, fused=True)
    state = [[torch.zeros_like(p) for p in ours[0]] for _ in range(2)]
    for step in range(1, 6):
        grads = [torch.randn_like(p) for p in ours[0]]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        reference.step()
        adamkern.adamw_(ours[0], grads, *state, step=step, lr=1e-2, weight_decay=0.1)
    for ours_p, p in zip(ours[0], params):
        assert torch.equal(ours_p, p.detach())


def test_tensors_mixed_with_arrays_and_a_lone_tensor():
    p, g, m, v = (torch.randn(6) for _ in range(4))
    m, v = m.abs(), v.square()
    expected = cloned([[p], [g], [m], [v]])
    adamkern.adam_(*numpy_views(expected), step=1, lr=0.1)
    adamkern.adam_(p.numpy(), g, [m], v.numpy(), step=1, lr=0.1)
    assert all(torch.equal(a, b[0]) for a, b in zip((p, g, m, v), expected))
    q = torch.nn.Parameter(torch.randn(4), requires_grad=False)  # a Parameter, no grad
    adamkern.adam_([q], [torch.ones(4)], [torch.zeros(4)], [torch.zeros(4)], step=1, lr=0.1)


def test_no_reference_is_kept():
    lists = tensors()
    counts = [sys.getrefcount(t) for t in sum(lists, [])]
    for _ in range(3):
        adamkern.adamw_(*lists, step=1)
    assert [sys.getrefcount(t) for t in sum(lists, [])] == counts


class Subclass(torch.Tensor):
    pass


@pytest.mark.parametrize("which,make,error,match", [
    ("grads", lambda g: g.t().contiguous().t(), ValueError, r"grads\[0\] is not contiguous"),
    ("grads", lambda g: g.to(torch.int32), TypeError,
     r"grads\[0\] has dtype torch.int32; expected torch.float32"),
    ("grads", lambda g: g.double(), TypeError, r"grads\[0\] has dtype float64 but params\[0\]"),
    ("grads", lambda g: torch._neg_view(g), ValueError, r"grads\[0\] has torch's negative bit"),
    ("grads", lambda g: g.to_sparse(), ValueError, r"grads\[0\] is a torch tensor with layout "
     r"torch.sparse_coo"),
    ("grads", lambda g: g.to("meta"), ValueError, r"grads\[0\] is a torch tensor on meta"),
    ("grads", lambda g: g.reshape(7, 5), ValueError, r"grads\[0\] has shape \(7, 5\)"),
    ("grads", lambda g: g.as_subclass(Subclass), TypeError,
     r"grads\[0\] must be a numpy.ndarray or a CPU torch.Tensor, got Subclass"),
    ("exp_avgs", lambda m: m.requires_grad_(), ValueError,
     r"exp_avgs\[0\] requires grad and is updated in place"),
    ("params", lambda p: torch.nn.Parameter(p), ValueError,
     r"params\[0\] requires grad and is updated in place"),
])
def test_bad_tensors_raise_and_change_nothing(which, make, error, match):
    lists = dict(zip(("params", "grads", "exp_avgs", "exp_avg_sqs"), tensors()))
    before = {k: [t.clone() for t in v] for k, v in lists.items()}
    arguments = {**lists, which: [make(lists[which][0])] + lists[which][1:]}
    with pytest.raises(error, match=match):
        adamkern.adamw_(**arguments, step=1)
    for k, tensors_before in before.items():
        assert all(torch.equal(t, b) for t, b in zip(lists[k], tensors_before))
