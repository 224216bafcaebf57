"""The CUDA kernels on a GPU: every kernel against the CPU kernel (bitwise; LAMB and Prodigy,
whose norms and d are reduced in another order, within 4 ULP; Adafactor too), 16-bit params
against the CPU float32 kernel on the widened values, device-resident scalars, streams and
CUDA graphs, 64-bit indexing, and adamkern.torch on CUDA tensors against
torch.optim.AdamW(fused=True). Skipped (cleanly) without adamkern's CUDA build, a GPU, or
torch/CuPy with CUDA to allocate device memory."""

from __future__ import annotations

import numpy as np
import pytest

import adamkern
import adamkern.cuda

from family import SPECS, Problem


def _array_library():
    if not adamkern.cuda.available() or adamkern.cuda.device_count() == 0:
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return "cupy"
    except Exception:
        pass
    return None


LIBRARY = _array_library()
pytestmark = pytest.mark.skipif(
    LIBRARY is None, reason="needs adamkern built with ADAMKERN_CUDA=ON, a GPU, and torch or "
                            "CuPy with CUDA")
needs_torch = pytest.mark.skipif(LIBRARY != "torch", reason="needs torch with CUDA")

SHAPES = [(1,), (7,), (8,), (9,), (4099,), (2 * 65536 + 13,), (0,), (3, 5)]
STEPS = 3


def to_device(array: np.ndarray):
    if LIBRARY == "torch":
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).cuda()
    import cupy

    return cupy.asarray(array)


def to_host(array) -> np.ndarray:
    if LIBRARY == "torch":
        return array.cpu().numpy()
    import cupy

    return cupy.asnumpy(array)


def device_problem(problem: Problem) -> Problem:
    other = problem.copy()
    other.params = [to_device(a) for a in problem.params]
    other.states = {k: [to_device(a) for a in v] for k, v in problem.states.items()}
    return other


def assert_matches(cpu: np.ndarray, device, what: str, max_ulp: int = 0) -> None:
    got = to_host(device)
    if max_ulp == 0:
        np.testing.assert_array_equal(got.view(f"u{got.itemsize}"),
                                      cpu.view(f"u{cpu.itemsize}"), err_msg=what)
    else:
        np.testing.assert_array_max_ulp(got, cpu, maxulp=max_ulp)


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_kernel_matches_the_cpu_kernel(spec, dtype):
    # LAMB's norms and Prodigy's d are reduced in another order than the CPU's: within 4 ULP
    max_ulp = 4 if spec.name in ("lamb", "prodigy") else 0
    for options in spec.options:
        cpu = Problem(spec, SHAPES, dtype, seed=3)
        device = device_problem(cpu)
        for step in range(1, STEPS + 1):
            grads = cpu.grads()
            cpu.step(spec.op, grads, step, **options)
            device.step(spec.op, [to_device(g) for g in grads], step, **options)
        for name, arrays in [("params", cpu.params), *cpu.states.items()]:
            device_arrays = device.params if name == "params" else device.states[name]
            for i, (a, b) in enumerate(zip(arrays, device_arrays)):
                assert_matches(a, b, f"{spec} {options} {name}[{i}]", max_ulp)
        for name, value in cpu.call_states.items():  # mu_product, Prodigy's d...: host arrays
            if max_ulp:
                np.testing.assert_allclose(device.call_states[name], value, rtol=1e-12)
            else:
                np.testing.assert_array_equal(value, device.call_states[name])


def offset_copy(array: np.ndarray):
    """A device copy of array whose address is one element past a 16-byte boundary (the
    element-by-element path)."""
    base = to_device(np.zeros(array.size + 1, array.dtype))
    view = base[1:]
    view[...] = to_device(array)
    return view


def test_unaligned_tensors_and_many_launches():
    rng = np.random.default_rng(0)
    shapes = [(33,)] * 50 + [(70001,)]  # more tensors than one launch takes
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    states = [[np.zeros(s, np.float32) for s in shapes] for _ in range(3)]
    device = [[offset_copy(a) if i % 2 else to_device(a) for i, a in enumerate(arrays)]
              for arrays in (params, grads, *states)]
    options = dict(step=1, lr=0.01, weight_decay=0.1, amsgrad=True)
    adamkern.adamw_(params, grads, states[0], states[1], max_exp_avg_sqs=states[2], **options)
    adamkern.adamw_(device[0], device[1], device[2], device[3], max_exp_avg_sqs=device[4],
                    **options)
    for cpu_list, device_list in zip((params, *states), (device[0], *device[2:])):
        for i, (a, b) in enumerate(zip(cpu_list, device_list)):
            assert_matches(a, b, f"tensor {i}")


