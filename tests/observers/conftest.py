"""Fixtures for the observer tests: small tensors, loaders over them, learners.

Every test gets fresh objects; learners are built with ``defaults=False`` so only
the plugins a test passes are attached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from tests.host_reads import SyncCounter

N_IN = 4
N_CLASSES = 3


@dataclass
class Tensors:
    """The raw tensors behind a DataBunch, to compute expected values directly."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor


def make_tensors(n_train: int = 50, n_valid: int = 30, seed: int = 0) -> Tensors:
    """Random inputs with labels a linear model can partly fit."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, N_IN, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return Tensors(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@pytest.fixture
def tensors() -> Tensors:
    """50 training and 30 validation samples."""
    return make_tensors()


@pytest.fixture
def make_data(tensors: Tensors) -> Callable[..., DataBunch]:
    """Build a DataBunch over ``tensors``: ``make_data(bs=8, valid=True)``."""

    def build(bs: int = 8, valid: bool = True, seed: int = 0) -> DataBunch:
        if not valid:
            return DataBunch.from_tensors(tensors.x_train, tensors.y_train, bs=bs, seed=seed)
        return DataBunch.from_tensors(
            tensors.x_train, tensors.y_train, tensors.x_valid, tensors.y_valid, bs=bs, seed=seed
        )

    return build


@pytest.fixture
def make_learner(make_data: Callable[..., DataBunch]) -> Callable[..., Learner]:
    """Build a Learner with only the given plugins: ``make_learner([Metrics()], lr=0)``."""

    def build(
        plugins: list[Any],
        lr: float = 0.1,
        data: DataBunch | None = None,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> Learner:
        torch.manual_seed(0)
        return Learner(
            model if model is not None else nn.Linear(N_IN, N_CLASSES),
            data if data is not None else make_data(),
            lr=lr,
            plugins=plugins,
            defaults=False,
            **kwargs,
        )

    return build


class LogCapture:
    """A test plugin that keeps a copy of ``learner.log`` after every epoch."""

    name = "log_capture"
    order = 100

    def __init__(self) -> None:
        self.logs: list[dict[str, Any]] = []

    def after_epoch(self, learner: Learner) -> None:
        self.logs.append(dict(learner.log))


@pytest.fixture
def log_capture() -> LogCapture:
    """A fresh :class:`LogCapture` plugin."""
    return LogCapture()


@pytest.fixture
def sync_counter(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    """Count host reads of tensors while ``counter.active`` is true."""
    return SyncCounter(monkeypatch)
