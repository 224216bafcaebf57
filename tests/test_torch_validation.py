"""adamkern.torch's constructors check their arguments as torch's do: for each class and each
value torch's constructor refuses, the same exception type, raised in the constructor (not at
the first step), and in add_param_group (the group is then not added). Where the kernels take
a narrower range than torch (eps = 0, infinite values, bools for numbers), the value is
refused in the constructor too. The classes torch lacks raise what adamkern.optim's raise.
Skipped when torch is not installed."""

from __future__ import annotations

import inspect
import math

import pytest
from family import SPECS_BY_NAME

from adamkern import optim

torch = pytest.importorskip("torch")
akt = pytest.importorskip("adamkern.torch")

TORCH_CLASSES = ["Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta",
                 "SGD"]
FAMILY = {"Lion": "lion", "AdaBelief": "adabelief", "LAMB": "lamb", "Adan": "adan",
          "Yogi": "yogi", "ADOPT": "adopt", "AdEMAMix": "ademamix"}

# Values torch's constructors check (torch/optim/*.py, __init__), each applied to the classes
# whose signature has every key.
BAD = [
    {"lr": -1.0}, {"lr": float("nan")}, {"lr": "0.1"}, {"lr": torch.tensor([0.1, 0.2])},
    {"eps": -1e-8}, {"eps": float("nan")}, {"weight_decay": -0.1},
    {"betas": (1.5, 0.9)}, {"betas": (0.9, 1.0)}, {"betas": (-0.1, 0.999)},
    {"betas": (0.9,)}, {"betas": (0, 0.999)},
    {"momentum": -0.1}, {"momentum": 0.0, "nesterov": True},
    {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
    {"alpha": -0.5}, {"lr_decay": -1.0}, {"initial_accumulator_value": -1.0},
    {"rho": 1.5}, {"rho": -0.1}, {"momentum_decay": -1.0},
    {"fused": True, "foreach": True},
]


def params():
    return [torch.nn.Parameter(torch.zeros(3))]


def torch_error(cls, bad):
    """The exception torch's class raises for ``bad`` (None: it takes it)."""
    try:
        getattr(torch.optim, cls)(params(), **bad)
    except Exception as error:  # noqa: BLE001 - whatever torch raises is the expectation
        return type(error)
    return None


def applies(cls, bad):
    return set(bad) <= set(inspect.signature(getattr(torch.optim, cls)).parameters)


TORCH_CASES = [pytest.param(cls, bad, id=f"{cls}-{bad}")
               for cls in TORCH_CLASSES for bad in BAD
               if applies(cls, bad) and torch_error(cls, bad) is not None]


def test_every_class_has_cases():
    assert {case.values[0] for case in TORCH_CASES} == set(TORCH_CLASSES)


@pytest.mark.parametrize("cls, bad", TORCH_CASES)
def test_refused_in_the_constructor_as_torch_refuses(cls, bad):
    expected = torch_error(cls, bad)
    with pytest.raises(expected) as raised:
        getattr(akt, cls)(params(), **bad)
    assert type(raised.value) is expected


@pytest.mark.parametrize("cls, bad", TORCH_CASES)
def test_refused_in_add_param_group_as_torch_refuses(cls, bad):
    expected = torch_error(cls, bad)
    opt = getattr(akt, cls)(params())
    with pytest.raises(expected, match=r"^param_groups\[1\]: ") as raised:
        opt.add_param_group({"params": params(), **bad})
    assert type(raised.value) is expected
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("cls, bad, override", [
    ("AdamW", {"lr": -1.0}, {"lr": 0.1}),
    ("SGD", {"momentum": 0.0, "nesterov": True}, {"nesterov": False}),
    ("Adagrad", {"lr_decay": -1.0}, {"lr_decay": 0.0})])
def test_a_refused_default_is_refused_where_every_group_overrides_it(cls, bad, override):
    # torch checks the constructor's arguments, whatever the groups' values
    with pytest.raises(ValueError, match=f"^adamkern.torch.{cls}: "):
        getattr(akt, cls)([{"params": params(), **override}], **bad)


# Values torch takes and the kernels refuse (their ranges are narrower): refused in the
# constructor all the same, with the type adamkern's error contract gives.
NARROWER = [
    ("Adam", {"eps": 0.0}, ValueError), ("Adam", {"lr": math.inf}, ValueError),
    ("Adam", {"weight_decay": math.inf}, ValueError), ("Adam", {"lr": True}, TypeError),
    ("Adam", {"amsgrad": 1}, TypeError),
    ("AdamW", {"betas": (torch.tensor(0.9), torch.tensor(0.99))}, ValueError),
    ("RMSprop", {"alpha": 2.0}, ValueError), ("RMSprop", {"eps": 0.0}, ValueError),
    ("Adagrad", {"eps": 0.0}, ValueError), ("Adagrad", {"lr_decay": math.inf}, ValueError),
    ("Adadelta", {"eps": 0.0}, ValueError), ("NAdam", {"momentum_decay": math.inf}, ValueError),
    ("RAdam", {"eps": 0.0}, ValueError), ("Adamax", {"eps": 0.0}, ValueError),
]


@pytest.mark.parametrize("cls, bad, expected", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in NARROWER])
def test_kernel_ranges_narrower_than_torchs_are_refused_in_the_constructor(cls, bad, expected):
    assert torch_error(cls, bad) is None
    with pytest.raises(expected, match=r"^param_groups\[0\]: "):
        getattr(akt, cls)(params(), **bad)


