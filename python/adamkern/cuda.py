"""The functional ops on CUDA arrays: the same updates, in place, on device memory.

adamkern's functional ops (``adamkern.adam_`` ...) route here when their params are CUDA
arrays: any object exposing ``__cuda_array_interface__`` (CuPy, Numba), a torch CUDA tensor, or
a DLPack producer on a CUDA device. Every argument is validated here, with the CPU ops' error
contract (``TypeError`` for types and dtypes, ``ValueError`` for shapes, layout, read-only or
overlapping buffers, device mismatch and hyperparameter ranges), before anything is launched;
the kernels (``adamkern._cuda``, built with ``ADAMKERN_CUDA=ON``) then run on the producer's
current stream, without synchronising.

On the device, params and grads may be float32, float64, float16 or bfloat16; state has the
params' dtype, or float32 beside 16-bit params (the math runs in float32 for 16-bit params).
``grad_scale`` and ``found_inf`` may be one-element float32 device arrays (read by the kernel:
no host synchronisation, CUDA-graph friendly), and for ``adam_``/``adamw_`` so may ``lr`` and
``step`` (capturable: the bias corrections are then computed on the device, in double).

>>> import torch, adamkern
>>> p, g = torch.ones(3, device="cuda"), torch.ones(3, device="cuda")
>>> m, v = torch.zeros_like(p), torch.zeros_like(p)
>>> adamkern.adam_(p, g, m, v, step=1, lr=0.1)   # runs adamkern._cuda on the current stream
"""

from __future__ import annotations

import ctypes
import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adamkern import _core, registry

__all__ = ["available", "device_count", "is_device_array"]

_BUILD_HINT = ("adamkern was built without CUDA; rebuild it with the CUDA target: "
               "ADAMKERN_CUDA=ON pip install adamkern (needs nvcc), see the README's "
               "'Building with CUDA'")

_ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
_DL_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def _cuda_module():
    """adamkern._cuda, or the error that says how to build it."""
    try:
        return importlib.import_module("adamkern._cuda")
    except ModuleNotFoundError as error:  # not built (a broken build raises its ImportError)
        raise RuntimeError(_BUILD_HINT) from error


def available() -> bool:
    """Whether adamkern was built with its CUDA target (it may still see no GPU)."""
    try:
        importlib.import_module("adamkern._cuda")
    except ModuleNotFoundError:  # not built; a build that does not load raises its ImportError
        return False
    return True