@needs_torch
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("state", ["float32", "same"])
def test_16bit_params_match_the_float32_kernel(dtype, state):
    """16-bit params: widened, updated in float32 (the CPU float32 kernel's bits), rounded to
    nearest even; 16-bit state likewise."""
    import torch

    torch_dtype = getattr(torch, dtype)
    state_dtype = torch.float32 if state == "float32" else torch_dtype
    rng = np.random.default_rng(1)
    shapes = [(4099,), (8,), (13,)]

    def rounded(values, to):
        return torch.from_numpy(values).to(to)

    params = [rounded(rng.standard_normal(s).astype(np.float32), torch_dtype).cuda()
              for s in shapes]
    exp_avgs = [torch.zeros(s, dtype=state_dtype, device="cuda") for s in shapes]
    exp_avg_sqs = [torch.zeros(s, dtype=state_dtype, device="cuda") for s in shapes]
    cpu_params = [p.float().cpu().numpy() for p in params]
    cpu_m = [np.zeros(s, np.float32) for s in shapes]
    cpu_v = [np.zeros(s, np.float32) for s in shapes]
    for step in range(1, 4):
        grads = [rounded(rng.standard_normal(s).astype(np.float32), torch_dtype) for s in shapes]
        cpu_grads = [g.float().numpy() for g in grads]
        adamkern.adamw_(params, [g.cuda() for g in grads], exp_avgs, exp_avg_sqs, step=step,
                        lr=0.01)
        adamkern.adamw_(cpu_params, cpu_grads, cpu_m, cpu_v, step=step, lr=0.01)
        # the device stores 16-bit values: round the reference the same way, every step
        for arrays, to in ((cpu_params, torch_dtype), (cpu_m, state_dtype), (cpu_v, state_dtype)):
            for i, a in enumerate(arrays):
                arrays[i] = rounded(a, to).float().numpy()
    for name, device_arrays, cpu_arrays in (("params", params, cpu_params),
                                            ("exp_avgs", exp_avgs, cpu_m),
                                            ("exp_avg_sqs", exp_avg_sqs, cpu_v)):
        for i, (d, c) in enumerate(zip(device_arrays, cpu_arrays)):
            np.testing.assert_array_equal(d.float().cpu().numpy(), c, err_msg=f"{name}[{i}]")


# The two-pass optimizers: their state lists (zeros, or a copy of the params) and the extra
# arguments of a call, beside lr 0.5 (large updates against the params' ULP).
TWO_PASS = {
    "lamb": (["exp_avgs", "exp_avg_sqs"], dict(weight_decay=0.01), True),
    "prodigy": (["exp_avgs", "exp_avg_sqs", "s", "p0"],
                dict(weight_decay=0.01, d0=1e-2, d_coef=100.0), False),  # d grows at step 3
}


