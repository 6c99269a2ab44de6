"""The fit's first batch against the model and the loss: one clear error, before training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import BatchError
from engine.batch_checks import check_targets
from engine.cli import main
from engine.data import DataBunch
from engine.testing import make_learner


def data(y: torch.Tensor, features: int = 4, bs: int = 8) -> DataBunch:
    x = torch.randn(len(y), features, generator=torch.Generator().manual_seed(0))
    return DataBunch.from_tensors(x, y, bs=bs, c=None, input_shape=None)


def labels(*values: int) -> torch.Tensor:
    return torch.tensor(values * 4)


@pytest.mark.parametrize(
    ("y", "n_out", "message"),
    [
        (
            labels(0, 1, 2, 12),
            10,
            r"^the first batch has label 12 but the model has 10 outputs \(model output "
            r"\(8, 10\) float32, targets \(8,\) int64\): give the model at least 13 outputs",
        ),
        (
            labels(0, -1),
            2,
            r"^the first batch has a negative label, -1 \(model output \(8, 2\) float32, "
            r"targets \(8,\) int64\): labels should be class indices 0\.\.1$",
        ),
        (
            labels(0, 1).float(),
            2,
            r"^the labels are float32 but cross_entropy takes class indices \(model output "
            r"\(8, 2\) float32, targets \(8,\) float32\): give integer labels \(yb\.long\(\)\)",
        ),
    ],
)
def test_a_label_mismatch_is_one_error_before_any_step(
    y: torch.Tensor, n_out: int, message: str
) -> None:
    model = nn.Linear(4, n_out)
    before = [p.detach().clone() for p in model.parameters()]
    learner = make_learner(["metrics"], model=model, data=data(y))
    with pytest.raises(BatchError, match=message):
        learner.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no step
    assert learner.error is not None and isinstance(learner.error, BatchError)


def test_fewer_outputs_than_targets() -> None:
    class Halves(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x[: x.shape[0] // 2])

    learner = make_learner(model=Halves(), data=data(labels(0, 1)))
    with pytest.raises(BatchError, match=r"^the model gave 4 outputs for 8 targets"):
        learner.fit(1)


def test_what_the_loss_knows_is_left_to_it() -> None:
    pred = torch.zeros(8, 3)
    check_targets(pred, torch.zeros(8, 3), F.mse_loss)  # regression: same shapes
    check_targets(pred, labels(0, 1).float(), F.mse_loss)  # a loss for float targets
    check_targets(torch.zeros(8, 3, 4, 4), torch.zeros(8, 4, 4, dtype=torch.long), F.cross_entropy)
    check_targets(pred, torch.tensor([0, 1, 2, 0] * 2), nn.CrossEntropyLoss())  # all fine


def test_a_model_that_fails_on_the_first_batch_says_what_it_was_given() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    learner = make_learner(model=model, data=data(labels(0, 1)))  # flat rows into a conv
    with pytest.raises(RuntimeError) as info:
        learner.fit(1)
    notes = getattr(info.value, "__notes__", [])
    assert "on the fit's first batch: inputs (8, 4) float32, targets (8,) int64" in notes


def test_batch_norm_on_a_last_batch_of_one_says_why() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    learner = make_learner(model=model, data=data(labels(0, 1, 0, 1, 1)[:17], bs=8))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel") as info:
        learner.fit(1)
    (note,) = [n for n in getattr(info.value, "__notes__", []) if "one sample" in n]
    assert note.startswith("a training batch of one sample ((1, 4) float32): batch norm")


def test_on_the_command_line_it_is_one_line_and_exit_2(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(str(tmp_path))
    argv = ["fit", "--epochs", "1", "--no-config", "--widths", "4"]
    code = main([*argv, "-p", "tests.engine.test_batch_checks:ShiftLabels"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("lookinside: error: the first batch has label ") and err.count("\n") == 1
    assert not (tmp_path / "lookinside-out" / "metrics.csv").exists()  # type: ignore[operator]


class ShiftLabels:
    """Labels 10..19 for digits' 10 classes (enabled as -p module:Class in the CLI test)."""

    name = "shift_labels"

    def begin_batch(self, learner: object) -> None:
        learner.yb = learner.yb + 10  # type: ignore[attr-defined]


def test_other_losses_ignored_labels_and_other_shapes_are_left_alone() -> None:
    binary = make_learner(
        model=nn.Linear(4, 1),
        data=data(labels(0, 1)),
        loss_func=lambda p, t: F.binary_cross_entropy_with_logits(p.squeeze(1), t.float()),
    )
    binary.fit(1)  # one output, labels 0/1: right for this loss
    regression = make_learner(
        model=nn.Linear(4, 1),
        data=data(labels(3, 41)),
        loss_func=lambda p, t: F.mse_loss(p.squeeze(1), t.float()),
    )
    regression.fit(1)
    ignored = labels(0, 1, -100, 1)
    make_learner(model=nn.Linear(4, 2), data=data(ignored)).fit(1)  # -100: ignored
    with pytest.raises(BatchError, match="a negative label, -1"):
        make_learner(model=nn.Linear(4, 2), data=data(labels(0, -1))).fit(1)
    own = nn.CrossEntropyLoss(ignore_index=-1)
    make_learner(model=nn.Linear(4, 2), data=data(labels(0, -1)), loss_func=own).fit(1)
    time_major = torch.zeros(10, 3, 5)  # (T, N, C), as ctc_loss takes it
    check_targets(time_major, torch.ones(3, 4, dtype=torch.long), F.cross_entropy)


def test_no_batch_norm_note_for_other_errors_on_a_batch_of_one() -> None:
    model = nn.Linear(5, 2)  # the data has 4 features: a shape error, no batch norm
    learner = make_learner(model=model, data=data(labels(0, 1, 0, 1, 1)[:17], bs=8))
    with pytest.raises(RuntimeError) as info:
        learner.fit(1)
    assert not any("one sample" in note for note in getattr(info.value, "__notes__", []))
