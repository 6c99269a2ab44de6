"""The layers activation_stats hooks by default, and their labels."""

from __future__ import annotations

from functools import partial

from torch import nn

from engine.nn import GeneralRelu
from engine.nn import cnn
from engine.nn import cnn_07
from observers.activation_stats import ActivationStats
from observers.activation_stats import select_modules
from observers.default_layers import default_modules
from observers.default_layers import label


def names(model: nn.Module) -> list[str]:
    return [name for name, _ in default_modules(model)]


def labels(model: nn.Module) -> list[str]:
    return [label(name, module) for name, module in default_modules(model)]


def test_the_lesson_cnn_is_looked_at_in_its_conv_blocks_only() -> None:
    """Not the pooling, the flatten Lambda nor the output Linear."""
    model = cnn()
    assert names(model) == ["0", "1", "2", "3"]
    assert labels(model) == [f"{i} (Conv2d+ReLU)" for i in range(4)]
    assert [n for n, _ in select_modules(model)] == ["0", "1", "2", "3"]


def test_the_07_cnn_blocks_hold_their_norm() -> None:
    model = cnn_07("batch", act=partial(GeneralRelu, 0.1, 0.4, 6.0))
    assert names(model) == ["0", "1", "2", "3", "4"]
    assert labels(model)[0] == "0 (Conv2d+GeneralRelu+BatchNorm)"


def test_a_flat_mlp_is_looked_at_after_each_hidden_activation() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Dropout(), nn.Linear(8, 3)
    )
    assert labels(model) == ["1 (ReLU)", "3 (Tanh)"]


def test_norms_join_the_group_and_the_group_ends_at_pooling() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    assert labels(model) == ["2 (ReLU)", "5 (ReLU)"]


class Block(nn.Module):
    """A residual block: two convolutions and a forward of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return x + self.b(self.a(x).relu())


def test_nested_containers_are_walked_and_custom_blocks_kept_whole() -> None:
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
        nn.Sequential(Block(), Block()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
    )
    assert labels(model) == [
        "0 (Conv2d+ReLU)",
        "1.0 (Block)",
        "1.1 (Block)",
        "4.1 (ReLU)",
    ]


def test_an_output_layer_followed_by_an_activation_is_kept() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    assert names(model) == ["1", "3"]


def test_a_model_with_only_an_output_layer_is_hooked_whole() -> None:
    assert names(nn.Linear(2, 2)) == ["model"]
    assert names(nn.Sequential(nn.Flatten(), nn.Linear(2, 2))) == ["model"]
    assert names(nn.Sequential(nn.Flatten(), nn.ReLU())) == ["0", "1"]


def test_the_recorded_data_carries_the_labels(make_learner) -> None:  # type: ignore[no-untyped-def]
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    stats = ActivationStats(save=False, report=False)
    make_learner([stats], model=model).fit(1)
    assert stats.data is not None
    assert stats.data.names == ["1"] and stats.data.labels == ["1 (ReLU)"]
