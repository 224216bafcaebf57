"""The Python examples in python/examples run and do what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "python" / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_mlp_learns(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    losses = load("train_mlp").main(["--steps", "200", "--plot", str(tmp_path / "loss.png")])
    assert losses[-1] < 0.2 * losses[0]
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert "checkpoint:" in capsys.readouterr().out


def test_torch_adamw_gives_torchs_losses():
    pytest.importorskip("torch")
    assert load("torch_adamw").main(["--steps", "20", "--hidden", "128"])
