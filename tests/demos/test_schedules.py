"""The schedules demo in a tiny configuration: the lesson's schedule shape, plots written."""

from __future__ import annotations

from pathlib import Path

import pytest

from demos.schedules import lesson_schedule
from demos.schedules import main
from plugins.schedule import combine
from plugins.schedule import cos
from plugins.schedule import parse


def test_lesson_schedule_is_combine_scheds_of_notebook_06() -> None:
    expected = combine([0.5, 0.5], [cos(0.2, 1.0), cos(1.0, 0.1)])
    assert parse(lesson_schedule()) == expected
    assert parse(lesson_schedule(0.3)) == combine([0.5, 0.5], [cos(0.06, 0.3), cos(0.3, 0.03)])


def test_schedules_demo_tiny_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--epochs", "2", "--bs", "256", "--out", str(tmp_path), "-p", "no:progress"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("schedule: Schedule(lr=combine([0.5, 0.5], [cos(0.06, 0.3)")
    # 6 batches per epoch: the first epoch warms up from 0.06, the second anneals to ~0.03
    assert lines[1].startswith("epoch 0: lr 0.060 -> ") and "valid accuracy 0." in lines[1]
    assert lines[2].startswith("epoch 1: lr 0.300 -> ")
    assert (tmp_path / "schedule.png").stat().st_size > 1000
    assert (tmp_path / "lr.png").exists() and (tmp_path / "metrics.csv").exists()


def test_schedules_demo_one_cycle_plots_momentum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--epochs", "1", "--bs", "256", "--sched", "one_cycle(0.4)", "--out", str(tmp_path)]
    assert main([*argv, "-p", "no:progress"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("epoch 0: lr 0.016 -> ")
    assert (tmp_path / "schedule.png").stat().st_size > 1000
