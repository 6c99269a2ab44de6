"""The model summary: shapes and parameter counts against hand computations, hooks removed."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from engine import DataBunch
from engine import DataError
from engine import Learner
from engine.summary import LayerRow
from engine.summary import ModelSummary
from engine.summary import summarize


def make_model() -> nn.Sequential:
    """conv (1->4, pad 1), relu, [conv (4->8, stride 2), batch norm], flatten, linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 8, 3, stride=2), nn.BatchNorm2d(8)),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )


class Spying(nn.Module):
    """Records the mode and grad mode it runs in; raises when told to."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        if self.fail:
            raise RuntimeError("forward failed")
        return x


def test_output_shapes_are_the_hand_computed_ones() -> None:
    summary = summarize(make_model(), torch.randn(2, 1, 8, 8))
    shapes = {row.name: row.output_shape for row in summary.rows}
    # conv with padding keeps 8x8; stride 2 without padding: (8 - 3) // 2 + 1 = 3
    assert shapes == {
        "0": (2, 4, 8, 8),
        "1": (2, 4, 8, 8),
        "2.0": (2, 8, 3, 3),
        "2.1": (2, 8, 3, 3),
        "3": (2, 72),
        "4": (2, 5),
    }
    assert summary.input_shape == (2, 1, 8, 8)
    assert summary.output_shapes == ((2, 5),)
    assert [row.type for row in summary.rows] == [
        "Conv2d",
        "ReLU",
        "Conv2d",
        "BatchNorm2d",
        "Flatten",
        "Linear",
    ]


def test_parameter_counts_are_each_layers_and_the_totals_the_models() -> None:
    model = make_model()
    model[0].weight.requires_grad_(False)  # frozen: 36 of conv 0's 40
    summary = summarize(model, torch.randn(2, 1, 8, 8))
    modules = dict(model.named_modules())
    for row in summary.rows:
        params = list(modules[row.name].parameters())
        assert row.params == sum(p.numel() for p in params), row.name
        assert row.trainable == sum(p.numel() for p in params if p.requires_grad), row.name
    by_name = {row.name: row for row in summary.rows}
    assert by_name["0"].params == 4 * 1 * 3 * 3 + 4
    assert by_name["0"].trainable == 4
    assert by_name["4"].params == 72 * 5 + 5
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.total_params == sum(row.params for row in summary.rows)
    assert summary.trainable_params == summary.total_params - 36
    assert summary.non_trainable_params == 36


def test_containers_are_listed_with_their_childrens_parameters() -> None:
    model = make_model()
    summary = summarize(model, torch.randn(2, 1, 8, 8), containers=True)
    names = [row.name for row in summary.rows]
    assert names == ["0", "1", "2", "2.0", "2.1", "3", "4"]
    block = summary.rows[2]
    assert (block.type, block.depth, block.output_shape) == ("Sequential", 1, (2, 8, 3, 3))
    assert block.params == sum(p.numel() for p in model[2].parameters())
    assert summary.rows[3].depth == 2
    assert "\n  2.0  Conv2d" in str(summary)  # indented under its container


def test_hooks_are_removed_and_modes_restored() -> None:
    model = nn.Sequential(nn.Linear(3, 3), Spying())
    model[0].eval()
    summarize(model, torch.randn(4, 3))
    assert model[1].seen == [(False, False)]  # eval mode, no gradients
    assert model.training
    assert [m.training for m in model] == [False, True]
    assert all(not m._forward_hooks for m in model.modules())


def test_hooks_are_removed_and_modes_restored_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(3, 3), Spying(fail=True))
    with pytest.raises(RuntimeError, match="forward failed"):
        summarize(model, torch.randn(4, 3))
    assert model.training
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())


def test_shared_unused_and_tuple_returning_modules() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 2)
            self.rnn = nn.GRU(4, 6, batch_first=True)

        def forward(self, x: torch.Tensor) -> Any:
            out, _ = self.rnn(self.shared(self.shared(x)))
            return out

    summary = summarize(Net(), torch.randn(2, 7, 4))
    rows = {row.name: row for row in summary.rows}
    assert rows["shared"].calls == 2
    assert rows["unused"].calls == 0
    assert rows["unused"].output_shape is None
    assert rows["rnn"].output_shapes == ((2, 7, 6), (1, 2, 6))
    text = str(summary)
    assert "[2, 7, 6], [1, 2, 6]" in text
    unused_line = next(line for line in text.splitlines() if line.startswith("unused"))
    assert unused_line.split()[2] == "-"


def test_a_model_without_children_is_its_own_row() -> None:
    summary = summarize(nn.Linear(3, 2), torch.randn(4, 3))
    assert summary.rows == [
        LayerRow(
            name="", type="Linear", output_shapes=((4, 2),), params=8, trainable=8, depth=0, calls=1
        )
    ]
    assert "(model)" in str(summary)


def test_text_and_html_tables() -> None:
    summary = summarize(make_model(), torch.randn(2, 1, 8, 8))
    text = str(summary)
    assert repr(summary) == text
    lines = text.splitlines()
    assert lines[0] == "Sequential summary"
    assert lines[1].split() == ["Layer", "Type", "Output", "shape", "Params", "Trainable"]
    assert f"Total params: {summary.total_params:,}" in lines
    linear = next(line for line in lines if line.startswith("4 "))
    assert linear.split()[-2:] == ["365", "365"]
    page = summary._repr_html_()
    assert page.count("<tr>") == 1 + len(summary.rows)
    assert "<td style='text-align:left'>BatchNorm2d</td>" in page
    assert "Total params: " in page
    wide = str(summarize(nn.Linear(100, 20), torch.randn(1, 100)))
    assert "Total params: 2,020" in wide


def test_learner_summary_runs_the_first_training_batch() -> None:
    x, y = torch.randn(10, 1, 8, 8), torch.zeros(10, dtype=torch.long)
    data = DataBunch.from_tensors(x[:6], y[:6], x[6:], y[6:], bs=3)
    learner = Learner(make_model(), data, defaults=False)
    summary = learner.summary()
    assert isinstance(summary, ModelSummary)
    assert summary.input_shape == (3, 1, 8, 8)
    assert summary.rows[-1].output_shape == (3, 5)
    assert learner.model.training


def test_learner_summary_falls_back_to_the_validation_loader() -> None:
    x, y = torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    valid = DataBunch.from_tensors(x, y, bs=2).train_dl
    assert Learner(make_model(), ([], valid), defaults=False).summary().input_shape == (2, 1, 8, 8)
    with pytest.raises(DataError, match="neither the training nor the validation loader"):
        Learner(make_model(), ([], None), defaults=False).summary()