@pytest.mark.parametrize("cls", TORCH_CLASSES)
def test_valid_values_are_taken(cls):
    # torch's class is run on one empty tensor for its checks: nothing of it is left behind
    opt = getattr(akt, cls)(params(), lr=0.5)
    opt.add_param_group({"params": params(), "lr": 0.25})
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.25]
    assert all(p.numel() == 3 for g in opt.param_groups for p in g["params"])


FAMILY_CASES = [pytest.param(cls, bad, id=f"{cls}-{bad}")
                for cls, name in FAMILY.items() for bad, _ in SPECS_BY_NAME[name].bad
                if "step" not in bad] + [
    pytest.param(cls, {"lr": "0.1"}, id=f"{cls}-lr-str") for cls in FAMILY] + [
    pytest.param("Yogi", {"initial_accumulator_value": -1.0}, id="Yogi-initial")]


@pytest.mark.parametrize("cls, bad", FAMILY_CASES)
def test_family_refuses_what_adamkern_optim_refuses(cls, bad):
    with pytest.raises((TypeError, ValueError)) as expected:
        getattr(optim, cls)([params()[0].detach().numpy()], **bad)
    # torch's convention: ValueError for a number out of range, TypeError for a non-number
    assert expected.type is (TypeError if bad.get("lr") == "0.1" else ValueError)
    with pytest.raises(expected.type, match=r"^param_groups\[0\]: "):
        getattr(akt, cls)(params(), **bad)
    opt = getattr(akt, cls)(params())
    with pytest.raises(expected.type, match=r"^param_groups\[1\]: "):
        opt.add_param_group({"params": params(), **bad})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("cls", [*TORCH_CLASSES, *FAMILY])
def test_a_bad_value_assigned_to_a_group_fails_the_step_and_changes_nothing(cls):
    kwargs = {"momentum": 0.9} if cls == "SGD" else {}
    param = torch.nn.Parameter(torch.ones(5))
    opt = getattr(akt, cls)([param], lr=0.1, **kwargs)
    param.grad = torch.ones(5)
    opt.param_groups[0]["lr"] = -1.0  # torch does not check an edit either; the step does
    with pytest.raises(ValueError, match=r"param_groups\[0\]"):
        opt.step()
    assert torch.equal(param.detach(), torch.ones(5))
    assert not opt.state
