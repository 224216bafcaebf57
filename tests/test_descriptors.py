"""The Python layer against the optimizers' C++ descriptions (math/<name>.hpp, listed in
adamkern/optimizers.hpp): every functional op takes exactly the options its header describes,
with the same defaults, and `step` exactly when the entry point takes one; every optimizer has
its class, by the name its header gives, in adamkern.optim and adamkern.torch."""

from __future__ import annotations

import copy
import inspect
import pickle
import re

import numpy as np
import pytest

import adamkern
from adamkern import _core, optim

DESCRIPTIONS = _core.optimizer_options()
# adamw_ is adam_ with torch.optim.AdamW's defaults: decoupled decay, weight_decay 1e-2
# ops that are not an optimizer's step: the schedule-free params' move between y and x
NOT_STEPS = {"schedulefree_eval_", "schedulefree_train_"}
# the schedule-free ops compute the kernel's ckp1 (and lr) from the package's running weights
# and these arguments, in Python; sgd_schedulefree_ takes step for them only
SCHEDULE_FREE = {"warmup_steps", "r", "weight_lr_power"}
COMPUTED = {"adamw_schedulefree": {"ckp1"}, "sgd_schedulefree": {"ckp1"}}
# admitted by the range, refused by the optimizer's own rule (its inconsistency())
NARROWER = {("sgd_schedulefree", "momentum"): [0.5]}
ALIASES = {"adamw": ("adam", {"weight_decay": 1e-2, "decoupled_weight_decay": True})}
# Ops with their own C++ entry point outside the registry (per-tensor passes over shaped
# params); their defaults are tied to C++ by their own tests (test_adafactor.py)
OWN_ENTRY_POINTS = {"adafactor"}


def _python_options(op) -> dict[str, object]:
    """An op's hyperparameters and defaults, betas spread as beta1, beta2, ..."""
    options = {}
    for name, value in optim.op_hyperparameters(op).items():
        if name == "betas":
            options.update({f"beta{k + 1}": beta for k, beta in enumerate(value)})
        else:
            options[name] = value
    return options


def test_every_described_optimizer_has_its_op():
    assert sorted(DESCRIPTIONS) == sorted(
        name[:-1] for name in adamkern.ops.__all__
        if name[:-1] not in ALIASES and name not in NOT_STEPS
        and name[:-1] not in OWN_ENTRY_POINTS)


@pytest.mark.parametrize("name", sorted([*DESCRIPTIONS, *ALIASES]))
def test_python_defaults_are_the_cpp_defaults(name):
    op = getattr(adamkern, f"{name}_")
    described, overrides = ALIASES.get(name, (name, {}))
    cpp = {option: spec["default"] for option, spec in
           DESCRIPTIONS[described]["options"].items()}
    cpp.update(overrides)
    python = _python_options(op)
    if name in COMPUTED:
        cpp = {k: v for k, v in cpp.items() if k not in COMPUTED[name]}
        python = {k: v for k, v in python.items() if k not in SCHEDULE_FREE}
    # adamw_ fixes decoupled_weight_decay rather than taking it
    for fixed in set(overrides) - set(python):
        del cpp[fixed]
    assert python == cpp


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_step_is_taken_exactly_where_described(name):
    parameters = inspect.signature(getattr(adamkern, f"{name}_")).parameters
    assert ("step" in parameters) == (DESCRIPTIONS[name]["takes_step"] or name in COMPUTED)


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_each_range_is_enforced_at_its_bounds(name):
    """For each number option: the bound values its range admits pass, the first values
    outside fail with a ValueError naming the option as the description labels it."""
    op = getattr(adamkern, f"{name}_")
    options = DESCRIPTIONS[name]["options"]
    admitted = {"finite": [-1.0, 0.0, 1.0], "non_negative": [0.0, 3.0],
                "positive": [1e-30, 3.0], "unit_open": [0.0, 0.5], "unit_closed": [0.0, 1.0],
                "unit_open_or_unset": [0.0, 0.5, None], "positive_or_inf": [1e-30, float("inf")]}
    refused = {"finite": [float("inf"), float("nan")],
               "non_negative": [-1e-30, float("inf"), float("nan")],
               "positive": [0.0, -1.0, float("inf")], "unit_open": [-1e-9, 1.0, float("nan")],
               "unit_closed": [-1e-9, 1.0 + 1e-9, float("nan")],
               "unit_open_or_unset": [-1e-9, 1.0], "positive_or_inf": [0.0, -1.0, float("nan")]}
    for option, spec in options.items():
        if "range" not in spec or option in COMPUTED.get(name, ()):
            continue
        for accepted, values in ((True, NARROWER.get((name, option), admitted[spec["range"]])),
                                 (False, refused[spec["range"]])):
            for value in values:
                arguments = _call_on_nothing(op, name, option, value)
                if accepted:
                    op(**arguments)
                else:
                    with pytest.raises(ValueError, match=_label_pattern(spec["label"])):
                        op(**arguments)


def _label_pattern(label: str) -> str:
    return label.replace("[", r"\[").replace("]", r"\]")


