"""The C++ API without Python: build cpp/examples through CMake, run one step, check it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

import adamkern

ROOT = Path(__file__).resolve().parents[1]


def test_cpp_example_builds_and_matches_python(tmp_path):
    cmake = shutil.which("cmake")
    assert cmake is not None, "cmake is required (pip install cmake)"
    build = tmp_path / "build"
    configure = [cmake, "-S", str(ROOT / "cpp" / "examples"), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build), "--parallel", str(os.cpu_count() or 2)],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([str(build / "adam_step")], check=True, capture_output=True, text=True)
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