@needs_torch
@pytest.mark.parametrize("name", sorted(TWO_PASS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("unscale", [False, True], ids=["plain", "grad_scale"])
def test_two_pass_with_16bit_state_matches_the_cpu(name, dtype, unscale):
    """LAMB and Prodigy with 16-bit params and state apply the unrounded moments and round
    once (as the CPU does); the two sides reduce their sums in another order, so one ULP of
    the 16-bit format may differ. Applying the rounded moments instead would show."""
    import ml_dtypes
    import torch

    state_names, extra, takes_step = TWO_PASS[name]
    torch_dtype = getattr(torch, dtype)
    numpy_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    rng = np.random.default_rng(5)
    shapes = [(4099,), (8,), (2 * 65536 + 13,)]
    params = [rng.standard_normal(s).astype(numpy_dtype) for s in shapes]
    states = {k: [p.copy() if k == "p0" else np.zeros(p.shape, numpy_dtype) for p in params]
              for k in state_names}

    def on_device(arrays):
        return [torch.from_numpy(a.view(np.int16)).cuda().view(torch_dtype) for a in arrays]

    device_params = on_device(params)
    device_states = {k: on_device(v) for k, v in states.items()}
    cpu_calls, device_calls = {}, {}
    if name == "prodigy":
        cpu_calls["group_scalars"] = np.array([1e-2, 1e-2, 0, 0, 0, 0.0])
        device_calls["group_scalars"] = cpu_calls["group_scalars"].copy()
    op = getattr(adamkern, name + "_")
    options = dict(lr=0.5, grad_scale=4.0 if unscale else None, **extra)
    for step in range(1, 4):
        if takes_step:
            options["step"] = step
        grads = [rng.standard_normal(s).astype(numpy_dtype) for s in shapes]
        device_grads = on_device(grads)
        op(params, grads, **states, **cpu_calls, **options)
        op(device_params, device_grads, **device_states, **device_calls, **options)
        if unscale:  # the unscaled grads are written back, rounded
            for g, d in zip(grads, device_grads):
                np.testing.assert_array_equal(d.view(torch.int16).cpu().numpy(),
                                              g.view(np.int16))
    for key in cpu_calls:
        np.testing.assert_allclose(device_calls[key], cpu_calls[key], rtol=1e-12)
    for key, cpu_arrays, device_arrays in [("params", params, device_params),
                                           *((k, states[k], device_states[k]) for k in states)]:
        for i, (c, d) in enumerate(zip(cpu_arrays, device_arrays)):
            got = d.view(torch.int16).cpu().numpy().astype(np.int32)
            want = c.view(np.int16).astype(np.int32)
            assert np.abs(got - want).max() <= 1, f"{name} {dtype} {key}[{i}]"


@needs_torch
def test_device_resident_amp_scalars_and_capturable_adam():
    import torch

    rng = np.random.default_rng(2)
    shapes = [(1000,), (17,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) * 1024 for s in shapes]
    m = [np.zeros(s, np.float32) for s in shapes]
    v = [np.zeros(s, np.float32) for s in shapes]
    d = [[to_device(a) for a in arrays] for arrays in (params, grads, m, v)]
    scale = torch.tensor([1024.0], device="cuda")
    found = torch.zeros(1, device="cuda")
    lr = torch.tensor([0.01], device="cuda")
    step = torch.tensor([1.0], device="cuda")
    adamkern.adamw_(params, grads, m, v, step=1, lr=0.01, grad_scale=1024.0, found_inf=0.0)
    adamkern.adamw_(*d, step=step, lr=lr, grad_scale=scale, found_inf=found)
    for cpu_list, device_list in zip((params, grads, m, v), d):
        for a, b in zip(cpu_list, device_list):
            assert_matches(a, b, "device scalars", max_ulp=4)
    # found_inf set on the device: nothing is written
    before = [[to_host(x).copy() for x in arrays] for arrays in d]
    found.fill_(1.0)
    adamkern.adamw_(*d, step=step, lr=lr, grad_scale=scale, found_inf=found)
    for arrays, saved in zip(d, before):
        for x, s in zip(arrays, saved):
            np.testing.assert_array_equal(to_host(x), s)


@needs_torch
def test_cuda_graph_replay_matches_eager():
    import torch

    rng = np.random.default_rng(4)
    p0 = rng.standard_normal(5000).astype(np.float32)
    grads = [rng.standard_normal(5000).astype(np.float32) for _ in range(3)]
    eager = [to_device(p0), torch.zeros(5000, device="cuda"), torch.zeros(5000, device="cuda")]
    for k, g in enumerate(grads, start=1):
        adamkern.adamw_(eager[0], to_device(g), eager[1], eager[2], step=float(k), lr=0.01)

    graphed = [to_device(p0), torch.zeros(5000, device="cuda"), torch.zeros(5000, device="cuda")]
    grad = torch.zeros(5000, device="cuda")
    step = torch.ones(1, device="cuda")
    lr = torch.full((1,), 0.01, device="cuda")
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        with torch.cuda.graph(graph):
            adamkern.adamw_(graphed[0], grad, graphed[1], graphed[2], step=step, lr=lr)
    torch.cuda.current_stream().wait_stream(stream)
    for k, g in enumerate(grads, start=1):
        grad.copy_(to_device(g))
        step.fill_(float(k))
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager, graphed):
        np.testing.assert_array_max_ulp(to_host(b), to_host(a), maxulp=4)


@needs_torch
def test_runs_on_the_current_stream():
    import torch

    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(100000).astype(np.float32) for _ in range(2)]
    expected = [a.copy() for a in arrays] + [np.zeros(100000, np.float32)]
    adamkern.sgd_(expected[0], expected[1], expected[2], lr=0.1, momentum=0.9,
                  is_first_step=True)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        d = [to_device(a) for a in arrays] + [torch.empty(100000, device="cuda")]
        adamkern.sgd_(d[0], d[1], d[2], lr=0.1, momentum=0.9, is_first_step=True)
    stream.synchronize()
    for a, b in zip(expected, d):
        assert_matches(a, b, "stream")


