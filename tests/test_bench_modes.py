"""The lower-precision rows of ``python -m adamkern bench``: every storage mode timed in one loop
beside float32 adamkern and torch fused, each judged against its own roofline (``roofline_`` on
arrays of its storage), and the checks that stop a wrong mode or roofline before any timing.
Tiny sizes: each run takes well under a second of timing."""

from __future__ import annotations

import json

import numpy as np
import pytest

import adamkern
from adamkern import bench, lowp
from adamkern.bench import report, storage, table, trust

# the storage modes the default run reports (DESIGN.md's performance contract)
SIX = ["adamkern bf16 state", "adamkern int8 state", "adamkern bf16 params+state",
       "adamkern bf16 master", "adamkern fp16 master", "adamkern bf16 stochastic"]
TINY = ["--sizes", "4096", "--threads", "1", "--budget", "0.05", "--no-progress", "--no-plot"]


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_default_run_has_the_six_modes_and_large_adds_bf16_params():
    default = [s.name for s in bench.select_methods()]
    assert all(name in default for name in SIX)
    assert all(name in [s.name for s in bench.select_methods(quick=True)] for name in SIX)
    assert "adamkern bf16 params" not in default
    assert "adamkern bf16 params" in [s.name for s in bench.select_methods(large=True)]
    assert [s.name for s in bench.select_methods(["adamkern bf16 params"])] == \
        ["roofline", "adamkern", "adamkern bf16 params"]


def test_bytes_moved_and_held_per_mode():
    """The traffic of DESIGN.md (bf16 state 20 B/element, 8-bit state ~16, bf16 params + bf16
    state 14) and the bytes the buffers really occupy."""
    moved = {"adamkern bf16 state": 20, "adamkern int8 state": 16 + 16 / 256,
             "adamkern bf16 params": 22, "adamkern bf16 params+state": 14,
             "adamkern bf16 master": 28, "adamkern fp16 master": 28,
             "adamkern bf16 stochastic": 14}
    assert set(moved) == set(bench.LOWP_MODES)
    size = 4 * lowp.BLOCK_SIZE
    params, grads = bench.Case(size, 1, "float32").initial()
    for label, mode in bench.LOWP_MODES.items():
        assert mode.bytes_moved() == pytest.approx(moved[label]), label
        buffers = storage.buffers(mode, params, grads)
        held = sum(x.nbytes for xs in buffers if xs is not None for x in xs)
        assert held == pytest.approx(mode.bytes_held() * size), label


def test_each_roofline_is_roofline_on_arrays_of_its_storage(monkeypatch):
    """The roofline of a mode calls roofline_ with arrays of the mode's dtypes (8-bit state,
    master weights included), filled with random, not constant, values."""
    calls = []
    real = adamkern._core.roofline_
    monkeypatch.setattr(adamkern._core, "roofline_", lambda *a: calls.append(a) or real(*a))
    case = bench.Case(4096, 1, "float32")
    params, grads = case.initial()
    for label, mode in bench.LOWP_MODES.items():
        method = storage.build_roofline(mode, case, params, grads)
        expected = storage.buffers(mode, params, grads)
        calls.clear()
        method.step()
        ((p, g, m, v, w),) = calls
        assert [p[0].dtype, g[0].dtype] == [expected.params[0].dtype, expected.grads[0].dtype]
        assert (w is None) == (not mode.master) and (w is None or w[0].dtype == np.float32)
        for got, want in ((m[0], expected.exp_avgs[0]), (v[0], expected.exp_avg_sqs[0])):
            assert type(got) is type(want), label
            codes = got.codes if isinstance(got, lowp.Blockwise8) else got
            assert codes.dtype == (want.codes if isinstance(want, lowp.Blockwise8)
                                   else want).dtype
            assert len(np.unique(codes.view(np.uint8))) > 64, label  # random, not constant


