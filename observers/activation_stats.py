"""Watch every layer's activations while the model trains: the lesson's look inside.

:class:`ActivationStats` hooks modules of the model (by default its top-level
children, as the lesson does) and records, for each hooked module and each
recorded batch, the mean and standard deviation of its output, a histogram, and
the fraction of the output near zero, the lesson's measure of dead units. With
``grads=True`` it records the same for the gradients flowing back into each
module's output.

**On the device, no sync per batch.** Every number stays on the device where
the activations are, written into one preallocated tensor of shape
``(rows, modules, bins + 2)``: per module, the histogram counts and the sum and
sum of squares of the output. It is copied to the host once per epoch (and at
the end). The only other host reads are one per module on the first recorded
batch, when the histogram range is chosen automatically.

**Memory is bounded.** At most ``max_batches`` rows are kept:
``max_batches x modules x (bins + 2) x 4`` bytes on the device, and as much
again on the host (2048 x 7 x 42 x 4 bytes = 2.4 MB for the lesson's CNN). When
a fit records more batches than that, every other row is dropped and from then
on only every other eligible batch is recorded: the record always spans the
whole fit, at an even spacing.

**The histogram of a sample.** Histogramming every activation costs more than
the rest of a small model's training step on a CPU, so the histogram (and the
near-zero fraction taken from it) is computed on a systematic sample of at most
``sample`` values of each output: every k-th value from a random start, with k
the smallest prime at least ``numel / sample`` that does not divide the size of
one sample of the batch, so the sample walks through every channel, row and
column rather than hitting the same pixel each time. Each bin's fraction is then
estimated with a standard error of about ``sqrt(p (1 - p) / n)``, at most
``0.5 / sqrt(n)``: 0.004 with the default 16384 values. The histogram counts are
scaled to the whole output. The mean and standard deviation always use every
value (``sample=0`` makes the histogram exact too).

**Histogram range.** ``range_min``/``range_max`` fix it for every module. By
default each module's range is chosen on the first recorded batch: 0..10 (the
lesson's range for ReLU outputs) when the output has no negative value, else
-7..7 (the lesson's range for GeneralRelu outputs). Values outside the range are
not counted in any bin (as with ``torch.histc``); their fraction is reported.
Gradient histograms span ``+-grad_range``, by default 4 times the standard
deviation of the first recorded gradient.

**Near zero** is the fraction of *all* the output's values that fall in the
``zero_bins`` bins whose centres are closest to 0: with 40 bins over 0..10 the
two lowest bins, ``[0, 0.5)``, as in the lesson; over -7..7, ``[-0.35, 0.35)``.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import random
import sys
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch import nn

from engine.hookspecs import hookimpl
from observers.hooks import Hooks

if TYPE_CHECKING:
    from engine.learner import Learner

RELU_RANGE: tuple[float, float] = (0.0, 10.0)
"""The automatic histogram range of a module whose first recorded output is never negative."""

SIGNED_RANGE: tuple[float, float] = (-7.0, 7.0)
"""The automatic histogram range of a module whose first recorded output has negative values."""

GRAD_SPREAD = 4.0
"""The automatic gradient range is +- this many standard deviations of the first gradient."""

FOLDER = "activations"
"""The folder inside the learner's out_dir that receives the plots and ``diagnosis.md``."""


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
    """The hooked modules' class names."""
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
    return sorted(sorted(range(bins), key=lambda i: (abs(centres[i]), i))[:count])


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


