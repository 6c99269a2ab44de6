"""Record the loss and the optimizer's hyper-parameters at every training batch.

:class:`Recorder` is the lesson's window on a fit: the loss batch by batch, the
learning rate (and momentum, weight decay, betas...) the optimizer used for it,
and plots of both. Reading hyper-parameters from ``opt.param_groups`` costs no
device synchronisation; the losses stay on their device, as detached 0-d tensors,
until the end of the epoch, when they are read back in one go.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias

from engine import order
from engine._checks import boolean
from engine._checks import did_you_mean
from engine._checks import is_int
from engine._checks import is_number
from engine._checks import non_negative_int
from engine.exceptions import diverged
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from engine.notebook import not_shown

if TYPE_CHECKING:
    import os

    from matplotlib.axes import Axes
    from torch import Tensor

    from engine.learner import Learner

CHUNK = 32
"""How many batches' losses wait as separate tensors before being stacked into one."""

PLOT_FILES: tuple[str, ...] = ("loss.png", "lr.png", "loss_vs_lr.png")
"""The files :meth:`Recorder.save_plots` writes."""

_Field: TypeAlias = tuple[str, str, int | None]
"""A recorded hyper-parameter: its name, its param-group key, its index in a tuple."""


class Recorder:
    """Record the training loss and each parameter group's hyper-parameters per batch.

    Every training batch that got a loss adds one record: the loss, and for each
    parameter group of the optimizer every numeric hyper-parameter (``lr``,
    ``momentum``, ``weight_decay``, ``eps``...; a pair such as ``betas`` becomes
    ``beta1`` and ``beta2``). A group or hyper-parameter that appears during the
    fit is padded with NaN for the records before it. After each epoch the
    validation loss is taken from ``learner.log`` when the ``metrics`` observer
    put one there.

    Records are reset by ``begin_fit``: each fit starts fresh. After the fit,
    when the learner has an ``out_dir``, the plots are written there as
    ``loss.png``, and ``lr.png`` and ``loss_vs_lr.png`` when the learning rate
    changed (:meth:`save_plots`), also when the fit failed; not when it diverged
    (:class:`~engine.exceptions.TrainingDiverged`): an earlier run's pictures stay.

    :param save: write the plots into the learner's out_dir after the fit.
    """

    name = "recorder"
    order = order.RECORDER

    def __init__(self, save: bool = True) -> None:
        self.save = boolean("save", save)
        """Whether ``after_fit`` writes the plots into the learner's out_dir."""
        self.hypers: dict[str, list[list[float]]] = {}
        """Hyper-parameter name -> one list per parameter group, one value per record."""
        self.iterations: list[int] = []
        """Per record, the index of its batch among the fit's training batches."""
        self.valid_losses: list[float] = []
        """The validation loss of each epoch that had one."""
        self.valid_iterations: list[int] = []
        """Per validation loss, the index of the last training batch before it."""
        self._losses: list[float] = []
        self._pending: list[Tensor] = []
        self._chunks: list[Tensor] = []
        self._fields: list[_Field] = []
        self._slots: list[tuple[list[float], dict[str, Any], str, int | None]] = []
        self._groups: list[dict[str, Any]] | None = None
        self._n_groups = 0
        self._seen = 0

    # -- what was recorded -------------------------------------------------

    @property
    def losses(self) -> list[float]:
        """The training loss of each record (reading it mid-epoch syncs the device)."""
        self._flush()
        return self._losses

    @property
    def lrs(self) -> list[list[float]]:
        """The learning rate of each record, one list per parameter group."""
        return self.hypers.get("lr", [])

    def __len__(self) -> int:
        return len(self.iterations)

    # -- events --------------------------------------------------------------

    def begin_fit(self, learner: Learner) -> None:
        self.hypers = {}
        self.iterations = []
        self.valid_losses = []
        self.valid_iterations = []
        self._losses = []
        self._pending = []
        self._chunks = []
        self._fields = []
        self._slots = []
        self._groups = None
        self._n_groups = 0
        self._seen = 0

    def after_batch(self, learner: Learner) -> None:
        if not learner.in_train:
            return
        index = self._seen
        self._seen += 1
        loss = learner.loss
        if loss is None:
            return
        opt = learner.opt
        if opt is not None:
            self._record_hypers(opt.param_groups)
        self._pending.append(loss.detach())
        self.iterations.append(index)
        if len(self._pending) >= CHUNK:
            self._compact()

    def after_epoch(self, learner: Learner) -> None:
        self._flush()
        valid = learner.log.get("valid_loss")
        if is_number(valid):
            self.valid_losses.append(float(valid))
            self.valid_iterations.append(max(self._seen - 1, 0))

    def after_fit(self, learner: Learner) -> None:
        self._flush()
        if self.save and learner.out_dir is not None and self.iterations and not diverged(learner):
            from observers import plots

            self.save_plots(learner.out_dir, plots.run_title(learner))

    # -- recording -----------------------------------------------------------

    def _compact(self) -> None:
        import torch

        if self._pending:
            self._chunks.append(torch.stack(self._pending).reshape(-1))
            self._pending = []

    def _flush(self) -> None:
        import torch

        self._compact()
        if self._chunks:
            # one host-device synchronisation for all the losses since the last flush
            chunks = torch.cat(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._losses.extend(chunks.tolist())
            self._chunks = []

    def _record_hypers(self, groups: list[dict[str, Any]]) -> None:
        if groups is not self._groups or len(groups) != self._n_groups:
            self._layout(groups)
        for row, group, key, index in self._slots:
            try:
                value = group[key] if index is None else group[key][index]
                row.append(float(value))
            except (KeyError, IndexError, TypeError, ValueError):
                row.append(math.nan)

    def _layout(self, groups: list[dict[str, Any]]) -> None:
        """Find the numeric hyper-parameters of every group; pad newcomers with NaN."""
        done = len(self.iterations)
        known = {name for name, _, _ in self._fields}
        for group in groups:
            for key, value in group.items():
                for field in _fields_of(key, value):
                    if field[0] not in known:
                        known.add(field[0])
                        self._fields.append(field)
        self._slots = []
        for name, key, index in self._fields:
            rows = self.hypers.setdefault(name, [])
            rows.extend([math.nan] * done for _ in range(len(groups) - len(rows)))
            self._slots += [(row, group, key, index) for row, group in zip(rows, groups)]
        self._groups = groups
        self._n_groups = len(groups)

    # -- plots ---------------------------------------------------------------

    def plot_loss(self, ax: Axes | None = None, skip_start: int = 0) -> Axes:
        """Plot the training loss per batch, and the validation loss per epoch.

        Each validation loss is placed at the last training batch of its epoch.

        :param ax: the Axes to draw on; a new figure's when ``None``.
        :param skip_start: leave out this many records at the start (the first
            losses are often so high they flatten the rest).
        """
        from observers import plots

        non_negative_int("skip_start", skip_start)
        return plots.plot_train_valid(
            (self.iterations[skip_start:], self.losses[skip_start:]),
            (self.valid_iterations, self.valid_losses),
            ax,
        )

    def plot_lr(self, ax: Axes | None = None, group: int = -1) -> Axes:
        """Plot the learning rate of one parameter group per batch.

        :param ax: the Axes to draw on; a new figure's when ``None``.
        :param group: the parameter group's index; the last one by default.
        """
        if "lr" not in self.hypers:  # nothing recorded yet: empty Axes
            from observers import plots

            return plots.plot_series([], [], ax, ylabel="lr")
        return self.plot_hyper("lr", ax, group)

    def plot_hyper(self, name: str, ax: Axes | None = None, group: int = -1) -> Axes:
        """Plot one hyper-parameter of one parameter group per batch.

        :param name: a recorded hyper-parameter (``lr``, ``momentum``, ``beta1``...).
        :param ax: the Axes to draw on; a new figure's when ``None``.
        :param group: the parameter group's index; the last one by default.
        """
        from observers import plots

        values = self._group_values(name, group)
        return plots.plot_series(self.iterations[: len(values)], values, ax, ylabel=name)

    def plot_loss_vs_lr(self, ax: Axes | None = None, skip_last: int = 5, group: int = -1) -> Axes:
        """Plot the loss against the learning rate, on a log scale (an LR finder's view).

        Records whose learning rate is not positive are left out.

        :param ax: the Axes to draw on; a new figure's when ``None``.
        :param skip_last: leave out this many records at the end (where the loss
            of an LR search usually explodes).
        :param group: the parameter group whose learning rate is the x axis.
        """
        from observers import plots

        non_negative_int("skip_last", skip_last)
        lrs = self._group_values("lr", group) if "lr" in self.hypers else []
        keep = max(len(lrs) - skip_last, 0)
        return plots.plot_vs_lr(lrs[:keep], self.losses[:keep], ax)

    def lr_changed(self) -> bool:
        """Whether any parameter group's learning rate changed during the fit (a
        schedule, an LR finder's sweep)."""
        from observers import plots

        return any(plots.changed(values) for values in self.lrs)

    def save_plots(self, directory: str | os.PathLike[str], title: str | None = None) -> list[Path]:
        """Write ``loss.png`` into ``directory``, and ``lr.png`` and ``loss_vs_lr.png``
        when the learning rate changed.

        At a constant learning rate the two lr pictures would be a flat line and a
        single vertical stripe: they are not drawn, and the ones an earlier run left
        in ``directory`` are removed, so that the folder describes one run. Each
        file is written atomically (a temporary file, then a rename); the folder is
        created if needed.

        :param directory: the folder to write into.
        :param title: the run, on every picture (:func:`observers.plots.run_title`).
        :returns: the paths written.
        """
        from observers import plots

        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        drawers: list[Callable[..., Axes]] = [self.plot_loss, self.plot_lr, self.plot_loss_vs_lr]
        keep = len(drawers) if self.lr_changed() else 1
        written = []
        for filename, draw in zip(PLOT_FILES[:keep], drawers):
            with not_shown():  # drawn for the file only, not for a notebook's output
                figure = plots.new_figure()
                draw(ax=figure.add_subplot())
                if title:
                    figure.suptitle(title, fontsize="medium")
            written.append(plots.save_figure(figure, folder / filename))
        for filename in PLOT_FILES[keep:]:
            (folder / filename).unlink(missing_ok=True)
        return written

    def _group_values(self, name: str, group: int) -> list[float]:
        if name not in self.hypers:
            known = ", ".join(self.hypers) or "none yet"
            hint = did_you_mean(name, self.hypers)
            raise ValueError(f"no hyper-parameter {name!r} was recorded{hint}; recorded: {known}")
        rows = self.hypers[name]
        if not is_int(group) or not -len(rows) <= group < len(rows):
            raise ValueError(
                f"group should be an index into the {len(rows)} parameter group(s), got {group!r}"
            )
        return rows[group]


def _is_hyper(value: Any) -> bool:
    """A number, or a learning rate given as a one-element tensor on the CPU.

    Only a CPU tensor: reading it costs no device sync.
    """
    from torch import Tensor

    if is_number(value):
        return True
    return isinstance(value, Tensor) and value.numel() == 1 and value.device.type == "cpu"


def _fields_of(key: str, value: Any) -> list[_Field]:
    if key == "params":
        return []
    if _is_hyper(value):
        return [(key, key, None)]
    if isinstance(value, (tuple, list)) and 0 < len(value) <= 4 and all(map(_is_hyper, value)):
        stem = key.removesuffix("s")
        return [(f"{stem}{i + 1}", key, i) for i in range(len(value))]
    return []


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`Recorder`, enabled by default.

    :param register: the registration function bound to this module.
    """
    register(Recorder, default=True)
