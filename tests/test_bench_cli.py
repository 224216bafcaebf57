"""``python -m adamkern bench`` on tiny sizes: the table, --json, --plot, the sub-studies and
the method registry (each run takes well under a second of timing)."""

from __future__ import annotations

import json
import subprocess
import sys

import adamkern
import numpy as np
import pytest
from adamkern import bench
from adamkern.bench import trust


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """The default plot goes to the user's cache folder: a temporary one here."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


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
    out = capsys.readouterr().out
    assert "float64" in out and f"wrote {png}" in out


def test_plot_without_a_suffix_says_the_file_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert bench.main(TINY + ["--plot", str(tmp_path / "bench")]) == 0
    assert (tmp_path / "bench.png").exists() and not (tmp_path / "bench").exists()
    assert f"wrote {tmp_path / 'bench.png'}\n" in capsys.readouterr().out


def test_the_default_plot_goes_to_the_cache_folder_not_the_current_one(tmp_path, capsys,
                                                                       monkeypatch):
    """A run from a clone's root must not overwrite the tracked adamkern-bench.png."""
    pytest.importorskip("matplotlib")
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert bench.main(TINY) == 0
    written = tmp_path / "cache" / "adamkern" / "adamkern-bench.png"
    assert written.read_bytes()[:4] == b"\x89PNG" and list(work.iterdir()) == []
    assert f"wrote {written}" in capsys.readouterr().out


def test_the_default_plot_path_is_outside_the_source_tree():
    from pathlib import Path

    from adamkern.bench import plot

    path = Path(plot.default_path()).resolve()
    repo = Path(__file__).resolve().parents[1]
    for tree in (Path.cwd().resolve(), repo):
        assert tree not in path.parents, (path, tree)


def test_every_method_has_its_own_colour():
    pytest.importorskip("matplotlib")
    from adamkern.bench import plot

    names = [s.name for s in bench.METHODS]
    colours = plot._colours(names)
    assert len({str(colours[n]) for n in names}) == len(names)
    many = plot._colours(names + [f"extra {k}" for k in range(8)])
    assert len({str(c) for c in many.values()}) == len(names) + 8


# -- what a run costs, and what the default run holds ------------------------------------------

def test_the_default_run_fits_in_3_gb_and_large_adds_the_large_cases(capsys):
    cores = adamkern.get_num_threads()
    default = bench.plan(bench.DEFAULT_SIZES, range(1, cores + 1), ["float32"],
                         ["tensor", "model"])
    peak, _ = bench.estimate(default, bench.select_methods(), budget_s=3.0)
    assert peak <= bench.DEFAULT_MEMORY_LIMIT == 3e9
    quick = bench.plan(bench.QUICK_SIZES, [1, cores], ["float32"], ["tensor"])
    assert bench.estimate(quick, bench.select_methods(quick=True), 0.5)[0] <= peak
    assert max(c.size for c in default) < 64 * bench.M
    assert "torch single" not in [s.name for s in bench.select_methods()]
    large = bench.plan(bench.DEFAULT_SIZES + bench.LARGE_SIZES, [1], ["float32"], ["tensor"])
    assert max(c.size for c in large) == 64 * bench.M
    assert "torch single" in [s.name for s in bench.select_methods(large=True)]
    assert bench.estimate(large, bench.select_methods(large=True), 3.0)[0] > 10e9

    # the command line says the same before running anything
    assert bench.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "expect about" in first and "(--large: about" in first
    estimated = float(first.split(" GB of memory")[0].rsplit(" ", 1)[1])
    assert estimated <= 3.0 and "64M" not in out and "8M float32" in out
    assert bench.main(["--large", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "64M float32, 1 tensor" in out and "torch single" in out


def test_the_default_thread_counts_stay_two_on_a_big_machine():
    from adamkern.bench import cli

    def threads(*argv):
        return cli._threads(cli._parse(list(argv), "bench")[1], cores=64)

    assert threads() == threads("--quick") == [1, 64]
    assert threads("--large") == threads("--all") == list(range(1, 65))
    assert threads("--large", "--threads", "1", "8") == [1, 8]


_MEMORY_PROBE = """
import gc, os, sys
import torch  # imported first: its own memory is not the case's
from adamkern import bench

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def build(size, specs):
    case = bench.Case(size, 1, "float32")
    methods, built, rooflines = bench.build_loop(case, specs, {})
    return case, built, methods + list(rooflines.values())

loop = int(sys.argv[1])
specs = bench.groups(bench.select_methods())[loop]
build(4096, specs)  # torch's first optimizer step loads its kernels (~80 MB)
gc.collect()
before = resident()
case, built, methods = build(1 << 20, specs)
for m in methods:
    m.step()
print(resident() - before, bench.loop_bytes(case, built)[loop])
"""


@pytest.mark.parametrize("loop", [0, 1], ids=["float32 rows", "storage modes"])
def test_the_memory_estimate_covers_what_a_case_holds(loop):
    """The estimate of each timing loop of a case (the default rows on 1M float32 elements)
    against the resident memory its built and checked methods really hold, measured in a
    fresh process (in this one, memory other tests freed would be reused without growing the
    resident set)."""
    pytest.importorskip("torch")
    import os

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("needs /proc/self/statm")
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(loop)], capture_output=True,
                          text=True, check=True)
    held, estimated = map(float, done.stdout.split())
    assert 0.6 * estimated < held < 1.1 * estimated + 32e6, (held, estimated)


