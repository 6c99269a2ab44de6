"""Loss and metrics per epoch, for the training and the validation pass.

:class:`Metrics` averages the loss and any number of metrics over every sample a
pass has seen, weighting each batch by its size, so a last, smaller batch counts
exactly as much as its samples. Nothing is read back from the device during a
pass: each batch appends a few 0-d tensors to lists, and ``after_epoch`` turns
everything into Python numbers with a single host-device synchronisation.

A metric is a function ``f(pred, yb)`` returning the *batch mean* as a 0-d tensor;
built-in ones are looked up by name in :data:`METRICS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from engine.learner import Learner

MetricFunc = Callable[[Tensor, Tensor], Tensor]
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


def _correct(pred: Tensor, yb: Tensor) -> Tensor:
    return (pred.argmax(dim=-1) == yb).sum()


def _wrong(pred: Tensor, yb: Tensor) -> Tensor:
    return (pred.argmax(dim=-1) != yb).sum()


METRICS: dict[str, MetricFunc] = {"accuracy": accuracy, "error_rate": error_rate}
"""The metrics :class:`Metrics` knows by name."""

_BATCH_SUMS: dict[MetricFunc, MetricFunc] = {accuracy: _correct, error_rate: _wrong}
"""Cheaper per-batch *sums* for built-in metrics (fewer tensor ops than the mean)."""


@dataclass
class _Pass:
    """What one pass (training or validation) accumulated this epoch."""

    losses: list[Tensor] = field(default_factory=list)
    """The detached loss of each batch (a batch mean)."""
    sizes: list[int] = field(default_factory=list)
    """The number of samples of each batch."""
    values: list[list[Tensor]] = field(default_factory=list)
    """Per metric, the value of each batch (a sum or a mean, see ``Metrics``)."""


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

    :param metrics: names of built-in metrics (``accuracy``, ``error_rate``),
        or, from Python, callables ``f(pred, yb)`` returning the batch mean as a
        0-d tensor, reported under their ``__name__``.
    """

    name = "metrics"
    order = 10

    def __init__(
        self, metrics: tuple[str, ...] | Sequence[str | MetricFunc] = ("accuracy",)
    ) -> None:
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
                raise ValueError(
                    f"plugin 'metrics': two metrics would be reported as {name!r}; "
                    "give each a distinct name"
                )
            self.funcs[name] = func
        self._batch: list[tuple[MetricFunc, bool]] = [
            (_BATCH_SUMS[f], True) if f in _BATCH_SUMS else (f, False)
            for f in self.funcs.values()
        ]
        self.history: list[dict[str, Any]] = []
        """A copy of ``learner.log`` per epoch of the current (or last) fit."""
        self._train = _Pass()
        self._valid = _Pass()
        self._start = 0.0

    @property
    def names(self) -> list[str]:
        """The metric names, as they appear after ``train_`` and ``valid_``."""
        return list(self.funcs)

    @property
    def last(self) -> dict[str, Any] | None:
        """The most recent epoch's values, or ``None`` before the first epoch ends."""
        return self.history[-1] if self.history else None

    def begin_fit(self, learner: Learner) -> None:
        self.history = []

    def begin_epoch(self, learner: Learner) -> None:
        self._train = self._new_pass()
        self._valid = self._new_pass()
        self._start = time.perf_counter()

    def after_loss(self, learner: Learner) -> None:
        acc = self._train if learner.in_train else self._valid
        pred = learner.pred
        if pred.requires_grad:
            pred = pred.detach()
        yb = learner.yb
        if not acc.sizes:
            self._first_batch(acc, pred, yb)
        else:
            for values, (func, _) in zip(acc.values, self._batch):
                values.append(func(pred, yb))
        acc.sizes.append(yb.shape[0])
        acc.losses.append(learner.loss.detach())

    def after_epoch(self, learner: Learner) -> None:
        passes = (self._train, self._valid)
        stacked = [self._stack(acc) for acc in passes if acc.sizes]
        # the one host-device synchronisation of the epoch
        flat: list[float] = torch.cat(stacked).tolist() if stacked else []
        elapsed = time.perf_counter() - self._start
        offset = 0
        for prefix, acc in zip(("train", "valid"), passes):
            offset = self._write(learner.log, prefix, acc, flat, offset)
        learner.log["time"] = elapsed
        self.history.append(dict(learner.log))

    def _new_pass(self) -> _Pass:
        return _Pass(values=[[] for _ in self._batch])

    def _first_batch(self, acc: _Pass, pred: Tensor, yb: Tensor) -> None:
        # the first batch of a pass also checks what each metric returns
        for name, values, (func, _) in zip(self.funcs, acc.values, self._batch):
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

    def _stack(self, acc: _Pass) -> Tensor:
        device = acc.losses[0].device
        rows = [torch.stack(acc.losses).reshape(-1)]
        rows += [torch.stack(values).reshape(-1).to(device) for values in acc.values]
        # at least float32, so that integer counts stay exact whatever the loss dtype
        return torch.cat([row if row.dtype == torch.float64 else row.float() for row in rows])

    def _write(
        self, log: dict[str, Any], prefix: str, acc: _Pass, flat: list[float], offset: int
    ) -> int:
        """Put one pass's averages in ``log``; returns where the next pass starts in ``flat``."""
        n_batches = len(acc.sizes)
        end = offset + n_batches * (1 + len(self.funcs))
        total = sum(acc.sizes)
        if not n_batches or not total:
            log[f"{prefix}_loss"] = None
            for name in self.funcs:
                log[f"{prefix}_{name}"] = None
            return end
        chunks = [flat[start : start + n_batches] for start in range(offset, end, n_batches)]
        log[f"{prefix}_loss"] = _weighted(chunks[0], acc.sizes) / total
        for name, chunk, (_, is_sum) in zip(self.funcs, chunks[1:], self._batch):
            value = math.fsum(chunk) if is_sum else _weighted(chunk, acc.sizes)
            log[f"{prefix}_{name}"] = value / total
        return end


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
def lookinside_register(register: Callable[..., Any]) -> None:
    """Register :class:`Metrics`, enabled by default.

    :param register: the registration function bound to this module.
    """
    register(Metrics, default=True)
