"""The optimizers' recorder interface (adamkern.history.Recorder, StepRecord; add_recorder,
remove_recorder, recorders, recording_paused): what a user's recorder receives and when, on
adamkern.optim and adamkern.torch optimizers, and that removing or pausing it stops the calls."""

from __future__ import annotations

import math

import numpy as np
import pytest

import adamkern
from adamkern import optim
from adamkern.history import History, Recorder, StepRecord


def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in [(17,), (4, 5)]]


def norm64(arrays):
    return math.sqrt(sum(float((a.astype(np.float64) ** 2).sum()) for a in arrays))


class Calls(Recorder):
    """Every call, in order, with what the params held at on_update."""

    def __init__(self, wants_norm=False):
        self.wants_norm = wants_norm
        self.calls = []

    def on_step_begin(self):
        self.calls.append(("begin",))
        return self.wants_norm

    def on_update(self, params):
        self.calls.append(("update", params, [p.copy() for p in params]))

    def on_step_end(self, record):
        self.calls.append(("end", record))

    def kinds(self):
        return [call[0] for call in self.calls]

    def records(self):
        return [call[1] for call in self.calls if call[0] == "end"]


def test_a_recorder_is_called_in_order_with_the_step_record():
    params = make_params()
    lrs = [1e-2, 3e-3]
    opt = optim.AdamW([{"params": params[:1]}, {"params": params[1:], "lr": lrs[1]}],
                      lr=lambda step: lrs[0] / (step + 1))
    recorder = opt.add_recorder(Calls(wants_norm=True))
    rng = np.random.default_rng(1)
    for step in range(3):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
        before = [p.copy() for p in params]
        opt.step(grads)
        begin, update, end = recorder.calls[3 * step:3 * step + 3]
        assert (begin[0], update[0], end[0]) == ("begin", "update", "end")
        assert update[1] == opt.params and all(map(np.array_equal, update[2], before))
        record = end[1]
        assert isinstance(record, StepRecord)
        assert record.step == step and not record.skipped
        assert record.lrs == [lrs[0] / (step + 1), lrs[1]]
        assert record.grad_norm == pytest.approx(norm64(grads), rel=1e-12)
        assert all(r is p for r, p in zip(record.params, params))  # after the update
    assert opt.step_count == 3


def test_the_grad_norm_is_computed_only_when_wanted():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    quiet, curious = opt.add_recorder(Calls()), Calls(wants_norm=True)
    grads = [np.ones_like(p) for p in params]
    opt.step(grads)
    assert quiet.records()[0].grad_norm is None
    opt.add_recorder(curious)
    opt.step(grads)
    assert quiet.records()[1].grad_norm == curious.records()[0].grad_norm == norm64(grads)
    # with clipping, the record has the norm before clipping (computed for the clipping anyway)
    clipped = optim.SGD(make_params(), lr=0.1, max_grad_norm=1.0)
    recorder = clipped.add_recorder(Calls())
    clipped.step([np.ones_like(p) for p in params])
    assert recorder.records()[0].grad_norm == clipped.last_grad_norm == norm64(grads)


def test_a_skipped_step_is_recorded_without_an_update():
    params = make_params()
    opt = optim.Adam(params)
    recorder = opt.add_recorder(Calls())
    scaler = adamkern.LossScaler(init_scale=4.0)
    grads = [np.ones_like(p) for p in params]
    opt.step(grads, scaler=scaler)
    grads[1][0, 0] = np.nan
    before = [p.copy() for p in params]
    opt.step(grads, scaler=scaler)
    assert recorder.kinds() == ["begin", "update", "end", "begin", "end"]
    record = recorder.records()[1]
    assert record.skipped and record.step == 1 and math.isnan(record.grad_norm)
    assert all(map(np.array_equal, params, before)) and opt.step_count == 1


def test_a_failed_step_calls_no_on_step_end():
    params = make_params()
    opt = optim.Adam(params)
    recorder = opt.add_recorder(Calls())
    with pytest.raises(ValueError, match="grads"):
        opt.step([np.ones(3, np.float32), np.ones((4, 5), np.float32)])
    assert "end" not in recorder.kinds()
    opt.step([np.ones_like(p) for p in params])
    assert recorder.kinds()[-1] == "end" and recorder.records()[0].step == 0


