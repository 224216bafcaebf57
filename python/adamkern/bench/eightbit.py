"""Other libraries' 8-bit AdamW on CPU tensors: ``bitsandbytes.optim.AdamW8bit`` and
``torchao.optim.AdamW8bit``. They keep the layout of adamkern's 8-bit state (uint8 codes into
the dynamic map, one float32 absmax per block of 256 elements; bitsandbytes is given
``min_8bit_size=0`` so every tensor is 8-bit, torchao keeps tensors under 4096 elements, or
not a multiple of 256, in float32), so each is judged against the roofline of that storage
(float32 params, 8-bit state) and timed beside the storage modes.

They run only with ``--8bit`` (or named in ``--methods``): tens of ns per element, and torchao
compiles its step with ``torch.compile`` for every tensor shape (seconds to tens of seconds,
once per shape and process). A library that is not installed, or that refuses CPU tensors on
its first step, is skipped with the reason.

>>> from adamkern.bench import Case, eightbit
>>> case = Case(1 << 16, 1, "float32"); params, grads = case.initial()
>>> eightbit.BITSANDBYTES.build(case, params, grads).step()   # needs torch and bitsandbytes
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np

from adamkern import lowp
from adamkern.bench.baselines import torch_params
from adamkern.bench.cases import ADAMW
from adamkern.bench.rows import MethodSpec, Unavailable, close_to_reference, import_torch, quietly
from adamkern.bench.storage import StorageMode, runs_on
from adamkern.bench.timing import Method, concat

__all__ = ["BITSANDBYTES", "INT8", "SPECS", "TORCHAO", "library_builder"]

INT8 = StorageMode("float32", "int8")  # the storage these libraries keep
_REASONS: dict[str, str] = {}  # label -> why it cannot run here, found once per process


def _bitsandbytes_state(state, k) -> np.ndarray:
    codes = state[f"state{k}"]
    if codes.element_size() != 1:  # a tensor it keeps in float32
        return codes.numpy().reshape(-1)
    scale = np.repeat(state[f"absmax{k}"].numpy(), lowp.BLOCK_SIZE)[:codes.numel()]
    return state[f"qmap{k}"].numpy()[codes.numpy().reshape(-1)] * scale


def _torchao_state(state, k) -> np.ndarray:
    buffer = state["exp_avg" if k == 1 else "exp_avg_sq"]
    decoded = buffer.dequantize() if hasattr(buffer, "dequantize") else buffer
    return decoded.numpy().reshape(-1)


def _decoded_close(got, expected) -> bool:
    """Params within 4 ULP of adamkern's first step (the update uses the float32 moments
    before they are quantized), each decoded moment within the widest gap of the 8-bit map
    times its largest magnitude."""
    gap = float(np.diff(lowp.dynamic_map(True)).max())
    return close_to_reference(got[0], expected[0]) and all(
        bool(np.all(np.abs(a - b) <= gap * np.abs(b).max())) for a, b in zip(got[1:], expected[1:]))


def _first_step(label, module, make, tparams):
    """The optimizer, after the step that imports, compiles, or refuses CPU tensors."""
    if label in _REASONS:
        raise Unavailable(_REASONS[label])
    try:
        with quietly():
            optimizer = make(importlib.import_module(module), tparams)
            optimizer.step()
    except Exception as error:  # noqa: BLE001 - any failure to import or step means "skip"
        reason = (f"{module.split('.')[0]} is not installed" if isinstance(error, ImportError)
                  else f"{label} refused CPU tensors: {type(error).__name__}: "
                       f"{str(error).splitlines()[0][:160] if str(error) else ''}")
        _REASONS[label] = reason
        raise Unavailable(reason) from error
    return optimizer


def library_builder(label, module, make, decode):
    """`make(module, tensors)`: the library's optimizer; `decode(state, k)`: moment k (1, 2)
    of a tensor's state as float32."""
    def build(case, params, grads):
        if not runs_on(case):
            raise Unavailable("8-bit AdamW steps float32 params here (float32 cases only)")
        torch = import_torch()
        torch.set_num_threads(case.threads)
        tparams = torch_params(torch, params, grads, parameter=True)
        optimizer = _first_step(label, module, make, tparams)
        optimizer.state.clear()  # the timed steps start again from the same params
        with torch.no_grad():
            for tensor, initial in zip(tparams, params):
                tensor.copy_(torch.from_numpy(initial))

        def step():
            with warnings.catch_warnings():  # torchao warns while it compiles a new shape
                warnings.simplefilter("ignore")
                optimizer.step()

        def state():
            return [concat(p.detach().numpy() for p in tparams)] + [
                concat(decode(optimizer.state[p], k) for p in tparams) for k in (1, 2)]
        return Method(label, step, state)
    return build


def _spec(label, module, make, decode) -> MethodSpec:
    return MethodSpec(label, library_builder(label, module, make, decode), check=_decoded_close,
                      baseline=False, bytes_per_element=lambda itemsize: INT8.bytes_moved(),
                      held=lambda itemsize: INT8.bytes_held(), scratch=lambda itemsize: 4,
                      opt_in=True, torch=True, storage=INT8)


BITSANDBYTES = _spec("bitsandbytes 8bit", "bitsandbytes.optim",
                     lambda bnb, tensors: bnb.AdamW8bit(tensors, **ADAMW, min_8bit_size=0),
                     _bitsandbytes_state)
TORCHAO = _spec("torchao 8bit", "torchao.optim",
                lambda ao, tensors: ao.AdamW8bit(tensors, **ADAMW, block_size=lowp.BLOCK_SIZE),
                _torchao_state)
SPECS = [BITSANDBYTES, TORCHAO]
