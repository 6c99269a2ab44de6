"""Each event: what the learner holds when it fires, as its doc says; and the docs themselves."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch

from engine import CancelBatchException
from engine import CancelEpochException
from engine import CancelTrainException
from engine import Learner
from engine import events as ev
from tests.helpers import tiny_data
from tests.helpers import tiny_model


class Snapshot:
    """Keeps, per event, a snapshot of the learner's state at every firing."""

    order = 50

    def __init__(self) -> None:
        self.at: dict[str, list[dict[str, Any]]] = {name: [] for name in ev.EVENTS}
        for name in ev.EVENTS:
            setattr(self, name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(learner: Any) -> None:
            self.at[name].append(
                {
                    "epoch": learner.epoch,
                    "iter": learner.iter,
                    "in_train": learner.in_train,
                    "training": learner.model.training,
                    "grad": torch.is_grad_enabled(),
                    "xb": learner.xb,
                    "pred": learner.pred,
                    "loss": learner.loss,
                    "opt": learner.opt,
                    "dl": learner.dl,
                    "log": dict(learner.log),
                    "has_grad": learner.model.weight.grad is not None,
                }
            )

        return record


def fit_with(*extra: object, epochs: int = 1) -> tuple[Learner, Snapshot]:
    snap = Snapshot()
    learner = Learner(tiny_model(), tiny_data(), plugins=[snap, *extra], defaults=False)
    learner.fit(epochs)
    return learner, snap


class RaiseOnce:
    def __init__(self, event: str, exc: type[BaseException]) -> None:
        self.done = False
        self.order = 0
        setattr(self, event, self._raise)
        self.exc = exc

    def _raise(self, learner: Any) -> None:
        if not self.done and learner.in_train:
            self.done = True
            raise self.exc


def test_event_begin_fit() -> None:
    learner, snap = fit_with()
    (state,) = snap.at["begin_fit"]
    assert state["opt"] is learner.opt and state["xb"] is None and state["log"] == {}


def test_event_begin_epoch() -> None:
    learner, snap = fit_with(epochs=2)
    assert [s["epoch"] for s in snap.at["begin_epoch"]] == [0, 1]
    assert all(s["in_train"] and s["dl"] is learner.data.train_dl for s in snap.at["begin_epoch"])
    assert [s["log"] for s in snap.at["begin_epoch"]] == [{"epoch": 0}, {"epoch": 1}]


def test_event_begin_batch() -> None:
    _, snap = fit_with()
    assert [(s["iter"], s["in_train"]) for s in snap.at["begin_batch"]] == [
        (0, True),
        (1, True),
        (0, False),
    ]
    assert all(
        s["xb"] is not None and s["pred"] is None and s["loss"] is None
        for s in snap.at["begin_batch"]
    )


def test_event_after_pred() -> None:
    _, snap = fit_with()
    assert all(s["pred"] is not None and s["loss"] is None for s in snap.at["after_pred"])


def test_event_after_loss() -> None:
    _, snap = fit_with()
    assert all(s["loss"] is not None and s["loss"].ndim == 0 for s in snap.at["after_loss"])
    assert [s["grad"] for s in snap.at["after_loss"]] == [True, True, False]


def test_event_after_backward() -> None:
    _, snap = fit_with()
    assert len(snap.at["after_backward"]) == 2 and all(
        s["has_grad"] for s in snap.at["after_backward"]
    )


def test_event_after_step() -> None:
    _, snap = fit_with()
    assert len(snap.at["after_step"]) == 2 and all(s["in_train"] for s in snap.at["after_step"])


def test_event_after_cancel_batch() -> None:
    _, snap = fit_with(RaiseOnce("after_loss", CancelBatchException))
    assert [(s["iter"], s["in_train"]) for s in snap.at["after_cancel_batch"]] == [(0, True)]
    assert len(snap.at["after_step"]) == 1


def test_event_after_batch() -> None:
    _, snap = fit_with(RaiseOnce("begin_batch", CancelBatchException))
    first, second, valid = snap.at["after_batch"]
    assert first["loss"] is None and second["loss"] is not None and not valid["in_train"]


def test_event_after_cancel_epoch() -> None:
    _, snap = fit_with(RaiseOnce("after_step", CancelEpochException))
    assert [s["in_train"] for s in snap.at["after_cancel_epoch"]] == [True]
    assert len(snap.at["begin_validate"]) == 1


def test_event_begin_validate() -> None:
    learner, snap = fit_with()
    (state,) = snap.at["begin_validate"]
    assert not state["in_train"] and not state["training"] and not state["grad"]
    assert state["dl"] is learner.data.valid_dl


def test_event_after_epoch() -> None:
    _, snap = fit_with(epochs=2)
    assert [s["epoch"] for s in snap.at["after_epoch"]] == [0, 1]


def test_event_after_cancel_train() -> None:
    _, snap = fit_with(RaiseOnce("after_batch", CancelTrainException), epochs=3)
    assert [s["epoch"] for s in snap.at["after_cancel_train"]] == [0]
    assert snap.at["after_epoch"] == []


def test_event_after_fit() -> None:
    snap = Snapshot()
    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=[snap, RaiseOnce("after_pred", KeyError)],
        defaults=False,
    )
    with pytest.raises(KeyError):
        learner.fit(3)
    (state,) = snap.at["after_fit"]
    assert state["epoch"] == 0 and state["in_train"]


@pytest.mark.parametrize("name", ev.EVENTS)
def test_every_event_is_documented_and_tested(name: str) -> None:
    signal = ev.events[name]
    assert signal.name == name
    assert signal.__doc__ and len(signal.__doc__) > 40, f"event {name!r} needs a doc"
    assert any(word in signal.__doc__ for word in ("raise", "Raises")), (
        f"{name}: say which cancellation"
    )
    assert hasattr(sys.modules[__name__], f"test_event_{name}"), f"write test_event_{name}"
    assert name in (ev.__doc__ or ""), f"the firing order in engine/events.py must mention {name}"


def test_namespace_holds_exactly_the_events() -> None:
    assert sorted(ev.events) == sorted(ev.EVENTS)
    assert all(ev.events[name] is getattr(ev, name) for name in ev.EVENTS)
