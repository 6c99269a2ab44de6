"""Data for the loop: fast in-memory batching, and the pair of loaders a fit uses.

:class:`TensorLoader` batches tensors that fit in memory by slicing them with a
seeded permutation: one gather per batch instead of one ``__getitem__`` per sample
and a collate. Any ``torch.utils.data.DataLoader`` works in its place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


class TensorLoader:
    """Batches ``(x[idx], y[idx])`` from in-memory tensors.

    Each pass draws a new permutation from the loader's own generator, so the
    sequence of batches depends only on ``seed``, never on the global RNG.

    :param x: inputs, first dimension the sample.
    :param y: targets, same first dimension.
    :param bs: the batch size.
    :param shuffle: draw a new order every pass; otherwise slice in order (views,
        no copy).
    :param seed: seeds the shuffling generator.
    :param drop_last: drop the last, smaller batch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        bs: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"bs should be a positive integer, got {bs!r}")
        if len(x) != len(y):
            raise ValueError(
                f"x and y should have the same number of samples, got {len(x)} and {len(y)}"
            )
        self.x = x
        self.y = y
        self.bs = bs
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        stop = (n // self.bs) * self.bs if self.drop_last else n
        if not self.shuffle:
            for start in range(0, stop, self.bs):
                yield self.x[start : start + self.bs], self.y[start : start + self.bs]
            return
        order = torch.randperm(n, generator=self.generator).to(self.x.device)
        for start in range(0, stop, self.bs):
            idx = order[start : start + self.bs]
            yield self.x[idx], self.y[idx]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TensorLoader:
        """Move the tensors to ``device`` in place (done once, not per batch); returns self."""
        self.x = self.x.to(device, non_blocking=non_blocking)
        self.y = self.y.to(device, non_blocking=non_blocking)
        return self

    def __repr__(self) -> str:
        return (
            f"TensorLoader({len(self.x)} samples, bs={self.bs}, shuffle={self.shuffle}, "
            f"seed={self.seed})"
        )


@dataclass
class DataBunch:
    """The training and validation loaders of a fit, and what describes the data.

    :param train_dl: yields ``(xb, yb)`` training batches.
    :param valid_dl: yields validation batches, or ``None`` to skip validation.
    :param c: number of classes (outputs of the model), when known.
    :param input_shape: the shape of one input as the model expects it, e.g.
        ``(1, 8, 8)`` for flat rows that ``batch_transform`` should reshape.
    :param name: a label for reports.
    """

    train_dl: Iterable[Any]
    valid_dl: Iterable[Any] | None = None
    c: int | None = None
    input_shape: tuple[int, ...] | None = None
    name: str = "data"

    @classmethod
    def from_tensors(
        cls,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_valid: torch.Tensor | None = None,
        y_valid: torch.Tensor | None = None,
        bs: int = 64,
        valid_bs: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> DataBunch:
        """In-memory loaders: training shuffled, validation in order at ``2*bs``."""
        train = TensorLoader(x_train, y_train, bs, shuffle=True, seed=seed)
        valid = None
        if x_valid is not None and y_valid is not None:
            valid = TensorLoader(x_valid, y_valid, valid_bs or 2 * bs, shuffle=False)
        return cls(train, valid, **kwargs)
