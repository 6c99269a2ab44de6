"""batch_transform: reshaping flat rows to images, or any function."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine import Learner
from engine import PluginError
from engine.data import DataBunch
from plugins.batch_transform import BatchTransform
from tests.helpers import tiny_model


class Shapes:
    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def after_pred(self, learner: Any) -> None:
        self.shapes.append(tuple(learner.xb.shape))


def image_data(shape: tuple[int, ...] | None) -> DataBunch:
    x = torch.randn(6, 16)
    y = torch.zeros(6, dtype=torch.long)
    return DataBunch.from_tensors(x, y, x, y, bs=3, valid_bs=6, input_shape=shape)


def image_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(32, 2)
    )


def test_default_reshapes_to_the_data_input_shape() -> None:
    shapes = Shapes()
    Learner(
        image_model(), image_data((1, 4, 4)), plugins=[BatchTransform(), shapes], defaults=False
    ).fit(1)
    assert shapes.shapes == [(3, 1, 4, 4), (3, 1, 4, 4), (6, 1, 4, 4)]


def test_explicit_shape_and_function() -> None:
    shapes = Shapes()
    Learner(
        image_model(),
        image_data(None),
        plugins=[BatchTransform(shape=(1, 4, 4)), shapes],
        defaults=False,
    ).fit(1)
    assert shapes.shapes[0] == (3, 1, 4, 4)
    seen: list[float] = []

    class Sum:
        def after_pred(self, learner: Any) -> None:
            seen.append(float(learner.xb.sum()))

    data = DataBunch.from_tensors(torch.ones(3, 3), torch.zeros(3, dtype=torch.long), bs=3)
    Learner(
        tiny_model(), data, plugins=[BatchTransform(fn=lambda xb: xb * 2), Sum()], defaults=False
    ).fit(1)
    assert seen == [18.0]


def test_no_shape_leaves_inputs_alone() -> None:
    shapes = Shapes()
    x = torch.randn(4, 3)
    data = DataBunch.from_tensors(x, torch.zeros(4, dtype=torch.long), bs=4)
    Learner(tiny_model(), data, plugins=[BatchTransform(), shapes], defaults=False).fit(1)
    assert shapes.shapes == [(4, 3)]


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(
        ValueError, match="shape should be positive integers such as 1,28,28, got \\(0, 4\\)"
    ):
        BatchTransform(shape=(0, 4))
    with pytest.raises(ValueError, match="give shape or fn, not both"):
        BatchTransform(shape=(1, 4, 4), fn=abs)
    learner = Learner(
        image_model(), image_data((1, 5, 5)), plugins=[BatchTransform()], defaults=False
    )
    with pytest.raises(
        ValueError, match="cannot view inputs of shape \\(3, 16\\) as \\(N, 1, 5, 5\\)"
    ):
        learner.fit(1)


def test_cli_style_shape_option() -> None:
    learner = Learner(
        image_model(), image_data(None), plugins=["batch_transform:shape=1x4x4", "no:progress"]
    )
    assert learner.plugins["batch_transform"].shape == (1, 4, 4)  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="plugin 'batch_transform': option 'shape' expects"):
        Learner(image_model(), image_data(None), plugins=["batch_transform:shape=a,b"])
