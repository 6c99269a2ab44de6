"""Log a fit to TensorBoard: losses, metrics, learning rates and activation histograms.

:class:`TensorBoard` writes event files with ``torch.utils.tensorboard``'s
``SummaryWriter``; open them with ``tensorboard --logdir DIR``. It needs the
``tensorboard`` package (``pip install 'lookinside[tensorboard]'``), imported
only when the observer is created.

Tags:

- ``batch/train_loss`` and ``batch/lr_group{i}``: every training batch, the
  global step being the training batch's index over the fit;
- ``epoch/NAME`` for each number the other observers put in ``learner.log``
  (``train_loss``, ``valid_accuracy``, ``time``...), the step being the epoch;
- ``activations/LAYER`` (and ``gradients/LAYER``), LAYER labelled ``name
  (Type)`` as in the tables, ``activations/0 (Conv2d+ReLU)``: when an
  :class:`~observers.activation_stats.ActivationStats` observer is attached, the
  histogram of each hooked layer over the epoch's recorded training batches, its
  buckets those of the observer. ``num``, ``sum`` and ``sum_squares`` count
  every value; the buckets only the values inside the observer's range.

The losses stay on their device until the end of the epoch and are read back
in one go, so logging adds no host synchronisation per batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import torch
from torch import Tensor

from engine import order
from engine._checks import is_number
from engine._checks import positive_int
from engine.exceptions import PluginError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from observers.activation_data import ActivationData
from observers.activation_stats import ActivationStats

if TYPE_CHECKING:
    from engine.learner import Learner

FOLDER = "tensorboard"
"""The folder inside the learner's out_dir that receives the event files by default."""


def _summary_writer() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a PluginError naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise PluginError(
            "plugin 'tensorboard' needs the tensorboard package: pip install "
            f"'lookinside[tensorboard]' (or pip install tensorboard); import failed: {exc}"
        ) from exc
    return SummaryWriter


class TensorBoard:
    """Write losses, metrics, learning rates and activation histograms for TensorBoard.

    :param log_dir: the folder of the event files; default: ``tensorboard`` in
        the learner's out_dir, or torch's ``runs/DATE_HOST`` without one.
    :param histograms: log the activation_stats observer's histograms each epoch.
    :param flush_secs: how often the writer flushes to disk, in seconds.
    """

    name = "tensorboard"
    order = order.TENSORBOARD

    def __init__(
        self, log_dir: str | None = None, histograms: bool = True, flush_secs: int = 30
    ) -> None:
        positive_int("flush_secs", flush_secs)
        self._writer_class = _summary_writer()
        self.log_dir = log_dir
        self.histograms = histograms
        self.flush_secs = flush_secs
        self.path: Path | None = None
        """Where the current (or last) fit's event files are."""
        self._writer: Any = None
        self._losses: list[Tensor] = []
        self._steps: list[int] = []
        self._lrs: list[tuple[int, list[Any]]] = []
        self._step = 0

    def begin_fit(self, learner: Learner) -> None:
        self._close()
        if not learner.is_main:
            return  # in a distributed fit, rank 0 alone writes
        if self.log_dir is not None:
            folder: Path | None = Path(self.log_dir)
        elif learner.out_dir is not None:
            folder = learner.out_dir / FOLDER
        else:
            folder = None  # torch picks runs/DATE_HOST
        self._writer = self._writer_class(
            log_dir=None if folder is None else str(folder), flush_secs=self.flush_secs
        )
        self.path = Path(self._writer.log_dir)
        self._losses, self._steps, self._lrs, self._step = [], [], [], 0

    def after_batch(self, learner: Learner) -> None:
        if not learner.in_train or self._writer is None:
            return
        step = self._step
        self._step += 1
        loss = learner.loss
        if isinstance(loss, Tensor):
            self._losses.append(loss.detach())
            self._steps.append(step)
        if learner.opt is not None:
            lrs = [group.get("lr") for group in learner.opt.param_groups]
            self._lrs.append((step, [lr if is_number(lr) else math.nan for lr in lrs]))

    def after_epoch(self, learner: Learner) -> None:
        writer = self._writer
        if writer is None:
            return
        self._write_losses()
        for key, value in learner.log.items():
            if key != "epoch" and is_number(value):
                writer.add_scalar(f"epoch/{key}", float(value), learner.epoch)
        if self.histograms:
            stats = next(
                (p for p in learner.plugins.values() if isinstance(p, ActivationStats)), None
            )
            if stats is not None:
                for data in (stats.data, stats.grad_data):
                    if data is not None:
                        log_histograms(writer, data, learner.epoch)
        writer.flush()

    def after_fit(self, learner: Learner) -> None:
        try:
            self._write_losses()  # what a fit stopped mid-epoch left
        finally:
            self._close()

    def _write_losses(self) -> None:
        writer = self._writer
        if writer is None:
            return
        if self._losses:
            values = torch.stack(self._losses).tolist()  # the one host sync of the epoch
            for step, value in zip(self._steps, values):
                writer.add_scalar("batch/train_loss", value, step)
        for step, lrs in self._lrs:
            for i, lr in enumerate(lrs):
                writer.add_scalar(f"batch/lr_group{i}", float(lr), step)
        self._losses, self._steps, self._lrs = [], [], []

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        self._losses, self._steps, self._lrs = [], [], []
        if writer is not None:
            writer.close()


def log_histograms(writer: Any, data: ActivationData, epoch: int) -> int:
    """Write each layer's histogram over one epoch's training rows; returns how many.

    :param writer: a ``SummaryWriter``.
    :param data: what an activation_stats observer recorded.
    :param epoch: the epoch whose rows to add up; also the global step.
    """
    rows = [i for i, (e, t) in enumerate(zip(data.epochs, data.train)) if e == epoch and t]
    if not rows:
        return 0
    index = torch.tensor(rows)
    written = 0
    for m, name in enumerate(data.labels):
        numel = data.numel[index, m]
        known = numel > 0
        if not bool(known.any()):
            continue
        numel, means = numel[known], data.means[index, m][known]
        stds = data.stds[index, m][known]
        counts = data.hists[index, m][known].double().sum(0)
        edges = data.edges(m)
        filled = torch.nonzero(counts).flatten().tolist()
        if not filled or not math.isfinite(float(means.sum())):
            continue
        squares = stds.square() * (numel - 1) + numel * means.square()
        writer.add_histogram_raw(
            f"{data.kind}/{name}",
            min=float(edges[filled[0]]),
            max=float(edges[filled[-1] + 1]),
            num=int(numel.sum()),
            sum=float((means * numel).sum()),
            sum_squares=float(squares.sum()),
            # only the filled span, so that no bucket lies outside [min, max]
            bucket_limits=edges[filled[0] + 1 : filled[-1] + 2].tolist(),
            bucket_counts=counts[filled[0] : filled[-1] + 1].tolist(),
            global_step=epoch,
        )
        written += 1
    return written


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`TensorBoard` (off by default: ``-p tensorboard``).

    :param register: the registration function bound to this module.
    """
    register(TensorBoard)