class _Buffer:
    """One preallocated device tensor of rows of per-module histograms and moments.

    Row ``r``, module ``m``: ``[:bins]`` the histogram counts of the sample,
    ``[bins]`` the sum and ``[bins + 1]`` the sum of squares of every value.
    Numbers of values (whole output, sample) live in a host array, set from
    Python ints, so that recording reads nothing back from the device.
    """

    def __init__(
        self, kind: str, names: list[str], types: list[str], owner: ActivationStats
    ) -> None:
        self.kind = kind
        self.names = names
        self.types = types
        self.owner = owner
        self.data: Tensor | None = None
        self.sizes = np.zeros((0, len(names), 2))
        self.ranges: list[tuple[float, float] | None] = [owner.fixed_range] * len(names)
        self._strides: dict[tuple[int, int], int] = {}
        self._rng = random.Random(0)

    def record(self, module: int, row: int, value: Any) -> None:
        if not isinstance(value, Tensor) or not value.is_floating_point() or value.numel() == 0:
            return
        owner = self.owner
        flat = value.detach().reshape(-1)
        if flat.dtype != torch.float32:
            flat = flat.float()
        numel = flat.numel()
        data = self.data if self.data is not None else self._allocate(flat.device)
        key = (module, numel)
        step = self._strides.get(key)
        if step is None:
            item = numel // value.shape[0] if value.dim() > 1 else numel
            step = self._strides[key] = sample_stride(numel, item, owner.sample)
        sample = flat if step == 1 else flat[self._rng.randrange(step) :: step]
        limits = self.ranges[module] or self._choose_range(module, sample)
        slot = data[row, module]
        torch.histc(sample, owner.bins, limits[0], limits[1], out=slot[: owner.bins])
        slot[owner.bins] = flat.sum()
        slot[owner.bins + 1] = torch.dot(flat, flat)
        self.sizes[row, module] = (numel, sample.numel())

    def _allocate(self, device: torch.device) -> Tensor:
        rows, width = self.owner.capacity, self.owner.bins + 2
        self.data = torch.zeros(rows, len(self.names), width, device=device)
        self.sizes = np.zeros((rows, len(self.names), 2))
        return self.data

    def _choose_range(self, module: int, sample: Tensor) -> tuple[float, float]:
        # one host read per module, on the first recorded batch only
        if self.kind == "gradients":
            spread = self.owner.grad_range or GRAD_SPREAD * float(sample.std())
            spread = spread if math.isfinite(spread) and spread > 0 else 1.0
            chosen = (-spread, spread)
        else:
            chosen = SIGNED_RANGE if float(sample.min()) < 0 else RELU_RANGE
        self.ranges[module] = chosen
        return chosen

    def clear_row(self, row: int) -> None:
        if self.data is not None:
            self.data[row].zero_()
            self.sizes[row] = 0

    def halve(self, rows: int) -> None:
        """Keep rows 0, 2, 4... of the first ``rows``, moved to the front."""
        if self.data is not None:
            kept = self.data[0:rows:2].clone()
            self.data[: len(kept)] = kept
            self.sizes[: len(kept)] = self.sizes[0:rows:2].copy()

    def to_host(self, rows: int, owner: ActivationStats) -> ActivationData:
        bins = owner.bins
        ranges = [r or RELU_RANGE for r in self.ranges]
        zeros = [zero_bins(low, high, bins, owner.zero_bins) for low, high in ranges]
        out = ActivationData(self.kind, list(self.names), list(self.types), bins, ranges, zeros)
        out.iterations, out.epochs = list(owner.iterations), list(owner.epochs)
        out.train = list(owner.train_rows)
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


