"""Tests of observers.metrics: exact per-epoch averages, one sync per epoch."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from engine.exceptions import CancelBatchException
from engine.exceptions import CancelEpochException
from observers.metrics import METRICS
from observers.metrics import Metrics
from observers.metrics import accuracy
from observers.metrics import error_rate
from tests.outcomes import LINEAR_LOSS_FALLS


def test_lr0_losses_and_accuracy_equal_direct_computation(make_learner, tensors):
    # bs=8 over 50 samples: the last training batch has 2; validation 30 = 16 + 14
    metrics = Metrics(("accuracy", "error_rate"))
    learner = make_learner([metrics], lr=0.0)
    learner.fit(2)
    model = learner.model
    with torch.no_grad():
        train_pred = model(tensors.x_train)
        valid_pred = model(tensors.x_valid)
    for log in metrics.history:
        assert log["train_loss"] == pytest.approx(
            F.cross_entropy(train_pred, tensors.y_train).item(), abs=1e-6
        )
        assert log["valid_loss"] == pytest.approx(
            F.cross_entropy(valid_pred, tensors.y_valid).item(), abs=1e-6
        )
        train_acc = (train_pred.argmax(-1) == tensors.y_train).double().mean().item()
        valid_acc = (valid_pred.argmax(-1) == tensors.y_valid).double().mean().item()
        assert log["train_accuracy"] == pytest.approx(train_acc, abs=1e-12)
        assert log["valid_accuracy"] == pytest.approx(valid_acc, abs=1e-12)
        assert log["train_error_rate"] == pytest.approx(1 - train_acc, abs=1e-12)
        assert log["valid_error_rate"] == pytest.approx(1 - valid_acc, abs=1e-12)


def test_log_keys_order_history_and_last(make_learner, log_capture):
    metrics = Metrics()
    learner = make_learner([metrics, log_capture])
    assert metrics.last is None
    learner.fit(3)
    assert [h["epoch"] for h in metrics.history] == [0, 1, 2]
    assert list(metrics.history[0]) == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "time",
    ]
    assert metrics.last == metrics.history[-1] == log_capture.logs[-1]
    assert metrics.history == log_capture.logs
    assert all(h["time"] > 0 for h in metrics.history)
    assert all(isinstance(h["train_loss"], float) for h in metrics.history)
    # training does something: the loss goes down on this easy problem (this fit
    # is LINEAR_LOSS_FALLS at seed 0; its spread over seeds: tests/outcomes.py)
    drop = metrics.history[0]["train_loss"] - metrics.history[-1]["train_loss"]
    assert LINEAR_LOSS_FALLS.holds(drop), LINEAR_LOSS_FALLS.describe(drop)


@pytest.mark.parametrize("chunk", [32, 2])
def test_one_host_sync_per_epoch(make_learner, sync_counter, monkeypatch, chunk):
    monkeypatch.setattr("observers.metrics.CHUNK", chunk)

    def mean_score(pred, yb):
        return pred.mean()

    metrics = Metrics(("accuracy", "error_rate", mean_score))
    learner = make_learner([metrics])  # 7 training + 2 validation batches per epoch
    sync_counter.active = True
    learner.fit(3)
    sync_counter.active = False
    assert sync_counter.calls == ["tolist"] * 3


def test_no_validation_loader_gives_none(make_learner, make_data):
    metrics = Metrics()
    make_learner([metrics], data=make_data(valid=False)).fit(1)
    log = metrics.last
    assert log is not None
    assert log["valid_loss"] is None
    assert log["valid_accuracy"] is None
    assert isinstance(log["train_loss"], float)
    assert not math.isnan(log["train_loss"])


class _CancelTraining:
    name = "cancel_training"
    order = 0

    def begin_epoch(self, learner):
        raise CancelEpochException


def test_cancelled_training_pass_gives_none_and_validation_still_counts(make_learner):
    metrics = Metrics()
    make_learner([metrics, _CancelTraining()]).fit(1)
    assert metrics.last["train_loss"] is None
    assert metrics.last["train_accuracy"] is None
    assert isinstance(metrics.last["valid_loss"], float)


class _SkipFirstBatch:
    """Cancels the first batch of each pass before its forward pass."""

    name = "skip_first"
    order = 0

    def begin_batch(self, learner):
        if learner.iter == 0:
            raise CancelBatchException


def test_batch_cancelled_before_its_loss_does_not_count(make_learner, tensors):
    metrics = Metrics()
    learner = make_learner([metrics, _SkipFirstBatch()], lr=0.0)
    learner.fit(1)
    with torch.no_grad():
        # validation is in order, so its first batch is the first 16 samples
        pred = learner.model(tensors.x_valid[16:])
    expected = F.cross_entropy(pred, tensors.y_valid[16:]).item()
    assert metrics.last["valid_loss"] == pytest.approx(expected, abs=1e-6)


def test_custom_callable_metric(make_learner, tensors):
    def top_score(pred, yb):
        return pred.max(dim=-1).values.mean()

    metrics = Metrics(["accuracy", top_score])
    assert metrics.names == ["accuracy", "top_score"]
    learner = make_learner([metrics], lr=0.0)
    learner.fit(1)
    with torch.no_grad():
        train = learner.model(tensors.x_train).max(-1).values.mean().item()
        valid = learner.model(tensors.x_valid).max(-1).values.mean().item()
    assert metrics.last["train_top_score"] == pytest.approx(train, abs=1e-6)
    assert metrics.last["valid_top_score"] == pytest.approx(valid, abs=1e-6)


def test_callable_gets_detached_predictions_during_training(make_learner):
    seen = []

    def grad_free(pred, yb):
        seen.append(pred.requires_grad)
        return pred.mean()

    make_learner([Metrics([grad_free])]).fit(1)
    assert seen
    assert not any(seen)


def test_unknown_metric_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*accuracy, error_rate"):
        Metrics(("accuracy", "f1"))


def test_bad_metric_arguments():
    with pytest.raises(TypeError, match="plugin 'metrics'"):
        Metrics((3,))
    with pytest.raises(ValueError, match="'accuracy' would be reported .* another metric"):
        Metrics(("accuracy", accuracy))

    def loss(pred, yb):
        return pred.mean()

    with pytest.raises(ValueError, match="'loss' would be reported .* as the loss"):
        Metrics([loss])
    assert Metrics("error_rate").names == ["error_rate"]


def test_metric_returning_a_float_is_rejected_with_its_name(make_learner):
    def not_a_tensor(pred, yb):
        return 0.5

    with pytest.raises(TypeError, match="'not_a_tensor' should return a 0-d tensor.*got float"):
        make_learner([Metrics([not_a_tensor])]).fit(1)


def test_builtin_metric_functions():
    pred = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    yb = torch.tensor([1, 0, 0, 0])
    assert accuracy(pred, yb).item() == pytest.approx(0.75)
    assert error_rate(pred, yb).item() == pytest.approx(0.25)
    assert {"accuracy": accuracy, "error_rate": error_rate} == METRICS


def test_second_fit_starts_a_fresh_history(make_learner):
    metrics = Metrics()
    learner = make_learner([metrics])
    learner.fit(2)
    learner.fit(1)
    assert [h["epoch"] for h in metrics.history] == [0]


def test_comparisons_in_several_chunks_stay_exact(make_learner, tensors, monkeypatch):
    monkeypatch.setattr("observers.metrics.CHUNK", 3)  # 7 batches: chunks of 3, 3, 1

    def top_score(pred, yb):
        return pred.max(dim=-1).values.mean()

    metrics = Metrics(("error_rate", "accuracy", top_score))
    learner = make_learner([metrics], lr=0.0)
    learner.fit(1)
    with torch.no_grad():
        pred = learner.model(tensors.x_train)
    right = (pred.argmax(-1) == tensors.y_train).sum().item()
    assert metrics.last["train_accuracy"] == right / 50
    assert metrics.last["train_error_rate"] == (50 - right) / 50
    expected = F.cross_entropy(pred, tensors.y_train).item()
    assert metrics.last["train_loss"] == pytest.approx(expected, abs=1e-6)
    expected = pred.max(-1).values.mean().item()
    assert metrics.last["train_top_score"] == pytest.approx(expected, abs=1e-6)
    assert list(metrics.last)[1:4] == ["train_loss", "train_error_rate", "train_accuracy"]


def test_per_sample_loss_is_rejected(make_learner):
    def per_sample(pred, yb):
        return F.cross_entropy(pred, yb, reduction="none")

    learner = make_learner([Metrics()], loss_func=per_sample)
    with pytest.raises(ValueError, match=r"plugin 'metrics': the loss should be a 0-d.*\(8,\)"):
        learner.fit(1)


def test_epoch_cancelled_before_metrics_saw_it_reports_none() -> None:
    """A plugin ordered before metrics cancels the second training pass in begin_epoch."""
    from engine import CancelEpochException
    from engine import Learner
    from tests.helpers import tiny_data
    from tests.helpers import tiny_model

    class SkipSecondTraining:
        order = 0

        def begin_epoch(self, learner: Any) -> None:
            if learner.epoch == 1:
                with torch.no_grad():
                    for param in learner.model.parameters():
                        param.zero_()  # validation of epoch 1: uniform logits, loss log(2)
                raise CancelEpochException

    metrics = Metrics()
    Learner(tiny_model(), tiny_data(), plugins=[SkipSecondTraining(), metrics], defaults=False).fit(
        2
    )
    first, second = metrics.history
    assert first["train_loss"] is not None and second["train_loss"] is None
    assert second["valid_loss"] == pytest.approx(math.log(2), abs=1e-6)  # this epoch's pass only
