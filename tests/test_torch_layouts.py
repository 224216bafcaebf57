"""adamkern.torch on every layout and dtype torch's fused CPU optimizers step: params dense in
another order of dimensions (channels_last, channels_last_3d, transposed), params that are not
dense (slices, strided views into a bigger tensor), grads of another layout than their param's,
bfloat16 and float16 params. Compared bitwise with torch's fused path (where that path is
right: see the notes below), through several steps, with the failed-step guarantee on the paths
that step copies."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

OPTIMIZERS = [
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=1e-3)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-3)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
]
OPT_IDS = [name for name, _ in OPTIMIZERS]


def values(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# Each layout: a function of a seed giving a param's values in that layout.
LAYOUTS = {
    "channels_last":
        lambda s: values((4, 6, 3, 5), s).contiguous(memory_format=torch.channels_last),
    "channels_last_3d": lambda s: values((2, 5, 3, 4, 3), s).contiguous(
        memory_format=torch.channels_last_3d),
    "transposed": lambda s: values((9, 7), s).t(),
    "slice": lambda s: values((5, 7), s)[:, :3],
    "strided_view": lambda s: values((12, 10), s)[1::2, 2:9:3],
}


def like(tensor, layout, param=None):
    """A copy of ``tensor`` in the layout ``layout``: 'param' (the strides of ``param`` where
    it is dense, as torch.preserve_format makes them) or 'contiguous'."""
    if layout == "contiguous":
        return tensor.contiguous()
    return torch.empty_like(param, memory_format=torch.preserve_format).copy_(tensor)


def run(make, param, grad_layout, steps=4, grad_scale=None):
    opt = make([param])
    for step in range(steps):
        param.grad = like(values(param.shape, 100 + step).to(param.dtype), grad_layout, param)
        if grad_scale is not None:
            opt.grad_scale = torch.tensor(grad_scale)
        opt.step()
    return opt


def reference_layout(tensor):
    """The layout torch's fused step of a param is right in: the param's own when it is dense,
    contiguous when not (torch 2.13's fused CPU kernels step the memory from a param's first
    element on as if it were contiguous: a slice's step writes elements outside the slice)."""
    dense = tensor.is_contiguous() or torch.empty_like(tensor).stride() == tensor.stride()
    return tensor if dense else tensor.contiguous()


def torch_fused(name, kwargs):
    return lambda params: getattr(torch.optim, name)(params, fused=True, **kwargs)


def ours(name, kwargs):
    return lambda params: getattr(akt, name)(params, **kwargs)


@pytest.mark.parametrize("grad_layout", ["param", "contiguous"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS, ids=OPT_IDS)
def test_layouts_are_bitwise_torch_fused(name, kwargs, layout, grad_layout):
    param = torch.nn.Parameter(LAYOUTS[layout](0))
    reference = torch.nn.Parameter(reference_layout(LAYOUTS[layout](0)))
    strides = param.stride()
    opt = run(ours(name, kwargs), param, grad_layout)
    # torch's fused CPU kernels pair elements by memory position: a grad of another layout
    # than its param's gives a wrong step there (torch 2.13, see below), so torch is given
    # grads in its param's layout. The same layout matters for the bits: both torch's kernel
    # and adamkern's step elements in memory order, and a few bits of exp_avg_sq depend on an
    # element's place in that order (the SIMD body or the tail)
    expected = run(torch_fused(name, kwargs), reference, "param")
    assert param.stride() == strides  # stepped in place, layout kept
    assert torch.equal(param.detach(), reference.detach())
    for key, value in expected.state[reference].items():
        assert torch.equal(opt.state[param][key], value), key
    if layout in ("channels_last", "channels_last_3d", "transposed") and name != "SGD":
        # state in the param's layout, as torch.preserve_format makes it (SGD's momentum buffer
        # is a copy of the first grad in torch, in the grad's layout)
        buffer = next(v for k, v in opt.state[param].items() if k != "step")
        assert buffer.stride() == strides


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_unscaling_writes_grads_of_every_layout(layout):
    param = torch.nn.Parameter(LAYOUTS[layout](0))
    reference = torch.nn.Parameter(reference_layout(LAYOUTS[layout](0)))
    run(ours("AdamW", {}), param, "contiguous", steps=2, grad_scale=4.0)
    run(torch_fused("AdamW", {}), reference, "param", steps=2, grad_scale=4.0)
    assert torch.equal(param.detach(), reference.detach())
    assert param.grad.is_contiguous()
    assert torch.equal(param.grad, reference.grad)  # the grads were unscaled in place


def test_torch_fused_pairs_grads_by_memory_position():
    """Why the test above compares with contiguous copies: torch's fused kernel steps a
    channels_last param with a contiguous grad as if the grad were channels_last (unlike its
    own single-tensor path); adamkern steps each element with its own grad."""
    grads = [values((4, 6, 3, 5), 100 + step) for step in range(2)]
    results = {}
    for kind, make in [("fused", lambda p: torch.optim.AdamW(p, fused=True)),
                       ("single", lambda p: torch.optim.AdamW(p, foreach=False)),
                       ("ours", lambda p: akt.AdamW(p))]:
        param = torch.nn.Parameter(LAYOUTS["channels_last"](0))
        opt = make([param])
        for grad in grads:
            param.grad = grad.clone()
            opt.step()
        results[kind] = param.detach()
    assert torch.allclose(results["ours"], results["single"], rtol=0, atol=1e-6)
    if torch.allclose(results["fused"], results["single"], rtol=0, atol=1e-6):
        pytest.xfail("torch's fused path now pairs elements by index: compare with it directly")


def test_torch_fused_steps_a_slice_as_contiguous_memory():
    """Why slices are compared with torch's step of a contiguous copy: torch's fused kernel
    steps ``whole[:, :3]`` as the first 15 elements of ``whole``'s memory; adamkern steps the
    slice's elements and leaves the rest of ``whole`` alone."""
    results = {}
    for kind, make in [("fused", lambda p: torch.optim.AdamW(p, fused=True)),
                       ("ours", lambda p: akt.AdamW(p))]:
        whole = values((5, 7), 0)
        param = torch.nn.Parameter(whole[:, :3])
        param.grad = values((5, 3), 1)
        make([param]).step()
        results[kind] = whole
    untouched = values((5, 7), 0)
    assert torch.equal(results["ours"][:, 3:], untouched[:, 3:])
    if torch.equal(results["fused"][:, 3:], untouched[:, 3:]):
        pytest.xfail("torch's fused path now steps slices: compare with it directly")


def test_expanded_param_is_refused():
    param = torch.nn.Parameter(torch.zeros(3).expand(4, 3))
    with pytest.raises(ValueError, match=r"^param_groups\[0\] param 0 has elements that share"):
        akt.AdamW([param])
    fine = torch.nn.Parameter(torch.zeros(4, 3))
    opt = akt.AdamW([fine])
    fine.data = torch.zeros(3).expand(4, 3)  # expanded after the constructor's check
    fine.grad = torch.ones(4, 3)
    with pytest.raises(ValueError, match=r"^param_groups\[0\] param 0 has elements that share"):
        opt.step()
    assert len(opt.state) == 0


def test_expanded_grad_is_read_but_not_unscaled():
    param = torch.nn.Parameter(torch.zeros(4, 3))
    reference = torch.nn.Parameter(torch.zeros(4, 3))
    grad = torch.arange(3.0).expand(4, 3)
    param.grad, reference.grad = grad, grad.contiguous()
    akt.AdamW([param]).step()
    torch.optim.AdamW([reference], fused=True).step()
    assert torch.equal(param.detach(), reference.detach())
    opt = akt.AdamW([param])
    opt.grad_scale = torch.tensor(2.0)
    before = param.detach().clone()
    with pytest.raises(ValueError, match=r"^param_groups\[0\] param 0's grad has elements"):
        opt.step()
    assert torch.equal(param.detach(), before) and len(opt.state) == 0


def snapshot(opt, params):
    return ([p.detach().clone() for p in params], [p.grad.clone() for p in params],
            {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()})


def assert_unchanged(opt, params, before):
    values_before, grads_before, state_before = before
    for p, value, grad in zip(params, values_before, grads_before):
        assert torch.equal(p.detach(), value) and torch.equal(p.grad, grad)
    assert {id(p) for p in opt.state} == set(state_before)
    for p, entries in opt.state.items():
        assert entries.keys() == state_before[id(p)].keys()
        for key, value in entries.items():
            assert torch.equal(value, state_before[id(p)][key])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_failed_step_changes_nothing(layout):
    """A step that fails after the copies were made (a bad grad of a later param, a bad lr)
    leaves every param, grad and state entry as it was."""
    params = [torch.nn.Parameter(LAYOUTS[layout](k)) for k in range(2)]
    opt = akt.AdamW([{"params": params[:1]}, {"params": params[1:]}], lr=1e-2)
    for step in range(2):
        for p in params:
            p.grad = like(values(p.shape, step), "contiguous")
        opt.step()
    params[1].grad_dtype = None  # lets torch take a grad of another dtype
    params[1].grad = like(values(params[1].shape, 9), "contiguous").double()  # wrong dtype
    before = snapshot(opt, params)
    with pytest.raises(TypeError, match=r"param_groups\[1\] param 0"):
        opt.step()
    assert_unchanged(opt, params, before)
    params[1].grad = params[1].grad.float()
    opt.param_groups[1]["lr"] = -1.0
    before = snapshot(opt, params)
    with pytest.raises(ValueError, match=r"param_groups\[1\]"):
        opt.step()
    assert_unchanged(opt, params, before)
    # a first step that fails leaves no state
    fresh = torch.nn.Parameter(LAYOUTS[layout](5))
    fresh.grad_dtype = None
    fresh.grad = like(values(fresh.shape, 0), "contiguous").double()
    opt = akt.SGD([fresh], lr=0.1, momentum=0.9)
    with pytest.raises(TypeError, match=r"^param_groups\[0\] param 0's grad"):
        opt.step()
    assert len(opt.state) == 0


def test_aliased_grad_of_a_strided_param_is_refused():
    param = torch.nn.Parameter(LAYOUTS["transposed"](0))
    param.grad = param.detach()[:, :]  # the param's own memory
    opt = akt.AdamW([param])
    before = param.detach().clone()
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 0 and param_groups\[0\] "
                                         r"param 0's grad overlap"):
        opt.step()
    assert torch.equal(param.detach(), before) and len(opt.state) == 0


def test_errors_name_the_param_of_any_layout():
    param = torch.nn.Parameter(torch.randn(5, 7, dtype=torch.complex64)[:, :3])
    param.grad = torch.zeros_like(param)
    with pytest.raises(ValueError, match=r"^param_groups\[0\] param 0 is complex"):
        akt.AdamW([param]).step()
    param = torch.nn.Parameter(LAYOUTS["channels_last"](0).to(torch.int32), requires_grad=False)
    param.grad = torch.zeros_like(param)
    with pytest.raises(TypeError, match=r"^param_groups\[0\] param 0 has dtype torch.int32"):
        akt.SGD([param], lr=0.1).step()


# -- bfloat16 and float16 params ------------------------------------------------------------


LOW = [torch.bfloat16, torch.float16]


def rounded_reference(name, kwargs, dtype):
    """torch's fused float32 step, every buffer rounded to ``dtype`` after each step: what
    adamkern computes for 16-bit params and state (float32 math, each buffer rounded once)."""
    kwargs = dict(kwargs)
    if "initial_accumulator_value" in kwargs:  # the state starts in the param's dtype
        kwargs["initial_accumulator_value"] = float(
            torch.tensor(kwargs["initial_accumulator_value"]).to(dtype))
    fused = torch_fused(name, kwargs)

    class Rounded:
        def __init__(self, params):
            self.opt = fused(params)

        def step(self):
            self.opt.step()
            with torch.no_grad():
                for group in self.opt.param_groups:
                    for p in group["params"]:
                        p.copy_(p.to(dtype))
                        for value in self.opt.state[p].values():
                            if value.dim():
                                value.copy_(value.to(dtype))

    return Rounded


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "slice"])
@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS, ids=OPT_IDS)
def test_low_precision_is_the_float32_step_rounded(name, kwargs, dtype, layout):
    make = (lambda s: values(4099, s)) if layout == "contiguous" else LAYOUTS[layout]
    param = torch.nn.Parameter(make(0).to(dtype))
    reference = torch.nn.Parameter(make(0).to(dtype).float())  # in the param's layout
    opt = akt.__dict__[name]([param], **kwargs)
    expected = rounded_reference(name, kwargs, dtype)([reference])
    for step in range(6):
        grad = values(param.shape, 100 + step).to(dtype)
        param.grad, reference.grad = grad, like(grad, "param", reference)
        opt.step()
        expected.step()
        assert torch.equal(param.detach(), reference.detach().to(dtype)), step
    for key, value in expected.opt.state[reference].items():
        if value.dim():
            assert opt.state[param][key].dtype == dtype  # torch keeps state in the param's dtype
            assert torch.equal(opt.state[param][key], value.to(dtype)), key


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed", "slice"])
@pytest.mark.parametrize("dtype", LOW, ids=["bfloat16", "float16"])
@pytest.mark.parametrize(("name", "kwargs"), OPTIMIZERS[:2], ids=OPT_IDS[:2])
def test_low_precision_adam_is_bitwise_torch_fused(name, kwargs, dtype, layout):
    make = (lambda s: values(4099, s)) if layout == "contiguous" else LAYOUTS[layout]
    param = torch.nn.Parameter(make(0).to(dtype))
    reference = torch.nn.Parameter(reference_layout(make(0).to(dtype)))
    opt = run(ours(name, kwargs), param, "contiguous", steps=6)
    expected = run(torch_fused(name, kwargs), reference, "param", steps=6)
    assert torch.equal(param.detach(), reference.detach())
    for key, value in expected.state[reference].items():
        assert torch.equal(opt.state[param][key], value), key


def test_mixed_dtypes_in_one_group():
    params = [torch.nn.Parameter(values(33, k).to(dtype))
              for k, dtype in enumerate([torch.float32, torch.bfloat16, torch.float16,
                                         torch.float64])]
    references = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt, expected = akt.AdamW(params, lr=1e-2), torch.optim.AdamW(references, lr=1e-2, fused=True)
    for step in range(3):
        for p, r in zip(params, references):
            p.grad = values(33, 10 + step).to(p.dtype)
            r.grad = p.grad.clone()
        opt.step()
        expected.step()
    for p, r in zip(params, references):
        assert torch.equal(p.detach(), r.detach())
