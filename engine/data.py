"""Data for the loop: fast in-memory batching, and the pair of loaders a fit uses.

:class:`TensorLoader` batches tensors that fit in memory by slicing them with a
seeded permutation: one gather per batch instead of one ``__getitem__`` per sample
and a collate. Any ``torch.utils.data.DataLoader`` works in its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

import torch
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from torch import nn


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
        self.rank = 0
        self.world_size = 1
        self.pad = True

    def shard(self, rank: int, world_size: int, pad: bool = True) -> TensorLoader:
        """Yield only rank ``rank``'s share of each pass, in place; returns self.

        Every rank draws the same order (same seed); sample ``i`` of it goes to rank
        ``i % world_size``, as with ``DistributedSampler``. So batch ``t`` of all
        the ranks together is batch ``t`` of one process with ``world_size`` times
        the batch size. ``pad`` repeats the first samples of the order so every rank
        gets as many (the ranks must run as many training batches); without it the
        shards differ by at most one sample. ``shard(0, 1)`` undoes it.

        :param rank: this process's rank.
        :param world_size: the number of ranks.
        :param pad: give every rank as many samples.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank should be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.pad = rank, world_size, pad
        return self

    def _shard_size(self) -> int:
        n, w = len(self.x), self.world_size
        return math.ceil(n / w) if self.pad else len(range(self.rank, n, w))

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        size = self._shard_size()
        stop = (size // self.bs) * self.bs if self.drop_last else size
        if self.world_size == 1 and not self.shuffle:
            for start in range(0, stop, self.bs):
                yield self.x[start : start + self.bs], self.y[start : start + self.bs]
            return
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        if self.world_size > 1:
            if self.pad and size * self.world_size > n:
                extra = size * self.world_size - n
                order = torch.cat([order, order.repeat(math.ceil(extra / n))[:extra]])
            order = order[self.rank :: self.world_size]
        for start in range(0, stop, self.bs):
            idx = order[start : start + self.bs]
            yield self.x[idx], self.y[idx]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TensorLoader:
        """Move the tensors to ``device`` in place (done once, not per batch); returns self."""
        self.x = self.x.to(device, non_blocking=non_blocking)
        self.y = self.y.to(device, non_blocking=non_blocking)
        return self

    def __repr__(self) -> str:
        shard = f", rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""
        return (
            f"TensorLoader({len(self.x)} samples, bs={self.bs}, shuffle={self.shuffle}, "
            f"seed={self.seed}{shard})"
        )


class ShardSampler(Sampler[int]):
    """One rank's share of a dataset's indices, like ``DistributedSampler``.

    Each epoch's order comes from ``seed + epoch`` (call :meth:`set_epoch`), the
    same on every rank; index ``i`` of it goes to rank ``i % world_size``. Unlike
    ``DistributedSampler``, ``pad=False`` gives uneven shards without repeating
    samples, for validation passes that should count each sample once.

    :param n: the dataset's length.
    :param rank: this process's rank.
    :param world_size: the number of ranks.
    :param shuffle: a new order each epoch; otherwise ``0..n-1``.
    :param seed: seeds the shuffling, with the epoch.
    :param pad: repeat the first indices so every rank gets as many.
    """

    def __init__(
        self,
        n: int,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pad: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank should be in [0, {world_size}), got {rank}")
        self.n, self.rank, self.world_size = n, rank, world_size
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order from the next pass on."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.n / self.world_size)
        return len(range(self.rank, self.n, self.world_size))

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        total = len(self) * self.world_size
        if self.pad and self.n and total > self.n:
            extra = total - self.n
            order = torch.cat([order, order.repeat(math.ceil(extra / self.n))[:extra]])
        return iter(order[self.rank : total if self.pad else None : self.world_size].tolist())


@dataclass
class DataBunch:
    """The training and validation loaders of a fit, and what describes the data.

    ``c`` and ``input_shape`` are what a model needs to fit the data:
    :func:`engine.nn.build_model` (``lookinside fit``) sizes its outputs with ``c``
    and picks the CNN for an ``input_shape`` of images ``(C, H, W)``, an MLP for
    flat features ``(F,)``. A dataset whose data wants another model supplies it as
    ``make_model``, which ``--model auto`` (the default) builds instead.

    :param train_dl: yields ``(xb, yb)`` training batches.
    :param valid_dl: yields validation batches, or ``None`` to skip validation.
    :param c: number of classes (outputs of the model), when known.
    :param input_shape: the shape of one input as the model expects it, e.g.
        ``(1, 8, 8)`` for flat rows that ``batch_transform`` should reshape, or
        ``(20,)`` for 20 flat features.
    :param name: a label for reports.
    :param make_model: builds the model for this data when called with no argument;
        ``None``: the model is chosen from ``c`` and ``input_shape``.
    """

    train_dl: Iterable[Any]
    valid_dl: Iterable[Any] | None = None
    c: int | None = None
    input_shape: tuple[int, ...] | None = None
    name: str = "data"
    make_model: Callable[[], nn.Module] | None = None

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
        """In-memory loaders: training shuffled, validation in order at ``2*bs``.

        ``c`` and ``input_shape`` are inferred from the tensors unless given (pass
        ``None`` to leave one unset): ``input_shape`` is ``x_train.shape[1:]`` (for
        inputs of at least two dimensions), ``c`` the largest label plus one when the
        targets are 1-D integer class labels (no negative one). Pass ``c`` when some
        classes are absent from the labels given, and ``input_shape=(1, 28, 28)``
        for flat rows that are images.

        :param x_train: training inputs, first dimension the sample.
        :param y_train: training targets.
        :param x_valid: validation inputs; no validation without them.
        :param y_valid: validation targets.
        :param bs: the training batch size.
        :param valid_bs: the validation batch size (default ``2 * bs``).
        :param seed: seeds the training loader's shuffling.
        :param kwargs: more fields of the bunch: ``c``, ``input_shape``, ``name``,
            ``make_model``.
        """
        train = TensorLoader(x_train, y_train, bs, shuffle=True, seed=seed)
        valid = None
        if x_valid is not None and y_valid is not None:
            valid = TensorLoader(x_valid, y_valid, valid_bs or 2 * bs, shuffle=False)
        if "input_shape" not in kwargs and x_train.dim() >= 2:
            kwargs["input_shape"] = tuple(int(d) for d in x_train.shape[1:])
        if "c" not in kwargs:
            kwargs["c"] = _class_count(y_train, None if valid is None else y_valid)
        return cls(train, valid, **kwargs)


def _class_count(*targets: torch.Tensor | None) -> int | None:
    """The number of classes integer labels imply, the largest plus one; None if unsure.

    Only 1-D tensors of integers (not bools) of no negative value count as labels;
    anything else (float targets, one-hot rows, no label at all) gives None. Reading
    the largest label copies one number to the host.

    :param targets: the label tensors (``None`` entries are skipped).
    """
    largest = -1
    for y in targets:
        if y is None:
            continue
        if y.dim() != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            return None
        if len(y) == 0:
            continue
        low, high = torch.aminmax(y)
        if int(low) < 0:
            return None
        largest = max(largest, int(high))
    return largest + 1 if largest >= 0 else None


def batch_count(dl: Iterable[Any]) -> int | None:
    """How many batches a loader yields, or ``None`` when it cannot tell (the
    loader of an ``IterableDataset``, a generator)."""
    try:
        return len(dl)  # type: ignore[arg-type]
    except TypeError:
        return None


def as_databunch(data: Any) -> DataBunch:
    """``data`` itself, or a :class:`DataBunch` of a ``(train, valid)`` pair."""
    if isinstance(data, DataBunch):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return DataBunch(data[0], data[1])
    raise TypeError(
        f"data should be a DataBunch or a (train_loader, valid_loader) pair, got "
        f"{type(data).__name__}"
    )
