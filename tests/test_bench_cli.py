"""``python -m adamkern bench`` on tiny sizes: the table, --json, --plot, the sub-studies and
the method registry (each run takes well under a second of timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import adamkern
from adamkern import bench

TINY = ["--sizes", "4096", "--threads", "1", "--budget", "0.02", "--no-progress",
        "--methods", "roofline", "adamkern", "adamkern optim", "numpy"]


def test_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(TINY + ["--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4K float32, 1 tensor, 1 thread(s)" in text and "vs numpy" in text
    data = json.loads(out.read_text())
    methods = {r["method"] for r in data["results"]}
    assert methods == {"roofline", "adamkern", "adamkern optim", "numpy"}
    row = data["summary"][0]
    assert row["size"] == 4096 and row["vs numpy"] > 0 and 0 < row["of_roofline"]
    assert data["machine"]["cores"] >= 1 and data["cpu_info"]["isa"]


def test_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    assert bench.main(TINY + ["--dtype", "float32", "float64", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "float64" in capsys.readouterr().out


def test_model_layout(capsys):
    results = bench.run(threads=[1], layouts=["model"], methods=["roofline", "adamkern",
                                                                 "adamkern optim"],
                        budget_s=0.01, progress=False)
    assert {r.layout for r in results} == {"model"}
    assert results[0].size == sum(int(np.prod(s)) for s in bench.transformer_shapes())


def test_overhead_placement_scaling(capsys):
    rows = bench.run_overhead([1], repeat=3, quick=True)
    assert {r["what"] for r in rows} == {"adam_ on 1K float32",
                                         "optim.AdamW.step, 100 x 1K float32"}
    assert all(r["call_us"] > 0 and r["kernel_us"] > 0 for r in rows)
    placement = bench.run_placement(1 << 14, [1], budget_s=0.02, progress=False)
    assert placement[0]["variant"] == "numpy (np.empty)"
    assert any(r["offset_in_line"] == 16 for r in placement)
    assert "placement" in bench.format_placement(placement)
    rows, slopes = bench.run_scaling([1], [1 << 12, 1 << 13, 1 << 14], budget_s=0.01,
                                     progress=False)
    assert len(rows) == 6 and slopes and "slope" in bench.format_scaling(rows, slopes)


def test_a_wrong_method_is_caught():
    """Every benchmark checks its result before timing: a method that computes something
    else is an error, not a time."""

    def build(case, params, grads):
        p = [a.copy() for a in params]
        return bench.Method("wrong", lambda: None, lambda: [bench._concat(p)] * 3)

    bench.register_method(bench.MethodSpec("wrong", build))
    try:
        with pytest.raises(RuntimeError, match="wrong disagrees with adamkern"):
            bench.run([1024], [1], methods=["wrong"], budget_s=0.01, progress=False)
    finally:
        bench.METHODS[:] = [m for m in bench.METHODS if m.name != "wrong"]


def test_unavailable_method_is_skipped_with_its_reason(capsys):
    def build(case, params, grads):
        raise bench.Unavailable("not installed here")

    bench.register_method(bench.MethodSpec("absent", build), before="numpy")
    try:
        assert [m.name for m in bench.METHODS].index("absent") < \
            [m.name for m in bench.METHODS].index("numpy")
        assert bench.main(["--sizes", "1024", "--threads", "1", "--budget", "0.01",
                           "--no-progress", "--methods", "absent"]) == 0
        assert "skipped absent: not installed here" in capsys.readouterr().out
    finally:
        bench.METHODS[:] = [m for m in bench.METHODS if m.name != "absent"]


# Each of the two tests below first imports the real module, as an earlier test may have done
# (tests/test_cuda.py does): the stand-in put in sys.modules must still be the one used.

def test_device_cuda_without_the_cuda_benchmark(capsys, monkeypatch):
    import adamkern.bench_cuda  # noqa: F401  (leaves the package attribute set)

    monkeypatch.setitem(sys.modules, "adamkern.bench_cuda", None)  # import fails
    assert bench.main(["--device", "cuda"]) == 2
    assert "CUDA benchmark is not available" in capsys.readouterr().err


def test_device_cuda_calls_the_cuda_benchmark(monkeypatch):
    import adamkern.bench_cuda  # noqa: F401

    calls = []
    fake = type(sys)("adamkern.bench_cuda")
    fake.run = lambda argv=None: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "adamkern.bench_cuda", fake)
    assert bench.main(["--device", "cuda", "--quick"]) == 0
    assert calls == [["--quick"]]


def test_aligned_allocation():
    for dtype in (np.float32, np.float64):
        for n in (0, 1, 17, 1 << 20):
            a, z = adamkern.empty(n, dtype), adamkern.zeros((n, 1), dtype)
            assert a.ctypes.data % 64 == 0 and z.ctypes.data % 64 == 0
            assert a.shape == (n,) and z.shape == (n, 1) and a.dtype == dtype
            assert not z.any()


def test_command_line_entry():
    done = subprocess.run([sys.executable, "-m", "adamkern", "bench", "--help"],
                          capture_output=True, text=True, check=True)
    assert "--quick" in done.stdout and "--plot" in done.stdout
