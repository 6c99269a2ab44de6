"""Plotting helpers shared by the observers: headless figures and atomic PNG files.

Everything here uses matplotlib's object API: a :class:`~matplotlib.figure.Figure`
with an Agg canvas attached, never ``pyplot``. No global state is touched, the
backend chosen by the user is left alone, and nothing needs a display, so the
helpers work the same in a notebook, a terminal and a headless CI job.

The observers import this module lazily, when they first plot, so that loading
the plugins (which every ``Learner`` does) does not pay for importing matplotlib.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE: tuple[float, float] = (6.0, 4.0)
"""The size in inches of the figures the helpers create."""

DPI = 100
"""The resolution of saved PNG files, in dots per inch."""


def new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    """A new figure with an Agg canvas attached, independent of pyplot.

    :param figsize: width and height in inches.
    """
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
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
    replaces ``path`` in one step: a reader never sees a half-written file, and
    an error leaves the previous file untouched. The folder is created if needed.

    :param figure: the figure to save.
    :param path: where the PNG goes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            figure.savefig(handle, format="png", dpi=DPI, bbox_inches="tight")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def positive_pairs(
    xs: Sequence[float], ys: Sequence[float]
) -> tuple[list[float], list[float]]:
    """Keep the pairs whose ``x`` is a positive finite number, for a log-scaled x axis.

    :param xs: the x values (e.g. learning rates, which may be 0 during warm-up).
    :param ys: the y values, as many as ``xs``.
    """
    kept = [(x, y) for x, y in zip(xs, ys) if 0.0 < x < float("inf")]
    return [x for x, _ in kept], [y for _, y in kept]