@needs_torch
def test_64bit_indexing():
    import torch

    size = (1 << 31) + 64
    free, _ = torch.cuda.mem_get_info()
    if free < 3 * size * 4:
        pytest.skip("needs about 26 GB of free GPU memory")
    param = torch.ones(size, device="cuda")
    grad = torch.full((size,), 0.5, device="cuda")
    adamkern.sgd_(param, grad, lr=0.1)
    expected = np.ones(64, np.float32)
    adamkern.sgd_(expected, np.full(64, 0.5, np.float32), lr=0.1)
    np.testing.assert_array_equal(param[-64:].cpu().numpy(), expected)
    np.testing.assert_array_equal(param[:64].cpu().numpy(), expected)
    assert bool((param == param[0]).all())


@needs_torch
@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_optimizers_on_cuda_match_torch_fused(name, dtype):
    import torch

    import adamkern.torch as adamkern_torch

    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(0)
    shapes = [(257, 33), (1000,), (7,)]
    start = [torch.randn(s, device="cuda").to(torch_dtype) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    kwargs = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, amsgrad=True)
    ours_opt = getattr(adamkern_torch, name)(ours, **kwargs)
    theirs_opt = getattr(torch.optim, name)(theirs, fused=True, **kwargs)
    for _ in range(5):
        for a, b in zip(ours, theirs):
            g = torch.randn(a.shape, device="cuda").to(torch_dtype)
            a.grad = g.clone()
            b.grad = g.clone()
        ours_opt.step()
        theirs_opt.step()
    tolerance = {} if dtype == "float32" else {"rtol": 2e-2, "atol": 2e-2}
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), **tolerance)
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            torch.testing.assert_close(ours_opt.state[a][key], theirs_opt.state[b][key],
                                       **tolerance)


ADAFACTOR_SHAPES = [(3,), (70001,), (5, 7), (2, 130, 9), (1, 4099), (0, 4)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.1, "maximize": True, "lr": 0.05},
                                     {"eps": (1e-30, 1e-3), "d": 2.0, "beta2_decay": -0.5}],
                         ids=["defaults", "decay-maximize", "eps-d"])
def test_adafactor_matches_the_cpu(dtype, options):
    """Adafactor's device passes against the CPU's: the sums are reduced in another order
    (rows and pieces of their own), so within 4 ULP; the factors and variances too."""
    rng = np.random.default_rng(11)
    params = [rng.standard_normal(s).astype(dtype) for s in ADAFACTOR_SHAPES]

    def state(shape, keep):
        return np.zeros(keep(shape), dtype) if len(shape) >= 2 else None

    row_vars = [state(s, lambda s: s[:-1] + (1,)) for s in ADAFACTOR_SHAPES]
    col_vars = [state(s, lambda s: s[:-2] + (1, s[-1])) for s in ADAFACTOR_SHAPES]
    variances = [np.zeros(s, dtype) if len(s) == 1 else None for s in ADAFACTOR_SHAPES]
    cpu = [params, row_vars, col_vars, variances]
    device = [[None if a is None else to_device(a) for a in arrays] for arrays in cpu]
    for step in range(1, 4):
        grads = [rng.standard_normal(s).astype(dtype) for s in ADAFACTOR_SHAPES]
        adamkern.adafactor_(*cpu[:1], grads, *cpu[1:], step=step, **options)
        adamkern.adafactor_(device[0], [to_device(g) for g in grads], *device[1:], step=step,
                            **options)
    for name, cpu_arrays, device_arrays in zip(("params", "row_vars", "col_vars", "variances"),
                                               cpu, device):
        for i, (c, d) in enumerate(zip(cpu_arrays, device_arrays)):
            if c is not None and c.size:
                np.testing.assert_array_max_ulp(to_host(d), c, maxulp=4)


@needs_torch
def test_torch_adafactor_on_cuda_matches_the_cpu_class():
    """adamkern.torch.Adafactor on CUDA params (adamkern.cuda's passes) against the same class
    on CPU params, 3 steps; the state moves between them as torch's."""
    import torch

    torch.manual_seed(0)
    cpu = [torch.randn(37, 11, dtype=torch.float32), torch.randn(70001, dtype=torch.float32)]
    device = [p.detach().cuda().requires_grad_() for p in cpu]
    cpu = [p.requires_grad_() for p in cpu]
    optimizers = [adamkern.torch.Adafactor(ps, lr=0.05, weight_decay=0.01) for ps in (cpu, device)]
    for _ in range(3):
        grads = [torch.randn_like(p) for p in cpu]
        for params, opt in zip((cpu, device), optimizers):
            for p, g in zip(params, grads):
                p.grad = g.to(p.device)
            opt.step()
    for c, d in zip(cpu, device):
        np.testing.assert_array_max_ulp(d.detach().cpu().numpy(), c.detach().numpy(), maxulp=4)
        assert float(optimizers[1].state[d]["step"]) == 3.0
