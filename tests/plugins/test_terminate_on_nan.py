"""The terminate_on_nan plugin: stops at the first non-finite loss and says where."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine import Learner
from observers.metrics import Metrics
from plugins.terminate_on_nan import TerminateOnNan
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model


class Spoil:
    """Replaces the predictions with ``value`` at the given (epoch, in_train, iter)."""

    order = 0

    def __init__(self, at: tuple[int, bool, int], value: float = math.nan) -> None:
        self.at = at
        self.value = value

    def after_pred(self, learner: Any) -> None:
        if (learner.epoch, learner.in_train, learner.iter) == self.at:
            learner.pred = learner.pred + self.value  # keeps the graph: backward still runs


def fit(*plugins: object, epochs: int = 3) -> Learner:
    learner = Learner(tiny_model(), tiny_data(), plugins=[*plugins], defaults=False)
    learner.fit(epochs)
    return learner


def test_stops_at_the_nan_batch_and_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    stop, spy = TerminateOnNan(), Spy()
    before: dict[str, torch.Tensor] = {}

    class Snapshot:
        order = 1

        def begin_batch(self, learner: Any) -> None:
            before.update({k: v.clone() for k, v in learner.model.state_dict().items()})

    learner = fit(Spoil((1, True, 1)), stop, spy, Snapshot())
    expected = (
        "terminate_on_nan: the loss is nan at epoch 1, training batch 1 (iteration 3); "
        "training stopped"
    )
    assert stop.reason == expected
    assert capsys.readouterr().out == expected + "\n"
    assert spy.seen.count("begin_epoch") == 2
    assert spy.seen[-3:] == ["after_loss", "after_cancel_train", "after_fit"]
    # the NaN never reached the weights: no backward, no step
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_infinite_validation_loss(capsys: pytest.CaptureFixture[str]) -> None:
    stop = TerminateOnNan()
    fit(Spoil((0, False, 0), value=math.inf), stop)
    assert stop.reason == (
        "terminate_on_nan: the loss is nan at epoch 0, validation batch 0; training stopped"
    )


def test_every_n_batches_checks_only_those() -> None:
    """3 batches per epoch (2 training, 1 validation): every=2 checks the 2nd, 4th, 6th..."""
    stop = TerminateOnNan(every=2)
    fit(Spoil((0, False, 0)), stop)  # the 3rd batch, unchecked: a NaN that does not spread
    assert stop.reason is None
    # a NaN in the 1st batch is not seen there, but the step spreads it into the
    # weights, so the 2nd batch's loss is NaN too, and that one is checked
    fit(Spoil((0, True, 0)), stop)
    assert stop.reason == (
        "terminate_on_nan: the loss is nan at epoch 0, training batch 1 (iteration 1); "
        "training stopped"
    )


def test_finite_losses_never_stop_and_metrics_are_unchanged() -> None:
    plain = fit(Metrics())
    guarded = fit(Metrics(), TerminateOnNan())
    assert guarded.log == {**plain.log, "time": guarded.log["time"]}


class Raiser:
    name = "raiser"

    def __init__(self, event: str, order: int) -> None:
        self.order = order
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize("event", ["begin_fit", "after_loss"])
@pytest.mark.parametrize("order", [0, 10])
def test_an_error_at_its_events_then_a_fresh_count(event: str, order: int) -> None:
    stop = TerminateOnNan(every=2)
    learner = Learner(tiny_model(), tiny_data(), plugins=[stop], defaults=False)
    with learner.added(Raiser(event, order)):
        with pytest.raises(RuntimeError, match="boom"):
            learner.fit(1)
    with learner.added(Spoil((0, True, 1))):
        learner.fit(1)  # the count starts again: the fit's second batch is checked
    assert stop.reason is not None and "training batch 1" in stop.reason


@pytest.mark.parametrize("every", [0, -1, 1.5, True])
def test_bad_every(every: Any) -> None:
    with pytest.raises(ValueError) as info:
        TerminateOnNan(every=every)
    assert str(info.value) == f"every should be a positive integer, got {every!r}"


def test_options_from_the_command_line_syntax() -> None:
    learner = Learner(tiny_model(), tiny_data(), plugins=["terminate_on_nan:every=4"])
    assert learner.plugins["terminate_on_nan"].every == 4  # type: ignore[attr-defined]