class ActivationStats:
    """Record each hooked module's output statistics and histograms during training.

    After the fit, :attr:`data` (and :attr:`grad_data` with ``grads=True``)
    holds everything recorded; :mod:`observers.activation_plots` draws it and
    :mod:`observers.diagnosis` reads it. When the learner has an out_dir, the
    plots and ``diagnosis.md`` are written into its ``activations`` folder, and
    the diagnosis is printed. Hooks are removed in ``after_fit``, whatever ended
    the fit, and the observer keeps no reference to the model.

    :param modules: name patterns (``fnmatch``, e.g. ``0,1.*``) of the modules to
        hook among ``model.named_modules()``; default: the top-level children.
    :param types: class names (e.g. ``Conv2d,ReLU``) of the modules to hook; with
        ``modules`` too, a module must match both.
    :param every: record every N-th batch.
    :param valid: record validation batches too (training only by default).
    :param bins: histogram bins.
    :param range_min: the histogram's lower edge for every module (with range_max).
    :param range_max: the histogram's upper edge (default: 10 or 7, chosen per module).
    :param zero_bins: how many bins around 0 count as near zero (dead).
    :param sample: histogram at most this many values of each output; 0: all.
    :param grads: also record the gradients of each module's output.
    :param grad_range: gradient histograms span +-grad_range (default: 4 std).
    :param max_batches: the most rows kept; beyond, every other row is dropped.
    :param save: write the plots and diagnosis.md into the learner's out_dir.
    :param report: print the diagnosis after the fit.
    """

    name = "activation_stats"
    order = 25

    def __init__(
        self,
        modules: tuple[str, ...] = (),
        types: tuple[str, ...] = (),
        every: int = 1,
        valid: bool = False,
        bins: int = 40,
        range_min: float | None = None,
        range_max: float | None = None,
        zero_bins: int = 2,
        sample: int = 16384,
        grads: bool = False,
        grad_range: float | None = None,
        max_batches: int = 2048,
        save: bool = True,
        report: bool = True,
    ) -> None:
        self.patterns = _strings("modules", modules)
        self.types = _strings("types", types)
        self.every = _count("every", every, 1)
        self.bins = _count("bins", bins, 1)
        self.zero_bins = _count("zero_bins", zero_bins, 1)
        if self.zero_bins > self.bins:
            raise ValueError(
                f"plugin 'activation_stats': zero_bins ({zero_bins}) should be at most bins "
                f"({bins}); lower zero_bins or raise bins"
            )
        self.sample = _count("sample", sample, 0)
        self.max_batches = _count("max_batches", max_batches, 2)
        self.fixed_range = _range(range_min, range_max)
        if grad_range is not None and not (_is_number(grad_range) and grad_range > 0):
            raise ValueError(
                f"plugin 'activation_stats': grad_range should be a positive number or "
                f"None (automatic), got {grad_range!r}"
            )
        self.grad_range = grad_range
        self.valid, self.grads, self.save, self.report = valid, grads, save, report
        self.data: ActivationData | None = None
        """What was recorded on the activations, updated after every epoch."""
        self.grad_data: ActivationData | None = None
        """What was recorded on the gradients (``grads=True``), updated after every epoch."""
        self.names: list[str] = []
        self.iterations: list[int] = []
        self.epochs: list[int] = []
        self.train_rows: list[bool] = []
        self.capacity = 0
        self.batch_size: int | None = None
        self.layer_types: set[str] = set()
        self.written: list[Any] = []
        """The files written after the last fit."""
        self._hooks: Hooks | None = None
        self._acts: _Buffer | None = None
        self._grads: _Buffer | None = None
        self._index: dict[int, int] = {}
        self._row = -1
        self._rows = 0
        self._stride = 1
        self._seen = 0
        self._train_seen = 0
        self._fired = False

    # -- events --------------------------------------------------------------

    def begin_fit(self, learner: Learner) -> None:
        self._release()
        self.data = self.grad_data = None
        self.iterations, self.epochs, self.train_rows, self.written = [], [], [], []
        self._rows, self._stride, self._seen, self._train_seen = 0, 1, 0, 0
        self.batch_size = None
        named = select_modules(learner.model, self.patterns, self.types)
        self.names = [name for name, _ in named]
        self.layer_types = {type(m).__name__ for m in learner.model.modules()}
        self.capacity = self._capacity(learner)
        self._index = {id(module): i for i, (_, module) in enumerate(named)}
        types = [type(module).__name__ for _, module in named]
        self._acts = _Buffer("activations", self.names, types, self)
        if self.grads:
            self._grads = _Buffer("gradients", self.names, types, self)
        self._hooks = Hooks([module for _, module in named], self._forward)

    def begin_batch(self, learner: Learner) -> None:
        self._row = -1
        if learner.in_train:
            self._train_seen += 1
        elif not self.valid:
            return
        seen = self._seen
        self._seen += 1
        if seen % (self.every * self._stride):
            return
        if self._rows == self.capacity:
            self._halve()
        self._row = self._rows
        self._rows += 1
        self._fired = False
        self.iterations.append(self._train_seen - 1)
        self.epochs.append(learner.epoch)
        self.train_rows.append(bool(learner.in_train))
        if self.batch_size is None and learner.in_train and isinstance(learner.xb, Tensor):
            self.batch_size = int(learner.xb.shape[0])

    def after_batch(self, learner: Learner) -> None:
        if self._row >= 0 and not self._fired:  # cancelled before the forward pass
            self._rows -= 1
            del self.iterations[-1], self.epochs[-1], self.train_rows[-1]
        self._row = -1

    def after_epoch(self, learner: Learner) -> None:
        self._to_host()

    def after_fit(self, learner: Learner) -> None:
        try:
            self._remove_hooks()
            self._to_host()
        finally:
            self._release()
        if self.data is not None and len(self.data):
            self._publish(learner)

    # -- hooks ---------------------------------------------------------------

    def _forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        row = self._row
        if row >= 0 and self._acts is not None:
            self._fired = True
            index = self._index[id(module)]
            self._acts.record(index, row, output)
            if self._grads is not None and isinstance(output, Tensor) and output.requires_grad:
                # a hook on the output tensor: called with d(loss)/d(output) in backward
                output.register_hook(functools.partial(self._gradient, index, row))

    def _gradient(self, module: int, row: int, grad: Tensor) -> None:
        if self._grads is not None:
            self._grads.record(module, row, grad)

    # -- helpers -------------------------------------------------------------

    def _capacity(self, learner: Learner) -> int:
        """Rows to preallocate: the batches this fit will record, at most max_batches."""
        try:
            batches = len(learner.data.train_dl)  # type: ignore[arg-type]
            if self.valid and learner.data.valid_dl is not None:
                batches += len(learner.data.valid_dl)  # type: ignore[arg-type]
        except TypeError:
            return self.max_batches
        expected = -(-batches * max(learner.epochs, 1) // self.every)
        return max(2, min(self.max_batches, expected))

    def _halve(self) -> None:
        for buffer in (self._acts, self._grads):
            if buffer is not None:
                buffer.halve(self._rows)
        self.iterations = self.iterations[::2]
        self.epochs = self.epochs[::2]
        self.train_rows = self.train_rows[::2]
        self._rows = len(self.iterations)
        self._stride *= 2

    def _to_host(self) -> None:
        if self._acts is not None:
            self.data = self._acts.to_host(self._rows, self)
        if self._grads is not None:
            self.grad_data = self._grads.to_host(self._rows, self)

    def _remove_hooks(self) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.remove()

    def _release(self) -> None:
        self._remove_hooks()
        self._acts = self._grads = None
        self._index = {}
        self._row = -1

    def _publish(self, learner: Learner) -> None:
        from observers.diagnosis import diagnose

        if self.data is None:
            return
        result = diagnose(self.data, batch_size=self.batch_size, layer_types=self.layer_types)
        if self.report:
            print(result.table(), file=sys.stdout)
        if self.save and learner.out_dir is not None:
            from observers.activation_plots import save_activation_plots

            folder = learner.out_dir / FOLDER
            self.written = save_activation_plots(self.data, folder)
            if self.grad_data is not None and len(self.grad_data):
                self.written += save_activation_plots(self.grad_data, folder, prefix="grad_")
            self.written.append(result.save(folder / "diagnosis.md"))


def select_modules(
    model: nn.Module, patterns: Sequence[str] = (), types: Sequence[str] = ()
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs :class:`ActivationStats` hooks.

    With neither patterns nor types: the model's top-level children (the model
    itself when it has none, named ``model``). Otherwise the modules of
    ``model.named_modules()`` whose name matches one of ``patterns`` (when
    given) and whose class, or a base class, is named in ``types`` (when given).

    :param model: the model.
    :param patterns: ``fnmatch`` patterns of module names.
    :param types: class names.
    """
    if not patterns and not types:
        children = list(model.named_children())
        return children or [("model", model)]
    found = []
    for name, module in model.named_modules():
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if types and not any(c.__name__ in types for c in type(module).__mro__):
            continue
        found.append((name or "model", module))
    if not found:
        names = [name for name, _ in model.named_modules() if name]
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ValueError(
            f"plugin 'activation_stats': no module matches modules={tuple(patterns)} "
            f"types={tuple(types)}; the model's modules are: {shown or 'none'}"
        )
    return found


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(option: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(
            f"plugin 'activation_stats': {option} should be an integer of at least {least}, "
            f"got {value!r}"
        )
    return value


def _strings(option: str, value: object) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(v, str) for v in items):
        raise TypeError(
            f"plugin 'activation_stats': {option} should be a sequence of strings, got {value!r}"
        )
    return tuple(v for v in items if v)


def _range(low: float | None, high: float | None) -> tuple[float, float] | None:
    if low is None and high is None:
        return None
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))) or (
        isinstance(low, bool) or isinstance(high, bool)
    ):
        raise ValueError(
            "plugin 'activation_stats': give both range_min and range_max (numbers), or "
            f"neither for the automatic range; got range_min={low!r}, range_max={high!r}"
        )
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(
            f"plugin 'activation_stats': range_min should be below range_max, both finite; "
            f"got {low!r} and {high!r}"
        )
    return float(low), float(high)


@hookimpl
def lookinside_register(register: Callable[..., Any]) -> None:
    """Register :class:`ActivationStats` (off by default: ``-p activation_stats``).

    :param register: the registration function bound to this module.
    """
    register(ActivationStats)
