"""Shared fixtures: tiny data and models, a spy plugin that records events."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.data import DataBunch
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_report_header() -> list[str]:
    """Which torch the suite runs on: the resolver picks it, and trained outcomes depend on it."""
    from engine.version import version_line

    return [version_line(), f"torch threads: 1 per test (this machine: {os.cpu_count()} CPUs)"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Each test on one intra-op thread: the tensors are tiny, and on a busy 2-core
    machine thread hand-offs cost far more than they save. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def data() -> DataBunch:
    return tiny_data()


@pytest.fixture
def model() -> nn.Module:
    return tiny_model()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for fake distributions; their modules are unloaded after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("fake_"):
            del sys.modules[name]
