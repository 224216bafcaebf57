"""adamkern.history: recorded values against a NumPy recomputation (lr, grad norm before
clipping and unscaled, update norm, skipped steps), recording never changes the update, every=k,
log(), and the CSV / pandas / TensorBoard / plot exports."""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
import pytest

import adamkern
from adamkern import optim, schedules
from adamkern.history import History, plot_history


def make_params(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in [(17,), (4, 5), (1,)]]


def norm64(arrays):
    return math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_values_match_numpy(dtype, clip):
    params = make_params(dtype)
    lr = schedules.warmup_cosine_decay(0.0, 1e-2, 3, 20)
    opt = optim.AdamW([{"params": params[:2]}, {"params": params[2:], "lr": 5e-3}], lr=lr,
                      max_grad_norm=clip, history=True)
    scaler = adamkern.LossScaler(init_scale=8.0, growth_interval=1000)
    rng = np.random.default_rng(1)
    expected = []
    for call in range(12):
        grads = [(rng.standard_normal(p.shape) * 3).astype(dtype) for p in params]
        if call in (4, 9):
            grads[1][2, 3] = np.inf
        unscaled_norm = norm64(grads)
        scaled = [g * dtype(scaler.scale) for g in grads]
        before = [p.copy() for p in params]
        step_index = opt.step_count
        opt.step(scaled, scaler=scaler)
        diffs = [p - b for p, b in zip(params, before)]  # in the params' precision
        expected.append(dict(step=step_index, lr=lr(step_index), lr1=5e-3,
                             grad_norm=unscaled_norm, update_norm=norm64(diffs),
                             skipped=float(call in (4, 9))))
    h = opt.history
    assert len(h) == 12
    assert list(h.columns) == ["step", "lr", "lr/1", "grad_norm", "update_norm", "skipped"]
    np.testing.assert_array_equal(h["step"], [e["step"] for e in expected])
    np.testing.assert_array_equal(h["lr"], [e["lr"] for e in expected])
    np.testing.assert_array_equal(h["lr/1"], [e["lr1"] for e in expected])
    np.testing.assert_array_equal(h["skipped"], [e["skipped"] for e in expected])
    good = h["skipped"] == 0
    np.testing.assert_allclose(h["grad_norm"][good],
                               [e["grad_norm"] for e in expected if not e["skipped"]],
                               rtol=1e-12)
    assert not np.isfinite(h["grad_norm"][~good]).any()
    np.testing.assert_allclose(h["update_norm"], [e["update_norm"] for e in expected],
                               rtol=1e-12)
    assert (h["update_norm"][~good] == 0).all() and (h["update_norm"][good] > 0).all()
    # a skipped step leaves the step index: the next row repeats it
    assert h["step"][5] == h["step"][4] == 4
    if clip is not None:
        assert opt.last_grad_norm == pytest.approx(expected[-1]["grad_norm"], rel=1e-12)


def test_recording_does_not_change_the_update():
    runs = []
    for history in (False, True, History(update_norm=False, every=3)):
        params = make_params()
        opt = optim.Adam(params, lr=3e-3, max_grad_value=0.5, history=history)
        rng = np.random.default_rng(2)
        for _ in range(7):
            opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])
        runs.append([p.tobytes() for p in params])
        assert (opt.history is None) == (history is False)
    assert runs[0] == runs[1] == runs[2]


def test_off_by_default_and_stoppable():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    assert opt.history is None
    grads = [np.ones_like(p) for p in params]
    opt.step(grads)
    history = opt.record_history(grad_norm=False)
    assert opt.history is history
    opt.step(grads)
    opt.history = None
    opt.step(grads)
    assert len(history) == 1 and "grad_norm" not in history
    assert history["step"].tolist() == [1.0]
    np.testing.assert_allclose(history["update_norm"], [0.1 * norm64(grads)], rtol=1e-6)


def test_every_and_log():
    params = make_params()
    opt = optim.SGD(params, lr=0.1, history=History(every=3))
    grads = [np.ones_like(p) for p in params]
    for step in range(8):
        opt.step(grads)
        opt.history.log(loss=float(step))
    h = opt.history
    assert h["step"].tolist() == [0.0, 3.0, 6.0]
    assert h["loss"].tolist() == [0.0, 3.0, 6.0]  # calls that were not recorded log nothing
    assert len(h.rows) == 3 and h.rows[1]["step"] == 3.0
    with pytest.raises(ValueError, match="every"):
        History(every=0)
    with pytest.raises(ValueError, match="no step"):
        History().log(loss=1.0)
    with pytest.raises(KeyError, match="nope"):
        h["nope"]