# -- how far to trust a run: wording and detection, on synthetic timings -----------------------

def test_ratios_in_words():
    from adamkern.bench.report import speed_words

    assert speed_words(1.25) == "1.25x faster"
    assert speed_words(1.0) == "1.00x faster"
    assert speed_words(0.35) == "2.86x slower"
    assert speed_words(0.02) == "50.00x slower"
    assert speed_words(0.0) == speed_words(float("nan")) == speed_words(float("inf")) == "-"


def _result(method, threads, median_s, roofline_s=None, times=None, others=None,
            size=1 << 24):
    roofline_s = roofline_s or median_s
    return bench.Result(size=size, threads=threads, dtype="float32", layout="tensor",
                        method=method, median_s=median_s, ns_per_element=median_s / size * 1e9,
                        gb_per_s=28 * size / median_s / 1e9, of_roofline=roofline_s / median_s,
                        adamkern_speedup=1.0, repetitions=len(times or [1]),
                        spread=trust.spread(times or [median_s] * 7), others_cpus=others)


def _case(threads, adamkern_s, roofline_s, others=None, times=None):
    rows = [_result("roofline", threads, roofline_s, roofline_s, others=others),
            _result("adamkern", threads, adamkern_s, roofline_s, times=times, others=others),
            _result("numpy", threads, 8 * adamkern_s, roofline_s, others=others)]
    for r in rows:
        r.adamkern_speedup = r.median_s / adamkern_s
    return rows


def test_a_quiet_run_has_no_flags():
    results = _case(1, 0.0090, 0.0088, others=0.01) + _case(2, 0.0085, 0.0083, others=0.02)
    trust.flag_results(results, cpus=2)
    assert all(r.flags == [] for r in results)
    lines = trust.verdict(results, cores=2, load_start=0.3, load_end=1.4)
    assert lines[0].startswith("No sign of interference")
    assert "!" not in bench.format_table(results) + bench.format_summary(results)


def test_a_loaded_run_is_flagged_in_the_table_and_the_summary():
    """The figures of a real run on a loaded 2-core machine: 244 ns/element at 2 threads
    against 0.53 at 1, "of roofline 1.96", adamkern "0.02x faster" than NumPy."""
    size = 1 << 24
    one = _case(1, 0.53e-9 * size, 0.50e-9 * size)
    two = _case(2, 244e-9 * size, 478e-9 * size, others=0.6,
                times=[200e-9 * size] * 5 + [244e-9 * size] * 5 + [900e-9 * size] * 5)
    two[2].median_s = 5e-9 * size  # numpy (one thread) was hardly disturbed
    two[2].adamkern_speedup = two[2].median_s / two[1].median_s
    results = one + two
    trust.flag_results(results, cpus=2)
    assert all(r.flags == [] for r in one)
    assert two[1].flags == ["busy", "threads", "roofline", "noisy"]
    assert two[0].flags == two[2].flags == ["busy", "threads", "roofline"]
    table = bench.format_table(results)
    assert "48.80x slower" in table and "0.02x faster" not in table
    assert "! busy, threads, roofline, noisy" in table
    summary = bench.format_summary(results)
    assert summary.splitlines()[0].split()[-1] == "flags"
    assert summary.splitlines()[2].endswith("! busy, noisy, roofline, threads")
    lines = trust.verdict(results, cores=2, load_start=3.1, load_end=4.0)
    text = "\n".join(lines)
    assert lines[0].startswith("WARNING: 1 of 2 case(s) ran while the machine was busy")
    assert "Load average 3.10 at the start and 4.00 at the end on 2 usable core(s)" in text
    assert "load average exceeded the usable cores" in text
    assert "threads, 1 case(s)" in text and "up to 0.6 CPU(s)" in text