def device_count() -> int:
    """The number of CUDA devices adamkern sees: 0 without the CUDA build, a driver or a GPU."""
    return _cuda_module().device_count() if available() else 0


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def is_device_array(x: Any) -> bool:
    """Whether x is an array in CUDA device memory (array interface, torch, or DLPack)."""
    if isinstance(x, np.ndarray):
        return False
    if _is_torch(x):
        return bool(getattr(x, "is_cuda", False))
    if hasattr(x, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(x, "__dlpack_device__", None)
    if dlpack_device is not None and hasattr(x, "__dlpack__"):
        try:
            return int(dlpack_device()[0]) in _DL_CUDA_DEVICES
        except Exception:  # a producer that cannot say: not a device array we can use
            return False
    return False


def on_device(arrays: Any) -> bool:
    """Whether an array argument (one array or a list of them) is in device memory: decides
    which backend a functional op calls (the first array decides; mixing is an error)."""
    if isinstance(arrays, (list, tuple)):
        return len(arrays) > 0 and is_device_array(arrays[0])
    return is_device_array(arrays)


# ---- reading device arrays ----

@dataclass
class _DeviceArray:
    address: int
    shape: tuple
    strides: tuple | None  # bytes; None: C-contiguous
    dtype: str
    readonly: bool
    stream: int | None  # the stream to run on (None: the legacy default stream)
    device: int | None  # None: not known from the object itself

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE.get(self.dtype, 1)

    def c_contiguous(self) -> bool:
        if self.strides is None or self.size == 0:
            return True
        expected = self.itemsize
        for extent, stride in zip(reversed(self.shape), reversed(self.strides)):
            if extent != 1 and stride != expected:
                return False
            expected *= extent
        return True


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


def _from_dlpack(x: Any) -> _DeviceArray:
    capsule = x.__dlpack__()
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    # DLManagedTensor starts with its DLTensor; the capsule (and x) keep it alive meanwhile.
    tensor = _DLTensor.from_address(get_pointer(capsule, b"dltensor"))
    shape = tuple(tensor.shape[k] for k in range(tensor.ndim))
    code, bits, lanes = tensor.dtype.code, tensor.dtype.bits, tensor.dtype.lanes
    dtype = {(2, 16): "float16", (2, 32): "float32", (2, 64): "float64",
             (4, 16): "bfloat16"}.get((code, bits), f"DLPack(code={code}, bits={bits})")
    if lanes != 1:
        dtype = f"DLPack(code={code}, bits={bits}, lanes={lanes})"
    itemsize = max(bits // 8, 1)
    strides = (None if not tensor.strides
               else tuple(tensor.strides[k] * itemsize for k in range(tensor.ndim)))
    return _DeviceArray((tensor.data or 0) + tensor.byte_offset, shape, strides, dtype, False,
                        None, int(tensor.device.device_id))


def _dtype_name(typestr: str) -> str:
    try:
        dtype = np.dtype(typestr)
    except TypeError:
        return typestr
    return dtype.name if dtype.isnative or dtype.itemsize == 1 else typestr


def _describe(x: Any) -> _DeviceArray | None:
    """The device array behind x, or None if x is not one."""
    if _is_torch(x):
        if not getattr(x, "is_cuda", False):
            return None
        dtype = str(x.dtype).replace("torch.", "")
        itemsize = x.element_size()
        strides = None if x.is_contiguous() else tuple(s * itemsize for s in x.stride())
        # the stream is torch's current one, looked up once per call (see _call_stream)
        return _DeviceArray(int(x.data_ptr()), tuple(x.shape), strides, dtype, False, None,
                            int(x.device.index))
    if isinstance(x, np.ndarray):
        return None
    interface = getattr(x, "__cuda_array_interface__", None)
    if interface is not None:
        typestr = str(interface.get("typestr", "?"))
        dtype = _dtype_name(typestr)
        address, readonly = interface["data"]
        strides = interface.get("strides")
        if interface.get("mask") is not None:
            dtype = "masked " + dtype
        stream = interface.get("stream") if interface.get("version", 0) >= 3 else None
        return _DeviceArray(int(address or 0), tuple(int(n) for n in interface["shape"]),
                            None if strides is None else tuple(int(s) for s in strides), dtype,
                            bool(readonly), None if stream is None else int(stream), None)
    if is_device_array(x):
        return _from_dlpack(x)
    return None


def _type_name(x: Any) -> str:
    return type(x).__module__.split(".")[0] + "." + type(x).__name__ if not isinstance(
        x, np.ndarray) else "numpy.ndarray"


@dataclass
class _List:
    name: str
    arrays: list = field(default_factory=list)  # _DeviceArray
    written: bool = True


def _array_list(obj: Any, name: str, written: bool) -> _List:
    out = _List(name, [], written)
    if isinstance(obj, (list, tuple)):
        items = list(obj)
    elif is_device_array(obj) or isinstance(obj, np.ndarray):
        items = [obj]
    else:
        raise TypeError(f"{name} must be a CUDA array or a list/tuple of them, got "
                        f"{_type_name(obj)}")
    out.arrays = [_device_item(item, f"{name}[{i}]") for i, item in enumerate(items)]
    return out


def _device_item(item: Any, where: str) -> _DeviceArray:
    """One array of a call that holds CUDA arrays."""
    described = _describe(item)
    if described is None:
        at = ("host memory" if isinstance(item, np.ndarray) or _is_torch(item)
              else "no device memory")
        raise TypeError(f"{where} is a {_type_name(item)} in {at} but params are CUDA arrays; "
                        "all arrays of one call must be on one CUDA device")
    return described


def _check_lists(lists: list[_List]) -> tuple[str, str]:
    """Validates every array of every list against lists[0] (the params); returns the dtype of
    params/grads and of the state. Mirrors the CPU binding's checks and messages."""
    params = lists[0]
    for lst in lists:
        if len(lst.arrays) != len(params.arrays):
            raise ValueError(f"{lst.name} has {len(lst.arrays)} arrays but {params.name} has "
                             f"{len(params.arrays)}")
    if not params.arrays:
        return "float32", "float32"
    dtype = params.arrays[0].dtype
    if dtype not in _ITEMSIZE:
        raise TypeError(f"params[0] has dtype {dtype}; expected float32, float64, float16 or "
                        "bfloat16 on CUDA")
    state_lists = lists[2:]
    state_dtype = dtype
    if dtype in ("float16", "bfloat16") and state_lists and state_lists[0].arrays:
        state_dtype = "float32" if state_lists[0].arrays[0].dtype == "float32" else dtype
    device: list = []
    for i, param in enumerate(params.arrays):
        for k, lst in enumerate(lists):
            array = lst.arrays[i]
            where = f"{lst.name}[{i}]"
            expected = dtype if k < 2 else state_dtype
            if array.dtype != expected:
                allowed = (f"{dtype} (or float32 for all state, beside {dtype} params)"
                           if k >= 2 and dtype in ("float16", "bfloat16") else expected)
                raise TypeError(f"{where} has dtype {array.dtype} but {allowed} was expected "
                                f"(params[0] has {dtype}); all arrays of one call must share "
                                "one dtype")
            _check_array(array, where, param.shape, f"params[{i}] has shape {param.shape}",
                         lst.written, device)
    _check_overlap(lists)
    return dtype, state_dtype


def _check_array(array: _DeviceArray, where: str, shape: tuple, expected: str, written: bool,
                 device: list) -> None:
    """The checks of one array beyond its dtype: shape, layout, address, writability, and its
    device against the first one named (``device`` holds it: [] before the first)."""
    if array.shape != shape:
        raise ValueError(f"{where} has shape {array.shape} but {expected}")
    if not array.c_contiguous():
        raise ValueError(f"{where} is not C-contiguous; pass a contiguous array "
                         "(an in-place update cannot work on a copy)")
    if array.size and array.address % array.itemsize != 0:
        raise ValueError(f"{where} is not aligned to its element size")
    if array.size and array.address == 0:
        raise ValueError(f"{where} has a null data pointer")
    if written and array.readonly:
        raise ValueError(f"{where} is read-only; it is updated in place")
    if array.device is not None:
        if not device:
            device.extend((array.device, where))
        elif array.device != device[0]:
            raise ValueError(f"{where} is on cuda:{array.device} but {device[1]} is on "
                             f"cuda:{device[0]}; all arrays of one call must be on one device")


def _check_overlap(lists: list[_List]) -> None:
    intervals = []
    for lst in lists:
        for i, array in enumerate(lst.arrays):
            if array.size:
                intervals.append((array.address, array.address + array.size * array.itemsize,
                                  f"{lst.name}[{i}]"))
    intervals.sort(key=lambda x: x[0])
    widest = None
    for interval in intervals:
        if widest is not None and interval[0] < widest[1]:
            raise ValueError(f"{widest[2]} and {interval[2]} overlap in memory; every buffer of a "
                             "call must be distinct")
        if widest is None or interval[1] > widest[1]:
            widest = interval


def _scalar(value: Any, name: str) -> tuple[Any, int]:
    """A scalar argument as (host value, 0) or (placeholder, device address of a one-element
    float32 device array)."""
    if value is None or isinstance(value, (int, float, np.ndarray, np.generic)):
        return value, 0
    if not is_device_array(value):
        return value, 0
    array = _describe(value)
    if array.dtype != "float32" or array.size != 1:
        raise TypeError(f"{name} as a device array must hold one float32 value, got dtype "
                        f"{array.dtype} and shape {array.shape}")
    if array.address % 4 != 0:
        raise ValueError(f"{name} as a device array is not aligned to 4 bytes")
    return None, array.address


def _call_stream(params: Any, first: _DeviceArray | None) -> int:
    """The stream a call runs on: torch's current stream on the params' device for torch
    tensors, the array interface's `stream` otherwise (0, the legacy default stream, if none)."""
    if first is None:
        return 0
    tensor = params[0] if isinstance(params, (list, tuple)) else params
    if _is_torch(tensor):
        import torch

        return int(torch.cuda.current_stream(tensor.device).cuda_stream)
    return first.stream if first.stream is not None else 0


@dataclass
class _Call:
    lists: list
    dtype: str
    state_dtype: str
    state_used: list
    stream: int
    device: int | None
    grad_scale: int = 0
    found_inf: int = 0
    host_grad_scale: float = 1.0
    unscale: bool = False
    skip: bool = False
    lr: int = 0
    step: int = 0


def _prepare(params, grads, states, grad_scale, found_inf) -> tuple[_Call, Any, Any]:
    """Validates the arrays and the AMP scalars; states is a list of (object, name, used,
    needs). Returns the call and the host grad_scale/found_inf for the CPU option checks."""
    host_scale, scale_address = _scalar(grad_scale, "grad_scale")
    host_found, found_address = _scalar(found_inf, "found_inf")
    unscale = grad_scale is not None
    lists = [_array_list(params, "params", True), _array_list(grads, "grads", unscale)]
    used = []
    for obj, name, is_used, needs in states:
        if is_used and obj is None:
            raise ValueError(f"{needs or 'this optimizer'} needs {name} (one array per param), "
                             "got None")
        used.append(is_used)
        if is_used:
            lists.append(_array_list(obj, name, True))
    dtype, state_dtype = _check_lists(lists)
    first = lists[0].arrays[0] if lists[0].arrays else None
    call = _Call(lists, dtype, state_dtype, used, stream=_call_stream(params, first),
                 device=None if first is None else first.device, grad_scale=scale_address,
                 found_inf=found_address, unscale=unscale)
    return call, host_scale, host_found


def _finish(call: _Call, host_scale: Any, host_found: Any) -> bool:
    """After the option checks: records the host AMP values; False when the step is skipped."""
    if host_found is not None and float(np.asarray(host_found).reshape(-1)[0]) != 0.0:
        return False
    if host_scale is not None:
        call.host_grad_scale = float(np.float32(np.asarray(host_scale).reshape(-1)[0]))
    return any(a.size for a in call.lists[0].arrays)  # nothing to launch for empty tensors


def _placed_device(cuda: Any, lists: list[_List], scalars: list, device: int | None) -> int:
    """The device of a call (``device``, or the driver's answer for params[0]). Arrays whose
    object names no device (array interfaces) and the device-resident scalars must be on it:
    a kernel reading another device's memory faults and breaks the CUDA context. The driver
    tells where each address lives."""
    if device is None:  # an array interface carries no device: ask the driver
        device = cuda.pointer_device(next(a.address for a in lists[0].arrays if a.size))
        if device < 0:
            raise ValueError("params[0] is not in CUDA device memory")
    unplaced = [(f"{lst.name}[{i}]", a.address) for lst in lists
                for i, a in enumerate(lst.arrays) if a.size and a.device is None]
    for where, address in unplaced + scalars:
        placed = cuda.pointer_device(address)
        if placed != device:
            at = "not in CUDA device memory" if placed < 0 else f"on cuda:{placed}"
            raise ValueError(f"{where} is {at} but params[0] is on cuda:{device}; all arrays "
                             "and device scalars of one call must be on one device")
    return device


def _launch(name: str, call: _Call, **options: Any) -> None:
    cuda = _cuda_module()
    if cuda.device_count() == 0:
        raise RuntimeError("adamkern CUDA: no CUDA device is available (no GPU or no driver)")
    scalars = [(scalar, address) for scalar, address in (
        ("grad_scale", call.grad_scale), ("found_inf", call.found_inf), ("lr", call.lr),
        ("step", call.step)) if address]
    device = _placed_device(cuda, call.lists, scalars, call.device)
    native = cuda.Call()
    native.params = [a.address for a in call.lists[0].arrays]
    native.grads = [a.address for a in call.lists[1].arrays]
    states, k = [], 2
    for used in call.state_used:
        states.append([a.address for a in call.lists[k].arrays] if used else [])
        k += used
    native.states = states
    native.sizes = [a.size for a in call.lists[0].arrays]
    native.dtype = getattr(cuda.DType, call.dtype)
    native.state_dtype = getattr(cuda.DType, call.state_dtype)
    native.stream = {1: 1, 2: 2}.get(call.stream, call.stream)  # CAI: 1 legacy, 2 per-thread
    native.device = device
    native.grad_scale = call.grad_scale
    native.found_inf = call.found_inf
    native.host_grad_scale = call.host_grad_scale
    native.unscale = call.unscale
    native.lr = call.lr
    native.step = call.step
    getattr(cuda, name)(native, **options)


def _full_precision(precision: Any) -> None:
    if precision is not None:
        raise ValueError("master_params and stochastic rounding are not supported on CUDA yet; "
                         "on the device, 16-bit params round to nearest and their state is "
                         "float32 or their dtype")


def _host_only(name: str, **scalars: Any) -> None:
    for key, value in scalars.items():
        if value is not None and not isinstance(value, (int, float, np.ndarray, np.generic)) \
                and is_device_array(value):
            raise TypeError(f"{name}: {key} as a device array is supported by adam_/adamw_ "
                            "only; pass a Python float")


# ---- the ops: one per optimizer of the registry, with adamkern._core's keywords ----

def _condition(buffer: registry.StateBuffer) -> str | None:
    """When ``buffer`` is needed, as the error for a missing one says it ("amsgrad=True")."""
    return {"flag": f"{buffer.option}=True", "positive": f"{buffer.option} > 0",
            "nonzero": f"{buffer.option} != 0"}.get(buffer.needed)


def _host_array(value: Any) -> np.ndarray:
    """The one host array of a call state given as an array or a list of one (as the host op
    takes it)."""
    return value[0] if isinstance(value, (list, tuple)) else value


def _device_lr_and_step(call: _Call, options: dict) -> None:
    """adam_'s lr and step may be device arrays: recorded in the call, with neutral host
    values for the host checks and the launch."""
    lr_value, call.lr = _scalar(options["lr"], "lr")
    _, call.step = _scalar(options["step"], "step")
    if call.lr and not call.step:
        raise ValueError("lr as a device array needs step as a device array too")
    options["lr"] = 0.0 if call.lr else lr_value
    if call.step:
        options["step"] = 1.0


def _step_op(description: registry.Description):
    """The CUDA op of one optimizer: validates the device arrays here and every option with
    the host op (``adamkern._core``, called with no tensors), then launches ``adamkern._cuda``."""
    name = description.name + "_"

    def op(*, params, grads, grad_scale=None, found_inf=None, precision=None, **options):
        _full_precision(precision)
        label = options.get("op", name)
        states = [(options.pop(b.argument, None), b.argument, b.is_needed(options),
                   _condition(b)) for b in description.state]
        mu_product = options.pop("mu_product", None)
        # Prodigy's group scalars: a host array, checked by the host op and updated in place by
        # the launch (which waits for its first pass to reduce the sums into d)
        group_scalars = options.pop("group_scalars", None)
        call, host_scale, host_found = _prepare(params, grads, states, grad_scale, found_inf)
        if name == "adam_":
            _device_lr_and_step(call, options)
        else:
            _host_only(label, step=options.get("step"), lr=options.get("lr"),
                       mu_product=mu_product)
        host_lists = {b.argument: [] if used else None
                      for b, (_, _, used, _) in zip(description.state, states)}
        if mu_product is not None:
            if call.found_inf:
                raise ValueError(f"{label} on CUDA needs found_inf on the host (mu_product is a "
                                 "host value the step updates)")
            host_lists["mu_product"] = mu_product  # checked and advanced in place here
        if group_scalars is not None:
            host_lists["group_scalars"] = group_scalars  # checked (no tensors: not written)
        getattr(_core, name)(params=[], grads=[], **host_lists, **options,
                             grad_scale=host_scale, found_inf=host_found)
        if _finish(call, host_scale, host_found):
            if mu_product is not None:  # the kernel uses the product after this step
                options["mu_product"] = float(np.asarray(_host_array(mu_product)).reshape(-1)[0])
            if group_scalars is not None:
                options["group_scalars"] = _host_array(group_scalars)
            _launch(name, call, **options)

    op.__name__ = op.__qualname__ = name
    return op


for _description in map(registry.describe, registry.names()):
    globals()[_description.name + "_"] = _step_op(_description)


def _adafactor_shapes(shape: tuple, i: int) -> tuple[bool, tuple | None, tuple | None]:
    """Whether params[i] of this shape is factored, and the shapes of its two state arrays:
    (row_var, col_var), or (variance, None) for a vector."""
    if len(shape) == 0:
        raise ValueError(f"params[{i}] is 0-d; Adafactor steps vectors and tensors with two or "
                         "more dimensions (reshape a scalar to (1,))")
    if len(shape) == 1:
        return False, shape, None
    return True, shape[:-1] + (1,), shape[:-2] + (1, shape[-1])


def _adafactor_tensor(cuda: Any, i: int, arrays: dict, step: float, dtype: str,
                      device: list) -> Any:
    """params[i] and its grad and state as one adamkern._cuda.AdafactorTensor, validated."""
    param = arrays["params"][i]
    factored, first, second = _adafactor_shapes(param.shape, i)
    used = ({"row_vars": first, "col_vars": second} if factored else {"variances": first})
    layout = "param with two or more dimensions" if factored else "vector param"
    for name in ("row_vars", "col_vars", "variances"):
        given = arrays[name][i] is not None
        if given != (name in used):
            raise ValueError(f"{name}[{i}] must be None for a {layout}" if given
                             else f"{name}[{i}] is required for a {layout}")
    tensor = cuda.AdafactorTensor()
    for name, expected_shape in [("params", param.shape), ("grads", param.shape), *used.items()]:
        array = arrays[name][i]
        where = f"{name}[{i}]"
        if array.dtype != dtype:
            raise TypeError(f"{where} has dtype {array.dtype} but {dtype} was expected (params[0] "
                            f"has {dtype}); all arrays of one call must share one dtype")
        _check_array(array, where, expected_shape, f"{expected_shape} was expected",
                     name != "grads", device)
        setattr(tensor, {"params": "param", "grads": "grad", "row_vars": "row_var",
                         "col_vars": "col_var", "variances": "variance"}[name], array.address)
    if not math.isfinite(step) or step < 1.0:
        raise ValueError(f"adafactor_: step[{i}] must be a finite number >= 1, got {step}")
    tensor.step = step
    tensor.factored = factored
    tensor.batch = math.prod(param.shape[:-2]) if factored else 1
    tensor.rows = param.shape[-2] if factored else 1
    tensor.cols = param.shape[-1]
    return tensor


def adafactor_(*, params, grads, row_vars, col_vars, variances, steps, **options) -> None:
    """Adafactor on CUDA arrays, with adamkern._core.adafactor_'s keywords (one item per param
    in each list, None for the state a param's layout does not keep): the options are checked
    by the host op, the arrays here; then each tensor's passes run on the params' stream."""
    _core.adafactor_(params=[], grads=[], row_vars=[], col_vars=[], variances=[], steps=[],
                     **options)
    named = {"params": params, "grads": grads, "row_vars": row_vars, "col_vars": col_vars,
             "variances": variances}
    arrays = {name: [None if item is None else _device_item(item, f"{name}[{i}]")
                     for i, item in enumerate(items)] for name, items in named.items()}
    if not arrays["params"]:
        return
    dtype = arrays["params"][0].dtype
    if dtype not in ("float32", "float64"):
        raise TypeError(f"params[0] has dtype {dtype}; expected float32 or float64")
    cuda = _cuda_module()
    device: list = []
    tensors = [_adafactor_tensor(cuda, i, arrays, float(step), dtype, device)
               for i, step in enumerate(steps)]
    lists = [_List(name, [a for a in items if a is not None]) for name, items in arrays.items()]
    _check_overlap(lists)
    if not any(a.size for a in lists[0].arrays):
        return
    if cuda.device_count() == 0:
        raise RuntimeError("adamkern CUDA: no CUDA device is available (no GPU or no driver)")
    first = lists[0].arrays[0]
    index = _placed_device(cuda, lists, [], device[0] if device else None)
    cuda.adafactor_(tensors, getattr(cuda.DType, dtype), _call_stream(params, first), index,
                    **options)
