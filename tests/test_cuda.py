"""The optional CUDA target: the default build never touches CUDA; the validation layer on CUDA
arrays (fake __cuda_array_interface__ and DLPack objects over made-up addresses: every bad input
must be rejected before anything could be launched); and, on a machine with a GPU and adamkern
built with ADAMKERN_CUDA=ON, every CUDA kernel against the CPU kernel and adamkern.torch on CUDA
tensors against torch.optim.AdamW(fused=True) (tests/test_cuda_gpu.py)."""

from __future__ import annotations

import ctypes
import itertools
import subprocess
import sys

import numpy as np
import pytest

import adamkern
import adamkern.cuda

from family import SPECS, SPECS_BY_NAME

BUILT = adamkern.cuda.available()

_TYPESTR = {"float32": "<f4", "float64": "<f8", "float16": "<f2", "int32": "<i4"}
_ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "int32": 4, "bfloat16": 2}
_addresses = itertools.count(0x7F00_0000_0000, 1 << 24)  # 16 MB apart, 256-byte aligned


def fresh_address() -> int:
    return next(_addresses)


class FakeDeviceArray:
    """An object exposing __cuda_array_interface__ (version 3) over a made-up device address."""

    def __init__(self, shape=(5,), dtype="float32", address=None, strides=None, readonly=False,
                 stream=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.address = fresh_address() if address is None else address
        self.__cuda_array_interface__ = {
            "version": 3, "shape": self.shape, "typestr": _TYPESTR[dtype],
            "data": (self.address, readonly), "strides": strides, "stream": stream}

    def like(self, **changes):
        kwargs = dict(shape=self.shape, dtype=self.dtype)
        kwargs.update(changes)
        return FakeDeviceArray(**kwargs)


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", adamkern.cuda._DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


class FakeDLPack:
    """A DLPack producer (legacy unversioned capsule) over a made-up CUDA address."""

    def __init__(self, shape=(5,), dtype="float32", device_id=0, address=None):
        code, bits = {"float32": (2, 32), "float64": (2, 64), "float16": (2, 16),
                      "bfloat16": (4, 16)}[dtype]
        self.device_id = device_id
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._managed = _DLManagedTensor()
        tensor = self._managed.dl_tensor
        tensor.data = fresh_address() if address is None else address
        tensor.device = adamkern.cuda._DLDevice(2, device_id)
        tensor.ndim = len(shape)
        tensor.dtype = adamkern.cuda._DLDataType(code, bits, 1)
        tensor.shape = self._shape
        tensor.byte_offset = 0

    def __dlpack_device__(self):
        return (2, self.device_id)

    def __dlpack__(self, stream=None):
        new = ctypes.pythonapi.PyCapsule_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self._managed), b"dltensor", None)


def adam_arrays(count=2, shape=(5,), dtype="float32", state_dtype=None, make=FakeDeviceArray):
    state_dtype = state_dtype or dtype
    return ([make(shape, dtype) for _ in range(count)], [make(shape, dtype) for _ in range(count)],
            [make(shape, state_dtype) for _ in range(count)],
            [make(shape, state_dtype) for _ in range(count)])


def launch_error():
    """What a call with valid fake arrays ends in, here: it reaches the launch, which cannot
    run (no CUDA build, no GPU, or the fake address is not device memory)."""
    if not BUILT:
        return RuntimeError, "ADAMKERN_CUDA=ON"
    if adamkern.cuda.device_count() == 0:
        return RuntimeError, "no CUDA device"
    return ValueError, "not in CUDA device memory"


# ---- the default build never touches CUDA ----

