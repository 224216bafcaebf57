"""adamkern's storage modes on adamkern.torch's optimizers (state_dtype, master_weights,
rounding, seed): every class in each mode bitwise adamkern.optim in the same mode (the same
kernels, the same stream of random bits); the modes the kernels refuse refused when a group is
added; the state dict layout of docs/torch.md, round trips bit for bit (torch.save/torch.load
with weights_only included), conversions between modes and torch's layout
(to_torch_state_dict, then torch.optim.AdamW trains on); 8-bit state on params of other
layouts. Skipped when torch is not installed."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest

from adamkern import lowp, optim

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")
from adamkern._torch_tensors import as_numpy, flat  # noqa: E402 - needs torch

CLASSES = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "SGD",
           "Lion", "AdaBelief", "LAMB", "Adan", "Yogi", "ADOPT", "AdEMAMix"]
# options that use every buffer of the class
OPTIONS = {"SGD": {"momentum": 0.9}, "RMSprop": {"momentum": 0.9, "centered": True},
           "Adam": {"amsgrad": True}, "Adagrad": {"initial_accumulator_value": 0.1}}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MODES = [
    ("float32", {"state_dtype": "int8"}),
    ("float32", {"state_dtype": "bfloat16"}),
    ("float32", {"state_dtype": "bfloat16", "rounding": "stochastic", "seed": 7}),
    ("bfloat16", {"master_weights": True}),
    ("bfloat16", {"rounding": "stochastic", "seed": 3}),
    ("bfloat16", {"state_dtype": "int8", "master_weights": True, "rounding": "stochastic",
                  "seed": 5}),
    ("float16", {"state_dtype": "bfloat16", "master_weights": True}),
    ("float16", {"state_dtype": "int8"}),
]
SHAPES = [(300,), (7, 5), (1,)]
STEPS = 4


def mode_id(dtype, mode):
    return dtype + "-" + "-".join(f"{k}={v}" for k, v in mode.items())


def make_params(dtype, shapes=SHAPES, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=generator).to(dtype)) for s in shapes]


def make_grads(params, step):
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=generator).to(p.dtype) for p in params]


def optim_state_dtype(dtype, mode):
    """adamkern.optim's state_dtype for the state adamkern.torch keeps in ``mode``."""
    if mode.get("state_dtype") is not None:
        return mode["state_dtype"]
    return "float32" if dtype == "float32" or mode.get("master_weights") else dtype


def bits(tensor):
    tensor = tensor.detach()
    if tensor.dtype in (torch.bfloat16, torch.float16):
        tensor = tensor.view(torch.int16)
    return tensor


def assert_same(a, b, what=""):
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), what
    assert torch.equal(bits(a), bits(b)), what


def train(opt, params, steps, first=0):
    for step in range(first, first + steps):
        for p, g in zip(params, make_grads(params, step)):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("dtype, mode", [pytest.param(*m, id=mode_id(*m)) for m in MODES])
