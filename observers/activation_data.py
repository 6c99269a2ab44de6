"""What the activation_stats observer records, and how, on the device.

:class:`ActivationBuffer` keeps per-module statistics of many batches in one
preallocated device tensor and copies them to the host as an
:class:`ActivationData`: means, standard deviations, histograms, the fraction
near zero and the fraction outside the histogram's range, one row per batch.

**The histogram of a sample.** Histogramming every activation costs more than
the rest of a small model's training step on a CPU, so the histogram (and the
near-zero fraction taken from it) is computed on a systematic sample of at most
``sample`` values of each tensor: every k-th value from a random start, with k
the smallest prime at least ``numel / sample`` that does not divide the size of
one item of the batch (:func:`sample_stride`), so the sample walks through every
channel, row and column rather than hitting the same pixel each time. Each
bin's fraction is then estimated with a standard error of about
``sqrt(p (1 - p) / n)``, at most ``0.5 / sqrt(n)``: 0.0055 with the 8192 values
the observer takes by default. The counts are scaled to the whole tensor.

The mean and standard deviation always use every value, from their sum and sum
of squares, accumulated in float32 on the device: the std's relative error grows
like ``1e-7 (mean / std) ** 2``, negligible unless the mean dwarfs the spread.
``sample=0`` histograms every value too.

**Histogram range.** A fixed range applies to every module. Otherwise each
module's range is chosen on its first recorded tensor, with one host read:
:data:`RELU_RANGE` (0..10, the lesson's range for ReLU outputs) when it has no
negative value, else :data:`SIGNED_RANGE` (-7..7, the lesson's range for
GeneralRelu outputs); gradients span +-:data:`GRAD_SPREAD` standard deviations
of the first gradient. Values outside the range are counted in no bin (as with
``torch.histc``); their fraction is reported.

**Near zero** is the fraction of *all* the values that fall in the bins whose
centres are closest to 0 (:func:`zero_bins`): with 40 bins over 0..10 the two
lowest bins, ``[0, 0.5)``, as in the lesson; over -7..7, ``[-0.35, 0.35)``. The
lesson divides by the values inside the range instead; the two agree when
nothing falls outside it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import numpy as np
import torch
from torch import Tensor

RELU_RANGE: tuple[float, float] = (0.0, 10.0)
"""The automatic histogram range of a module whose first recorded output is never negative."""

SIGNED_RANGE: tuple[float, float] = (-7.0, 7.0)
"""The automatic histogram range of a module whose first recorded output has negative values."""

GRAD_SPREAD = 4.0
"""The automatic gradient range is +- this many standard deviations of the first gradient."""


@dataclass
class ActivationData:
    """What :class:`ActivationStats` recorded, on the host: one row per recorded batch.

    Tensors are indexed ``[row, module]`` (and ``[row, module, bin]``). A module
    that did not run during a recorded batch has NaN statistics in that row.
    """

    kind: str
    """``"activations"`` or ``"gradients"``."""
    names: list[str]
    """The hooked modules' names, as in ``model.named_modules()``."""
    types: list[str]
    """The hooked modules' class names (a plain container's: its layers', ``Conv2d+ReLU``)."""
    bins: int
    ranges: list[tuple[float, float]]
    """Each module's histogram range ``(low, high)``."""
    zero_bins: list[list[int]]
    """Each module's bins counted as near zero."""
    iterations: list[int] = field(default_factory=list)
    """The training batch (0-based, counted over the fit) each row was taken at."""
    epochs: list[int] = field(default_factory=list)
    train: list[bool] = field(default_factory=list)
    """False for rows recorded during validation (``valid=True``)."""
    numel: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    """How many values each output had."""
    means: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    stds: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    """Standard deviations with Bessel's correction, as ``torch.std``."""
    hists: Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0))
    """Histogram counts, scaled to the whole output when a sample was histogrammed."""
    near_zero: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    """The fraction of values in the near-zero bins."""
    out_of_range: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    """The fraction of values outside the histogram's range."""

    def __len__(self) -> int:
        return len(self.iterations)

    @property
    def labels(self) -> list[str]:
        """Each module as tables, pictures and TensorBoard name it: ``name (Type)``."""
        return [f"{name} ({kind})" for name, kind in zip(self.names, self.types)]

    def edges(self, module: int) -> Tensor:
        """The ``bins + 1`` bin edges of one module's histogram.

        :param module: the module's index in :attr:`names`.
        """
        low, high = self.ranges[module]
        return torch.linspace(low, high, self.bins + 1, dtype=torch.float64)

    def index(self, layer: int | str) -> int:
        """The index of a module given by index or name.

        :param layer: an index into :attr:`names`, or a name in it.
        """
        if isinstance(layer, str):
            if layer not in self.names:
                raise ValueError(f"no recorded module {layer!r}; recorded: {', '.join(self.names)}")
            return self.names.index(layer)
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer should be an index or a module name, got {layer!r}")
        if not -len(self.names) <= layer < len(self.names):
            raise ValueError(f"layer {layer} is out of range: {len(self.names)} modules recorded")
        return layer % len(self.names)

    def select(self, rows: Sequence[int] | Tensor) -> ActivationData:
        """A copy holding only the given rows.

        :param rows: row indices, in the order to keep.
        """
        idx = torch.as_tensor(rows, dtype=torch.long)
        keep = idx.tolist()
        return ActivationData(
            self.kind,
            list(self.names),
            list(self.types),
            self.bins,
            list(self.ranges),
            [list(z) for z in self.zero_bins],
            [self.iterations[i] for i in keep],
            [self.epochs[i] for i in keep],
            [self.train[i] for i in keep],
            self.numel[idx],
            self.means[idx],
            self.stds[idx],
            self.hists[idx],
            self.near_zero[idx],
            self.out_of_range[idx],
        )

    def training(self) -> ActivationData:
        """A copy holding only the rows recorded on training batches."""
        return self.select([i for i, t in enumerate(self.train) if t])


