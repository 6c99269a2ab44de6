"""The device plugin: choosing a device, moving model, data and batches."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine import Learner
from engine.data import DataBunch
from plugins.device import Device
from plugins.device import move
from plugins.device import pick_device
from tests.helpers import tiny_data
from tests.helpers import tiny_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class WhereAreBatches:
    order = 0

    def __init__(self) -> None:
        self.devices: set[tuple[str, str, str]] = set()

    def after_pred(self, learner: Any) -> None:
        self.devices.add((learner.xb.device.type, learner.yb.device.type, learner.pred.device.type))


def test_auto_picks_cuda_then_mps_then_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert pick_device("auto").type == expected


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("gpu", "unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps"),
        pytest.param(
            "cuda",
            "CUDA is not available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA"),
        ),
    ],
)
def test_bad_device_is_a_clear_error(requested: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Device(requested)


def test_move_handles_nested_containers() -> None:
    device = torch.device("cpu")
    batch = {"a": torch.zeros(2), "b": [torch.ones(1), (torch.ones(1), 3)]}
    moved = move(batch, device)
    assert moved["b"][1][1] == 3 and isinstance(moved["b"][1], tuple)
    assert moved["a"] is batch["a"]  # already there: no copy


def test_cpu_fit_with_a_dataloader() -> None:
    x = torch.randn(12, 3)
    y = (x[:, 0] > 0).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    watch = WhereAreBatches()
    learner = Learner(
        tiny_model(),
        DataBunch(loader, loader),
        plugins=[Device("cpu"), watch],
        defaults=False,
    )
    learner.fit(1)
    assert watch.devices == {("cpu", "cpu", "cpu")}


@needs_cuda
def test_cuda_moves_model_in_memory_data_and_batches() -> None:
    watch = WhereAreBatches()
    data = tiny_data()
    learner = Learner(tiny_model(), data, plugins=[Device("cuda"), watch], defaults=False)
    learner.fit(1)
    assert watch.devices == {("cuda", "cuda", "cuda")}
    assert next(learner.model.parameters()).is_cuda
    assert data.train_dl.x.is_cuda  # type: ignore[attr-defined]


@needs_cuda
def test_cuda_with_pinned_dataloader_non_blocking() -> None:
    x = torch.randn(64, 3)
    y = (x[:, 0] > 0).long()
    dataset = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, pin_memory=True)
    watch = WhereAreBatches()
    learner = Learner(
        tiny_model(),
        DataBunch(loader, loader),
        plugins=[Device("cuda"), watch],
        defaults=False,
    )
    learner.fit(2)
    assert watch.devices == {("cuda", "cuda", "cuda")}
