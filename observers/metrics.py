"""Loss and metrics per epoch, for the training and the validation pass.

:class:`Metrics` averages the loss and any number of metrics over every sample a
pass has seen, weighting each batch by its size, so a last, smaller batch counts
exactly as much as its samples. Nothing is read back from the device during a
pass: each batch appends a few tensors to lists, and ``after_epoch`` turns
everything into Python numbers with a single host-device synchronisation.

A metric is a function ``f(pred, yb)`` returning the *batch mean* as a 0-d tensor;
built-in ones are looked up by name in :data:`METRICS`. The built-in ones,
``accuracy`` and ``error_rate``, both compare ``pred.argmax(-1)`` with the
targets, so they share one ``argmax`` per batch, and the comparisons are done
for :data:`CHUNK` batches at once: per batch, the whole observer costs two
tensor operations (that ``argmax`` and detaching the loss).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine._checks import boolean
from engine.exceptions import TrainingDiverged
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from torch import Tensor

    from engine.distributed import Distributed
    from engine.learner import Learner

MetricFunc = Callable[["Tensor", "Tensor"], "Tensor"]
"""``f(pred, yb)``: the batch mean of a metric, as a 0-d tensor."""


def accuracy(pred: Tensor, yb: Tensor) -> Tensor:
    """The fraction of samples whose highest score is the target class.

    :param pred: scores, classes along the last dimension.
    :param yb: the target class indices.
    """
    return (pred.argmax(dim=-1) == yb).float().mean()


def error_rate(pred: Tensor, yb: Tensor) -> Tensor:
    """The fraction of samples whose highest score is not the target class.

    :param pred: scores, classes along the last dimension.
    :param yb: the target class indices.
    """
    return (pred.argmax(dim=-1) != yb).float().mean()


METRICS: dict[str, MetricFunc] = {"accuracy": accuracy, "error_rate": error_rate}
"""The metrics :class:`Metrics` knows by name."""

_ARGMAX_METRICS: dict[MetricFunc, bool] = {accuracy: False, error_rate: True}
"""Metrics computed from ``argmax(pred, -1) == yb``; True for its complement."""

CHUNK = 32
"""How many batches are folded together (losses stacked, argmax predictions compared)."""


@dataclass
class _Pass:
    """What one pass (training or validation) accumulated this epoch.

    Per-batch tensors wait in the pending lists until :data:`CHUNK` batches have
    come, then :meth:`compact` folds them into one tensor per chunk: a few tensor
    operations per chunk instead of per batch, and few small tensors to keep.
    """

    sizes: list[int] = field(default_factory=list)
    """The number of samples of each batch."""
    losses: list[Tensor] = field(default_factory=list)
    """Pending: the detached loss (a batch mean) of each batch."""
    values: list[list[Tensor]] = field(default_factory=list)
    """Pending: per callable metric, its value (a batch mean) for each batch."""
    guesses: list[Tensor] = field(default_factory=list)
    """Pending: ``argmax(pred, -1)`` of each batch."""
    targets: list[Tensor] = field(default_factory=list)
    """Pending: the targets of each batch."""
    loss_chunks: list[Tensor] = field(default_factory=list)
    """The losses of each compacted chunk, a 1-d tensor each."""
    value_chunks: list[list[Tensor]] = field(default_factory=list)
    """Per callable metric, its values of each compacted chunk, a 1-d tensor each."""
    hits: list[Tensor] = field(default_factory=list)
    """Per compacted chunk, how many argmax predictions were right."""
    compared: int = 0
    """How many predictions the ``hits`` count over."""

    def compact(self) -> None:
        """Fold the pending batches into one tensor per chunk; count argmax hits."""
        import torch

        if self.losses:
            self.loss_chunks.append(torch.stack(self.losses).reshape(-1))
            self.losses = []
        for pending, chunks in zip(self.values, self.value_chunks):
            if pending:
                chunks.append(torch.stack(pending).reshape(-1))
                pending.clear()
        if self.guesses:
            guesses = torch.cat(self.guesses) if len(self.guesses) > 1 else self.guesses[0]
            targets = torch.cat(self.targets) if len(self.targets) > 1 else self.targets[0]
            self.hits.append((guesses == targets).sum())
            self.compared += guesses.numel()
            self.guesses, self.targets = [], []


class Metrics:
    """Average the loss and metrics over each epoch's training and validation pass.

    Writes into ``learner.log`` after each epoch: ``train_loss``,
    ``train_<metric>``, ``valid_loss``, ``valid_<metric>`` (``None`` for a pass
    that saw no batch: no validation loader, or a pass cancelled at its start)
    and ``time``, the epoch's duration in seconds. A copy of the log at that
    moment is appended to :attr:`history`, which :meth:`begin_fit` empties.

    The loss function is assumed to return the batch mean, like
    ``F.cross_entropy``; a batch counts once its loss is computed
    (``after_loss``), so one cancelled before that does not count.

    A training loss that is NaN or infinite at the end of an epoch stops the fit
    with :class:`~engine.exceptions.TrainingDiverged` (one line and exit status 2
    on the command line), before any later observer writes the epoch: a diverged
    run does not go on silently with NaN weights. This check reads nothing more
    from the device (the epoch's one synchronisation gives the loss);
    ``terminate_on_nan`` stops at the very batch instead, at one sync per batch.

    :param metrics: names of built-in metrics (``accuracy``, ``error_rate``),
        or, from Python, callables ``f(pred, yb)`` returning the batch mean as a
        0-d tensor, reported under their ``__name__``.
    :param stop_on_nonfinite: stop the fit when an epoch's training loss is not finite.
    """

    name = "metrics"
    order = order.METRICS

    def __init__(
        self,
        metrics: tuple[str, ...] | Sequence[str | MetricFunc] = ("accuracy",),
        stop_on_nonfinite: bool = True,
    ) -> None:
        self.stop_on_nonfinite = boolean("stop_on_nonfinite", stop_on_nonfinite)
        items: Sequence[str | MetricFunc] = (metrics,) if isinstance(metrics, str) else metrics
        if not isinstance(items, Sequence):
            raise TypeError(
                f"plugin 'metrics': 'metrics' should be a sequence of metric names or "
                f"callables, got {type(metrics).__name__}"
            )
        self.funcs: dict[str, MetricFunc] = {}
        """The metrics by the name they are reported under, in order."""
        for item in items:
            name, func = _resolve(item)
            if name in self.funcs or name == "loss":
                clash = "the loss" if name == "loss" else "another metric"
                raise ValueError(
                    f"plugin 'metrics': metric {name!r} would be reported under the same "
                    f"name as {clash}; give each a distinct name"
                )
            self.funcs[name] = func
        self._argmax = {
            n: _ARGMAX_METRICS[f] for n, f in self.funcs.items() if f in _ARGMAX_METRICS
        }
        self._callables = {n: f for n, f in self.funcs.items() if f not in _ARGMAX_METRICS}
        self.history: list[dict[str, Any]] = []
        """A copy of ``learner.log`` per epoch of the current (or last) fit."""
        self._train = _Pass()
        self._valid = _Pass()
        self._start = 0.0
        self._summed: tuple[list[list[float]], float] | None = None
        """The epoch's sums over every rank (distributed fits), until after_epoch reads them."""

    @property
    def names(self) -> list[str]:
        """The metric names, as they appear after ``train_`` and ``valid_``."""
        return list(self.funcs)

    @property
    def log_keys(self) -> list[str]:
        """The keys written into ``learner.log`` each epoch, known before the fit starts.

        :func:`plugins._monitor.check_monitor` reads them to check a monitor at
        ``begin_fit``.
        """
        passes = [
            f"{prefix}_{name}" for prefix in ("train", "valid") for name in ("loss", *self.funcs)
        ]
        return [*passes, "time"]

    @property
    def last(self) -> dict[str, Any] | None:
        """The most recent epoch's values, or ``None`` before the first epoch ends."""
        return self.history[-1] if self.history else None

    def begin_fit(self, learner: Learner) -> None:
        self.history = []
        self._summed = None
        self._reset()
        dist = learner.dist
        if dist is not None:
            # every rank reports the numbers of all the ranks' samples together,
            # summed where every rank meets (not in after_epoch, which a plugin
            # ordered before this one may cancel on one rank only)
            learner.coordinator.add_reduction(partial(self._sum_over_ranks, dist))

    def _epoch_totals(self) -> tuple[list[list[float]], float]:
        """This process's per-pass sums, and the epoch's seconds."""
        import torch

        passes = (self._train, self._valid)
        parts = [part for acc in passes for part in self._parts(acc)]
        # the one host-device synchronisation of the epoch
        flat: list[float] = torch.cat(parts).tolist() if parts else []
        elapsed = time.perf_counter() - self._start
        totals = []
        for acc in passes:
            part, flat = self._totals(acc, flat)
            totals.append(part)
        return totals, elapsed

    def _sum_over_ranks(self, dist: Distributed) -> None:
        totals, elapsed = self._epoch_totals()
        summed = dist.sum([v for part in totals for v in part] + [elapsed])
        width = len(totals[0])
        self._summed = [summed[:width], summed[width : 2 * width]], summed[-1] / dist.world_size

    def begin_epoch(self, learner: Learner) -> None:
        self._reset()

    def after_loss(self, learner: Learner) -> None:
        acc = self._train if learner.in_train else self._valid
        yb = learner.yb
        if self._argmax:
            acc.guesses.append(learner.pred.argmax(-1))
            acc.targets.append(yb)
        if self._callables:
            pred = learner.pred
            if pred.requires_grad:
                pred = pred.detach()
            if acc.sizes:
                for values, func in zip(acc.values, self._callables.values()):
                    values.append(func(pred, yb))
            else:
                self._first_batch(acc, pred, yb)
        loss = learner.loss
        if not acc.sizes and loss.dim() != 0:
            raise ValueError(
                "plugin 'metrics': the loss should be a 0-d tensor (the batch mean), got "
                f"shape {tuple(loss.shape)}; use a loss_func with reduction='mean'"
            )
        acc.sizes.append(yb.shape[0])
        acc.losses.append(loss.detach() if loss.requires_grad else loss)
        if len(acc.losses) >= CHUNK:
            acc.compact()

    def after_epoch(self, learner: Learner) -> None:
        totals, elapsed = self._summed or self._epoch_totals()
        self._summed = None
        for prefix, part in zip(("train", "valid"), totals):
            self._write(learner.log, prefix, part)
        learner.log["time"] = elapsed
        # also here, not only in begin_epoch: a plugin running before this one may
        # cancel the next epoch in begin_epoch, and this one's would not run
        self._reset()
        loss = learner.log.get("train_loss")
        if self.stop_on_nonfinite and loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss is {loss} after epoch {learner.epoch} (lr {learner.lr:g}): "
                "training diverged; try a lower learning rate (lookinside lr-find suggests "
                "one), or -p metrics:stop_on_nonfinite=false to go on"
            )
        self.history.append(dict(learner.log))

    def after_fit(self, learner: Learner) -> None:
        # a fit stopped mid-epoch leaves batches behind: let their tensors go
        self._reset()

    def _reset(self) -> None:
        self._train = self._new_pass()
        self._valid = self._new_pass()
        self._start = time.perf_counter()

    def _new_pass(self) -> _Pass:
        return _Pass(
            values=[[] for _ in self._callables], value_chunks=[[] for _ in self._callables]
        )

    def _first_batch(self, acc: _Pass, pred: Tensor, yb: Tensor) -> None:
        from torch import Tensor

        # the first batch of a pass also checks what each callable returns
        for (name, func), values in zip(self._callables.items(), acc.values):
            value = func(pred, yb)
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"plugin 'metrics': metric {name!r} should return a 0-d tensor (the "
                    f"batch mean), got {type(value).__name__}"
                )
            if value.dim() != 0:
                raise ValueError(
                    f"plugin 'metrics': metric {name!r} should return a 0-d tensor (the "
                    f"batch mean), got shape {tuple(value.shape)}"
                )
            values.append(value)

    def _parts(self, acc: _Pass) -> list[Tensor]:
        """One pass's per-batch values as 1-d tensors: losses, hits, callables."""
        import torch

        if not acc.sizes:
            return []
        acc.compact()
        rows = [torch.cat(acc.loss_chunks)]
        device = rows[0].device
        if self._argmax:
            rows.append(torch.stack(acc.hits).to(device))
        rows += [torch.cat(chunks).to(device) for chunks in acc.value_chunks]
        # at least float32, so that integer counts stay exact whatever the loss dtype
        return [row if row.dtype == torch.float64 else row.float() for row in rows]

    def _totals(self, acc: _Pass, flat: list[float]) -> tuple[list[float], list[float]]:
        """One pass's sums: samples, loss, predictions compared, right ones, metrics.

        Sums (weighted by batch size), not means, so the ranks of a distributed fit
        can add theirs. Returns them and what is left of ``flat``.
        """
        n_batches = len(acc.sizes)
        sums = [float(sum(acc.sizes)), 0.0, float(acc.compared), 0.0]
        sums += [0.0] * len(self._callables)
        if not n_batches:
            return sums, flat
        sums[1] = _weighted(flat[:n_batches], acc.sizes)
        flat = flat[n_batches:]
        if self._argmax:
            n_hits = len(acc.hits)
            sums[3] = math.fsum(flat[:n_hits])
            flat = flat[n_hits:]
        for i in range(len(self._callables)):
            sums[4 + i] = _weighted(flat[:n_batches], acc.sizes)
            flat = flat[n_batches:]
        return sums, flat

    def _write(self, log: dict[str, Any], prefix: str, sums: list[float]) -> None:
        """Put one pass's averages, from :meth:`_totals`, in ``log``."""
        total, loss, compared, right = sums[:4]
        if not total:
            log[f"{prefix}_loss"] = None
            for name in self.funcs:
                log[f"{prefix}_{name}"] = None
            return
        log[f"{prefix}_loss"] = loss / total
        values: dict[str, float | None] = {}
        for name, wrong in self._argmax.items():
            count = compared - right if wrong else right
            values[name] = count / compared if compared else None
        for name, value in zip(self._callables, sums[4:]):
            values[name] = value / total
        for name in self.funcs:
            log[f"{prefix}_{name}"] = values[name]


def _weighted(values: Sequence[float], weights: Sequence[int]) -> float:
    return math.fsum(v * w for v, w in zip(values, weights))


def _resolve(item: str | MetricFunc) -> tuple[str, MetricFunc]:
    if isinstance(item, str):
        if item not in METRICS:
            raise ValueError(
                f"plugin 'metrics': unknown metric {item!r}; known metrics: "
                f"{', '.join(METRICS)} (or pass a callable f(pred, yb) from Python)"
            )
        return item, METRICS[item]
    if callable(item):
        name = getattr(item, "__name__", None) or type(item).__name__
        return str(name), item
    raise TypeError(
        f"plugin 'metrics': a metric should be a name ({', '.join(METRICS)}) or a "
        f"callable f(pred, yb), got {type(item).__name__}"
    )


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`Metrics`, enabled by default.

    :param register: the registration function bound to this module.
    """
    register(Metrics, default=True)