def test_import_and_cpu_ops_never_load_cuda():
    code = ("import sys, numpy as np, adamkern\n"
            "p, g, m, v = (np.ones(4, np.float32) for _ in range(4))\n"
            "adamkern.adam_(p, g, m, v, step=1)\n"
            "adamkern.adam_([p], [g], [m], [v], step=2)\n"
            "print(sorted(k for k in sys.modules if k in ('adamkern._cuda', 'adamkern.cuda')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_device_count_never_raises():
    assert adamkern.cuda.device_count() >= 0
    if BUILT:
        from adamkern import _cuda

        assert _cuda.device_count() >= 0
        assert _cuda.pointer_device(fresh_address()) == -1 or _cuda.device_count() > 0
        assert _cuda.runtime_version()


def test_detection():
    assert adamkern.cuda.is_device_array(FakeDeviceArray())
    assert adamkern.cuda.is_device_array(FakeDLPack())
    assert not adamkern.cuda.is_device_array(np.ones(3))
    assert not adamkern.cuda.is_device_array([1.0])
    assert adamkern.cuda.on_device([FakeDeviceArray()])
    assert not adamkern.cuda.on_device([np.ones(3)])


@pytest.mark.skipif(BUILT, reason="adamkern._cuda is built")
def test_without_cuda_build_the_error_says_how_to_build():
    with pytest.raises(RuntimeError, match="ADAMKERN_CUDA=ON"):
        adamkern.adam_(*adam_arrays(), step=1)
    with pytest.raises(RuntimeError, match="ADAMKERN_CUDA=ON"):
        adamkern.sgd_(*adam_arrays()[:2])


def test_valid_fake_arrays_reach_the_launch():
    error, message = launch_error()
    for make in (FakeDeviceArray, FakeDLPack):
        with pytest.raises(error, match=message):
            adamkern.adam_(*adam_arrays(make=make), step=1)
        with pytest.raises(error, match=message):
            adamkern.adamw_(*adam_arrays(dtype="float16", make=make), step=3)
    with pytest.raises(error, match=message):
        adamkern.adam_(*adam_arrays(dtype="bfloat16", state_dtype="float32", make=FakeDLPack),
                       step=1)
    with pytest.raises(error, match=message):
        adamkern.adam_(*adam_arrays(dtype="float16", state_dtype="float32"), step=1)


def test_found_inf_on_the_host_skips_without_launching():
    adamkern.adam_(*adam_arrays(), step=1, found_inf=1.0)


# ---- every bad input is rejected before any launch ----

def test_dtype_errors():
    p, g, m, v = adam_arrays()
    with pytest.raises(TypeError, match=r"params\[0\] has dtype int32"):
        adamkern.adam_([FakeDeviceArray(dtype="int32")], g[:1], m[:1], v[:1], step=1)
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype float64"):
        adamkern.adam_(p, [g[0], g[1].like(dtype="float64")], m, v, step=1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] has dtype float16"):
        adamkern.adam_(p, g, [m[0].like(dtype="float16"), m[1]], v, step=1)
    # 16-bit params: state is the params' dtype or float32, the same for the whole call
    p16, g16, m16, v16 = adam_arrays(dtype="float16")
    with pytest.raises(TypeError, match=r"exp_avg_sqs\[0\] has dtype float32"):
        adamkern.adam_(p16, g16, m16, [v.like(dtype="float32") for v in v16], step=1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] has dtype float64"):
        adamkern.adam_(p16, g16, [m.like(dtype="float64") for m in m16], v16, step=1)


def test_shape_and_length_errors():
    p, g, m, v = adam_arrays()
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(6,\) but params\[1\] has shape"):
        adamkern.adam_(p, [g[0], g[1].like(shape=(6,))], m, v, step=1)
    with pytest.raises(ValueError, match="exp_avgs has 1 arrays but params has 2"):
        adamkern.adam_(p, g, m[:1], v, step=1)
    with pytest.raises(ValueError, match="amsgrad=True needs max_exp_avg_sqs"):
        adamkern.adam_(p, g, m, v, step=1, amsgrad=True)


def test_layout_errors():
    p, g, m, v = adam_arrays(shape=(4, 4))
    transposed = FakeDeviceArray((4, 4), strides=(4, 16))
    with pytest.raises(ValueError, match=r"params\[0\] is not C-contiguous"):
        adamkern.adam_([transposed, p[1]], g, m, v, step=1)
    # explicit C strides and unit dimensions with any stride are contiguous
    p[0] = FakeDeviceArray((4, 4), strides=(16, 4))
    p[1] = FakeDeviceArray((1, 16), strides=(999, 4)).like(shape=(4, 4))
    error, message = launch_error()
    with pytest.raises(error, match=message):
        adamkern.adam_(p, g, m, v, step=1)
    misaligned = FakeDeviceArray((4, 4), address=fresh_address() + 2)
    with pytest.raises(ValueError, match=r"exp_avgs\[1\] is not aligned"):
        adamkern.adam_(p, g, [m[0], misaligned], v, step=1)


def test_read_only_errors():
    p, g, m, v = adam_arrays()
    with pytest.raises(ValueError, match=r"params\[1\] is read-only"):
        adamkern.adam_([p[0], FakeDeviceArray(readonly=True)], g, m, v, step=1)
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[0\] is read-only"):
        adamkern.adam_(p, g, m, [FakeDeviceArray(readonly=True), v[1]], step=1)
    read_only_grads = [FakeDeviceArray(readonly=True) for _ in g]
    error, message = launch_error()
    with pytest.raises(error, match=message):  # grads are only read...
        adamkern.adam_(p, read_only_grads, m, v, step=1)
    with pytest.raises(ValueError, match=r"grads\[0\] is read-only"):  # ...unless unscaled
        adamkern.adam_(p, read_only_grads, m, v, step=1, grad_scale=2.0)


def test_overlap_errors():
    p, g, m, v = adam_arrays(shape=(8,))
    with pytest.raises(ValueError, match=r"params\[0\] and grads\[1\] overlap in memory"):
        adamkern.adam_(p, [g[0], FakeDeviceArray((8,), address=p[0].address + 28)], m, v, step=1)
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] and exp_avg_sqs\[0\] overlap"):
        adamkern.adam_(p, g, m, [FakeDeviceArray((8,), address=m[0].address), v[1]], step=1)
    # adjacent is not overlapping
    error, message = launch_error()
    with pytest.raises(error, match=message):
        adamkern.adam_(p, [g[0], FakeDeviceArray((8,), address=p[0].address + 32)], m, v, step=1)


