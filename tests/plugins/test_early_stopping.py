"""Early stopping: the epoch it fires at on scripted metrics, its reasons, restore_best, errors."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import Learner
from engine import PluginError
from plugins.early_stopping import EarlyStopping
from plugins.early_stopping import infer_mode
from tests.helpers import tiny_data
from tests.helpers import tiny_model

NAN = float("nan")


class Scripted:
    """Writes ``values[epoch]`` into ``learner.log[key]`` before early stopping reads it."""

    name = "scripted"
    order = 50

    def __init__(self, values: list[float | None], key: str = "score") -> None:
        self.values = values
        self.key = key

    def after_epoch(self, learner: Any) -> None:
        learner.log[self.key] = self.values[learner.epoch]


class Snapshots:
    """The model's state_dict at the end of each epoch."""

    name = "snapshots"
    order = 60

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def after_epoch(self, learner: Any) -> None:
        self.states.append(copy.deepcopy(learner.model.state_dict()))


class Raiser:
    """Raises ``exc`` at ``event`` (at epoch 2 for after_epoch), after early stopping ran."""

    name = "raiser"
    order = 150

    def __init__(self, event: str, exc: type[BaseException] = RuntimeError) -> None:
        self.event = event
        self.exc = exc
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.event != "after_epoch" or learner.epoch == 2:
            raise self.exc("boom")


def run(values: list[float | None], *extra: object, **options: Any) -> tuple[EarlyStopping, int]:
    """Fit one epoch per value; returns the plugin and how many epochs ran."""
    stopper, ran, _ = run_learner(values, *extra, **options)
    return stopper, ran


def run_learner(
    values: list[float | None], *extra: object, **options: Any
) -> tuple[EarlyStopping, int, Learner]:
    stopper = EarlyStopping(monitor="score", **{"mode": "min", **options})
    epochs: list[int] = []

    class Count:
        order = 40

        def after_epoch(self, learner: Any) -> None:
            epochs.append(learner.epoch)

    plugins = [Scripted(values), stopper, Count(), *extra]
    learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=plugins, defaults=False)
    learner.fit(len(values))
    return stopper, len(epochs), learner


@pytest.mark.parametrize(
    ("values", "mode", "patience", "min_delta", "stopped", "best", "best_epoch"),
    [
        ([5, 4, 4.5, 4.2, 3, 2], "min", 2, 0.0, 3, 4, 1),
        ([5, 4, 4.5, 4.2, 3, 2], "min", 1, 0.0, 2, 4, 1),
        ([5, 4, 4.5, 4.2, 3, 2, 2.5, 2.4, 2.3], "min", 3, 0.0, 8, 2, 5),
        ([5, 4, 4, 3.9, 3.8], "min", 2, 0.0, None, 3.8, 4),  # equal is no improvement, 3.9 is
        ([0.5, 0.6, 0.6, 0.59, 0.7], "max", 2, 0.0, 3, 0.6, 1),
        ([1.0, 0.95, 0.92, 0.85, 0.84], "min", 2, 0.1, 2, 1.0, 0),  # 0.92 is not below 0.9
        ([1.0, 0.96, 0.92, 0.85, 0.84, 0.83], "min", 2, 0.05, 5, 0.85, 3),
        ([None, None, 3, 4, 5], "min", 2, 0.0, 4, 3, 2),  # None: neither better nor worse
        ([3, 2, 1], "min", 1, 0.0, None, 1, 2),
    ],
)
def test_stops_at_the_expected_epoch(
    values: list[float | None],
    mode: str,
    patience: int,
    min_delta: float,
    stopped: int | None,
    best: float,
    best_epoch: int,
) -> None:
    stopper, ran = run(values, mode=mode, patience=patience, min_delta=min_delta)
    assert stopper.stopped_epoch == stopped
    assert ran == (len(values) if stopped is None else stopped + 1)
    assert (stopper.best, stopper.best_epoch) == (best, best_epoch)


def test_says_why_it_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    stopper, _ = run([5, 4, 4.5, 4.2, 3], patience=2, min_delta=0.1)
    reason = (
        "early_stopping: stopped after epoch 3: score did not improve by more than 0.1 for "
        "2 epoch(s); best score 4 at epoch 1"
    )
    assert stopper.stopped_reason == reason
    assert capsys.readouterr().out == reason + "\n"
    quiet, _ = run([5, 6], patience=1, verbose=False)
    assert quiet.stopped_epoch == 1 and capsys.readouterr().out == ""
    finished, _ = run([3, 2, 1])
    assert finished.stopped_reason is None and finished.stopped_epoch is None


