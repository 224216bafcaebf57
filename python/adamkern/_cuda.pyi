"""Type stub of the optional compiled extension adamkern._cuda (built with ADAMKERN_CUDA=ON;
keep in sync with cpp/bindings/cuda_module.cpp). Use it through adamkern's ops, which validate
the device arrays; these functions take raw device addresses and trust them."""

import enum
from typing import Callable

class DType(enum.Enum):
    float32 = 0
    float64 = 1
    float16 = 2
    bfloat16 = 3

class Call:
    params: list[int]
    grads: list[int]
    states: list[list[int]]
    sizes: list[int]
    dtype: DType
    state_dtype: DType
    stream: int
    device: int
    grad_scale: int
    found_inf: int
    host_grad_scale: float
    unscale: bool
    lr: int
    step: int
    def __init__(self) -> None: ...

class AdafactorTensor:
    param: int
    grad: int
    row_var: int  # 0: not kept (a vector)
    col_var: int
    variance: int  # 0: not kept (factored)
    batch: int
    rows: int
    cols: int
    factored: bool
    step: float
    def __init__(self) -> None: ...

# adafactor_'s options as keywords, as adamkern._core.adafactor_ takes them
def adafactor_(tensors: list[AdafactorTensor], dtype: DType, stream: int, device: int,
               **options: float | bool | None) -> None: ...
def device_count() -> int: ...
def pointer_device(address: int) -> int: ...
def copy_(destination: int, source: int, bytes: int, stream: int, device: int) -> None: ...
def synchronize(device: int) -> None: ...
def runtime_version() -> str: ...
# One launch function per optimizer of the registry (adam_, sgd_, lion_ ...): the Call, then
# the optimizer's options and step inputs as keywords, as adamkern._core takes them (nadam_'s
# mu_product is the value after this step; prodigy_'s group_scalars, a float64 host array,
# is updated in place).
def __getattr__(name: str) -> Callable[..., None]: ...