def test_mixing_host_and_device_arrays():
    p, g, m, v = adam_arrays()
    with pytest.raises(TypeError, match=r"grads\[1\] is a numpy.ndarray in host memory"):
        adamkern.adam_(p, [g[0], np.zeros(5, np.float32)], m, v, step=1)
    with pytest.raises(TypeError, match=r"exp_avgs\[0\] is a numpy.ndarray in host memory"):
        adamkern.adam_(p, g, np.zeros(5, np.float32), v, step=1)
    with pytest.raises(TypeError, match="exp_avgs must be a CUDA array or a list"):
        adamkern.adam_(p, g, 3.0, v, step=1)
    # host params with device grads: the CPU op rejects the device object
    with pytest.raises(TypeError, match=r"grads\[0\] must be a numpy.ndarray"):
        adamkern.adam_([np.zeros(5, np.float32)], [FakeDeviceArray()],
                       [np.zeros(5, np.float32)], [np.zeros(5, np.float32)], step=1)


def test_device_mismatch():
    p = [FakeDLPack(device_id=0), FakeDLPack(device_id=0)]
    g = [FakeDLPack(device_id=0), FakeDLPack(device_id=1)]
    m = [FakeDLPack(device_id=0) for _ in range(2)]
    v = [FakeDLPack(device_id=0) for _ in range(2)]
    with pytest.raises(ValueError, match=r"grads\[1\] is on cuda:1 but params\[0\] is on cuda:0"):
        adamkern.adam_(p, g, m, v, step=1)


def test_device_scalars():
    p, g, m, v = adam_arrays()
    with pytest.raises(TypeError, match="grad_scale as a device array must hold one float32"):
        adamkern.adam_(p, g, m, v, step=1, grad_scale=FakeDeviceArray((2,)))
    with pytest.raises(TypeError, match="found_inf as a device array must hold one float32"):
        adamkern.adam_(p, g, m, v, step=1, found_inf=FakeDeviceArray((1,), dtype="float64"))
    with pytest.raises(ValueError, match="lr as a device array needs step"):
        adamkern.adam_(p, g, m, v, step=1, lr=FakeDeviceArray((1,)))
    with pytest.raises(TypeError, match="supported by adam_/adamw_ only"):
        adamkern.radam_(p, g, m, v, step=FakeDeviceArray((1,)))
    error, message = launch_error()
    with pytest.raises(error, match=message):
        adamkern.adamw_(p, g, m, v, step=FakeDeviceArray((1,)), lr=FakeDeviceArray((1,)),
                        grad_scale=FakeDeviceArray((1,)), found_inf=FakeDeviceArray((1,)))