def test_each_sign_alone_is_detected():
    def flags(**kwargs):
        rows = _case(1, 1.0, 1.0) + _case(2, **kwargs)
        trust.flag_results(rows, cpus=2)
        return sorted({f for r in rows for f in r.flags})

    assert flags(adamkern_s=0.6, roofline_s=0.6) == []
    assert flags(adamkern_s=0.6, roofline_s=0.6, others=0.5) == ["busy"]
    # one thread leaves the second CPU to the others; more than that is contention
    for others, expected in ((1.0, []), (1.5, ["busy"])):
        rows = _case(1, 1.0, 1.0, others=others)
        trust.flag_results(rows, cpus=2)
        assert rows[1].flags == expected
    assert flags(adamkern_s=1.3, roofline_s=1.3) == ["threads"]
    assert flags(adamkern_s=1.1, roofline_s=1.1) == []  # within THREADS_LIMIT
    assert flags(adamkern_s=0.6, roofline_s=0.9) == ["roofline"]
    assert flags(adamkern_s=0.6, roofline_s=0.6, times=[0.5] * 5 + [0.6] * 5 + [1.2] * 5) == \
        ["noisy"]
    # steps under a millisecond jitter that much on a quiet machine: not judged by spread
    assert flags(adamkern_s=2e-5, roofline_s=2e-5, times=[1e-5] * 5 + [2e-5] * 5 + [4e-5] * 5) \
        == []
    # the load average alone (no flag on any case) still makes the verdict a warning
    rows = _case(1, 1.0, 1.0)
    trust.flag_results(rows, cpus=2)
    assert trust.verdict(rows, cores=2, load_start=2.5, load_end=1.0)[0].startswith(
        "WARNING")


def test_spread_and_the_cpu_meter():
    assert trust.spread([1.0]) == 1.0
    assert trust.spread([1.0] * 9 + [100.0]) < 1.1  # one outlier is not noise
    assert trust.spread([1.0] * 5 + [2.0] * 5) > trust.SPREAD_LIMIT
    meter = trust.CpuMeter()
    meter.start()
    share = meter.stop()  # too short to mean anything
    assert share is None


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


