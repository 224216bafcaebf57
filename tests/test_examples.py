"""The Python examples in python/examples run and do what they say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
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


def test_train_mlp_trains_with_every_optimizer(capsys):
    example = load("train_mlp")
    finals = example.main(["--optimizer", "all"])  # 600 steps each, about 2 s in all
    assert set(finals) == set(example.OPTIMIZERS)
    start = np.log(3)  # the loss of a uniform guess over the three classes
    assert all(np.isfinite(loss) and loss < 0.2 * start for loss in finals.values()), finals
    table = capsys.readouterr().out
    assert all(f"| {name} | {finals[name]:.4f} |" in table for name in finals)


def test_train_mlp_with_another_optimizer_keeps_its_checkpoint(capsys):
    losses = load("train_mlp").main(["--optimizer", "lion", "--steps", "50"])
    assert len(losses) == 50 and np.isfinite(losses).all()
    out = capsys.readouterr().out
    assert "final loss" in out and "checkpoint:" in out and "step_count 50" in out


def test_torch_adamw_gives_torchs_losses(capsys):
    pytest.importorskip("torch")
    assert load("torch_adamw").main(["--steps", "20", "--hidden", "128"]) == 0
    out = capsys.readouterr().out
    assert "losses and the final weights identical: True" in out and "interleaved" in out


def test_torch_adamw_fails_when_the_optimizers_differ(monkeypatch, capsys):
    torch = pytest.importorskip("torch")
    example = load("torch_adamw")
    monkeypatch.setattr(example, "ours",
                        lambda params: torch.optim.AdamW(params, lr=1.1e-3, fused=True))
    assert example.main(["--steps", "5", "--hidden", "32"]) == 1
    captured = capsys.readouterr()
    assert "identical: False" in captured.out
    assert "differ at the loss of step 2" in captured.err


def test_lr_range_test_example(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    result = load("lr_range_test").main(["--steps", "60", "--train-steps", "30",
                                         "--plot", str(tmp_path / "range.png")])
    assert 1e-4 < result.suggestion < 2.0 and result.diverged
    assert (tmp_path / "range.png").read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "suggested lr" in out and "train accuracy" in out


def test_search_mlp_example(capsys):
    result = load("search_mlp").main(["--trials", "4", "--epochs", "3", "--steps-per-epoch", "5",
                                      "--seed", "3"])
    assert len(result.trials) == 4 and result.best.metric < result.ranked()[-1].metric
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["trial", "lr", "weight_decay"] and "best:" in out
