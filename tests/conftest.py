"""Shared fixtures: tiny data and models, a spy plugin that records events."""

from __future__ import annotations

import os

import pytest
from torch import nn

from engine.data import DataBunch
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def data() -> DataBunch:
    return tiny_data()


@pytest.fixture
def model() -> nn.Module:
    return tiny_model()