def _call_on_nothing(op, name: str, option: str, value: float) -> dict:
    """Arguments calling op on empty lists (validated, nothing to write) with one option set."""
    parameters = inspect.signature(op).parameters
    optional_states = {p for p, spec in parameters.items() if spec.default is None} - {
        "grad_scale", "found_inf", "master_params"} - set(DESCRIPTIONS[name]["options"])
    arguments = {p: [] for p, spec in parameters.items()
                 if spec.kind is spec.POSITIONAL_OR_KEYWORD or p in optional_states}
    if "step" in parameters:
        arguments["step"] = 1
    if "mu_product" in parameters:
        arguments["mu_product"] = np.ones(1, np.float32)
    if "weight_sums" in parameters:
        arguments["weight_sums"] = np.array([-1.0, 0.0])
    if "group_scalars" in parameters:
        arguments["group_scalars"] = np.array([1e-6, 1e-6, 0.0, 0.0, 0.0, 0.0])
    if re.fullmatch(r"beta\d", option) and option not in parameters:  # an entry of betas
        betas = list(parameters["betas"].default)
        betas[int(option[4:]) - 1] = value
        arguments["betas"] = tuple(betas)
    else:
        arguments[option] = value
    return arguments


@pytest.mark.parametrize("name", sorted(DESCRIPTIONS))
def test_state_is_described_whole(name):
    """Each op's state list arguments are the described buffers, in order; the optimizer
    objects allocate exactly those, started at the described value."""
    description = adamkern.registry.describe(name)
    parameters = inspect.signature(getattr(adamkern, f"{name}_")).parameters
    arguments = [b.argument for b in description.state]
    assert all(a in parameters for a in arguments)
    positional = [p for p, spec in parameters.items()
                  if spec.kind is spec.POSITIONAL_OR_KEYWORD][2:]
    assert arguments[:len(positional)] == positional
    for b in description.state:
        assert (b.needed == "always") == (b.option is None)
        if b.option is not None:
            assert b.option in description.options


def test_initial_values_reach_the_optimizer_objects():
    yogi = optim.Yogi([np.zeros(3, np.float32)])
    yogi.step([np.zeros(3, np.float32)])
    assert yogi.defaults["initial_accumulator_value"] == 1e-6
    adagrad = optim.Adagrad([np.zeros(3, np.float32)], initial_accumulator_value=0.25)
    adagrad.step([np.zeros(3, np.float32)])
    np.testing.assert_array_equal(adagrad.state[0]["sum"], np.full(3, 0.25, np.float32))
    rmsprop = optim.RMSprop([np.zeros(3, np.float32)], momentum=0.5)
    rmsprop.step([np.ones(3, np.float32)])
    assert sorted(rmsprop.state[0]) == ["momentum_buffer", "square_avg"]


# The classes whose constructor, defaults and checks are torch's own (adamkern.torch): those
# torch.optim has a class of the same name for. A new torch class of a registry optimizer's
# name would change its adamkern.torch class: this list says it did.
TORCH_BACKED = {"Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta",
                "SGD"}


def _class_names() -> dict[str, str]:
    """Each optimizer and alias of the registry: its class name."""
    return {name: adamkern.registry.describe(name).class_name
            for name in [*adamkern.registry.names(), *adamkern.registry.ALIASES]}


def test_each_descriptor_names_its_class():
    described = {name: d["class_name"] for name, d in DESCRIPTIONS.items()}
    assert described == {n: c for n, c in _class_names().items() if n in DESCRIPTIONS}
    assert adamkern.registry.describe("adamw").class_name == "AdamW"
    assert adamkern.registry.describe("adam").class_name == "Adam"
    assert len(set(_class_names().values())) == len(_class_names())


@pytest.mark.parametrize("name, class_name", sorted(_class_names().items()))
def test_every_optimizer_has_its_optim_class(name, class_name):
    """adamkern.optim has a class for every optimizer of the registry, made from it or
    written by hand, exported, module-level (so instances pickle), stepping by its op."""
    cls = getattr(optim, class_name)
    assert class_name in optim.__all__
    assert issubclass(cls, optim.Optimizer) and cls._op is getattr(adamkern.ops, f"{name}_")
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert cls.__doc__ and cls.__qualname__ == class_name
    opt = cls([np.zeros(3, np.float32)])
    assert type(copy.deepcopy(opt)) is cls and type(pickle.loads(pickle.dumps(opt))) is cls


@pytest.mark.parametrize("name, class_name", sorted(_class_names().items()))
def test_every_optimizer_has_its_torch_class(name, class_name):
    torch = pytest.importorskip("torch")
    import adamkern.torch as adamkern_torch

    cls = getattr(adamkern_torch, class_name)
    assert class_name in adamkern_torch.__all__
    assert issubclass(cls, torch.optim.Optimizer) and cls.__doc__
    assert pickle.loads(pickle.dumps(cls)) is cls
    opt = cls([torch.nn.Parameter(torch.zeros(3))])
    assert type(copy.deepcopy(opt)) is cls


def test_made_classes_keep_their_relations():
    pytest.importorskip("torch")
    import adamkern.torch as adamkern_torch

    assert issubclass(optim.AdamW, optim.Adam) and issubclass(adamkern_torch.AdamW,
                                                              adamkern_torch.Adam)
    assert optim.Adam.__module__ == "adamkern.optim"
    assert adamkern_torch.Adam.__module__ == "adamkern.torch"
    backed = {name for name in adamkern_torch.__all__
              if getattr(getattr(adamkern_torch, name), "_torch_class", None) is not None}
    assert backed == TORCH_BACKED
    assert adamkern_torch.Lion._has_step is False and adamkern_torch.Yogi._has_step is True
