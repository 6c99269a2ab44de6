"""The tensorboard observer: read its event files back and compare with what the fit did."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from engine.exceptions import PluginError
from engine.learner import Learner
from observers.activation_stats import ActivationStats
from observers.metrics import Metrics
from observers.tensorboard import TensorBoard
from tests.observers.test_activation_stats import image_data
from tests.observers.test_activation_stats import small_cnn


class Losses:
    """The reference: each training batch's loss."""

    name = "losses"

    def __init__(self) -> None:
        self.values: list[float] = []

    def after_loss(self, learner: Learner) -> None:
        if learner.in_train:
            self.values.append(learner.loss.item())


def read(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def fit(tmp_path: Path, *plugins: object, epochs: int = 2, **kwargs: Any) -> Learner:
    learner = Learner(
        small_cnn(),
        image_data(valid=True),
        lr=0.3,
        plugins=list(plugins),
        defaults=False,
        out_dir=tmp_path,
        **kwargs,
    )
    learner.fit(epochs)
    return learner


def test_batch_losses_lrs_and_epoch_metrics(tmp_path: Path) -> None:
    metrics, losses, board = Metrics(), Losses(), TensorBoard()
    fit(tmp_path, metrics, losses, board)
    assert board.path == tmp_path / "tensorboard"
    events = read(board.path)
    batch = events.Scalars("batch/train_loss")
    assert [e.step for e in batch] == list(range(6))
    assert [e.value for e in batch] == list(np.float32(losses.values))
    assert [(e.step, e.value) for e in events.Scalars("batch/lr_group0")] == [
        (i, np.float32(0.3)) for i in range(6)
    ]
    # one step unit: epoch values sit at the epoch's last training batch (3 per epoch)
    for key in ("epoch", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "time"):
        logged = [(e.step, e.value) for e in events.Scalars(f"epoch/{key}")]
        assert logged == [
            (3 * i + 2, np.float32(row[key])) for i, row in enumerate(metrics.history)
        ]


def test_activation_histograms_per_epoch_match_the_recorded_data(tmp_path: Path) -> None:
    stats, board = ActivationStats(grads=True, sample=0, save=False, report=False), TensorBoard()
    fit(tmp_path, stats, board)
    events = read(tmp_path / "tensorboard")
    assert set(events.Tags()["histograms"]) == {
        f"{kind}/{name} (Conv2d+ReLU)" for kind in ("activations", "gradients") for name in "01"
    }
    data = stats.data
    assert data is not None
    for epoch, event in enumerate(events.Histograms("activations/1 (Conv2d+ReLU)")):
        rows = [i for i, e in enumerate(data.epochs) if e == epoch]
        value = event.histogram_value
        assert event.step == data.iterations[rows[-1]] == 3 * epoch + 2
        counts = data.hists[rows, 1].double().sum(0)
        filled = torch.nonzero(counts).flatten().tolist()
        first, last = filled[0], filled[-1]
        np.testing.assert_allclose(value.bucket, counts[first : last + 1].numpy())
        np.testing.assert_allclose(value.bucket_limit, data.edges(1)[first + 1 : last + 2].numpy())
        assert value.min <= value.bucket_limit[0] and value.bucket_limit[-1] <= value.max
        numel = data.numel[rows, 1]
        assert value.num == float(numel.sum())
        assert value.sum == pytest.approx(float((data.means[rows, 1] * numel).sum()))


def test_losses_of_a_fit_stopped_mid_epoch_are_written_and_the_writer_closed(
    tmp_path: Path,
) -> None:
    class Fail:
        order = 50  # after the observer has seen the batch

        def after_batch(self, learner: Learner) -> None:
            if learner.iter == 1:
                raise RuntimeError("boom")

    board = TensorBoard(log_dir=str(tmp_path / "logs"))
    with pytest.raises(RuntimeError, match="boom"):
        fit(tmp_path, board, Fail())
    assert board._writer is None
    assert [e.step for e in read(tmp_path / "logs").Scalars("batch/train_loss")] == [0, 1]


def test_without_out_dir_torch_picks_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    board = TensorBoard(histograms=False)
    Learner(small_cnn(), image_data(), plugins=[board], defaults=False).fit(1)
    assert board.path is not None and board.path.parent == Path("runs")
    assert read(tmp_path / board.path).Scalars("batch/train_loss")


def test_missing_tensorboard_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(PluginError, match=r"pip install 'lookinside\[tensorboard\]'"):
        TensorBoard()


def test_registered_under_its_name_with_options(tmp_path: Path) -> None:
    learner = Learner(
        small_cnn(),
        image_data(),
        plugins=[f"tensorboard:log_dir={tmp_path / 'x'}"],
        defaults=False,
    )
    board = learner.plugins["tensorboard"]
    assert isinstance(board, TensorBoard) and board.log_dir == str(tmp_path / "x")
    with pytest.raises(ValueError, match="flush_secs should be a positive integer"):
        TensorBoard(flush_secs=0)


def test_per_layer_statistics_at_every_recorded_batch(tmp_path: Path) -> None:
    stats = ActivationStats(sample=0, save=False, report=False)
    fit(tmp_path, stats, TensorBoard(histograms=False))
    events = read(tmp_path / "tensorboard")
    data = stats.data
    assert data is not None
    for m, label in enumerate(data.labels):
        for what, values in (
            ("mean", data.means),
            ("std", data.stds),
            ("near_zero", data.near_zero),
        ):
            logged = [(e.step, e.value) for e in events.Scalars(f"activations/{what}/{label}")]
            assert logged == [
                (step, np.float32(values[row, m])) for row, step in enumerate(data.iterations)
            ]
    assert events.Tags()["histograms"] == []


def test_histograms_every_n_batches(tmp_path: Path) -> None:
    stats = ActivationStats(sample=0, save=False, report=False)
    fit(tmp_path, stats, TensorBoard(histogram_every=2, scalars=False), epochs=2)
    events = read(tmp_path / "tensorboard")
    data = stats.data
    assert data is not None
    hists = events.Histograms("activations/0 (Conv2d+ReLU)")
    # 6 training batches: windows 0-1, 2-3, 4-5, each at its last batch
    assert [e.step for e in hists] == [1, 3, 5]
    for event, rows in zip(hists, ([0, 1], [2, 3], [4, 5])):
        assert event.histogram_value.num == float(data.numel[rows, 0].sum())
    assert not any(tag.startswith("activations/mean") for tag in events.Tags()["scalars"])


def test_bad_options_say_what_is_expected() -> None:
    with pytest.raises(ValueError, match="histogram_every should be a positive integer"):
        TensorBoard(histogram_every=0)
    with pytest.raises(TypeError, match="scalars should be a bool"):
        TensorBoard(scalars="yes")  # type: ignore[arg-type]


def test_the_last_window_is_written_when_the_fit_ends(tmp_path: Path) -> None:
    stats = ActivationStats(sample=0, save=False, report=False)
    fit(tmp_path, stats, TensorBoard(histogram_every=4, scalars=False), epochs=2)
    hists = read(tmp_path / "tensorboard").Histograms("activations/0 (Conv2d+ReLU)")
    assert [e.step for e in hists] == [3, 5]  # batches 0-3, then 4-5 when the fit ended


def test_a_resumed_fit_goes_on_along_the_same_step_axis(tmp_path: Path) -> None:
    stats = ActivationStats(sample=0, save=False, report=False)
    fit(tmp_path, Metrics(), stats, TensorBoard(), "checkpoint:monitor=none")
    last = tmp_path / "checkpoints" / "last.pt"
    again = ActivationStats(sample=0, save=False, report=False)
    board = TensorBoard(log_dir=str(tmp_path / "resumed"))
    fit(tmp_path, Metrics(), again, board, f"checkpoint:monitor=none,resume={last}", epochs=4)
    events = read(tmp_path / "resumed")
    assert [(e.step, e.value) for e in events.Scalars("epoch/epoch")] == [(8, 2.0), (11, 3.0)]
    assert [e.step for e in events.Scalars("batch/train_loss")] == list(range(6, 12))
    assert again.data is not None and again.data.iterations[0] == 6
    assert [e.step for e in events.Histograms("activations/0 (Conv2d+ReLU)")] == [8, 11]