class FakeDriver:
    """Stands in for adamkern._cuda: two devices, each address placed on the device named in
    ``placement`` (default 0; -1: host memory); records the launches."""

    class Call:
        pass

    class DType:
        float32, float64, float16, bfloat16 = "float32", "float64", "float16", "bfloat16"

    class AdafactorTensor:  # as adamkern._cuda's: every address 0 until set
        param = grad = row_var = col_var = variance = 0

    def __init__(self, placement=None):
        self.placement = placement or {}
        self.launched = []
        self.options = []  # the keywords of each launch

    def device_count(self):
        return 2

    def pointer_device(self, address):
        return self.placement.get(address, 0)

    def adafactor_(self, tensors, dtype, stream, device, **options):
        self.launched.append("adafactor_")
        self.options.append(dict(options, tensors=tensors, dtype=dtype, device=device))

    def __getattr__(self, name):  # the launch functions of the registry
        def launch(native, **options):
            self.launched.append(name)
            self.options.append(options)

        return launch


def test_array_interface_arrays_and_device_scalars_must_be_on_the_params_device(monkeypatch):
    # Neither kind names its device in the object: the driver is asked for every address.
    p, g, m, v = adam_arrays()
    scale, found = FakeDeviceArray((1,)), FakeDeviceArray((1,))
    driver = FakeDriver()
    monkeypatch.setattr(adamkern.cuda, "_cuda_module", lambda: driver)
    adamkern.adam_(p, g, m, v, step=1, grad_scale=scale, found_inf=found)
    assert driver.launched == ["adam_"]
    driver.placement = {v[1].address: 1}
    with pytest.raises(ValueError, match=r"exp_avg_sqs\[1\] is on cuda:1 but params\[0\] is "
                                         r"on cuda:0"):
        adamkern.adam_(p, g, m, v, step=1)
    driver.placement = {scale.address: 1}
    with pytest.raises(ValueError, match=r"grad_scale is on cuda:1 but params\[0\] is on "
                                         r"cuda:0; all arrays and device scalars"):
        adamkern.adam_(p, g, m, v, step=1, grad_scale=scale)
    driver.placement = {found.address: -1}
    with pytest.raises(ValueError, match="found_inf is not in CUDA device memory"):
        adamkern.adam_(p, g, m, v, step=1, found_inf=found)
    assert driver.launched == ["adam_"]  # none of the rejected calls launched


def test_device_scalars_must_be_aligned():
    p, g, m, v = adam_arrays()
    with pytest.raises(ValueError, match="grad_scale as a device array is not aligned to 4"):
        adamkern.adam_(p, g, m, v, step=1,
                       grad_scale=FakeDeviceArray((1,), address=fresh_address() + 2))


def fake_problem(spec, count=2, shape=(5,)):
    arrays = {name: [FakeDeviceArray(shape) for _ in range(count)] for name in spec.states}
    call_states = {name: make(np.float32) for name, make in spec.call_states.items()}
    params = [FakeDeviceArray(shape) for _ in range(count)]
    grads = [FakeDeviceArray(shape) for _ in range(count)]
    return params, grads, arrays, call_states


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_bad_hyperparameters_on_device(spec):
    """The CPU ops' hyperparameter checks, with the same messages, on device arrays (and a
    host mu_product is left unchanged)."""
    for bad, fragment in spec.bad:
        params, grads, arrays, call_states = fake_problem(spec)
        before = {k: v.copy() for k, v in call_states.items()}
        kwargs = {**spec.step_kwargs(3), **spec.options[-1], **bad}
        with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
            spec.op(params, grads, **arrays, **call_states, **kwargs)
        for k, v in call_states.items():
            np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_op_validates_then_reaches_the_launch(spec):
    error, message = launch_error()
    cautious = [o for o in spec.options if o.get("cautious")][-1:]  # its two launches
    for options in spec.options[:4] + cautious:
        params, grads, arrays, call_states = fake_problem(spec)
        with pytest.raises(error, match=message):
            spec.op(params, grads, **arrays, **call_states, **spec.step_kwargs(2), **options)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_op_rejects_a_state_on_the_host(spec):
    params, grads, arrays, call_states = fake_problem(spec)
    name = next(iter(spec.states))
    arrays[name] = [np.zeros(5, np.float32), np.zeros(5, np.float32)]
    options = spec.options[-1]
    with pytest.raises(TypeError, match="in host memory"):
        spec.op(params, grads, **arrays, **call_states, **spec.step_kwargs(2), **options)