def zero_bins(low: float, high: float, bins: int, count: int) -> list[int]:
    """The ``count`` bins whose centres are closest to 0 (the lower one on a tie).

    >>> zero_bins(0.0, 10.0, 40, 2), zero_bins(-7.0, 7.0, 40, 2)
    ([0, 1], [19, 20])

    :param low: the histogram's lower edge.
    :param high: the histogram's upper edge.
    :param bins: the number of bins.
    :param count: how many bins to pick.
    """
    width = (high - low) / bins
    centres = [low + (i + 0.5) * width for i in range(bins)]
    # rounded, so that bins equally far from 0 tie despite floating-point noise
    return sorted(sorted(range(bins), key=lambda i: (round(abs(centres[i]), 9), i))[:count])


def sample_stride(numel: int, item_size: int, sample: int) -> int:
    """The step of the systematic sample: 1 when everything fits in ``sample`` values.

    Otherwise the smallest prime ``k >= ceil(numel / sample)`` that does not
    divide ``item_size``, so the sample visits every position of an item.

    >>> sample_stride(802816, 1568, 16384), sample_stride(1000, 10, 2000)
    (53, 1)

    :param numel: the number of values in the tensor.
    :param item_size: the number of values of one item of the batch.
    :param sample: the most values to take; 0 takes them all.
    """
    if sample <= 0 or numel <= sample:
        return 1
    step = max(2, -(-numel // sample))
    while not _is_prime(step) or item_size % step == 0:
        step += 1
    return step


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


class ActivationBuffer:
    """Per-module statistics of many batches in one preallocated device tensor.

    Row ``r``, module ``m`` of :attr:`data` (``capacity x modules x (bins +
    2)``, allocated on the device of the first recorded tensor): ``[:bins]`` the
    histogram counts of the sample, ``[bins]`` the sum and ``[bins + 1]`` the
    sum of squares of every value. The numbers of values (whole tensor, sample)
    live in a host array, set from Python ints, so that recording reads nothing
    back from the device.

    :param kind: ``"activations"`` or ``"gradients"`` (chooses the automatic range).
    :param names: the modules' names.
    :param types: the modules' class names.
    :param capacity: the rows to allocate.
    :param bins: histogram bins.
    :param sample: histogram at most this many values per tensor; 0: all.
    :param fixed_range: one histogram range for every module; ``None``: automatic.
    :param grad_range: the gradients' range is +-this; ``None``: automatic.
    :param seed: seeds the random starts of the samples.
    """

    def __init__(
        self,
        kind: str,
        names: list[str],
        types: list[str],
        capacity: int,
        bins: int = 40,
        sample: int = 8192,
        fixed_range: tuple[float, float] | None = None,
        grad_range: float | None = None,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.names = names
        self.types = types
        self.capacity = capacity
        self.bins = bins
        self.sample = sample
        self.grad_range = grad_range
        self.data: Tensor | None = None
        """The device tensor, once something was recorded."""
        self.sizes = np.zeros((0, len(names), 2))
        """Per row and module: the number of values and of sampled values."""
        self.ranges: list[tuple[float, float] | None] = [fixed_range] * len(names)
        """Each module's histogram range, ``None`` until chosen."""
        self._strides: dict[tuple[int, int], int] = {}
        self._rng = random.Random(seed)

    def record(self, module: int, row: int, value: Any) -> None:
        """Write one tensor's statistics into ``row`` for ``module``; no host read.

        Anything but a non-empty floating-point tensor is ignored.

        :param module: the module's index.
        :param row: the row, below the capacity.
        :param value: the module's output (or its gradient).
        """
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.numel() == 0:
            return
        bins = self.bins
        flat = value.detach().reshape(-1)
        if flat.dtype != torch.float32:
            flat = flat.float()
        numel = flat.numel()
        data = self.data if self.data is not None else self._allocate(flat.device)
        key = (module, numel)
        step = self._strides.get(key)
        if step is None:
            item = numel // value.shape[0] if value.dim() > 1 else numel
            step = self._strides[key] = sample_stride(numel, item, self.sample)
        sample = flat if step == 1 else flat[self._rng.randrange(step) :: step]
        limits = self.ranges[module] or self._choose_range(module, sample)
        slot = data[row, module]
        torch.histc(sample, bins, limits[0], limits[1], out=slot[:bins])
        slot[bins] = flat.sum()
        slot[bins + 1] = torch.dot(flat, flat)
        self.sizes[row, module] = (numel, sample.numel())

    def _allocate(self, device: torch.device) -> Tensor:
        rows, width = self.capacity, self.bins + 2
        self.data = torch.zeros(rows, len(self.names), width, device=device)
        self.sizes = np.zeros((rows, len(self.names), 2))
        return self.data

    def _choose_range(self, module: int, sample: Tensor) -> tuple[float, float]:
        # one host read per module, on the first recorded batch only
        if self.kind == "gradients":
            spread = self.grad_range or GRAD_SPREAD * float(sample.std())
            spread = spread if math.isfinite(spread) and spread > 0 else 1.0
            chosen = (-spread, spread)
        else:
            chosen = SIGNED_RANGE if float(sample.min()) < 0 else RELU_RANGE
        self.ranges[module] = chosen
        return chosen

    def halve(self, rows: int) -> int:
        """Keep rows 0, 2, 4... of the first ``rows``, moved to the front; zero the rest.

        :param rows: how many rows are filled.
        :returns: how many rows are left.
        """
        kept = len(range(0, rows, 2))
        if self.data is not None:
            self.data[:kept] = self.data[0:rows:2].clone()
            self.data[kept:] = 0.0
            self.sizes[:kept] = self.sizes[0:rows:2].copy()
            self.sizes[kept:] = 0.0
        return kept

    def to_host(
        self,
        rows: int,
        iterations: list[int],
        epochs: list[int],
        train: list[bool],
        near_zero_bins: int = 2,
    ) -> ActivationData:
        """Copy the first ``rows`` to the host (one sync) and derive the statistics.

        :param rows: how many rows are filled.
        :param iterations: the training batch of each row.
        :param epochs: the epoch of each row.
        :param train: whether each row is a training batch.
        :param near_zero_bins: how many bins around 0 count as near zero.
        """
        bins = self.bins
        ranges = [r or RELU_RANGE for r in self.ranges]
        zeros = [zero_bins(low, high, bins, near_zero_bins) for low, high in ranges]
        out = ActivationData(self.kind, list(self.names), list(self.types), bins, ranges, zeros)
        out.iterations, out.epochs, out.train = list(iterations), list(epochs), list(train)
        modules = len(self.names)
        if self.data is None or rows == 0:
            shape = (rows, modules)
            out.numel = out.means = out.stds = torch.full(shape, math.nan, dtype=torch.float64)
            out.hists = torch.zeros(rows, modules, bins)
            out.near_zero = out.out_of_range = torch.full(shape, math.nan, dtype=torch.float64)
            return out
        host = self.data[:rows].to("cpu", torch.float64)  # the one sync of the epoch
        sizes = torch.from_numpy(self.sizes[:rows].copy())
        numel, taken = sizes[..., 0], sizes[..., 1]
        missing = numel == 0
        numel_safe = numel.masked_fill(missing, math.nan)
        total, squares = host[..., bins], host[..., bins + 1]
        out.numel = numel
        out.means = total / numel_safe
        spread = (squares - total * total / numel_safe) / (numel_safe - 1).clamp(min=1)
        out.stds = spread.clamp(min=0).sqrt()
        share = host[..., :bins] / taken.masked_fill(missing, math.nan).unsqueeze(-1)
        out.hists = (share * numel.unsqueeze(-1)).nan_to_num(0.0).float()
        near = torch.stack([share[:, m, zeros[m]].sum(-1) for m in range(modules)], dim=1)
        out.near_zero = near
        out.out_of_range = 1.0 - share.sum(-1)
        return out
