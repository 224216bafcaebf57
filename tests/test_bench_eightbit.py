"""bitsandbytes' and torchao's 8-bit CPU AdamW as rows of ``python -m adamkern bench``: chosen
by --8bit (or by name), timed beside the storage modes against the roofline of their storage
(float32 params, 8-bit state), and skipped with the reason when the library is missing or
refuses CPU tensors. The libraries are optional: stand-ins test the plumbing, the real ones
run where they are installed."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

from adamkern import bench
from adamkern.bench import eightbit

ROWS = ["bitsandbytes 8bit", "torchao 8bit"]
TINY = ["--sizes", "4096", "--threads", "1", "--budget", "0.05", "--no-progress", "--no-plot"]
INT8_ROOFLINE = "roofline, fp32 params, int8 state"


@pytest.fixture(autouse=True)
def _fresh_reasons(monkeypatch):
    """Each test finds out afresh whether a library can run (the reasons are kept per
    process)."""
    monkeypatch.setattr(eightbit, "_REASONS", {})


def _rows(capsys):
    text = capsys.readouterr().out
    modes = text.split("Lower-precision storage")[1] if "Lower-precision" in text else ""
    return text, {line.split("  ")[0]: line for line in modes.splitlines()
                  if line.startswith(tuple(ROWS))}


def test_the_rows_run_only_with_8bit_or_by_name(capsys):
    assert not set(ROWS) & {s.name for s in bench.select_methods(large=True)}
    assert set(ROWS) <= {s.name for s in bench.select_methods(opt_in=True)}
    assert set(ROWS) <= {s.name for s in bench.select_methods(quick=True, opt_in=True)}
    assert bench.main(["--quick", "--dry-run"]) == 0
    assert "bitsandbytes" not in capsys.readouterr().out
    assert bench.main(["--quick", "--8bit", "--dry-run"]) == 0
    assert "bitsandbytes 8bit, torchao 8bit" in capsys.readouterr().out
    assert bench.main(["--quick", "--8bit", "--no-torch", "--dry-run"]) == 0
    assert "8bit" not in capsys.readouterr().out.split("methods:")[1]
    assert bench.main(["--dry-run", "--sizes", "4096", "--methods", "torchao 8bit"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "  methods: roofline, adamkern, torchao 8bit"


def test_a_missing_library_is_skipped_with_the_reason(capsys, monkeypatch):
    for module in ("bitsandbytes", "bitsandbytes.optim", "torchao", "torchao.optim"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails
    assert bench.main(TINY + ["--8bit", "--methods", "adamkern int8 state"]) == 0
    text, rows = _rows(capsys)
    assert rows == {}
    for name in ("bitsandbytes", "torchao"):
        assert (f"skipped {name} 8bit: {name} is not installed" in text
                or f"skipped {name} 8bit: torch is not installed" in text)


class _RefusesCpu:
    def __init__(self, params, **options):
        self.state = {}

    def step(self):
        raise RuntimeError("8-bit optimizers need a CUDA device\nmore detail")


def test_a_library_that_refuses_cpu_tensors_is_skipped_with_the_reason(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "bitsandbytes.optim",
                        types.SimpleNamespace(AdamW8bit=_RefusesCpu))
    assert bench.main(TINY + ["--methods", "bitsandbytes 8bit"]) == 0
    text, rows = _rows(capsys)
    assert rows == {}
    assert ("skipped bitsandbytes 8bit: bitsandbytes 8bit refused CPU tensors: RuntimeError: "
            "8-bit optimizers need a CUDA device\n") in text


def _float32_stand_in():
    """A torchao.optim whose AdamW8bit is torch's AdamW (float32 state, as torchao keeps
    small tensors): the row's plumbing without torch.compile."""
    import torch

    class AdamW8bit(torch.optim.AdamW):
        def __init__(self, params, block_size=256, **options):
            super().__init__(params, foreach=False, **options)
    return types.SimpleNamespace(AdamW8bit=AdamW8bit)


def test_a_row_restarts_after_its_first_step_and_is_judged_against_the_int8_roofline(
        tmp_path, capsys, monkeypatch):
    """The builder's first step (where torchao compiles, or a library refuses CPU tensors)
    is undone: the checked step starts from the same params as adamkern's. The row's figures
    come from the storage loop, against the roofline of float32 params with 8-bit state."""
    pytest.importorskip("torch")
    monkeypatch.setitem(sys.modules, "torchao.optim", _float32_stand_in())
    out = tmp_path / "bench.json"
    assert bench.main(TINY + ["--methods", "torchao 8bit", "torch fused", "--json",
                              str(out)]) == 0
    _, rows = _rows(capsys)
    assert list(rows) == ["torchao 8bit"]
    result = next(r for r in json.loads(out.read_text())["results"]
                  if r["method"] == "torchao 8bit")
    assert result["roofline"] == INT8_ROOFLINE and result["of_roofline"] > 0
    assert result["vs_torch_fused"] > 0 and result["adamkern_speedup"] > 0


def test_the_check_compares_params_and_decoded_moments():
    import numpy as np

    from adamkern import lowp

    expected = [np.linspace(-1, 1, 1000, dtype=np.float32)] * 3
    gap = float(np.diff(lowp.dynamic_map(True)).max())  # the 8-bit map's widest step
    assert eightbit._decoded_close([e.copy() for e in expected], expected)
    moved = [e.copy() for e in expected]
    moved[0][3] += 1e-3  # params: only a few ULP from adamkern's
    assert not eightbit._decoded_close(moved, expected)
    coarse = [expected[0].copy(), expected[1] + 0.5 * gap, expected[2].copy()]
    assert eightbit._decoded_close(coarse, expected)  # moments: within the map's resolution
    coarse[2][0] += 2 * gap
    assert not eightbit._decoded_close(coarse, expected)


def _quiet_import(name):
    from adamkern.bench.rows import quietly

    with quietly():
        return importlib.import_module(name)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="bitsandbytes is not installed")
def test_bitsandbytes_on_cpu(capsys):
    pytest.importorskip("torch")
    assert bench.main(TINY + ["--methods", "bitsandbytes 8bit", "adamkern int8 state"]) == 0
    text, rows = _rows(capsys)
    if "skipped bitsandbytes 8bit" in text:  # this build refuses CPU tensors: said, not hidden
        assert "refused CPU tensors" in text
        return
    assert list(rows) == ["bitsandbytes 8bit"]
    assert float(rows["bitsandbytes 8bit"].split()[2]) == pytest.approx(16.06, abs=0.01)


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None,
                    reason="torchao is not installed")
def test_torchao_state_decodes():
    """torchao's 8-bit state decodes to float32 values (its step is not run here: it
    compiles for tens of seconds)."""
    torch = pytest.importorskip("torch")
    subclass = _quiet_import("torchao.optim.subclass_8bit")
    state = subclass.OptimState8bit.zeros((4096,), signed=True, block_size=256)
    plain = torch.arange(8, dtype=torch.float32)
    assert eightbit._torchao_state({"exp_avg": state}, 1).tolist() == [0.0] * 4096
    assert eightbit._torchao_state({"exp_avg_sq": plain}, 2).tolist() == list(range(8))