def test_every_mode_passes_its_bitwise_check_on_several_tensors():
    """Two steps of each mode against the float32 op on decoded values, rounded back (the
    stochastic mode: with the documented hash), over tensors that end inside a block."""
    params = [np.random.default_rng(k).standard_normal(n).astype(np.float32)
              for k, n in enumerate((300, 1000, 17))]
    grads = [np.random.default_rng(9 + k).standard_normal(p.size).astype(np.float32)
             for k, p in enumerate(params)]
    for label, mode in bench.LOWP_MODES.items():
        storage.check_mode(label, mode, params, grads)  # raises if a bit differs


def test_a_wrong_mode_or_roofline_stops_the_run_before_timing(monkeypatch):
    case = bench.Case(4096, 1, "float32")
    params, grads = case.initial()
    mode = bench.LOWP_MODES["adamkern bf16 stochastic"]
    with monkeypatch.context() as patch:
        patch.setattr(storage, "_step", lambda mode, buffers, **options: None)
        with pytest.raises(RuntimeError, match="disagrees with the float32 op"):
            storage.check_mode("adamkern bf16 stochastic", mode, params, grads)
    monkeypatch.setattr(adamkern._core, "roofline_", lambda *arrays: None)
    with pytest.raises(RuntimeError, match="roofline of bf16 params, bf16 state wrote wrong"):
        storage.build_roofline(mode, case, params, grads)


def _fake_interleave(loops):
    """An interleave that records each loop's methods and gives method k of a loop the
    repetitions (k + 1, k + 2, k + 3) ms: median k + 2 ms."""
    def interleave(methods, budget_s, min_reps=5, max_reps=1000):
        loops.append([m.name for m in methods])
        for k, m in enumerate(methods):
            m.times = [1e-3 * (k + 1), 1e-3 * (k + 3), 1e-3 * (k + 2)]
    return interleave


def test_the_modes_loop_and_the_fractions_from_its_medians(monkeypatch):
    """The modes, their rooflines (one per storage: stochastic rounding shares the bf16
    params + state roofline), adamkern and torch fused are one interleaved loop; each mode's
    figures are ratios of that loop's medians."""
    torch = _have_torch()
    loops: list = []
    monkeypatch.setattr(table, "interleave", _fake_interleave(loops))
    names = SIX + (["torch fused"] if torch else [])
    results = bench.run([4096], [1], methods=names, budget_s=0.01, progress=False)
    main, modes = loops
    assert not set(SIX) & set(main) and set(SIX) <= set(modes)
    rooflines = {f"roofline, {bench.LOWP_MODES[n].describe()}" for n in SIX}
    assert len(rooflines) == 5 and rooflines <= set(modes)
    assert ("torch fused" in modes) == torch and "adamkern" in modes
    median = {name: 1e-3 * (k + 2) for k, name in enumerate(modes)}
    rows = {r.method: r for r in results if r.roofline != "roofline"}
    assert list(rows) == SIX
    for name, r in rows.items():
        mode = bench.LOWP_MODES[name]
        assert r.roofline == f"roofline, {mode.describe()}"
        assert r.median_s == pytest.approx(median[name])
        assert r.of_roofline == pytest.approx(median[r.roofline] / median[name])
        assert r.adamkern_speedup == pytest.approx(median[name] / median["adamkern"])
        assert r.gb_per_s == pytest.approx(mode.bytes_moved() * 4096 / median[name] / 1e9)
        assert r.vs_torch_fused == (pytest.approx(median["torch fused"] / median[name])
                                    if torch else None)


