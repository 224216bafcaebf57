"""The optimizer family as data: every functional op, its state, its options and its bad
inputs, so one driver can test them all against their references, torch, ISAs and threads."""

from __future__ import annotations

import inspect

import itertools
from dataclasses import dataclass, field

import numpy as np

import adamkern
import adamkern.reference


def grid(**axes):
    """Every combination of the given option values, as a list of dicts."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


@dataclass
class Spec:
    """One op's test plan. Its state lists (each buffer's initial value) and whether it takes
    `step` come from the op's C++ description (adamkern.registry)."""

    name: str
    # option combinations to test (every combination that changes the code path)
    options: list[dict]
    # state lists started at another value than the description's, to test that value's use
    initial: dict[str, float] = field(default_factory=dict)
    # per-call state: name -> factory(dtype)
    call_states: dict = field(default_factory=dict)
    # state lists that start as a copy of the params (Prodigy's p0)
    from_params: tuple[str, ...] = ()
    # hyperparameters that must be rejected: (kwargs, fragment of the message)
    bad: list[tuple[dict, str]] = field(default_factory=list)

    @property
    def states(self) -> dict[str, float]:
        """State lists, one array per param, with their initial value (passed by keyword)."""
        return {b.argument: self.initial.get(b.argument, b.initial)
                for b in adamkern.registry.describe(self.name).state}

    @property
    def takes_step(self) -> bool:
        return adamkern.registry.describe(self.name).takes_step

    @property
    def op(self):
        return getattr(adamkern, self.name + "_")

    @property
    def reference(self):
        return getattr(adamkern.reference, self.name)

    def step_kwargs(self, step: int) -> dict:
        parameters = inspect.signature(self.op).parameters
        kwargs = {"step": step} if "step" in parameters else {}
        if "is_first_step" in parameters:
            kwargs["is_first_step"] = step == 1
        return kwargs

    def __str__(self):
        return self.name


_COMMON_BAD = [({"lr": -1.0}, "lr must be"), ({"lr": float("nan")}, "lr must be")]
_BETAS_BAD = [({"betas": (1.0, 0.999)}, "betas[0]"), ({"betas": (0.9, -0.1)}, "betas[1]"),
              ({"betas": (0.9,)}, "betas must be")]
_EPS_BAD = [({"eps": 0.0}, "eps must be"), ({"eps": -1e-8}, "eps must be")]
_WD_BAD = [({"weight_decay": -0.1}, "weight_decay")]
_STEP_BAD = [({"step": 0}, "step must be")]

# decoupled_weight_decay on the optimizers whose weight_decay is L2 by default
_DECOUPLED = {"weight_decay": 0.1, "decoupled_weight_decay": True}