def test_check_finite_stops_at_once() -> None:
    stopper, ran = run([1.0, NAN, 0.5], patience=5)
    assert (stopper.stopped_epoch, ran) == (1, 2)
    assert "score is nan; best score 1 at epoch 0" in (stopper.stopped_reason or "")
    relaxed, ran = run([1.0, NAN, math.inf, 0.5], patience=5, check_finite=False)
    assert (relaxed.stopped_epoch, ran, relaxed.best) == (None, 4, 0.5)


def test_divergence_threshold_stops_at_once() -> None:
    stopper, _ = run([1.0, 2.0, 11.0, 0.5], patience=5, divergence_threshold=10.0)
    assert stopper.stopped_epoch == 2 and "score = 11 > 10" in (stopper.stopped_reason or "")
    high, _ = run([0.5, 0.1, 0.9], mode="max", patience=5, divergence_threshold=0.2)
    assert high.stopped_epoch == 1 and "score = 0.1 < 0.2" in (high.stopped_reason or "")


def test_restore_best_loads_the_exact_best_weights() -> None:
    snapshots = Snapshots()
    stopper, ran, learner = run_learner(
        [3, 1, 2, 2.5, 2.6], snapshots, patience=2, restore_best=True
    )
    assert (stopper.stopped_epoch, ran) == (3, 4)
    final = learner.model.state_dict()
    for key, value in snapshots.states[1].items():
        assert torch.equal(final[key], value), key
    assert any(not torch.equal(final[k], v) for k, v in snapshots.states[2].items())
    assert stopper._best_state is None  # released after the restore


@pytest.mark.parametrize("event", ["begin_fit", "after_epoch", "after_fit"])
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_restores_best_when_an_event_it_uses_raises(event: str, exc: type[BaseException]) -> None:
    snapshots = Snapshots()
    stopper = EarlyStopping(monitor="score", mode="min", patience=5, restore_best=True)
    plugins = [Scripted([3, 1, 2, 2.5]), stopper, snapshots, Raiser(event, exc)]
    learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=plugins, defaults=False)
    initial = copy.deepcopy(learner.model.state_dict())
    with pytest.raises(exc, match="boom"):
        learner.fit(4)
    expected = initial if event == "begin_fit" else snapshots.states[1]
    for key, value in expected.items():
        assert torch.equal(learner.model.state_dict()[key], value), key
    assert stopper._best_state is None


def test_runs_after_every_observer_so_the_last_epoch_is_logged(tmp_path: Path) -> None:
    stopper = EarlyStopping(monitor="score", mode="min", patience=1)
    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=["no:progress", Scripted([3, 2, 2.5, 1]), stopper],
        out_dir=tmp_path,
    )
    assert learner.plugins.receivers("after_epoch")[-1] == "early_stopping"
    learner.fit(4)
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["score"] for row in rows] == ["3", "2", "2.5"]
    assert learner.log["score"] == 2.5 and learner.log["valid_loss"] is not None


def test_monitors_the_metrics_observers_valid_loss_by_default() -> None:
    stopper = EarlyStopping(patience=1)
    assert (stopper.monitor, stopper.mode) == ("valid_loss", "min")
    learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=["no:progress", stopper])
    learner.fit(3)
    metrics: Any = learner.plugins["metrics"]
    history = [row["valid_loss"] for row in metrics.history]
    assert stopper.best == min(history)


def test_unknown_metric_stops_the_fit_before_the_first_epoch() -> None:
    """With only plugins that declare their log_keys, a monitor none writes fails at begin_fit."""
    epochs: list[int] = []

    class Declared:
        log_keys = ("score",)

        def begin_epoch(self, learner: Any) -> None:
            epochs.append(learner.epoch)

    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=["no:progress", "early_stopping:monitor=valid_acc,mode=max", Declared()],
    )
    with pytest.raises(PluginError) as info:
        learner.fit(1)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == (
        "plugin 'early_stopping': monitor 'valid_acc' is not written into learner.log by any "
        "plugin (did you mean 'valid_accuracy'?); the plugins write: epoch, score, "
        "train_loss, train_accuracy, valid_loss, valid_accuracy, time. Set -p "
        "early_stopping:monitor= to one of them (a plugin of your own that writes other keys "
        "declares them in its log_keys attribute)"
    )
    assert epochs == []


