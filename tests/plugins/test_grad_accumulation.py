"""The grad_accumulation plugin: the step of one big batch, true losses, no leftovers."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import CancelBatchException
from engine import CancelEpochException
from engine import CancelTrainException
from engine import Learner
from engine.data import DataBunch
from engine.data import TensorLoader
from plugins.grad_accumulation import GradAccumulation
from plugins.grad_clip import GradClip
from plugins.mixed_precision import MixedPrecision


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=gen)
    return x, (x[:, 0] > 0).long()


def data(n: int, bs: int) -> DataBunch:
    x, y = samples(n)
    return DataBunch(TensorLoader(x, y, bs, shuffle=True, seed=2), None)


class Steps:
    """Counts optimizer steps and records the loss observers see in after_batch."""

    order = 90

    def __init__(self) -> None:
        self.steps = 0
        self.losses: list[torch.Tensor] = []

    def after_step(self, learner: Any) -> None:
        self.steps += 1

    def after_batch(self, learner: Any) -> None:
        self.losses.append(learner.loss.detach().clone())


def fit(net: nn.Module, bunch: DataBunch, *plugins: object, epochs: int = 2) -> Learner:
    learner = Learner(net, bunch, lr=0.5, plugins=[*plugins], defaults=False)
    learner.fit(epochs)
    return learner


def test_two_batches_of_4_step_like_one_batch_of_8() -> None:
    start = model()
    small, big = Steps(), Steps()
    accumulated = fit(copy.deepcopy(start), data(16, 4), GradAccumulation(steps=2), small)
    one_batch = fit(copy.deepcopy(start), data(16, 8), big)
    assert small.steps == big.steps == 4
    for key, value in accumulated.model.state_dict().items():
        assert torch.allclose(value, one_batch.model.state_dict()[key], atol=1e-6), key
    assert not torch.equal(accumulated.model[0].weight, start[0].weight)


def test_a_short_last_group_is_averaged_over_its_own_size() -> None:
    """3 batches, steps=2: groups of 2 and 1, each stepped with its mean gradient."""
    start = model()
    counter = Steps()
    accumulated = fit(copy.deepcopy(start), data(12, 4), GradAccumulation(steps=2), counter)
    net = copy.deepcopy(start)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loader = data(12, 4).train_dl
    for _ in range(2):
        batches = list(loader)
        for group in (batches[:2], batches[2:]):
            for xb, yb in group:
                (F.cross_entropy(net(xb), yb) / len(group)).backward()
            opt.step()
            opt.zero_grad()
    assert counter.steps == 4
    for key, value in accumulated.model.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key


def test_observers_see_the_true_loss() -> None:
    start = model()
    counter = Steps()
    fit(copy.deepcopy(start), data(8, 4), GradAccumulation(steps=2), counter, epochs=1)
    batches = list(data(8, 4).train_dl)
    expected = [F.cross_entropy(start(xb), yb).detach() for xb, yb in batches]  # no step between
    assert all(torch.equal(a, b) for a, b in zip(counter.losses, expected))


def test_steps_1_is_training_without_the_plugin() -> None:
    start = model()
    with_plugin = fit(copy.deepcopy(start), data(12, 4), GradAccumulation(steps=1))
    without = fit(copy.deepcopy(start), data(12, 4))
    for key, value in with_plugin.model.state_dict().items():
        assert torch.equal(value, without.model.state_dict()[key]), key


def test_with_mixed_precision_and_clipping() -> None:
    """float16 with a scaler, accumulation and clipping together: one unscale per step."""
    counter = Steps()
    mixed = MixedPrecision(dtype="float16")
    accumulate = GradAccumulation(steps=3)
    learner = fit(model(), data(20, 4), accumulate, mixed, GradClip(max_norm=0.1), counter)
    assert counter.steps == accumulate.optimizer_steps == 4  # groups of 3 and 2, 2 epochs
    assert mixed.skipped == 0
    assert all(torch.isfinite(p).all() for p in learner.model.parameters())


class Raiser:
    """Raises ``exc`` at ``event``: in training from batch 1 on (the middle of a group)."""

    name = "raiser"

    def __init__(self, event: str, order: int, exc: BaseException) -> None:
        self.order = order
        self.exc = exc
        self.event = event
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.event == "begin_epoch":
            fire = learner.epoch == 1
        else:
            fire = not learner.in_train or learner.iter >= 1
        if fire:
            raise self.exc


CANCELS = {
    "after_cancel_batch": CancelBatchException,
    "after_cancel_epoch": CancelEpochException,
    "after_cancel_train": CancelTrainException,
}


@pytest.mark.parametrize(
    "event",
    [
        "begin_fit",
        "begin_epoch",
        "after_loss",
        "after_backward",
        "after_step",
        "after_cancel_batch",
        "after_cancel_epoch",
        "begin_validate",
        "after_cancel_train",
        "after_fit",
    ],
)
@pytest.mark.parametrize("order", [40, 50])
def test_no_gradient_is_left_behind_by_an_error(event: str, order: int) -> None:
    """An error at each event it receives, before or after it runs, mid-group when it can."""
    plugin = GradAccumulation(steps=3)
    bunch = data(16, 4)
    bunch.valid_dl = TensorLoader(*samples(4), 4)
    learner = Learner(model(), bunch, lr=0.5, plugins=[plugin], defaults=False)
    if event in CANCELS:
        learner.add_plugin(Raiser("after_loss", 95, CANCELS[event]()), name="cancel")
    with learner.added(Raiser(event, order, RuntimeError("boom"))):
        with pytest.raises(RuntimeError, match="boom"):
            learner.fit(2)
    assert all(p.grad is None for p in learner.model.parameters())
    assert not plugin._pending


@pytest.mark.parametrize("steps", [0, -2, 1.5, True, "2"])
def test_bad_steps(steps: Any) -> None:
    with pytest.raises(ValueError) as info:
        GradAccumulation(steps=steps)
    assert str(info.value) == f"steps should be a positive integer, got {steps!r}"


def test_options_from_the_command_line_syntax() -> None:
    learner = Learner(model(), data(8, 4), plugins=["grad_accumulation:steps=4"])
    assert learner.plugins["grad_accumulation"].steps == 4  # type: ignore[attr-defined]
