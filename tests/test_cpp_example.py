"""The C++ API without Python: build cpp/examples through CMake, run them, check them against
the Python API."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import adamkern

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """cpp/examples built once through CMake, as a C++ user would."""
    cmake = shutil.which("cmake")
    assert cmake is not None, "cmake is required (pip install cmake)"
    build = tmp_path_factory.mktemp("examples")
    configure = [cmake, "-S", str(ROOT / "cpp" / "examples"), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 2)],
                   check=True, capture_output=True, text=True)
    return build


def test_cpp_example_builds_and_matches_python(examples):
    out = subprocess.run([str(examples / "adam_step")], check=True, capture_output=True,
                         text=True)
    lines = out.stdout.split()
    assert lines[0] == "isa" and lines[1] in adamkern.cpu_info()["available_isas"]
    cpp_params = np.array([float(x) for x in lines[2:]], np.float32)

    param = np.array([1.0, -2.0, 3.0, -4.0], np.float32)
    grad = np.array([0.5, 0.25, -1.0, 2.0], np.float32)
    exp_avg, exp_avg_sq = np.zeros(4, np.float32), np.zeros(4, np.float32)
    adamkern.adamw_(param, grad, exp_avg, exp_avg_sq, step=1, lr=0.1, weight_decay=0.01)
    np.testing.assert_array_equal(cpp_params, param)
    # First AdamW step: p * (1 - lr*wd) - lr * sign(g) (up to eps).
    np.testing.assert_allclose(param, [0.999 - 0.1, -1.998 - 0.1, 2.997 + 0.1, -3.996 - 0.1],
                               rtol=1e-6)


def test_cpp_schedule_loop_matches_python(examples):
    """The second example: SGD with Nesterov momentum driven by a C++ schedule."""
    out = subprocess.run([str(examples / "schedule_loop")], check=True, capture_output=True,
                         text=True)
    rows = [[float(x) for x in line.split()] for line in out.stdout.splitlines()]

    lr = adamkern.schedules.warmup_cosine_decay(0.0, 0.1, 2, 6, 0.01)
    weight, bias = np.array([0.5, -1.5, 2.0]), np.array([0.25])
    buffers = [np.zeros(3), np.zeros(1)]
    for step, row in enumerate(rows):
        grads = [2.0 * weight, 2.0 * bias]
        adamkern.sgd_([weight, bias], grads, buffers, lr=lr(step), momentum=0.9, nesterov=True,
                      is_first_step=step == 0)
        assert row == [lr(step), *weight, *bias]
    assert len(rows) == 6