def test_unknown_metric_with_an_undeclared_plugin_is_found_after_the_epoch() -> None:
    """A plugin without log_keys may write any key: the check waits for the epoch's log."""

    class Undeclared:
        def after_epoch(self, learner: Any) -> None:
            pass

    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=["no:progress", "early_stopping:monitor=valid_acc,mode=max", Undeclared()],
    )
    message = (
        r"learner.log has no 'valid_acc' at epoch 0; available: epoch, train_loss, "
        r"train_accuracy, valid_loss, valid_accuracy, time"
    )
    with pytest.raises(ValueError, match=message):
        learner.fit(1)


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("valid_loss", "min"),
        ("valid_accuracy", "max"),
        ("train_error_rate", "min"),
        ("val-f1", "max"),
    ],
)
def test_mode_is_inferred_from_the_name(monitor: str, mode: str) -> None:
    assert infer_mode(monitor) == mode
    assert EarlyStopping(monitor=monitor).mode == mode


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patience": -1}, "patience should be an integer >= 1, got -1"),
        ({"patience": 0}, "patience should be an integer >= 1, got 0"),
        ({"mode": "average"}, "mode should be 'min', 'max' or 'auto', got 'average'"),
        ({"monitor": "loss_accuracy"}, "cannot tell whether 'loss_accuracy' should go down or up"),
        ({"monitor": "speed"}, "cannot tell whether 'speed' should go down or up; give mode="),
        ({"min_delta": -0.1}, "min_delta should be a finite number >= 0, got -0.1"),
        ({"divergence_threshold": math.nan}, "divergence_threshold should be a finite number"),
    ],
)
def test_bad_input_is_an_error_stating_the_rule(options: dict[str, Any], message: str) -> None:
    """Made in Python; created by name (-p) the plugin is named too (``engine.selection``)."""
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**options)


def test_bad_input_from_a_plugin_string() -> None:
    with pytest.raises(PluginError, match="patience should be an integer >= 1"):
        Learner(tiny_model(), tiny_data(), plugins=["early_stopping:patience=-2"])
    with pytest.raises(ValueError, match="^plugin 'early_stopping': min_delta should be a finite"):
        Learner(tiny_model(), tiny_data(), plugins=[("early_stopping", {"min_delta": -1.0})])
    with pytest.raises(PluginError, match="mode"):
        Learner(tiny_model(), tiny_data(), plugins=["early_stopping:mode=average"])


def checkpointed_fit(
    folder: Path,
    values: list[float | None],
    resume: Path | None = None,
    crash_at: int | None = None,
) -> tuple[EarlyStopping, Learner]:
    """A fit with the checkpoint plugin; ``crash_at``: an error at the start of that epoch."""
    from plugins.checkpoint import Checkpoint

    stopper = EarlyStopping(monitor="score", mode="min", patience=3, restore_best=True)
    checkpoint = Checkpoint(dir=str(folder), monitor=None, resume=resume and str(resume))
    plugins: list[object] = [Scripted(values), stopper, checkpoint]
    if crash_at is not None:

        class Crash:
            def begin_epoch(self, learner: Any) -> None:
                if learner.epoch == crash_at:
                    raise RuntimeError("crash")

        plugins.append(Crash())
    learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=plugins, defaults=False)
    if crash_at is None:
        learner.fit(len(values))
    else:
        with pytest.raises(RuntimeError, match="crash"):
            learner.fit(len(values))
    return stopper, learner


@pytest.mark.parametrize("crash_at", [3, None])
def test_resuming_from_a_checkpoint_decides_as_the_uninterrupted_fit(
    tmp_path: Path, crash_at: int | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint (order 80) saves early stopping's state with the saved epoch counted.

    Crashing at the start of epoch 3 leaves last.pt of epoch 2; without a crash, last.pt
    is the epoch early stopping stopped at, and the resumed fit stops at once.
    """
    values: list[float | None] = [5, 3, 4, 4.2, 4.1, 2, 1]  # stops after epoch 4: best 3 at 1
    full, full_learner = checkpointed_fit(tmp_path / "full", values)
    checkpointed_fit(tmp_path / "split", values, crash_at=crash_at)
    resumed, learner = checkpointed_fit(
        tmp_path / "split", values, resume=tmp_path / "split" / "last.pt"
    )
    assert (full.stopped_epoch, full.best, full.best_epoch) == (4, 3.0, 1)
    assert (resumed.stopped_epoch, resumed.best, resumed.best_epoch) == (4, 3.0, 1)
    assert resumed.stopped_reason == full.stopped_reason
    for key, value in full_learner.model.state_dict().items():
        assert torch.equal(learner.model.state_dict()[key], value), key
    restored = "(restored from the checkpoint)" in capsys.readouterr().out
    assert restored == (crash_at is None)


def test_resumed_state_brings_best_weights_only_when_restoring() -> None:
    saved = EarlyStopping(restore_best=True)
    saved.best, saved.best_epoch, saved.wait = 0.5, 0, 1
    saved._best_state = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    state = saved.state_dict()
    not_restoring = EarlyStopping(restore_best=False)
    not_restoring.load_state_dict(state)
    assert not_restoring._best_state is None and not_restoring.best == 0.5
    restoring = EarlyStopping(restore_best=True)
    restoring.load_state_dict(state)
    assert restoring._best_state is not None
