"""Plotting helpers shared by the observers: headless figures and atomic PNG files.

Everything here uses matplotlib's object API: a :class:`~matplotlib.figure.Figure`
with an Agg canvas attached, never ``pyplot``. No global state is touched, the
backend chosen by the user is left alone, and nothing needs a display, so the
helpers work the same in a notebook, a terminal and a headless CI job. In a
notebook, each new figure is shown inline when the cell ends
(:mod:`engine.notebook`), except inside :func:`engine.notebook.not_shown`, which
the helpers that only write files use.

The observers import this module lazily, when they first plot, so that loading
the plugins (which every ``Learner`` does) does not pay for importing matplotlib.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine import notebook
from engine.atomic_write import atomic_write

if TYPE_CHECKING:
    from engine.learner import Learner

FIGSIZE: tuple[float, float] = (6.0, 4.0)
"""The size in inches of the figures the helpers create."""

DPI = 100
"""The resolution of saved PNG files, in dots per inch."""


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """A new figure with an Agg canvas attached, independent of pyplot.

    In a notebook the figure is shown inline when the cell ends
    (:func:`engine.notebook.figure_made`).

    :param figsize: width and height in inches.
    """
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    notebook.figure_made(figure)
    return figure


def axes_or_new(ax: Axes | None = None) -> Axes:
    """Return ``ax``, or the single Axes of a new headless figure when it is ``None``.

    :param ax: the Axes to draw on, if the caller has one.
    """
    if ax is not None:
        return ax
    return new_figure().add_subplot()


def save_figure(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``path`` as a PNG, atomically; returns the path.

    The image goes to a temporary file in the same folder first, which then
    replaces ``path`` in one step (:func:`engine.atomic_write.atomic_write`): a
    reader never sees a half-written file, and an error leaves the previous file
    untouched. The folder is created if needed.

    :param figure: the figure to save.
    :param path: where the PNG goes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    return atomic_write(target, lambda file: figure.savefig(file, format="png", dpi=DPI))


def plot_series(
    xs: Sequence[float],
    ys: Sequence[float],
    ax: Axes | None = None,
    *,
    xlabel: str = "batch",
    ylabel: str = "",
) -> Axes:
    """Plot one series as a line; an empty series leaves labelled, empty Axes.

    :param xs: the x values.
    :param ys: the y values, as many as ``xs``.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param xlabel: the x axis label.
    :param ylabel: the y axis label.
    """
    ax = axes_or_new(ax)
    if len(xs):
        ax.plot(xs, ys, linewidth=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def plot_train_valid(
    train: tuple[Sequence[float], Sequence[float]],
    valid: tuple[Sequence[float], Sequence[float]],
    ax: Axes | None = None,
    *,
    xlabel: str = "batch",
    ylabel: str = "loss",
) -> Axes:
    """Plot a training series as a line and a validation series as dots on it.

    Validation points left of the first training point are dropped, so that
    skipping the start of training also skips its validation. A legend is drawn
    when there is anything to label.

    :param train: the training ``(xs, ys)``, e.g. one point per batch.
    :param valid: the validation ``(xs, ys)``, e.g. one point per epoch.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param xlabel: the x axis label.
    :param ylabel: the y axis label.
    """
    ax = axes_or_new(ax)
    train_x, train_y = train
    labelled = False
    if len(train_x):
        ax.plot(train_x, train_y, label="train", linewidth=1.0)
        labelled = True
    first = train_x[0] if len(train_x) else -math.inf
    points = [(x, y) for x, y in zip(*valid) if x >= first]
    if points:
        ax.plot([x for x, _ in points], [y for _, y in points], "o-", label="valid")
        labelled = True
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if labelled:
        ax.legend()
    return ax


def plot_vs_lr(
    lrs: Sequence[float], values: Sequence[float], ax: Axes | None = None, *, ylabel: str = "loss"
) -> Axes:
    """Plot ``values`` against learning rates on a log-scaled x axis.

    Points whose learning rate is not a positive finite number (a warm-up from 0)
    are left out; the axis is log-scaled only when a point is left to draw.

    :param lrs: the learning rates.
    :param values: the values at those learning rates (usually the loss).
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param ylabel: the y axis label.
    """
    ax = axes_or_new(ax)
    xs, ys = positive_pairs(lrs, values)
    if xs:
        ax.plot(xs, ys, linewidth=1.0)
        ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    return ax


def positive_pairs(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """Keep the pairs whose ``x`` is a positive finite number, for a log-scaled x axis.

    :param xs: the x values (e.g. learning rates, which may be 0 during warm-up).
    :param ys: the y values, as many as ``xs``.
    """
    kept = [(x, y) for x, y in zip(xs, ys) if 0.0 < x < float("inf")]
    return [x for x, _ in kept], [y for _, y in kept]


def run_title(learner: Learner) -> str:
    """A line saying which run a picture is of: model, learning rate, epochs, folder.

    ``Sequential, lr 0.2, 3 epochs, runs/b``: what the observers put on the
    pictures they save, so that a PNG found later still says where it came from.

    :param learner: the learner after (or during) its fit.
    """
    parts = [type(learner.model).__name__, f"lr {learner.lr:.3g}"]
    epochs = f"{learner.n_epochs:.3g}"
    parts.append(f"{epochs} epoch" + ("" if epochs == "1" else "s"))
    if learner.out_dir is not None:
        parts.append(str(learner.out_dir))
    return ", ".join(parts)


def changed(values: Sequence[float]) -> bool:
    """Whether a recorded series ever changed (a learning rate under a schedule).

    :param values: the series; NaN (not recorded yet) is ignored.
    """
    kept = [v for v in values if not math.isnan(v)]
    return any(v != kept[0] for v in kept)
