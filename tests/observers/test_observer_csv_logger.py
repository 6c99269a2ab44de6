"""Tests of observers.csv_logger: file content, flushing, where the file goes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from engine import Learner
from observers.csv_logger import CSVLogger
from observers.metrics import Metrics
from tests.helpers import tiny_data
from tests.helpers import tiny_model


def _read(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_rows_equal_the_log_values(make_learner, make_data, log_capture, tmp_path):
    logger = CSVLogger()
    learner = make_learner(
        [Metrics(), logger, log_capture], data=make_data(valid=False), out_dir=tmp_path
    )
    learner.fit(2)
    assert logger.file_path == tmp_path / "metrics.csv"
    header, *rows = _read(tmp_path / "metrics.csv")
    assert header == list(log_capture.logs[0]) == logger.fieldnames
    assert len(rows) == 2
    for row, log in zip(rows, log_capture.logs):
        for key, cell in zip(header, row):
            value = log[key]
            if value is None:
                assert cell == ""
            elif isinstance(value, int):
                assert int(cell) == value
            else:
                assert float(cell) == value  # written in full precision
    assert logger._file is None  # closed after the fit


class _ReadDuringFit:
    """Reads the CSV file at the end of each epoch, after the logger wrote."""

    name = "read_during_fit"
    order = 95

    def __init__(self, path):
        self.path = path
        self.rows_seen: list[int] = []

    def after_epoch(self, learner):
        self.rows_seen.append(len(_read(self.path)) - 1)


def test_each_row_is_flushed_at_once(make_learner, tmp_path):
    reader = _ReadDuringFit(tmp_path / "metrics.csv")
    make_learner([CSVLogger(), reader], out_dir=tmp_path).fit(3)
    assert reader.rows_seen == [1, 2, 3]


def test_finished_epochs_survive_a_failing_fit(make_learner, tmp_path):
    class Boom:
        name = "boom"
        order = 0

        def begin_epoch(self, learner):
            if learner.epoch == 1:
                raise KeyboardInterrupt

    logger = CSVLogger("logs/run.csv")
    with pytest.raises(KeyboardInterrupt):
        make_learner([Metrics(), logger, Boom()], out_dir=tmp_path).fit(3)
    _, *rows = _read(tmp_path / "logs" / "run.csv")
    assert [row[0] for row in rows] == ["0"]
    assert logger._file is None


def test_later_keys_ignored_and_missing_keys_empty(make_learner, tmp_path):
    class Varying:
        name = "varying"
        order = 0

        def after_epoch(self, learner):
            if learner.epoch == 0:
                learner.log["first_only"] = 1.0
            else:
                learner.log["later"] = 2.0

    make_learner([Varying(), CSVLogger()], out_dir=tmp_path).fit(2)
    assert _read(tmp_path / "metrics.csv") == [["epoch", "first_only"], ["0", "1.0"], ["1", ""]]


def test_relative_path_without_out_dir_writes_nothing(make_learner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logger = CSVLogger()
    make_learner([Metrics(), logger]).fit(1)
    assert logger.file_path is None
    assert list(tmp_path.iterdir()) == []


def test_absolute_path_without_out_dir(make_learner, tmp_path):
    target = tmp_path / "abs" / "m.csv"
    make_learner([CSVLogger(str(target))]).fit(2)
    assert _read(target) == [["epoch"], ["0"], ["1"]]


def test_a_new_fit_replaces_the_file(make_learner, tmp_path):
    learner = make_learner([CSVLogger()], out_dir=tmp_path)
    learner.fit(3)
    learner.fit(1)
    assert _read(tmp_path / "metrics.csv") == [["epoch"], ["0"]]


def test_bad_path():
    with pytest.raises(ValueError, match="^path should be a non-empty file path, got ''"):
        CSVLogger("")


def test_resumed_fit_keeps_earlier_epochs(tmp_path: Path) -> None:
    """A fit starting at a later epoch (a checkpoint resumed) keeps the rows before it."""

    class Resume:
        order = -200

        def __init__(self, start: int) -> None:
            self.start = start

        def begin_fit(self, learner: Any) -> None:
            learner.epoch = self.start

    def fit(epochs: int, *extra: object) -> None:
        learner = Learner(
            tiny_model(),
            tiny_data(),
            plugins=[*extra, CSVLogger()],
            defaults=False,
            out_dir=tmp_path,
        )
        learner.fit(epochs)

    fit(3)  # epochs 0, 1, 2
    fit(4, Resume(2))  # epochs 2, 3 again, as after resuming from epoch 1's checkpoint
    with open(tmp_path / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1", "2", "3"]


def test_a_folder_path_is_refused_when_created(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"path '.*' is a folder; give a file path"):
        CSVLogger(tmp_path)


def test_a_relative_folder_path_is_refused_at_begin_fit(tmp_path: Path) -> None:
    """Relative to the out_dir, a folder is found when the fit starts, on one line."""
    from engine import PluginError

    (tmp_path / "logs").mkdir()
    learner = Learner(
        tiny_model(), tiny_data(), plugins=[CSVLogger("logs")], defaults=False, out_dir=tmp_path
    )
    with pytest.raises(PluginError) as info:
        learner.fit(1)
    assert str(info.value) == (
        f"plugin 'csv_logger': path '{tmp_path / 'logs'}' is a folder; give a file path for "
        f"the CSV rows, e.g. -p csv_logger:path={tmp_path / 'logs' / 'metrics.csv'}"
    )


def test_a_fit_stopped_before_its_first_epoch_ends_keeps_the_old_file(tmp_path: Path) -> None:
    class Stop:
        order = 200

        def begin_fit(self, learner: Any) -> None:
            raise RuntimeError("bad input found at begin_fit")

    old = tmp_path / "metrics.csv"
    old.write_text("epoch,train_loss\n0,1.5\n")
    learner = Learner(
        tiny_model(), tiny_data(), plugins=[CSVLogger(), Stop()], defaults=False, out_dir=tmp_path
    )
    with pytest.raises(RuntimeError):
        learner.fit(2)
    assert old.read_text() == "epoch,train_loss\n0,1.5\n"
