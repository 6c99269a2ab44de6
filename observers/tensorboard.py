"""Log a fit to TensorBoard: losses, metrics, learning rates and activation histograms.

:class:`TensorBoard` writes event files with ``torch.utils.tensorboard``'s
``SummaryWriter``; open them with ``tensorboard --logdir DIR``. It needs the
``tensorboard`` package (``pip install 'lookinside[tensorboard]'``), imported
only when the observer is created.

Every value has one step unit, the **global training batch**: the index of the
training batch over the fit (0, 1, 2...), so that batch curves, epoch values,
layer statistics and histograms line up on one x axis. Tags:

- ``batch/train_loss`` and ``batch/lr_group{i}``: every training batch;
- ``epoch/NAME`` for each number the other observers put in ``learner.log``
  (``train_loss``, ``valid_accuracy``, ``time``...), at the epoch's last
  training batch (``epoch/epoch`` gives the epoch itself);
- when an :class:`~observers.activation_stats.ActivationStats` observer is
  attached, for each hooked layer, labelled ``name (Type)`` as in the tables
  (``0 (Conv2d+ReLU)``):

  - ``activations/mean/LAYER``, ``activations/std/LAYER`` and
    ``activations/near_zero/LAYER`` (and ``gradients/...``): the lesson's plots,
    at every batch the observer recorded (its ``every`` option; ``scalars=false``
    turns them off);
  - ``activations/LAYER`` (and ``gradients/LAYER``): the histogram over the
    recorded training batches of each window of ``histogram_every`` batches (by
    default each epoch), at the window's last recorded batch; its buckets are the
    observer's. ``num``, ``sum`` and ``sum_squares`` count every value; the
    buckets only the values inside the observer's range.

The observer's statistics are read when each epoch ends (or the fit stops), as
they reach the host then. The losses stay on their device until the end of the
epoch and are read back in one go, so logging adds no host synchronisation per
batch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine._checks import boolean
from engine._checks import is_number
from engine._checks import positive_int
from engine.exceptions import PluginError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from observers.activation_stats import ActivationStats

if TYPE_CHECKING:
    from torch import Tensor

    from engine.learner import Learner
    from observers.activation_data import ActivationData

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
    :param histograms: log the activation_stats observer's histograms.
    :param histogram_every: one histogram per this many training batches; none
        (the default) for one per epoch.
    :param scalars: log the activation_stats observer's per-layer mean, std and
        near-zero fraction at every recorded batch.
    :param flush_secs: how often the writer flushes to disk, in seconds.
    """

    name = "tensorboard"
    order = order.TENSORBOARD
    pause_during_sweeps = True
    """An LR finder's sweep is no run to log (and has no out_dir to log into)."""

    def __init__(
        self,
        log_dir: str | None = None,
        histograms: bool = True,
        histogram_every: int | None = None,
        scalars: bool = True,
        flush_secs: int = 30,
    ) -> None:
        positive_int("flush_secs", flush_secs)
        if histogram_every is not None:
            positive_int("histogram_every", histogram_every)
        self._writer_class = _summary_writer()
        self.log_dir = log_dir
        self.histograms = boolean("histograms", histograms)
        self.histogram_every = histogram_every
        self.scalars = boolean("scalars", scalars)
        self.flush_secs = flush_secs
        self.path: Path | None = None
        """Where the current (or last) fit's event files are."""
        self._writer: Any = None
        self._losses: list[Tensor] = []
        self._steps: list[int] = []
        self._lrs: list[tuple[int, list[Any]]] = []
        self._done: dict[str, int] = {}
        """Per kind of data, the last training batch whose statistics were written."""
        self._windows: dict[str, int] = {}
        """Per kind of data, the first training batch of the next histogram's window."""

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
        self._losses, self._steps, self._lrs = [], [], []
        self._done, self._windows = {}, {}

    def after_batch(self, learner: Learner) -> None:
        from torch import Tensor

        if not learner.in_train or self._writer is None:
            return
        step = learner.n_iter - 1  # counted over the run: a resumed fit goes on from it
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
        step = max(learner.n_iter - 1, 0)  # the epoch's last training batch
        for key, value in learner.log.items():
            if is_number(value):
                writer.add_scalar(f"epoch/{key}", float(value), step)
        self._write_layers(learner, final=False)
        writer.flush()

    def after_fit(self, learner: Learner) -> None:
        try:
            if self._writer is not None:  # what a fit stopped mid-epoch left
                self._write_losses()
                self._write_layers(learner, final=True)
        finally:
            self._close()

    def _write_layers(self, learner: Learner, final: bool) -> None:
        stats = next((p for p in learner.plugins.values() if isinstance(p, ActivationStats)), None)
        if stats is None:
            return
        for data in (stats.data, stats.grad_data):
            if data is None or not len(data):
                continue
            train = data.training()
            if self.scalars:
                after = self._done.get(data.kind, -1)
                self._done[data.kind] = log_layer_scalars(self._writer, train, after)
            if self.histograms:
                self._write_histograms(train, final)

    def _write_histograms(self, train: ActivationData, final: bool) -> None:
        """The windows of training batches that are over: each epoch's (``every`` none),
        or each ``every`` batches' (aligned on multiples of it); at the fit's end
        (``final``), whatever is left too."""
        if not train.iterations:
            return
        every = self.histogram_every
        first, last = train.iterations[0], train.iterations[-1]
        start = self._windows.get(train.kind)
        if start is None:  # a resumed fit starts past 0
            start = first if every is None else first // every * every
        while start <= last:
            end = last if every is None else start + every - 1
            if end > last and not final:
                break  # the window goes on into the next epoch
            rows = [i for i, it in enumerate(train.iterations) if start <= it <= end]
            if rows:
                log_histograms(self._writer, train, rows, train.iterations[rows[-1]])
            start = end + 1
            self._windows[train.kind] = start

    def _write_losses(self) -> None:
        import torch

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


def log_layer_scalars(writer: Any, data: ActivationData, after: int = -1) -> int:
    """Write each layer's mean, std and near-zero fraction at every recorded batch
    after training batch ``after``; returns the last batch written (or ``after``).

    Tags ``KIND/mean/LAYER``, ``KIND/std/LAYER``, ``KIND/near_zero/LAYER``; the step
    is the training batch the row was recorded at. Non-finite values are skipped.

    :param writer: a ``SummaryWriter``.
    :param data: what an activation_stats observer recorded (training rows).
    :param after: the last training batch already written.
    """
    last = after
    series = (("mean", data.means), ("std", data.stds), ("near_zero", data.near_zero))
    for row, step in enumerate(data.iterations):
        if step <= after:
            continue
        for m, label in enumerate(data.labels):
            for what, values in series:
                value = float(values[row, m])
                if math.isfinite(value):
                    writer.add_scalar(f"{data.kind}/{what}/{label}", value, step)
        last = step
    return last


def log_histograms(writer: Any, data: ActivationData, rows: list[int], step: int) -> int:
    """Write each layer's histogram over the given rows; returns how many.

    :param writer: a ``SummaryWriter``.
    :param data: what an activation_stats observer recorded.
    :param rows: the rows to add up (training rows of one window or epoch).
    :param step: the global step (the window's last training batch).
    """
    import torch

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
            global_step=step,
        )
        written += 1
    return written


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`TensorBoard` (off by default: ``-p tensorboard``).

    :param register: the registration function bound to this module.
    """
    register(TensorBoard)