def test_empty_lists_and_empty_tensors():
    adamkern.adam_([], [], [], [], step=1)  # nothing to do: the CPU op handles it
    adamkern.adam_(*adam_arrays(shape=(0,)), step=1)  # nothing to launch
    with pytest.raises(ValueError, match="step must be"):
        adamkern.adam_(*adam_arrays(shape=(0,)), step=0)


def test_cuda_benchmark_says_what_is_missing(capsys):
    from adamkern import bench_cuda

    if adamkern.cuda.available() and adamkern.cuda.device_count() > 0:
        pytest.skip("a GPU is here: the benchmark would run")
    assert bench_cuda.run(["--sizes", "1K"]) == 1
    assert "adamkern bench --device cuda:" in capsys.readouterr().err


def test_requesting_cuda_without_nvcc_fails_the_configure(tmp_path):
    """No silent CPU-only fallback when CUDA is asked for."""
    import os
    import pathlib
    import shutil

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    source = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, CUDACXX=str(tmp_path / "no-nvcc"))
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    result = subprocess.run([cmake, "-S", str(source), "-B", str(tmp_path / "build"), *generator,
                             "-DADAMKERN_CUDA=ON", "-DADAMKERN_PYTHON=OFF"],
                            capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert "ADAMKERN_CUDA=ON but no CUDA compiler (nvcc) was found" in " ".join(
        (result.stdout + result.stderr).split())


@pytest.mark.skipif(not BUILT, reason="adamkern._cuda is not built")
def test_stub_names_every_function_of_the_module():
    import ast
    import pathlib

    from adamkern import _cuda

    stub = pathlib.Path(adamkern.__file__).with_name("_cuda.pyi")
    tree = ast.parse(stub.read_text())
    named = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    # the step functions, one per optimizer of the registry, are typed by __getattr__
    steps = {name + "_" for name in adamkern.registry.names()}
    assert "__getattr__" in named
    assert steps <= set(dir(_cuda))
    assert named - {"__getattr__"} == {n for n in dir(_cuda) if not n.startswith("_")} - steps


def test_master_params_and_stochastic_rounding_are_cpu_only():
    p, g, m, v = adam_arrays(dtype="float16", state_dtype="float32")
    with pytest.raises(ValueError, match="not supported on CUDA yet"):
        adamkern.adam_(p, g, m, v, step=1, master_params=[FakeDeviceArray() for _ in p])
    with pytest.raises(ValueError, match="not supported on CUDA yet"):
        adamkern.sgd_(p, g, rounding="stochastic")


# ---- Prodigy and Adafactor: the host reductions between their passes ----

def test_prodigy_passes_its_group_scalars_to_the_launch(monkeypatch):
    """The launch reduces the first pass's sums into d on the host and writes the group's
    scalars in place: it gets the caller's array itself, after the host op checked it."""
    driver = FakeDriver()
    monkeypatch.setattr(adamkern.cuda, "_cuda_module", lambda: driver)
    params, grads, arrays, _ = fake_problem(SPECS_BY_NAME["prodigy"])
    scalars = np.array([1e-6, 1e-6, 0, 0, 0, 0.0])
    adamkern.prodigy_(params, grads, **arrays, group_scalars=scalars)
    assert driver.launched == ["prodigy_"]
    assert driver.options[0]["group_scalars"] is scalars
    with pytest.raises(ValueError, match=r"group_scalars\[0\] \(d\)"):
        adamkern.prodigy_(params, grads, **arrays, group_scalars=np.zeros(6))
    assert driver.launched == ["prodigy_"]


def adafactor_problem(dtype="float32"):
    """A [2, 3, 4] tensor (factored) and a vector of 5, on the fake device."""
    params = [FakeDeviceArray((2, 3, 4), dtype), FakeDeviceArray((5,), dtype)]
    return dict(params=params, grads=[p.like() for p in params],
                row_vars=[FakeDeviceArray((2, 3, 1), dtype), None],
                col_vars=[FakeDeviceArray((2, 1, 4), dtype), None],
                variances=[None, FakeDeviceArray((5,), dtype)])


def test_adafactor_validates_then_reaches_the_launch(monkeypatch):
    error, message = launch_error()
    with pytest.raises(error, match=message):
        adamkern.adafactor_(**adafactor_problem(), step=1)
    driver = FakeDriver()
    monkeypatch.setattr(adamkern.cuda, "_cuda_module", lambda: driver)
    problem = adafactor_problem("float64")
    adamkern.adafactor_(**problem, step=[2, 3], lr=0.1, eps=(None, 1e-3), maximize=True)
    assert driver.launched == ["adafactor_"]
    launch = driver.options[0]
    assert launch["dtype"] == "float64" and launch["lr"] == 0.1 and launch["maximize"] is True
    assert launch["eps1"] is None and launch["eps2"] == 1e-3
    matrix, vector = launch["tensors"]
    assert (matrix.factored, matrix.batch, matrix.rows, matrix.cols, matrix.step) == \
        (True, 2, 3, 4, 2.0)
    assert (matrix.param, matrix.row_var, matrix.col_var, matrix.variance) == (
        problem["params"][0].address, problem["row_vars"][0].address,
        problem["col_vars"][0].address, 0)
    assert (vector.factored, vector.batch, vector.rows, vector.cols, vector.step) == \
        (False, 1, 1, 5, 3.0)
    assert (vector.grad, vector.variance) == (problem["grads"][1].address,
                                              problem["variances"][1].address)


def _with(problem, name, index, value):
    changed = dict(problem)
    changed[name] = list(problem[name])
    changed[name][index] = value
    return changed


@pytest.mark.parametrize("change, error, fragment", [
    (lambda p: _with(p, "row_vars", 0, FakeDeviceArray((2, 3))), ValueError,
     r"row_vars\[0\] has shape \(2, 3\) but \(2, 3, 1\) was expected"),
    (lambda p: _with(p, "col_vars", 0, None), ValueError,
     r"col_vars\[0\] is required for a param with two or more dimensions"),
    (lambda p: _with(p, "row_vars", 1, FakeDeviceArray((5, 1))), ValueError,
     r"row_vars\[1\] must be None for a vector param"),
    (lambda p: _with(p, "params", 1, FakeDeviceArray(())), ValueError, r"params\[1\] is 0-d"),
    (lambda p: _with(p, "grads", 1, FakeDeviceArray((5,), "float64")), TypeError,
     r"grads\[1\] has dtype float64 but float32 was expected"),
    (lambda p: _with(p, "variances", 1, np.zeros(5, np.float32)), TypeError,
     r"variances\[1\] is a numpy.ndarray in host memory"),
    (lambda p: _with(p, "params", 0, FakeDeviceArray((2, 3, 4), readonly=True)), ValueError,
     r"params\[0\] is read-only"),
    (lambda p: _with(p, "grads", 0, FakeDeviceArray((2, 3, 4), strides=(4, 8, 24))),
     ValueError, r"grads\[0\] is not C-contiguous"),
    (lambda p: _with(p, "variances", 1, FakeDeviceArray(
        (5,), address=p["params"][0].address + 8)), ValueError, "overlap in memory"),
    (lambda p: {k: [FakeDeviceArray(a.shape, "float16") if a is not None else None
                    for a in v] for k, v in p.items()}, TypeError,
     r"params\[0\] has dtype float16; expected float32 or float64"),
])
def test_adafactor_rejects_bad_arrays_before_any_launch(monkeypatch, change, error, fragment):
    driver = FakeDriver()
    monkeypatch.setattr(adamkern.cuda, "_cuda_module", lambda: driver)
    with pytest.raises(error, match=fragment):
        adamkern.adafactor_(**change(adafactor_problem()), step=1)
    assert driver.launched == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"step": 0}, r"step\[0\] must be a finite number >= 1"),
    ({"step": [1, float("nan")]}, r"step\[1\] must be a finite number >= 1"),
    ({"step": 1, "lr": -1.0}, "lr must be >= 0"),
    ({"step": 1, "d": 0.5}, "d must be >= 1"),
    ({"step": 1, "beta2_decay": 0.1}, "beta2_decay must be <= 0"),
])
def test_adafactor_rejects_bad_steps_and_options_before_any_launch(monkeypatch, kwargs,
                                                                     fragment):
    driver = FakeDriver()
    monkeypatch.setattr(adamkern.cuda, "_cuda_module", lambda: driver)
    with pytest.raises(ValueError, match=fragment):
        adamkern.adafactor_(**adafactor_problem(), **kwargs)
    assert driver.launched == []
