"""The tensors of adamkern.torch's optimizers as the kernels take them: NumPy views of CPU
tensors (bfloat16 through its bits), a DTensor's local shard (FSDP2, tensor parallelism), the
layouts torch's fused optimizers step (dense in any order of dimensions, or not dense and
stepped on copies), the memory a tensor spans, and the labels errors name tensors by."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Union

import numpy as np
import torch

from adamkern.groups import first_overlap

# What an error message calls a tensor: a string, or (group, index) / (group, index, part),
# formatted only when an error is raised (a label is passed for every tensor of every step).
Label = Union[str, tuple]

CPU_DTYPES = (torch.float32, torch.float64)
LOW_DTYPES = (torch.bfloat16, torch.float16)  # computed in float32 by the kernels
_PLAIN = (torch.Tensor, torch.nn.Parameter)  # not a subclass: no DTensor to look for


def name_of(what: Label) -> str:
    """A Label as the error message writes it: ``param_groups[1] param 0('s grad)``."""
    if isinstance(what, str):
        return what
    group, index, *part = what
    label = f"param_groups[{group}] param {index}"
    return f"{label}'s {part[0]}" if part else label


# -- DTensors -------------------------------------------------------------------------------
# An elementwise update of a sharded param is the update of each rank's shard: every rank
# steps its local tensors (param, grad and state, which torch's ``*_like`` constructors make
# DTensors of the param's placements), as torch's optimizers do through DTensor's dispatch.


@functools.cache
def _dtensor_type() -> type | None:
    """torch's DTensor class; None where torch is built without torch.distributed."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a DTensor (an FSDP2 param, its grad, their state)."""
    if type(tensor) in _PLAIN:
        return False
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_tensor(tensor: torch.Tensor, what: Label | None = None) -> torch.Tensor:
    """The tensor the kernels step for ``tensor``: itself, or a DTensor's local shard (a view
    of its memory). With ``what``, a DTensor holding a partial sum (a grad not yet reduced
    across ranks) raises ValueError naming it: its shard is not the values to step with."""
    if not is_dtensor(tensor):
        return tensor
    if what is not None:
        for placement in tensor.placements:
            if placement.is_partial():
                raise ValueError(f"{name_of(what)} is a DTensor with placements "
                                 f"{tensor.placements}, a sum not yet reduced across ranks; "
                                 "adamkern.torch steps each rank's shard and needs it in its "
                                 "param's placements (tensor.redistribute(placements="
                                 "param.placements))")
    if torch.is_grad_enabled():  # else to_local() is no autograd op (steps run so)
        with torch.no_grad():
            return tensor.to_local()
    return tensor.to_local()


def check_sharded_storage(g: int, params: list[torch.Tensor], blockwise: bool) -> None:
    """Refuses 8-bit (``blockwise``) state for DTensor params (ValueError naming the first):
    its absmax has one value per 256 elements of a rank's shard, which no DTensor of the
    param's placements holds, so torch.distributed.checkpoint could not save it."""
    if not blockwise:
        return
    for i, param in enumerate(params):
        if is_dtensor(param):
            raise ValueError(f"{name_of((g, i))} is a DTensor: its state is kept as "
                             "DTensors of its placements, and state_dtype='int8' keeps an "
                             "absmax per 256 elements of each rank's shard, which no DTensor "
                             "holds (torch.distributed.checkpoint could not save it); use "
                             "state_dtype='bfloat16' or None")


def check_cuda(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """A CUDA tensor the CUDA kernels can step in place (adamkern.cuda validates the rest)."""
    from adamkern import cuda

    if not cuda.available():
        raise ValueError(f"{what} is on {tensor.device}; adamkern.torch optimizers step CPU "
                         "tensors, and CUDA tensors once adamkern is built with its CUDA target "
                         "(ADAMKERN_CUDA=ON pip install ..., see the README)")
    if tensor.is_sparse:
        raise ValueError(f"{what} is sparse; adamkern.torch needs dense tensors")
    if tensor.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise TypeError(f"{what} has dtype {tensor.dtype}; expected float32, float64, float16 "
                        "or bfloat16 on CUDA")
    if not tensor.is_contiguous():
        raise ValueError(f"{what} is not contiguous")
    return tensor.detach()


def memory_range(tensor: torch.Tensor) -> tuple[str, int, int] | None:
    """The device and the byte range a strided tensor spans (a DTensor's: its local shard's);
    None if it spans no memory."""
    tensor = local_tensor(tensor)
    if tensor.layout is not torch.strided or tensor.device.type == "meta" or tensor.numel() == 0:
        return None
    span = 1 + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    start = tensor.data_ptr()
    return str(tensor.device), start, start + span * tensor.element_size()


def check_disjoint(params: Iterable[tuple[tuple, torch.Tensor]]) -> None:
    """Raises ValueError naming two params whose memory overlaps (a param and a view of it, the
    same tensor twice): a step would update that memory twice, as torch's optimizers silently
    do."""
    pair = first_overlap((*r, label) for label, p in params
                         if (r := memory_range(p)) is not None)
    if pair is not None:
        raise ValueError(f"{name_of(pair[0])} and {name_of(pair[1])} overlap in memory (views of "
                         "one storage); each param needs memory of its own, or a step would "
                         "update that memory twice")


@functools.cache
def _bfloat16() -> np.dtype:
    from adamkern.lowp import bfloat16

    return bfloat16()


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The zero-copy NumPy view of a CPU tensor (NumPy has no bfloat16: its bits, viewed as
    ml_dtypes' bfloat16)."""
    if tensor.dtype is torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(_bfloat16())
    return tensor.numpy()


def flat(tensor: torch.Tensor) -> torch.Tensor:
    """A dense tensor's memory as one 1-D run, in memory order (its elements in the order of
    any tensor of the same shape and strides)."""
    return torch.as_strided(tensor, (tensor.numel(),), (1,), tensor.storage_offset())


def contiguous_strides(shape: torch.Size) -> tuple[int, ...]:
    strides, stride = [], 1
    for size in reversed(shape):
        strides.append(stride)
        stride *= max(size, 1)
    return tuple(reversed(strides))


def same_order(tensor: torch.Tensor, strides: tuple[int, ...]) -> bool:
    """Whether ``tensor``'s elements lie in memory as those of a tensor of its shape with
    ``strides`` (the strides of dimensions of size 1 do not matter)."""
    return all(a == b for a, b, size in zip(tensor.stride(), strides, tensor.shape) if size > 1)


def is_dense(tensor: torch.Tensor) -> bool:
    """Whether a strided tensor's elements fill a run of memory, each once, in some order of
    its dimensions (ATen's is_non_overlapping_and_dense, which Python does not expose)."""
    expected = 1
    for stride, size in sorted(zip(tensor.stride(), tensor.shape)):
        if size == 0:
            return True
        if size > 1:
            if stride != expected:
                return False
            expected *= size
    return True


def overlaps_itself(tensor: torch.Tensor) -> bool:
    """Whether two elements of a strided tensor (a DTensor: of its local shard) share memory
    (an expanded tensor)."""
    tensor = local_tensor(tensor)
    if is_dense(tensor) or tensor.numel() == 0:
        return False
    dims = sorted((stride, size) for stride, size in zip(tensor.stride(), tensor.shape)
                  if size > 1)
    reach = 1  # the elements of the dimensions so far lie within this many strides of 1
    for stride, size in dims:
        if stride < reach:
            break
        reach = stride * size
    else:
        return False
    # an unusual order of strides that the test above cannot settle: count distinct offsets
    offsets = torch.as_strided(torch.arange(tensor.storage_offset() + 1 + sum(
        (n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))), tensor.shape,
        tensor.stride(), tensor.storage_offset())
    return torch.unique(offsets).numel() < tensor.numel()


def float_scalar(value: Any, dtype: torch.dtype) -> Any:
    """A step (or mu_product) as the float scalar tensor torch keeps: older torch versions
    saved numbers or int64 tensors, which torch's own classes convert on loading too."""
    if isinstance(value, torch.Tensor) and value.dtype in CPU_DTYPES:
        return value
    return torch.tensor(float(value), dtype=dtype)


def reconcile_layouts(g: int, params: list[torch.Tensor], indices: list[int],
                      views: dict[str, list[np.ndarray]], entries: dict[str, list[torch.Tensor]],
                      buffer_names: list[str], copies: list, unscaling: bool) -> None:
    """Replaces the views of each param (of ``indices``) of group ``g`` whose param, grad or
    state (``entries``, the buffers of ``buffer_names`` among them) is not contiguous by views
    of one layout, which an elementwise kernel steps as 1-D runs: the param's own when it is
    dense (channels_last, transposed...), contiguous when not. A tensor already in that layout
    is viewed in place; any other is copied into it, and the copy is noted in ``copies`` to be
    written back after the kernels succeeded (the grad only when unscaling writes it). A
    DTensor's local shard is laid out so (each rank its own)."""
    names = [name for name in buffer_names if name in entries]
    for k, i in enumerate(indices):
        param = local_tensor(params[i])
        tensors = [((g, i), param, views["params"], True),
                   ((g, i, "grad"), local_tensor(params[i].grad), views["grads"], unscaling),
                   *(((g, i, name), local_tensor(entries[name][k]), views[name], True)
                     for name in names)]
        if all(tensor.is_contiguous() for _, tensor, _, _ in tensors):
            continue
        dense = is_dense(param)
        if not dense and overlaps_itself(param):
            raise ValueError(f"{name_of((g, i))} has elements that share memory (an expanded "
                             "tensor); each element of a param needs memory of its own")
        strides = param.stride() if dense else contiguous_strides(param.shape)
        copied = False
        for label, tensor, listed, written in tensors:
            if tensor.shape != param.shape:
                raise ValueError(f"{name_of(label)} has shape {tuple(tensor.shape)}; expected "
                                 f"{tuple(param.shape)}, the param's")
            if same_order(tensor, strides):  # dense: _check viewed it whole, in place
                listed[k] = listed[k].reshape(-1)
                continue
            if written and overlaps_itself(tensor):
                raise ValueError(f"{name_of(label)} has elements that share memory (an "
                                 "expanded tensor), and a step writes it")
            copy = torch.empty_strided(param.shape, strides, dtype=tensor.dtype)
            copy.copy_(tensor)
            listed[k] = as_numpy(flat(copy))
            copied = True
            if written:
                copies.append((tensor, copy))
        if copied:  # the kernels see copies: what they would find aliased is checked here
            check_disjoint((label, tensor) for label, tensor, _, _ in tensors)