def test_the_modes_table_and_json(tmp_path, capsys):
    """A real run: one row per mode in the lower-precision table, with its figures."""
    out = tmp_path / "bench.json"
    assert bench.main(TINY + ["--json", str(out), "--methods", *SIX, "torch fused"]) == 0
    text = capsys.readouterr().out
    table = text.split("Lower-precision storage")[1]
    header = next(line for line in table.splitlines() if line.startswith("mode "))
    assert header.split()[:4] == ["mode", "bytes/elem", "ns/elem", "of"]
    assert "of its roofline  vs fp32 adamkern  vs torch fused" in header
    lines = {name: next(line for line in table.splitlines() if line.startswith(name + " "))
             for name in SIX}
    data = json.loads(out.read_text())
    rows = {r["method"]: r for r in data["results"]}
    for name, line in lines.items():
        r = rows[name]
        cells = line[len(name):].split()
        assert float(cells[0]) == pytest.approx(bench.LOWP_MODES[name].bytes_moved(), abs=0.01)
        assert float(cells[1]) == pytest.approx(r["ns_per_element"], abs=1e-3)
        assert float(cells[2]) == pytest.approx(r["of_roofline"], abs=0.01) and r["of_roofline"] > 0
        assert r["roofline"] == f"roofline, {bench.LOWP_MODES[name].describe()}"
        assert (r["vs_torch_fused"] is not None) == _have_torch()


def test_without_torch_the_modes_have_no_torch_column(capsys):
    assert bench.main(TINY + ["--no-torch", "--methods", "adamkern bf16 state",
                              "torch fused"]) == 0
    text = capsys.readouterr().out
    line = next(line for line in text.split("Lower-precision storage")[1].splitlines()
                if line.startswith("adamkern bf16 state "))
    assert line.split()[-1] == "-" and "\ntorch fused " not in text  # no torch row


def test_float64_cases_skip_the_modes_with_the_reason(capsys):
    assert bench.main(TINY + ["--dtype", "float64", "--methods", "adamkern bf16 state"]) == 0
    text = capsys.readouterr().out
    assert "skipped adamkern bf16 state: the storage modes compute in float32" in text
    assert "Lower-precision storage" not in text


def test_the_memory_of_the_modes_loop():
    """One roofline per storage: the stochastic mode adds its own buffers, not a roofline;
    float64 cases hold no modes loop."""
    case = bench.Case(1 << 20, 1, "float32")
    specs = bench.select_methods(["adamkern bf16 params+state"])
    more = bench.select_methods(["adamkern bf16 params+state", "adamkern bf16 stochastic"])
    added = bench.loop_bytes(case, more)[1] - bench.loop_bytes(case, specs)[1]
    assert added == case.size * bench.LOWP_MODES["adamkern bf16 stochastic"].bytes_held()
    assert bench.loop_bytes(bench.Case(1 << 20, 1, "float64"), more)[1] == 0


def _row(method, roofline="roofline", of_roofline=0.9, speedup=1.0, threads=1, others=None):
    return table.Result(size=1 << 20, threads=threads, dtype="float32", layout="tensor",
                      method=method, median_s=1.0, ns_per_element=1.0, gb_per_s=1.0,
                      of_roofline=of_roofline, adamkern_speedup=speedup, others_cpus=others,
                      roofline=roofline)


def test_a_storage_row_is_flagged_by_its_own_loop_and_roofline():
    own = "roofline, bf16 params, bf16 state"
    results = [_row("roofline", of_roofline=1.0), _row("adamkern"),
               _row("adamkern bf16 params+state", own, of_roofline=1.3),
               _row("adamkern bf16 state", "roofline, fp32 params, bf16 state")]
    trust.flag_results(results, cpus=2)
    assert [r.flags for r in results] == [[], [], ["roofline"], []]
    # a disturbed storage loop: others took the CPU, adamkern ran slower there at 2 threads
    results = [_row("adamkern"), _row("adamkern", threads=2, speedup=1.0),
               _row("adamkern bf16 state", own, threads=2, speedup=0.5, others=1.0)]
    trust.flag_results(results, cpus=2)
    assert [r.flags for r in results] == [[], [], ["busy", "threads"]]
    assert "! busy, threads" in report.format_modes(results)
