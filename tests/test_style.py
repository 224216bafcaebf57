"""The formatter and linter configs hold for the whole tree: the C++ and CUDA sources are as
clang-format (.clang-format) writes them, and the Python passes ruff's checks (pyproject.toml,
[tool.ruff]). Both tools are pinned in the test extra, so the result does not move with a new
release; each test skips where its tool is not installed."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CPP_SUFFIXES = {".cpp", ".hpp", ".cu", ".cuh"}


def _clang_format() -> str | None:
    try:
        import clang_format
    except ImportError:
        return shutil.which("clang-format")
    return clang_format.get_executable("clang-format")


def test_cpp_sources_are_clang_formatted():
    executable = _clang_format()
    if executable is None:
        pytest.skip("clang-format is not installed (pip install '.[test]')")
    sources = sorted(str(p) for p in (ROOT / "cpp").rglob("*") if p.suffix in CPP_SUFFIXES)
    assert sources, "no C++ sources found"
    result = subprocess.run([executable, "--dry-run", "--Werror", *sources], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, (
        "C++ sources differ from clang-format's output (run clang-format -i on them):\n"
        + result.stderr[-4000:])


def test_python_passes_ruff():
    pytest.importorskip("ruff", reason="ruff is not installed (pip install '.[test]')")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "python",
                             "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
