"""Pictures of what :class:`~observers.activation_stats.ActivationStats` recorded.

- :func:`plot_means` and :func:`plot_stds`: one line per layer over training,
  all of it or only the first batches (``first=N``), where the lesson saw the
  means and stds rise and crash;
- :func:`plot_color_dim`: the "colorful dimension", one image per layer: each
  column a recorded batch, each row a histogram bin (the low values at the
  bottom), the colour ``log(1 + count)``;
- :func:`plot_near_zero`: the fraction of activations near zero per layer over
  training (dead units).

Each function takes ``ax=None`` and returns the Axes it drew on (the grids
return their Figure); nothing calls ``pyplot``, so they work headless and in
notebooks alike. Only the rows recorded on training batches are drawn; the x
axis is the training batch each row was taken at.
:func:`save_activation_plots` writes them all as PNG files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine._checks import positive_int
from observers import plots
from observers.activation_data import ActivationData

FIRST = 10
"""The number of first batches in the zoomed means/stds picture (the lesson's choice)."""

PLOT_FILES: tuple[str, ...] = (
    "means_stds.png",
    f"means_stds_first{FIRST}.png",
    "color_dim.png",
    "near_zero.png",
)
"""The files :func:`save_activation_plots` writes (after its ``prefix``)."""


def _layers(data: ActivationData, layers: Sequence[int | str] | None) -> list[int]:
    return list(range(len(data.names))) if layers is None else [data.index(x) for x in layers]


def _lines(
    data: ActivationData,
    values: torch.Tensor,
    ax: Axes | None,
    ylabel: str,
    first: int | None,
    layers: Sequence[int | str] | None,
) -> Axes:
    ax = plots.axes_or_new(ax)
    keep = len(data) if first is None else min(positive_int("first", first), len(data))
    xs = data.iterations[:keep]
    for m in _layers(data, layers) if keep else []:
        ax.plot(xs, values[:keep, m].tolist(), label=data.labels[m], linewidth=1.0)
    ax.set_xlabel("batch")
    ax.set_ylabel(ylabel)
    if len(xs) and data.names:
        ax.legend(title="layer", fontsize="small")
    return ax


def plot_means(
    data: ActivationData,
    ax: Axes | None = None,
    first: int | None = None,
    layers: Sequence[int | str] | None = None,
) -> Axes:
    """Plot each layer's mean output per recorded training batch.

    :param data: the observer's :attr:`~observers.activation_stats.ActivationStats.data`.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param first: draw only the first this many rows.
    :param layers: the layers to draw, by index or name; all by default.
    """
    data = data.training()
    return _lines(data, data.means, ax, f"mean of the {data.kind}", first, layers)


def plot_stds(
    data: ActivationData,
    ax: Axes | None = None,
    first: int | None = None,
    layers: Sequence[int | str] | None = None,
) -> Axes:
    """Plot each layer's output standard deviation per recorded training batch.

    :param data: the observer's recorded data.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param first: draw only the first this many rows.
    :param layers: the layers to draw, by index or name; all by default.
    """
    data = data.training()
    return _lines(data, data.stds, ax, f"std of the {data.kind}", first, layers)


def plot_near_zero(
    data: ActivationData, ax: Axes | None = None, layers: Sequence[int | str] | None = None
) -> Axes:
    """Plot each layer's fraction of values near zero per recorded training batch.

    :param data: the observer's recorded data.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param layers: the layers to draw, by index or name; all by default.
    """
    data = data.training()
    ax = _lines(data, data.near_zero, ax, "fraction near zero", None, layers)
    ax.set_ylim(0.0, 1.0)
    return ax


def plot_color_dim(data: ActivationData, layer: int | str = 0, ax: Axes | None = None) -> Axes:
    """Draw one layer's histograms over training as an image: the colorful dimension.

    Columns are the recorded training batches, rows the histogram bins, low
    values at the bottom (``origin="lower"``); the colour is ``log(1 + count)``,
    each column's counts scaled to the largest output's number of values, so that
    a smaller last batch does not show as a pale stripe.

    :param data: the observer's recorded data.
    :param layer: the layer, by index or name.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    """
    data = data.training()
    m = data.index(layer)
    ax = plots.axes_or_new(ax)
    low, high = data.ranges[m]
    if len(data):
        numel = data.numel[:, m].double().nan_to_num(0.0)
        scale = torch.where(numel > 0, numel.max() / numel.clamp(min=1.0), 0.0)
        image = torch.log1p(data.hists[:, m].double() * scale.unsqueeze(-1)).T
        first, last = data.iterations[0], data.iterations[-1]
        ax.imshow(
            image.numpy(),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            extent=(first - 0.5, last + 0.5, low, high),
        )
    ax.set_title(data.labels[m], fontsize="medium")
    ax.set_xlabel("batch")
    ax.set_ylabel("value")
    return ax


def color_dim_figure(
    data: ActivationData, layers: Sequence[int | str] | None = None, ncols: int = 2
) -> Figure:
    """The colorful dimension of several layers, one panel each, in a grid.

    :param data: the observer's recorded data.
    :param layers: the layers, by index or name; all by default.
    :param ncols: panels per row.
    """
    positive_int("ncols", ncols)
    chosen = _layers(data, layers)
    nrows = max(1, math.ceil(len(chosen) / ncols))
    figure = plots.new_figure((4.0 * ncols, 3.0 * nrows))
    grid = figure.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(grid.flat):
        if i < len(chosen):
            plot_color_dim(data, chosen[i], ax)
        else:
            ax.set_axis_off()
    figure.suptitle(f"histograms of the {data.kind} (log scale)")
    return figure


def means_stds_figure(data: ActivationData, first: int | None = None) -> Figure:
    """Means (left) and standard deviations (right) of every layer, side by side.

    :param data: the observer's recorded data.
    :param first: draw only the first this many rows.
    """
    figure = plots.new_figure((10.0, 4.0))
    left, right = figure.subplots(1, 2)
    plot_means(data, left, first)
    plot_stds(data, right, first)
    return figure


def save_activation_plots(
    data: ActivationData, directory: str | os.PathLike[str], prefix: str = ""
) -> list[Path]:
    """Write the pictures as PNG files into ``directory``; returns their paths.

    The files are :data:`PLOT_FILES`, each name preceded by ``prefix``, written
    atomically (the folder is created if needed).

    :param data: the observer's recorded data.
    :param directory: the folder to write into.
    :param prefix: put before each file name, e.g. ``grad_``.
    """
    folder = Path(directory)
    near = plots.new_figure()
    plot_near_zero(data, near.add_subplot())
    figures = [means_stds_figure(data), means_stds_figure(data, FIRST)]
    figures += [color_dim_figure(data), near]
    return [
        plots.save_figure(figure, folder / f"{prefix}{name}")
        for name, figure in zip(PLOT_FILES, figures)
    ]