def test_torch_loop(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from adamkern.bench import torchloop

    run, overhead = torchloop.run, torchloop.overhead
    monkeypatch.setattr(torchloop, "run", lambda **kw: run(
        **kw | dict(steps=2, warmup=1, width=16, layers=1, vocab=32, heads=2, sequence=4)))
    monkeypatch.setattr(torchloop, "overhead",
                        lambda **kw: overhead(**kw | dict(elements=100, steps=3)))
    out = tmp_path / "loop.json"
    assert bench.main(["--torch", "--threads", "1", "--no-progress", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| adamkern.torch.AdamW(state_dtype='bfloat16') | 1 |" in printed
    assert "beyond the kernel" in printed and "Summary" not in printed  # no Adam table
    report = json.loads(out.read_text())
    assert [r["optimizer"] for r in report["torch_loop"]][:2] == [
        "torch.optim.AdamW(fused=True)", "adamkern.torch.AdamW"]
    assert report["torch_loop"][0]["speedup"] == 1.0
    assert [c["tensors"] for c in report["torch_overhead"]] == [10, 150]


def test_a_wrong_method_is_caught():
    """Every benchmark checks its result before timing: a method that computes something
    else is an error, not a time."""

    def build(case, params, grads):
        p = [a.copy() for a in params]
        return bench.Method("wrong", lambda: None, lambda: [bench.concat(p)] * 3)

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
    import adamkern.bench.cuda  # noqa: F401  (leaves the package attribute set)

    monkeypatch.setitem(sys.modules, "adamkern.bench.cuda", None)  # import fails
    assert bench.main(["--device", "cuda"]) == 2
    assert "CUDA benchmark is not available" in capsys.readouterr().err


def test_device_cuda_calls_the_cuda_benchmark(monkeypatch):
    import adamkern.bench.cuda  # noqa: F401

    calls = []
    fake = type(sys)("adamkern.bench.cuda")
    fake.run = lambda argv=None, prog=None: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "adamkern.bench.cuda", fake)
    assert bench.main(["--device", "cuda", "--quick"]) == 0
    # its own options, which the CPU benchmark's would refuse (--sizes takes integers there)
    assert bench.main(["--device=cuda", "--sizes", "1M,64M"]) == 0
    assert calls == [["--quick"], ["--sizes", "1M,64M"]]


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


# -- command-line mistakes: one message on stderr, exit status 2, nothing written -----------------

def _user_error(capsys, call, *argv):
    with pytest.raises(SystemExit) as exit_info:
        call(list(argv))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err and err[0].startswith("usage:")
    assert [line for line in err if "error:" in line] == err[-1:]  # the usage, then one line
    return err[-1]


def test_plot_user_errors(tmp_path, capsys):
    from adamkern.__main__ import main

    missing = tmp_path / "missing" / "lr.png"
    message = _user_error(capsys, main, "plot", "constant(1e-3)", "--out", str(missing))
    assert "does not exist" in message and not missing.parent.exists()
    for steps in ("0", "-5", "ten"):
        message = _user_error(capsys, main, "plot", "constant(1e-3)", "--steps", steps,
                              "--out", str(tmp_path / "s.png"))
        assert "--steps" in message
    assert list(tmp_path.iterdir()) == []
    assert "is not a schedule" in _user_error(capsys, main, "plot", "1 + 2")
    assert "could not evaluate" in _user_error(capsys, main, "plot", "nope(1)")
    pytest.importorskip("matplotlib")
    assert "cannot write .txt" in _user_error(capsys, main, "plot", "constant(1e-3)", "--out",
                                              str(tmp_path / "lr.txt"))


def test_plot_says_the_file_it_wrote(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from adamkern.__main__ import main

    assert main(["plot", "constant(1e-3)", "--steps", "1", "--out", str(tmp_path / "lr")]) == 0
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'lr.png'}: ")


def test_bench_user_errors_stop_before_any_timing(tmp_path, capsys):
    for argv, expected in [(["--sizes", "0"], "--sizes"), (["--threads", "-1"], "--threads"),
                           (["--budget", "0"], "--budget"), (["--methods", "nope"], "nope"),
                           (["--plot", str(tmp_path / "no" / "b.png")], "does not exist"),
                           (["--json", str(tmp_path / "no" / "b.json")], "does not exist"),
                           (["--json", str(tmp_path)], "is a folder")]:
        assert expected in _user_error(capsys, bench.main, *argv)


def test_top_level_user_errors_and_version(capsys):
    from adamkern.__main__ import main

    assert "invalid choice" in _user_error(capsys, main, "benchmark")
    assert "required" in _user_error(capsys, main)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"adamkern {adamkern.__version__}\n"


def test_usage_names_the_program_as_it_was_started():
    from adamkern.__main__ import program_name

    assert program_name("/venv/bin/adamkern") == "adamkern"
    assert program_name("C:\\venv\\Scripts\\adamkern.exe".replace("\\", "/")) == "adamkern"
    assert program_name("/src/python/adamkern/__main__.py") == "python -m adamkern"
    assert program_name("") == "python -m adamkern"
    done = subprocess.run([sys.executable, "-m", "adamkern", "bench", "--help"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.startswith("usage: python -m adamkern bench")


def test_the_console_script_says_adamkern():
    import os
    import shutil

    script = shutil.which("adamkern", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the adamkern console script is not installed next to this Python")
    done = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("usage: adamkern ")
    done = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"adamkern {adamkern.__version__}"
    done = subprocess.run([script, "plot", "constant(1)", "--steps", "0"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 2 and "usage: adamkern plot" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("adamkern plot: error: argument "
                                                           "--steps")