@pytest.mark.parametrize("cls", CLASSES)
def test_bitwise_adamkern_optim_in_the_same_mode(cls, dtype, mode):
    params = make_params(DTYPES[dtype])
    arrays = [as_numpy(p.detach().clone()) for p in params]
    options = OPTIONS.get(cls, {})
    opt = getattr(akt, cls)(params, **options, **mode)
    reference = getattr(optim, cls)(arrays, **options,
                                    **{**mode, "state_dtype": optim_state_dtype(dtype, mode)})
    for step in range(STEPS):
        grads = make_grads(params, step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        reference.step([as_numpy(g.clone()) for g in grads])
    for k, (p, a) in enumerate(zip(params, arrays)):
        assert np.array_equal(as_numpy(p.detach()).view(np.uint8), a.view(np.uint8)), k
        state = opt.state[p]
        for name, value in reference.state[k].items():
            if isinstance(value, lowp.Blockwise8):
                assert np.array_equal(state[f"{name}_codes"].numpy(), value.codes), name
                assert np.array_equal(state[f"{name}_absmax"].numpy(), value.absmax), name
            else:
                assert np.array_equal(as_numpy(state[name]).view(np.uint8),
                                      value.view(np.uint8)), name


def test_state_dict_layout_of_the_modes():
    params = make_params(torch.bfloat16)
    opt = akt.AdamW(params, state_dtype="int8", master_weights=True, rounding="stochastic",
                    seed=11)
    train(opt, params, 1)
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    assert {k: group[k] for k in ("state_dtype", "master_weights", "rounding", "seed")} == {
        "state_dtype": "int8", "master_weights": True, "rounding": "stochastic", "seed": 11}
    for k, p in enumerate(params):
        state = sd["state"][k]
        assert set(state) == {"step", "exp_avg_codes", "exp_avg_absmax", "exp_avg_sq_codes",
                              "exp_avg_sq_absmax", "master"}
        blocks = -(-p.numel() // 256)
        for name in ("exp_avg", "exp_avg_sq"):
            assert state[f"{name}_codes"].dtype == torch.uint8
            assert state[f"{name}_codes"].shape == p.shape
            assert state[f"{name}_absmax"].dtype == torch.float32
            assert state[f"{name}_absmax"].shape == (blocks,)
        assert state["master"].dtype == torch.float32 and state["master"].shape == p.shape
        # the param is the master copy rounded (stochastically: to either neighbour)
        assert torch.allclose(state["master"], p.detach().float(), rtol=2**-7, atol=0)

    # torch's mode: the param's dtype, torch's names; master weights: float32 buffers
    opt = akt.AdamW(params)
    train(opt, params, 1)
    assert {v.dtype for k, v in opt.state[params[0]].items() if k != "step"} == {torch.bfloat16}
    opt = akt.AdamW(params, master_weights=True)
    train(opt, params, 1)
    assert {k: v.dtype for k, v in opt.state[params[0]].items()} == {
        "step": torch.float32, "exp_avg": torch.float32, "exp_avg_sq": torch.float32,
        "master": torch.float32}
    # optimizers without a step count keep one for stochastic rounding's stream
    opt = akt.SGD(params, lr=0.1, rounding="stochastic")
    train(opt, params, 2)
    assert set(opt.state[params[0]]) == {"step"} and float(opt.state[params[0]]["step"]) == 2


ROUND_TRIP = [("AdamW", "float32", {"state_dtype": "int8"}),
              ("SGD", "float32", {"state_dtype": "bfloat16"}),
              ("Adagrad", "bfloat16", {"state_dtype": "int8", "master_weights": True}),
              ("Lion", "bfloat16", {"rounding": "stochastic", "seed": 9}),
              ("Yogi", "float16", {"state_dtype": "int8"}),
              ("NAdam", "bfloat16", {"master_weights": True, "rounding": "stochastic"})]


@pytest.mark.parametrize("constructed", ["same-mode", "default-mode"])
@pytest.mark.parametrize("cls, dtype, mode", [
    pytest.param(*case, id=f"{case[0]}-{mode_id(*case[1:])}") for case in ROUND_TRIP])
def test_state_dict_round_trips_bit_for_bit(cls, dtype, mode, constructed):
    options = OPTIONS.get(cls, {})
    params = make_params(DTYPES[dtype])
    opt = getattr(akt, cls)(params, **options, **mode)
    train(opt, params, 3)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    # the checkpoint's storage keys win, as its hyperparameters do
    twin_opt = getattr(akt, cls)(twin, **options, **(mode if constructed == "same-mode" else {}))
    twin_opt.load_state_dict(saved)
    assert twin_opt.param_groups[0]["state_dtype"] == opt.param_groups[0]["state_dtype"]
    for p, q in zip(params, twin):
        assert opt.state[p].keys() == twin_opt.state[q].keys()
        for name in opt.state[p]:
            assert_same(twin_opt.state[q][name], opt.state[p][name], name)
    train(opt, params, 3, first=3)
    train(twin_opt, twin, 3, first=3)
    for p, q in zip(params, twin):
        assert_same(q, p)
        for name in opt.state[p]:
            assert_same(twin_opt.state[q][name], opt.state[p][name], name)


def test_a_deepcopied_optimizer_steps_the_same():
    params = make_params(torch.bfloat16)
    opt = akt.AdamW(params, state_dtype="int8", rounding="stochastic", seed=2)
    train(opt, params, 2)
    twin = copy.deepcopy((params, opt))
    train(opt, params, 2, first=2)
    train(twin[1], twin[0], 2, first=2)
    for p, q in zip(params, twin[0]):
        assert_same(q, p)


def test_torch_optim_cannot_read_8bit_state():
    # torch.optim loads any dict; 8-bit buffers are under names it does not read, so its first
    # step fails on the missing buffer instead of reading codes as values
    params = make_params(torch.float32)
    opt = akt.AdamW(params, state_dtype="int8")
    train(opt, params, 1)
    reference = torch.optim.AdamW(params)
    reference.load_state_dict(opt.state_dict())
    before = [p.detach().clone() for p in params]
    with pytest.raises(KeyError, match="exp_avg"):
        train(reference, params, 1)
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("dtype, mode", [
    ("float32", {"state_dtype": "int8"}), ("float32", {"state_dtype": "bfloat16"}),
    ("bfloat16", {"state_dtype": "int8", "master_weights": True})])
def test_to_torch_state_dict_then_torch_trains_on(dtype, mode):
    params = make_params(DTYPES[dtype])
    opt = akt.AdamW(params, lr=1e-2, **mode)
    train(opt, params, 3)
    sd = opt.state_dict()
    converted = akt.to_torch_state_dict(sd)
    modes = {"state_dtype", "master_weights", "rounding", "seed"}
    assert set(converted["param_groups"][0]) == set(sd["param_groups"][0]) - modes
    for k, p in enumerate(params):
        state = converted["state"][k]
        assert set(state) == {"step", "exp_avg", "exp_avg_sq"}
        assert state["exp_avg"].dtype == torch.float32
        if mode["state_dtype"] == "int8":
            decoded = lowp.Blockwise8(sd["state"][k]["exp_avg_codes"].numpy().reshape(-1),
                                      sd["state"][k]["exp_avg_absmax"].numpy(), True)
            assert np.array_equal(state["exp_avg"].numpy().reshape(-1), decoded.dequantize())
        else:
            assert torch.equal(state["exp_avg"], sd["state"][k]["exp_avg"].float())
    assert "master" in sd["state"][0] or not mode.get("master_weights")  # input unchanged
    # torch.optim.AdamW (fused, as recorded) trains on from there, as adamkern.torch.AdamW in
    # torch's mode does from the same dict (bitwise torch's fused step)
    ours = [torch.nn.Parameter(p.detach().clone()) for p in params]
    reference = torch.optim.AdamW(params, lr=1e-2)
    reference.load_state_dict(converted)
    twin = akt.AdamW(ours, lr=1e-2)
    twin.load_state_dict(copy.deepcopy(converted))  # loading shares the dict's tensors
    train(reference, params, 3, first=3)
    train(twin, ours, 3, first=3)
    for p, q in zip(params, ours):
        assert torch.isfinite(p.detach().float()).all()
        assert_same(q, p)


def test_loading_another_mode_converts_the_state():
    params = make_params(torch.float32)
    reference = torch.optim.AdamW(params, lr=1e-2)
    train(reference, params, 2)
    sd = reference.state_dict()  # torch's layout: no storage keys, float32 buffers
    opt = akt.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=1e-2,
                    state_dtype="int8")
    opt.load_state_dict(sd)
    for k, p in enumerate(opt.param_groups[0]["params"]):
        quantized = lowp.Blockwise8.quantize(sd["state"][k]["exp_avg_sq"].numpy(), signed=False)
        assert np.array_equal(opt.state[p]["exp_avg_sq_codes"].numpy(), quantized.codes)
        assert np.array_equal(opt.state[p]["exp_avg_sq_absmax"].numpy(), quantized.absmax)
        assert "exp_avg_sq" not in opt.state[p]
    # back to float32 state: the groups' storage keys of the dict say so
    int8 = opt.state_dict()
    edited = {**int8, "param_groups": [{**g, "state_dtype": None} for g in int8["param_groups"]]}
    back = akt.AdamW([torch.nn.Parameter(p.detach().clone()) for p in params], lr=1e-2)
    back.load_state_dict(edited)
    for k, p in enumerate(back.param_groups[0]["params"]):
        decoded = lowp.Blockwise8(int8["state"][k]["exp_avg_codes"].numpy(),
                                  int8["state"][k]["exp_avg_absmax"].numpy(), True)
        assert np.array_equal(back.state[p]["exp_avg"].numpy(), decoded.dequantize())
        assert set(back.state[p]) == {"step", "exp_avg", "exp_avg_sq"}
    train(back, back.param_groups[0]["params"], 1)


def test_master_weights_dropped_and_made_on_loading():
    params = make_params(torch.bfloat16)
    opt = akt.AdamW(params, master_weights=True)
    train(opt, params, 2)
    plain = akt.AdamW(params)
    sd = opt.state_dict()
    plain.load_state_dict({**sd, "param_groups": [
        {**g, "master_weights": False, "state_dtype": None} for g in sd["param_groups"]]})
    assert "master" not in plain.state[params[0]]
    assert plain.state[params[0]]["exp_avg"].dtype == torch.bfloat16
    with_master = akt.AdamW(params, master_weights=True)
    with_master.load_state_dict(akt.to_torch_state_dict(sd))  # no master: made at the step
    train(with_master, params, 1, first=2)
    assert torch.equal(with_master.state[params[0]]["master"].to(torch.bfloat16),
                       params[0].detach())


@pytest.mark.parametrize("dtype, mode, refused", [
    (torch.float64, {"state_dtype": "int8"}, "state_dtype='int8'"),
    (torch.float64, {"state_dtype": "bfloat16"}, "state_dtype='bfloat16'"),
    (torch.float64, {"state_dtype": "float32"}, "state_dtype='float32'"),
    (torch.float32, {"master_weights": True}, "master_weights=True"),
    (torch.float64, {"master_weights": True}, "master_weights=True"),
])
def test_modes_the_kernels_refuse_are_refused_when_a_group_is_added(dtype, mode, refused):
    param = torch.nn.Parameter(torch.zeros(3, dtype=dtype))
    with pytest.raises(ValueError, match=rf"^param_groups\[0\] param 0 .*{refused}"):
        akt.AdamW([param], **mode)
    opt = akt.AdamW([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError, match=rf"^param_groups\[1\] param 1 .*{refused}"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16)),
                                        param], **mode})
    assert len(opt.param_groups) == 1
    # bfloat16 params are stepped in every one of these modes
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))],
                         **mode})


