"""Tests of observers.progress: the per-epoch table and the tqdm bars."""

from __future__ import annotations

from typing import ClassVar

import pytest
import tqdm

from engine.exceptions import CancelEpochException
from engine.exceptions import CancelTrainException
from observers.metrics import Metrics
from observers.progress import Progress
from observers.progress import format_value


def _table(text):
    return [line.split() for line in text.splitlines() if line.strip()]


def test_table_without_a_terminal(make_learner, log_capture, capsys):
    progress = Progress()
    make_learner([Metrics(), progress, log_capture]).fit(2)
    out, err = capsys.readouterr()
    assert not progress.use_bar  # capsys's stderr is no terminal
    assert err == ""
    header, *rows = _table(out)
    assert header == list(log_capture.logs[0])
    assert header[0] == "epoch"
    assert len(rows) == 2
    for row, log in zip(rows, log_capture.logs):
        assert row == [format_value(value) for value in log.values()]
    assert rows[1][0] == "1"


def test_missing_values_show_as_dash(make_learner, make_data, capsys):
    make_learner([Metrics(), Progress()], data=make_data(valid=False)).fit(1)
    header, row = _table(capsys.readouterr().out)
    assert row[header.index("valid_loss")] == "-"
    assert row[header.index("valid_accuracy")] == "-"


def test_header_repeated_when_the_keys_change(make_learner, capsys):
    class Extra:
        name = "extra"
        order = 0

        def after_epoch(self, learner):
            if learner.epoch == 1:
                learner.log["extra"] = 1.5

    make_learner([Extra(), Progress()]).fit(3)
    lines = _table(capsys.readouterr().out)
    assert lines == [["epoch"], ["0"], ["epoch", "extra"], ["1", "1.5"], ["epoch"], ["2"]]


def test_format_value():
    assert format_value(None) == "-"
    assert format_value(3) == "3"
    assert format_value(True) == "True"
    assert format_value(0.123456) == "0.1235"
    assert format_value(2.302585) == "2.303"
    assert format_value(1.23456e-5) == "1.235e-05"
    assert format_value(float("nan")) == "nan"
    assert format_value("x") == "x"


class _RecordingTqdm(tqdm.tqdm):
    created: ClassVar[list[tqdm.tqdm]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _RecordingTqdm.created.append(self)


@pytest.fixture
def bars(monkeypatch):
    _RecordingTqdm.created = []
    monkeypatch.setattr(tqdm, "tqdm", _RecordingTqdm)
    return _RecordingTqdm.created


def test_bar_per_pass_with_loss_and_rows(make_learner, bars, capsys):
    progress = Progress(bar=True)
    make_learner([Metrics(), progress]).fit(2)
    out = capsys.readouterr().out
    assert progress.use_bar
    overall, *passes = bars
    assert (overall.desc, overall.total, overall.n, overall.leave) == ("epochs", 2, 2, True)
    assert [bar.desc for bar in passes] == ["train", "valid"] * 2
    assert [bar.total for bar in passes] == [7, 2] * 2
    assert [bar.n for bar in passes] == [7, 2] * 2
    assert all("loss=" in bar.postfix for bar in passes)
    assert not any(bar.leave for bar in passes)
    assert all(bar.disable for bar in bars)  # tqdm sets disable when closed
    assert len(_table(out)) == 3  # header and two rows, through tqdm.write


def test_bars_closed_when_the_fit_fails(make_learner, bars, capsys):
    class Boom:
        name = "boom"
        order = 0

        def after_batch(self, learner):
            if learner.iter == 2:
                raise RuntimeError("boom")

    progress = Progress(bar=True)
    with pytest.raises(RuntimeError, match="boom"):
        make_learner([progress, Boom()]).fit(1)
    assert [bar.desc for bar in bars] == ["epochs", "train"]
    assert all(bar.disable for bar in bars)
    assert progress._pbar is None and progress._overall is None


def test_bar_closed_when_a_pass_is_cancelled(make_learner, bars, capsys):
    class Stop:
        name = "stop"
        order = 50

        def after_batch(self, learner):
            if learner.in_train and learner.iter == 1:
                raise CancelEpochException

    progress = Progress(bar=True)
    make_learner([progress, Stop()]).fit(1)
    assert [bar.n for bar in bars] == [1, 2, 2]  # epochs, train (cut short), valid
    assert all(bar.disable for bar in bars)


def test_no_bar_means_no_per_batch_work(make_learner, bars, capsys, sync_counter):
    progress = Progress(bar=False)
    learner = make_learner([progress])
    sync_counter.active = True
    learner.fit(1)
    assert bars == []
    assert sync_counter.calls == []


def test_bad_bar_option():
    with pytest.raises(TypeError, match="^bar should be a bool, got 'sometimes'"):
        Progress(bar="sometimes")


class _StopAt:
    name = "stop_at"
    order = 50

    def __init__(self, epoch, exc):
        self.epoch, self.exc = epoch, exc

    def after_epoch(self, learner):
        if learner.epoch == self.epoch:
            raise self.exc


def test_the_reason_a_plugin_stopped_the_fit_is_shown_after_the_rows(make_learner, capsys):
    learner = make_learner([Progress(), _StopAt(1, CancelTrainException("ratio 3.2 > 0.5"))])
    learner.fit(5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "stopped after epoch 1: ratio 3.2 > 0.5"
    assert [line.split()[0] for line in lines[1:-1]] == ["0", "1"]
    assert str(learner.cancelled) == "ratio 3.2 > 0.5"


def test_a_stop_without_a_reason_says_so(make_learner, capsys):
    make_learner([Progress(), _StopAt(0, CancelTrainException())]).fit(5)
    assert capsys.readouterr().out.splitlines()[-1] == "stopped after epoch 0: no reason given"


def test_a_reason_the_plugin_printed_is_not_repeated(make_learner, capsys):
    stop = CancelTrainException("printed by the plugin", printed=True)
    make_learner([Progress(), _StopAt(0, stop)]).fit(5)
    assert "printed by the plugin" not in capsys.readouterr().out


def test_the_row_a_stop_was_decided_on_is_shown_and_a_stop_mid_epoch_says_so(make_learner, capsys):
    class Early(_StopAt):
        order = 20  # after metrics wrote the epoch, before progress (30) shows it

    make_learner([Metrics(), Progress(), Early(1, CancelTrainException("enough"))]).fit(5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["0", "1"]  # epoch 1's row shown
    assert lines[-1] == "stopped after epoch 1: enough"

    class MidEpoch:
        name = "mid"

        def after_batch(self, learner):
            if learner.epoch == 1 and learner.iter == 0:
                raise CancelTrainException("mid-epoch")

    make_learner([Metrics(), Progress(), MidEpoch()]).fit(5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == ["0"]
    assert lines[-1] == "stopped during epoch 1: mid-epoch"