def test_a_callable_recorder_and_its_removal():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    records = []

    def callback(record):
        records.append(record)

    assert opt.add_recorder(callback) is callback
    grads = [np.ones_like(p) for p in params]
    opt.step(grads)
    assert [r.step for r in records] == [0] and opt.recorders == (callback,)
    opt.remove_recorder(callback)
    opt.step(grads)
    assert len(records) == 1 and opt.recorders == ()


def test_removing_a_recorder_stops_its_calls():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    first, second = opt.add_recorder(Calls()), opt.add_recorder(Calls())
    assert opt.recorders == (first, second)
    grads = [np.ones_like(p) for p in params]
    opt.step(grads)
    opt.remove_recorder(first)
    opt.step(grads)
    assert len(first.calls) == 3 and len(second.calls) == 6
    with pytest.raises(ValueError, match="not a recorder"):
        opt.remove_recorder(first)
    with pytest.raises(ValueError, match="already"):
        opt.add_recorder(second)
    with pytest.raises(TypeError, match="Recorder"):
        opt.add_recorder("not a recorder")
    assert opt.recorders == (second,)


def test_history_is_one_recorder():
    params = make_params()
    opt = optim.SGD(params, lr=0.1)
    mine = opt.add_recorder(Calls())
    history = opt.record_history()
    assert opt.recorders == (mine, history) and opt.history is history
    opt.remove_recorder(history)
    assert opt.history is None and opt.recorders == (mine,)
    opt.history = history
    replacement = History()
    opt.history = replacement  # takes the place of the previous one
    assert opt.recorders == (mine, replacement)
    opt.history = None
    assert opt.recorders == (mine,)


def test_recording_paused():
    params = make_params()
    opt = optim.SGD(params, lr=0.1, history=True)
    history = opt.history
    recorder = opt.add_recorder(Calls())
    grads = [np.ones_like(p) for p in params]
    with opt.recording_paused():
        assert opt.history is None and opt.recorders == ()
        opt.step(grads)
    assert opt.history is history and opt.recorders == (history, recorder)
    assert recorder.calls == [] and len(history) == 0 and opt.step_count == 1
    opt.step(grads)
    assert recorder.records()[0].step == 1 and history["step"].tolist() == [1]


def test_a_recorder_does_not_change_the_update():
    runs = []
    for recorded in (False, True):
        params = make_params()
        opt = optim.AdamW(params, max_grad_value=0.5)
        if recorded:
            opt.add_recorder(Calls(wants_norm=True))
        rng = np.random.default_rng(2)
        for _ in range(4):
            opt.step([rng.standard_normal(p.shape).astype(np.float32) for p in params])
        runs.append([p.tobytes() for p in params])
    assert runs[0] == runs[1]


def test_torch_optimizer_recorders():
    torch = pytest.importorskip("torch")
    import adamkern.torch as akt

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = akt.SGD(model.parameters(), lr=0.05, momentum=0.9)
    recorder = opt.add_recorder(Calls(wants_norm=True))
    records = []
    opt.add_recorder(records.append)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(5, 4)).pow(2).mean().backward()
        grads = [p.grad.double() for p in model.parameters()]
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        update, end = recorder.calls[-2:]
        assert update[0] == "update" and end[0] == "end"
        assert all(np.array_equal(seen, b.numpy()) for seen, b in zip(update[2], before))
        record = end[1]
        assert record.step is None and not record.skipped and record.lrs == [0.05]
        assert record.grad_norm == pytest.approx(
            torch.cat([g.flatten() for g in grads]).norm().item(), rel=1e-6)
        for array, p in zip(record.params, model.parameters()):  # views of the params
            assert np.shares_memory(array, p.detach().numpy())
    assert records == recorder.records()
    # AMP's found_inf: recorded as skipped, with no update
    opt.found_inf, opt.grad_scale = torch.tensor(1.0), torch.tensor(2.0)
    opt.step()
    assert recorder.kinds()[-2:] == ["begin", "end"] and recorder.records()[-1].skipped
    del opt.found_inf, opt.grad_scale
    opt.remove_recorder(recorder)
    with opt.recording_paused():
        opt.step()
    assert len(records) == 3
    opt.step()
    assert len(recorder.records()) == 3 and len(records) == 4
