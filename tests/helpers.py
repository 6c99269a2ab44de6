"""Test helpers: tiny data and models, a spy plugin that records events."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.data import DataBunch
from engine.events import EVENTS


class Spy:
    """Records every event it receives, in order, as ``(event, in_train)``."""

    name = "spy"
    order = 0

    def __init__(self) -> None:
        self.seen: list[str] = []


def _make_receiver(event: str) -> Any:
    def receive(self: Spy, learner: Any) -> None:
        self.seen.append(event)

    receive.__name__ = event
    return receive


for _event in EVENTS:
    setattr(Spy, _event, _make_receiver(_event))


def tiny_data(n_train: int = 8, n_valid: int = 4, bs: int = 4, seed: int = 0) -> DataBunch:
    """Linearly separable 2-class data: 2 training batches and 1 validation batch by default."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_valid, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    return DataBunch.from_tensors(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, valid_bs=n_valid, seed=seed
    )


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def fake_distribution(
    root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write an installed-looking distribution (dist-info + modules) under ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # as pip names it
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lookinside.plugins]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def lookinside_command(*args: str) -> list[str]:
    """``lookinside ARGS`` as the console script runs it, with this interpreter: the
    current folder is not on ``sys.path`` (``-P`` from Python 3.11; before, the
    script drops it itself)."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", "engine.cli", *args]
    script = "import sys; del sys.path[0]; from engine.cli import main; sys.exit(main())"
    return [sys.executable, "-c", script, *args]