@pytest.mark.parametrize("mode, error", [
    ({"state_dtype": "int4"}, ValueError), ({"state_dtype": "float16"}, ValueError),
    ({"state_dtype": [1]}, ValueError), ({"rounding": "up"}, ValueError),
    ({"seed": -1}, ValueError), ({"seed": 1.5}, ValueError),
    ({"master_weights": "yes"}, TypeError)])
def test_bad_storage_values_are_refused(mode, error):
    with pytest.raises(error):
        akt.AdamW([torch.nn.Parameter(torch.zeros(3))], **mode)
    opt = akt.AdamW([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(error, match=r"^param_groups\[1\]: "):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3))], **mode})
    assert len(opt.param_groups) == 1


def test_state_dtype_as_a_torch_dtype():
    opt = akt.AdamW([torch.nn.Parameter(torch.zeros(3))], state_dtype=torch.bfloat16)
    assert opt.defaults["state_dtype"] == opt.param_groups[0]["state_dtype"] == "bfloat16"


def test_loading_a_mode_the_kernels_refuse_changes_nothing():
    params = make_params(torch.float32, [(5,)])
    opt = akt.AdamW(params, state_dtype="int8")
    train(opt, params, 1)
    wide = akt.AdamW([torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))])
    with pytest.raises(ValueError, match="state_dtype='int8'"):
        wide.load_state_dict(opt.state_dict())
    assert wide.param_groups[0]["state_dtype"] is None and not wide.state