def test_grad_norm_is_computed_once_per_step(monkeypatch):
    # with max_grad_norm the optimizer's own norm pass is reused: one grad_stats call a step
    from adamkern import ops

    calls = []
    real = ops._core.grad_stats
    monkeypatch.setattr(ops._core, "grad_stats", lambda g: calls.append(1) or real(g))
    params = make_params()
    opt = optim.Adam(params, max_grad_norm=10.0, history=History(update_norm=False))
    opt.step([np.ones_like(p) for p in params])
    assert len(calls) == 1 and opt.history["grad_norm"][0] == opt.last_grad_norm


def test_torch_optimizer_history():
    torch = pytest.importorskip("torch")
    import adamkern.torch as akt

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    opt = akt.SGD(model.parameters(), lr=0.05, momentum=0.9)
    history = opt.record_history()
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    expected = []
    for _ in range(5):
        opt.zero_grad()
        model(torch.randn(8, 6)).pow(2).mean().backward()
        grads = [p.grad.double() for p in model.parameters()]
        before = [p.detach().clone() for p in model.parameters()]
        lr = opt.param_groups[0]["lr"]
        opt.step()
        scheduler.step()
        expected.append((lr, torch.cat([g.flatten() for g in grads]).norm().item(),
                         torch.cat([(p.detach() - b).double().flatten()
                                    for p, b in zip(model.parameters(), before)]).norm().item()))
    assert history["step"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(history["lr"], [e[0] for e in expected])
    np.testing.assert_allclose(history["grad_norm"], [e[1] for e in expected], rtol=1e-6)
    np.testing.assert_allclose(history["update_norm"], [e[2] for e in expected], rtol=1e-6)
    # AMP's found_inf: the step is skipped and recorded as such
    opt.found_inf, opt.grad_scale = torch.tensor(1.0), torch.tensor(4.0)
    opt.step()
    del opt.found_inf, opt.grad_scale
    assert history["skipped"].tolist() == [0, 0, 0, 0, 0, 1]
    assert history["step"][-1] == 5 and history["update_norm"][-1] == 0


def test_to_csv(tmp_path):
    params = make_params(np.float64)
    opt = optim.RMSprop(params, history=True)
    for k in range(3):
        opt.step([np.full_like(p, 0.1 * (k + 1)) for p in params])
        opt.history.log(loss=1.0 / 3.0 + k)
    path = tmp_path / "history.csv"
    opt.history.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "lr", "grad_norm", "update_norm", "skipped", "loss"]
    table = np.array(rows[1:], dtype=np.float64)
    for j, name in enumerate(rows[0]):
        np.testing.assert_array_equal(table[:, j], opt.history[name])  # full precision


def test_to_pandas():
    pd = pytest.importorskip("pandas")
    opt = optim.SGD(make_params(), lr=0.1, history=True)
    opt.step([np.ones_like(p) for p in opt.params])
    frame = opt.history.to_pandas()
    assert isinstance(frame, pd.DataFrame) and frame["lr"].tolist() == [0.1]


def test_missing_extras_are_named(monkeypatch, tmp_path):
    history = History()
    history.append(step=0, lr=0.1)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"adamkern\[tuning\]"):
        history.to_pandas()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"adamkern\[tuning\]"):
        history.to_tensorboard(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"adamkern\[plot\]"):
        plot_history(history)


def test_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    try:
        from adamkern.history import _summary_writer

        _summary_writer()
    except ImportError:
        pytest.skip("no SummaryWriter (torch.utils.tensorboard or tensorboardX)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    opt = optim.Adam(make_params(), lr=schedules.exponential_decay(1e-3, 1, 0.5),
                     history=True)
    for _ in range(4):
        opt.step([np.ones_like(p) for p in opt.params])
    logdir = opt.history.to_tensorboard(tmp_path / "run")
    events = EventAccumulator(logdir)
    events.Reload()
    assert set(events.Tags()["scalars"]) >= {"optimizer/lr", "optimizer/grad_norm",
                                             "optimizer/update_norm", "optimizer/skipped"}
    lr = events.Scalars("optimizer/lr")
    assert [e.step for e in lr] == [0, 1, 2, 3]
    np.testing.assert_allclose([e.value for e in lr], [1e-3, 5e-4, 2.5e-4, 1.25e-4], rtol=1e-6)


