"""The grad_clip plugin: the same steps as torch's clip functions, bad options."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import Learner
from plugins.grad_clip import GradClip
from tests.helpers import tiny_data


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))


def reference(start: nn.Module, clip: Any, epochs: int = 2, lr: float = 0.5) -> nn.Module:
    """The same training written out by hand, clipping with ``clip(params)``."""
    net = copy.deepcopy(start)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    data = tiny_data()
    for _ in range(epochs):
        for xb, yb in data.train_dl:
            F.cross_entropy(net(xb), yb).backward()
            clip(list(net.parameters()))
            opt.step()
            opt.zero_grad()
    return net


@pytest.mark.parametrize(
    ("options", "clip"),
    [
        ({"max_norm": 0.05}, lambda p: torch.nn.utils.clip_grad_norm_(p, 0.05)),
        (
            {"max_norm": 0.02, "norm_type": math.inf},
            lambda p: torch.nn.utils.clip_grad_norm_(p, 0.02, norm_type=math.inf),
        ),
        ({"max_value": 0.01}, lambda p: torch.nn.utils.clip_grad_value_(p, 0.01)),
    ],
)
def test_same_weights_as_torch_clipping_by_hand(options: dict[str, Any], clip: Any) -> None:
    start = model()
    expected = reference(start, clip)
    unclipped = reference(start, lambda p: None)
    learner = Learner(
        copy.deepcopy(start),
        tiny_data(),
        lr=0.5,
        plugins=[GradClip(**options)],
        defaults=False,
    )
    learner.fit(2)
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, expected.state_dict()[key]), key
    # and the clipping did change something: the thresholds bite on this data
    assert any(
        not torch.equal(v, unclipped.state_dict()[k]) for k, v in expected.state_dict().items()
    )


def test_total_norm_is_the_norm_before_clipping() -> None:
    class Norm:
        order = 55  # before grad_clip

        def __init__(self) -> None:
            self.norms: list[torch.Tensor] = []

        def after_backward(self, learner: Any) -> None:
            grads = [p.grad for p in learner.model.parameters()]
            self.norms.append(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))

    norm = Norm()
    clip = GradClip(max_norm=1e-3)
    Learner(model(), tiny_data(), plugins=[norm, clip], defaults=False).fit(1)
    assert clip.total_norm is not None
    assert torch.allclose(clip.total_norm, norm.norms[-1])


class Raiser:
    name = "raiser"

    def __init__(self, event: str, order: int) -> None:
        self.order = order
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize("event", ["begin_fit", "after_backward"])
@pytest.mark.parametrize("order", [50, 70])
def test_an_error_at_its_events_leaves_it_usable(event: str, order: int) -> None:
    start = model()
    clip = GradClip(max_value=0.01)
    learner = Learner(copy.deepcopy(start), tiny_data(), lr=0.5, plugins=[clip], defaults=False)
    with learner.added(Raiser(event, order)):
        with pytest.raises(RuntimeError, match="boom"):
            learner.fit(1)
    # start afresh, as the reference does: weights, data order, optimizer, and the
    # gradients the loop leaves behind when a batch fails
    learner.model.load_state_dict(start.state_dict())
    learner.model.zero_grad()
    learner.data = tiny_data()
    learner.opt = None
    learner.fit(2)
    expected = reference(start, lambda p: torch.nn.utils.clip_grad_value_(p, 0.01))
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, expected.state_dict()[key]), key


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {},
            "give exactly one of the options 'max_norm' and 'max_value', "
            "got max_norm=None and max_value=None",
        ),
        (
            {"max_norm": 1.0, "max_value": 1.0},
            "give exactly one of the options 'max_norm' and 'max_value', "
            "got max_norm=1.0 and max_value=1.0",
        ),
        ({"max_norm": -1.0}, "max_norm should be a positive finite number, got -1.0"),
        ({"max_value": 0}, "max_value should be a positive finite number, got 0"),
        ({"max_norm": math.inf}, "max_norm should be a positive finite number, got inf"),
        ({"max_norm": 1.0, "norm_type": 0}, "norm_type should be a positive number, got 0"),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        GradClip(**options)
    assert str(info.value) == message


def test_options_from_the_command_line_syntax() -> None:
    learner = Learner(model(), tiny_data(), plugins=["grad_clip:max_norm=0.5,norm_type=inf"])
    clip = learner.plugins["grad_clip"]
    assert (clip.max_norm, clip.max_value, clip.norm_type) == (0.5, None, math.inf)  # type: ignore[attr-defined]
