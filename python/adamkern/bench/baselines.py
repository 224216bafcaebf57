"""Other libraries' float32 AdamW on CPU, the rows adamkern is compared with: torch 2.13's
``AdamW.step()`` (``fused=True``, ``foreach=True``, single-tensor) on torch-allocated tensors and
DeepSpeed's ``DeepSpeedCPUAdam``. A library that is missing, or an op that cannot be built
here, makes its row Unavailable (skipped, with the reason).

>>> from adamkern.bench import Case, baselines
>>> case = Case(4096, 1, "float32"); params, grads = case.initial()
>>> baselines.TORCH_FUSED.build(case, params, grads).step()     # needs torch
"""

from __future__ import annotations

import logging

from adamkern.bench.cases import ADAMW
from adamkern.bench.rows import MethodSpec, Unavailable, close_to_reference, import_torch, quietly
from adamkern.bench.timing import Method, concat

__all__ = ["DEEPSPEED", "TORCH_FOREACH", "TORCH_FUSED", "TORCH_SINGLE", "build_deepspeed",
           "torch_builder", "torch_params"]


def torch_params(torch, params, grads, parameter=False) -> list:
    """torch tensors holding copies of `params` (torch's own allocation), `.grad` set."""
    tensors = []
    for p0, g0 in zip(params, grads):
        param = torch.nn.Parameter(torch.tensor(p0)) if parameter else \
            torch.tensor(p0, requires_grad=True)
        param.grad = torch.tensor(g0)
        tensors.append(param)
    return tensors


def _torch_state(opt, tparams):
    return [concat(p.detach().numpy() for p in tparams),
            concat(opt.state[p]["exp_avg"].numpy() for p in tparams),
            concat(opt.state[p]["exp_avg_sq"].numpy() for p in tparams)]


def torch_builder(label, flags):
    def build(case, params, grads):
        torch = import_torch()
        torch.set_num_threads(case.threads)
        tparams = torch_params(torch, params, grads)
        opt = torch.optim.AdamW(tparams, **ADAMW, **flags)
        return Method(label, opt.step, lambda: _torch_state(opt, tparams))
    return build


_DEEPSPEED_REASON: list[str] = []  # the reason it is unavailable, found once per process


def _deepspeed_class(torch):
    """DeepSpeedCPUAdam, once its C++ op is built and has stepped a probe tensor."""
    if _DEEPSPEED_REASON:
        raise Unavailable(_DEEPSPEED_REASON[0])
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    try:
        with quietly():
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # JIT-builds its C++ op once
            probe = torch.nn.Parameter(torch.zeros(16))
            probe.grad = torch.zeros(16)
            DeepSpeedCPUAdam([probe]).step()
    except Exception as error:  # noqa: BLE001 - any failure to import or build means "skip"
        reason = ("deepspeed is not installed" if isinstance(error, ImportError)
                  else f"DeepSpeedCPUAdam could not be built or run here: "
                       f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
        _DEEPSPEED_REASON.append(reason)
        raise Unavailable(reason) from error
    return DeepSpeedCPUAdam


def build_deepspeed(case, params, grads) -> Method:
    if case.dtype != "float32":
        raise Unavailable(f"DeepSpeedCPUAdam steps float32, bfloat16 and float16 params, not "
                          f"{case.dtype}")
    torch = import_torch()
    optimizer_class = _deepspeed_class(torch)
    torch.set_num_threads(case.threads)
    _set_deepspeed_threads(case.threads)
    tparams = torch_params(torch, params, grads, parameter=True)
    opt = optimizer_class(tparams, **ADAMW, adamw_mode=True)

    def step():
        _set_deepspeed_threads(case.threads)
        opt.step()
    return Method("deepspeed", step, lambda: _torch_state(opt, tparams))


def _set_deepspeed_threads(threads):
    """DeepSpeed's op runs `omp parallel for` regions with the default team size of the OpenMP
    runtime it links (the system's libgomp): set that runtime's default."""
    import ctypes

    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(threads)
    except OSError:
        pass


def _deepspeed_close(got, expected):
    # DeepSpeed computes the AdamW step in its own order of operations (weight decay folded
    # into the update, reciprocal bias corrections): agree to 64 ULP of the array's magnitude.
    return all(close_to_reference(a, b, ulps=64) for a, b in zip(got, expected))


TORCH_FUSED = MethodSpec("torch fused", torch_builder("torch fused", {"fused": True}),
                         check="exact", torch=True)
TORCH_FOREACH = MethodSpec("torch foreach", torch_builder("torch foreach", {"foreach": True}),
                           scratch=lambda itemsize: 2 * itemsize, torch=True)
TORCH_SINGLE = MethodSpec("torch single", torch_builder("torch single", {"foreach": False}),
                          quick=False, large=True, scratch=lambda itemsize: 2 * itemsize,
                          torch=True)
DEEPSPEED = MethodSpec("deepspeed", build_deepspeed, check=_deepspeed_close, torch=True)