SPECS = [
    Spec("adam", grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
              amsgrad=[False, True], maximize=[False, True], epsilon_hat=[False, True])
         + grid(cautious=[True], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                amsgrad=[False, True])
         + [{"cautious": True, "weight_decay": 0.1, "decoupled_weight_decay": True,
             "amsgrad": True, "maximize": True, "epsilon_hat": True}],
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("adamax", grid(weight_decay=[0.0, 0.1], maximize=[False, True])
         + [_DECOUPLED, {**_DECOUPLED, "maximize": True}],
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("nadam", grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
              maximize=[False, True], momentum_decay=[4e-3, 0.1]),
         call_states={"mu_product": lambda dtype: np.ones(1, np.float32)},
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD
         + [({"momentum_decay": -1.0}, "momentum_decay")]),
    Spec("radam", grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
              maximize=[False, True]),
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("rmsprop", grid(momentum=[0.0, 0.9], centered=[False, True], weight_decay=[0.0, 0.1],
              maximize=[False, True], eps_inside_sqrt=[False, True])
         + [{**_DECOUPLED, "momentum": m, "centered": m > 0} for m in (0.0, 0.9)],
         bad=_COMMON_BAD + _EPS_BAD + _WD_BAD
         + [({"alpha": 1.5}, "alpha"), ({"momentum": -0.5}, "momentum")]),
    Spec("adagrad",
         grid(lr_decay=[0.0, 0.01], weight_decay=[0.0, 0.1], maximize=[False, True],
              eps_inside_sqrt=[False, True])
         + [_DECOUPLED, {**_DECOUPLED, "lr_decay": 0.01, "maximize": True}],
         initial={"state_sums": 0.1},
         bad=_COMMON_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD + [({"lr_decay": -1.0}, "lr_decay")]),
    Spec("adadelta", grid(weight_decay=[0.0, 0.1], maximize=[False, True], rho=[0.9, 0.5])
         + [_DECOUPLED, {**_DECOUPLED, "maximize": True}],
         bad=_COMMON_BAD + _EPS_BAD + _WD_BAD + [({"rho": 1.5}, "rho")]),
    Spec("sgd", [o for o in grid(momentum=[0.0, 0.9], dampening=[0.0, 0.1], nesterov=[False, True],
                          weight_decay=[0.0, 0.1], maximize=[False, True])
          if not o["nesterov"] or (o["momentum"] > 0 and o["dampening"] == 0)]
         + [{**_DECOUPLED, "momentum": m, "dampening": 0.0, "nesterov": m > 0}
            for m in (0.0, 0.9)],
         bad=_COMMON_BAD + _WD_BAD + [({"momentum": -0.9}, "momentum"),
                                      ({"nesterov": True, "momentum": 0.0}, "nesterov"),
                                      ({"nesterov": True, "momentum": 0.9, "dampening": 0.1},
                                       "nesterov")]),
    Spec("lion", grid(weight_decay=[0.0, 0.1], maximize=[False, True])
         + grid(cautious=[True], weight_decay=[0.0, 0.1], maximize=[False, True]),
         bad=_COMMON_BAD + _WD_BAD + [({"betas": (1.5, 0.99)}, "betas[0]")]),
    Spec("adabelief", grid(weight_decay=[0.0, 0.1], maximize=[False, True], eps_root=[1e-16, 0.0]),
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD
         + [({"eps_root": -1.0}, "eps_root")]),
    Spec("lamb", grid(weight_decay=[0.0, 0.1], maximize=[False, True], eps_root=[0.0, 1e-8]),
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("adan", grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
         bad=_COMMON_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD
         + [({"betas": (0.98, 0.92)}, "betas must be"),
            ({"betas": (0.98, 0.92, 1.0)}, "betas[2]")]),
    Spec("yogi", grid(weight_decay=[0.0, 0.1], maximize=[False, True]),
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("adopt", grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True],
                       clip=[True, False], maximize=[False, True])
         + grid(cautious=[True], weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True])
         + [{"cautious": True, "clip": False, "maximize": True, **_DECOUPLED}],
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD),
    Spec("ademamix", grid(weight_decay=[0.0, 0.1], maximize=[False, True])
         + [{"alpha_warmup": 3, "beta3_warmup": 4}, {"betas": (0.0, 0.999, 0.9999), "alpha": 5.0}],
         bad=_COMMON_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD
         + [({"betas": (0.9, 0.999)}, "betas must be"), ({"betas": (1.0, 0.999, 0.9)}, "betas[0]"),
            ({"betas": (0.9, 0.999, 1.0)}, "betas[2]"), ({"alpha": -1.0}, "alpha"),
            ({"alpha_warmup": -1}, "alpha_warmup"),
            ({"beta3_warmup": float("nan")}, "beta3_warmup")]),
    Spec("prodigy", [{"growth_rate": 1.02, "d_coef": 0.5, "beta3": 0.9, "d0": 1e-4}]
         + grid(weight_decay=[0.0, 0.1], decouple=[True, False],
                use_bias_correction=[False, True], safeguard_warmup=[False, True],
                maximize=[False, True]),
         from_params=("p0",),
         call_states={"group_scalars": lambda dtype: np.array([1e-6, 1e-6, 0, 0, 0, 0.0])},
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD
         + [({"beta3": 1.0}, "beta3"), ({"d0": 0.0}, "d0"), ({"d_coef": -1.0}, "d_coef"),
            ({"growth_rate": 0.0}, "growth_rate"), ({"growth_rate": float("nan")}, "growth_rate")]),
    Spec("adamw_schedulefree",
         grid(weight_decay=[0.0, 0.1], maximize=[False, True])
         + [{"warmup_steps": 3, "r": 1.0, "weight_lr_power": 1.0}],
         call_states={"weight_sums": lambda dtype: np.array([-1.0, 0.0])},
         bad=_COMMON_BAD + _BETAS_BAD + _EPS_BAD + _WD_BAD + _STEP_BAD
         + [({"warmup_steps": -1}, "warmup_steps"), ({"r": float("inf")}, "r must be")]),
    Spec("sgd_schedulefree",
         grid(weight_decay=[0.0, 0.1], maximize=[False, True]) + [{"warmup_steps": 3, "r": 0.5}],
         call_states={"weight_sums": lambda dtype: np.array([-1.0, 0.0])},
         bad=_COMMON_BAD + _WD_BAD + _STEP_BAD
         + [({"momentum": 0.0}, "momentum"), ({"momentum": 1.0}, "momentum")]),
]
SPECS_BY_NAME = {spec.name: spec for spec in SPECS}


class Problem:
    """Params, a grad stream and every state buffer of one spec, for a list of shapes."""

    def __init__(self, spec: Spec, shapes, dtype, seed=0):
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        self.shapes = shapes
        self.dtype = dtype
        self.params = [self.rng.standard_normal(s).astype(dtype) for s in shapes]
        self.states = {name: [np.full(s, value, dtype) for s in shapes]
                       for name, value in spec.states.items()}
        for name in spec.from_params:
            self.states[name] = [p.copy() for p in self.params]
        self.call_states = {name: make(dtype) for name, make in spec.call_states.items()}

    def grads(self):
        return [self.rng.standard_normal(s).astype(self.dtype) for s in self.shapes]

    def arrays(self):
        out = list(self.params)
        for arrays in self.states.values():
            out += arrays
        return out + list(self.call_states.values())

    def copy(self):
        other = object.__new__(Problem)
        other.__dict__.update(self.__dict__)
        other.params = [a.copy() for a in self.params]
        other.states = {k: [a.copy() for a in v] for k, v in self.states.items()}
        other.call_states = {k: v.copy() for k, v in self.call_states.items()}
        return other

    def step(self, fn, grads, step, **options):
        fn(self.params, grads, **self.states, **self.call_states,
           **self.spec.step_kwargs(step), **options)