def test_changing_a_groups_state_dtype_after_its_state_is_made_fails_the_step():
    params = make_params(torch.float32)
    opt = akt.AdamW(params)
    train(opt, params, 1)
    before = copy.deepcopy((params, opt.state_dict()))
    opt.param_groups[0]["state_dtype"] = "int8"
    with pytest.raises(ValueError, match=r"param_groups\[0\] param 0: .*load_state_dict"):
        train(opt, params, 1, first=1)
    for p, b in zip(params, before[0]):
        assert torch.equal(p.detach(), b.detach())
    assert set(opt.state[params[0]]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(opt.state[params[0]]["step"]) == 1


def test_a_failed_first_step_leaves_no_8bit_state():
    params = make_params(torch.float32)
    other = torch.nn.Parameter(torch.zeros(4))
    opt = akt.AdamW([{"params": params}, {"params": [other]}], state_dtype="int8")
    for p, g in zip(params + [other], make_grads(params + [other], 0)):
        p.grad = g
    opt.param_groups[1]["lr"] = -1.0  # refused when the step checks group 1
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match=r"param_groups\[1\]"):
        opt.step()
    assert not opt.state
    for p, b in zip(params, before):
        assert torch.equal(p.detach(), b)


def memory_order_run(param, channels_last, steps):
    """adamkern.optim's int8 AdamW on the param's elements in the order the kernels step
    them (a channels_last param's memory order; a slice's row-major order), with the same
    grads; returns the result and that order as a function of a tensor."""
    def order(tensor):
        if channels_last:
            return flat(tensor.contiguous(memory_format=torch.channels_last))
        return tensor.reshape(-1)

    array = order(param.detach()).numpy().copy()
    reference = optim.AdamW([array], lr=1e-2, state_dtype="int8")
    for step in range(steps):
        reference.step([order(make_grads([param], step)[0]).numpy().copy()])
    return array, order