def test_plot_history(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opt = optim.Adam(make_params(), history=True)
    scaler = adamkern.LossScaler()
    for k in range(6):
        grads = [np.ones_like(p) for p in opt.params]
        if k == 3:
            grads[0][0] = np.nan
        opt.step(grads, scaler=scaler)
        opt.history.log(loss=1.0 / (k + 1))
    fig = plot_history(opt.history, tmp_path / "h.png")
    assert len(fig.axes) == 4  # lr, grad_norm, update_norm, loss
    plt.close(fig)
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
    fig = opt.history.plot(columns=["lr"])
    assert len(fig.axes) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="columns"):
        plot_history(opt.history, columns=["nope"])
    with pytest.raises(TypeError, match="history"):
        plot_history({"lr": [1]})


def _history_with_a_skip():
    params = make_params()
    opt = optim.Adam(params, history=True)
    scaler = adamkern.LossScaler(init_scale=4.0)
    for k in range(4):
        grads = [np.ones_like(p) for p in params]
        if k == 2:
            grads[0][0] = np.inf
        opt.step(grads, scaler=scaler)
        opt.history.log(loss=0.5 / (k + 1))
    return opt.history


def test_step_and_skipped_are_integer_columns():
    h = _history_with_a_skip()
    assert h["step"].dtype == np.int64 and h["skipped"].dtype == np.int64
    assert h["step"].tolist() == [0, 1, 2, 2] and h["skipped"].tolist() == [0, 0, 1, 0]
    for name in ("lr", "grad_norm", "update_norm", "loss"):
        assert h[name].dtype == np.float64, name
    assert {name: a.dtype for name, a in h.as_dict().items()} == {
        "step": np.int64, "lr": np.float64, "grad_norm": np.float64,
        "update_norm": np.float64, "skipped": np.int64, "loss": np.float64}
    assert all(type(row["step"]) is int and type(row["skipped"]) is int for row in h.rows)
    # every=k and log() keep them integers
    opt = optim.SGD(make_params(), lr=0.1, history=History(every=2))
    for _ in range(5):
        opt.step([np.ones_like(p) for p in opt.params])
        opt.history.log(step=opt.step_count - 1, loss=1.0)
    assert opt.history["step"].dtype == np.int64 and opt.history["step"].tolist() == [0, 2, 4]


def test_integer_columns_by_hand():
    h = History()
    h.append(step=np.int32(3), lr=0.1, skipped=True)
    h.append(step=4.0, lr=1)  # a whole float is a step; a missing skipped is NaN
    assert h["step"].dtype == np.int64 and h["step"].tolist() == [3, 4]
    assert h["lr"].dtype == np.float64 and h["lr"].tolist() == [0.1, 1.0]
    skipped = h["skipped"]
    assert skipped.dtype == np.float64 and skipped[0] == 1 and math.isnan(skipped[1])
    h.append(step=4.5)  # not a whole number: kept, and the column is float64
    assert h["step"].dtype == np.float64 and h["step"].tolist() == [3.0, 4.0, 4.5]


def test_csv_writes_integers_for_step_and_skipped(tmp_path):
    h = _history_with_a_skip()
    path = tmp_path / "history.csv"
    h.to_csv(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    column = {name: [row[j] for row in body] for j, name in enumerate(header)}
    assert column["step"] == ["0", "1", "2", "2"] and column["skipped"] == ["0", "0", "1", "0"]
    assert column["lr"] == [repr(v) for v in h["lr"].tolist()]  # floats in full precision
    assert column["loss"] == ["0.5", "0.25", repr(0.5 / 3), "0.125"]
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(path)
    assert frame["step"].dtype == np.int64 and frame["skipped"].dtype == np.int64


def test_to_pandas_dtypes():
    pd = pytest.importorskip("pandas")
    frame = _history_with_a_skip().to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert frame.dtypes.to_dict() == {
        "step": np.int64, "lr": np.float64, "grad_norm": np.float64,
        "update_norm": np.float64, "skipped": np.int64, "loss": np.float64}


def test_torch_optimizer_history_integer_columns():
    torch = pytest.importorskip("torch")
    import adamkern.torch as akt

    model = torch.nn.Linear(3, 2)
    opt = akt.AdamW(model.parameters())
    history = opt.record_history()
    for _ in range(2):
        opt.zero_grad()
        model(torch.ones(4, 3)).sum().backward()
        opt.step()
    assert history["step"].dtype == np.int64 and history["step"].tolist() == [0, 1]
    assert history["skipped"].dtype == np.int64 and history["skipped"].tolist() == [0, 0]