@pytest.mark.parametrize("layout", ["channels_last", "slice"])
def test_8bit_state_of_params_of_other_layouts(layout):
    generator = torch.Generator().manual_seed(0)
    if layout == "channels_last":
        param = torch.nn.Parameter(torch.randn(4, 6, 5, 7, generator=generator).to(
            memory_format=torch.channels_last))
        whole = None
    else:
        whole = torch.randn(40, 30, generator=generator)
        param = torch.nn.Parameter(whole[:, :13])
        untouched = whole[:, 13:].clone()
    expected, order = memory_order_run(param, layout == "channels_last", 3)
    opt = akt.AdamW([param], lr=1e-2, state_dtype="int8")
    train(opt, [param], 3)  # contiguous grads: of another layout than a channels_last param
    assert np.array_equal(order(param.detach()).numpy(), expected)
    codes = opt.state[param]["exp_avg_codes"]
    assert codes.is_contiguous(memory_format=torch.channels_last) or layout == "slice"
    if whole is not None:
        assert torch.equal(whole[:, 13:], untouched)


def test_8bit_codes_follow_their_params_layout():
    generator = torch.Generator().manual_seed(0)
    param = torch.nn.Parameter(torch.randn(4, 6, 5, 7, generator=generator).to(
        memory_format=torch.channels_last))
    opt = akt.AdamW([param], lr=1e-2, state_dtype="int8")
    train(opt, [param], 1)
    sd = copy.deepcopy(opt.state_dict())
    # a param whose layout changed under its state: refused, nothing changed
    param.data = param.data.contiguous()
    before = param.detach().clone()
    with pytest.raises(ValueError, match="another order"):
        train(opt, [param], 1, first=1)
    assert torch.equal(param.detach(), before)
    # loading lays the codes out again, in the order the param now steps in
    opt.load_state_dict(sd)
    assert opt.state[param]["exp_avg_codes"].is_contiguous()
    train(opt, [param], 1, first=1)
    assert torch.isfinite(param.detach()).all()


def test_stochastic_rounding_follows_the_seed():
    def run(seed):
        params = make_params(torch.bfloat16)
        opt = akt.SGD(params, lr=1e-3, rounding="stochastic", seed=seed)
        train(opt, params, 3)
        return params

    first, again, other = run(1), run(1), run(2)
    assert all(torch.equal(bits(a), bits(b)) for a, b in zip(first, again))
    assert not all(torch.equal(bits(a), bits(b)) for a, b in zip(first, other))


def test_8bit_state_takes_a_quarter_of_the_memory():
    params = make_params(torch.float32, [(4096,), (256, 64)])
    sizes = {}
    for state_dtype in (None, "bfloat16", "int8"):
        opt = akt.AdamW(params, state_dtype=state_dtype)
        train(opt, params, 1)
        sizes[state_dtype] = sum(t.nbytes for s in opt.state.values() for k, t in s.items()
                                 if k != "step")
    elements = sum(p.numel() for p in params)
    assert sizes[None] == 8 * elements
    assert sizes["bfloat16"] == 4 * elements
    assert sizes["int8"] == 2 * elements + 2 * 4 * sum(-(-p.numel() // 256) for p in params)
