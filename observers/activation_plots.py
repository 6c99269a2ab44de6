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
notebooks alike (where they show themselves, :mod:`engine.notebook`). Only the
rows recorded on training batches are drawn; the x axis is the training batch
each row was taken at, and a dotted vertical line marks where each epoch after
the first begins. The near-zero band (the histogram bins counted as near zero)
is drawn on the colorful dimension and stated on the near-zero plot; the
colorful dimension has a colorbar, and its value axis is cut to the bins that
ever held a value (a note says so). :func:`save_activation_plots` writes them
all as PNG files, titled with the run (``title``); :func:`compare_figure` puts
several runs side by side (the look_inside demo's three steps).
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
from engine.notebook import not_shown
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
    _epoch_marks(ax, data, keep)
    ax.set_xlabel("batch")
    ax.set_ylabel(ylabel)
    if len(xs) and data.names:
        ax.legend(title="layer", fontsize="small")
    return ax


def epoch_starts(data: ActivationData, rows: int | None = None) -> list[int]:
    """The training batch at which each epoch after the first begins, among the rows.

    :param data: recorded data (training rows).
    :param rows: look at the first this many rows only; all by default.
    """
    rows = len(data) if rows is None else rows
    return [data.iterations[i] for i in range(1, rows) if data.epochs[i] != data.epochs[i - 1]]


def _epoch_marks(ax: Axes, data: ActivationData, rows: int | None = None) -> None:
    starts = [x - 0.5 for x in epoch_starts(data, rows)]
    if starts:  # a collection, not lines: ax.lines stays the data's
        ax.vlines(
            starts,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="0.5",
            linewidths=0.8,
            linestyles=":",
            zorder=0,
            label="_epochs",
        )


def near_zero_band(data: ActivationData, module: int) -> tuple[float, float]:
    """The values counted as near zero for one module: its near-zero bins' span.

    :param data: recorded data.
    :param module: the module's index.
    """
    edges = data.edges(module).tolist()
    bins = data.zero_bins[module]
    return edges[min(bins)], edges[max(bins) + 1]


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
    bands = {near_zero_band(data, m) for m in _layers(data, layers)}
    if len(bands) == 1:
        ((low, high),) = bands
        ax.set_title(f"near zero: values in [{low:.3g}, {high:.3g})", fontsize="medium")
    elif bands:
        ax.set_title(
            "near zero: the bins nearest 0 (band per layer: see color_dim)", fontsize="medium"
        )
    return ax


def plot_color_dim(
    data: ActivationData, layer: int | str = 0, ax: Axes | None = None, colorbar: bool = True
) -> Axes:
    """Draw one layer's histograms over training as an image: the colorful dimension.

    Columns are the recorded training batches, rows the histogram bins, low
    values at the bottom (``origin="lower"``); the colour is ``log(1 + count)``
    (the colorbar), each column's counts scaled to the largest output's number of
    values, so that a smaller last batch does not show as a pale stripe. The value
    axis spans the bins that ever held a value (one bin of margin), and a note in
    the corner gives the histogram's whole range when that cut something off. Two dashed
    lines bound the near-zero band; dotted vertical lines mark the epochs.

    :param data: the observer's recorded data.
    :param layer: the layer, by index or name.
    :param ax: the Axes to draw on; a new figure's when ``None``.
    :param colorbar: draw the colorbar next to the Axes.
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
        shown = ax.imshow(
            image.numpy(),
            origin="lower",
            aspect="auto",
            interpolation="nearest",
            extent=(first - 0.5, last + 0.5, low, high),
        )
        if colorbar:
            ax.figure.colorbar(shown, ax=ax, label="log(1 + count)")
        used = (image.nan_to_num(0.0) > 0).any(dim=1).nonzero().flatten().tolist()
        if used:
            width = (high - low) / data.bins
            top = min(high, low + (max(used) + 2) * width)
            bottom = max(low, low + (min(used) - 1) * width)
            if (bottom, top) != (low, high):
                ax.set_ylim(bottom, top)
                ax.text(
                    0.01,
                    0.98,
                    f"range {low:g}..{high:g}, empty bins not shown",
                    transform=ax.transAxes,
                    ha="left",
                    va="top",
                    color="white",
                    fontsize="x-small",
                )
        ax.hlines(
            near_zero_band(data, m),
            0,
            1,
            transform=ax.get_yaxis_transform(),
            colors="white",
            linewidths=0.8,
            linestyles="--",
            label="_near zero",
        )
        _epoch_marks(ax, data)
    ax.set_title(data.labels[m], fontsize="medium")
    ax.set_xlabel("batch")
    ax.set_ylabel("value")
    return ax


def color_dim_figure(
    data: ActivationData,
    layers: Sequence[int | str] | None = None,
    ncols: int = 2,
    title: str | None = None,
) -> Figure:
    """The colorful dimension of several layers, one panel each, in a grid.

    :param data: the observer's recorded data.
    :param layers: the layers, by index or name; all by default.
    :param ncols: panels per row.
    :param title: the run, put under the figure's title (e.g. :func:`observers.plots.run_title`).
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
    heading = f"histograms of the {data.kind} (log scale)"
    figure.suptitle(f"{heading}\n{title}" if title else heading)
    return figure


def means_stds_figure(
    data: ActivationData, first: int | None = None, title: str | None = None
) -> Figure:
    """Means (left) and standard deviations (right) of every layer, side by side.

    :param data: the observer's recorded data.
    :param first: draw only the first this many rows.
    :param title: the run, as the figure's title.
    """
    figure = plots.new_figure((10.0, 4.0))
    left, right = figure.subplots(1, 2)
    plot_means(data, left, first)
    plot_stds(data, right, first)
    if title:
        figure.suptitle(title)
    return figure


def compare_figure(runs: dict[str, ActivationData], layer: int | str = -1) -> Figure:
    """Several runs side by side, one column each: the std of every layer over
    training (top) and one layer's colorful dimension (bottom).

    The look_inside story in one picture: plain, kaiming, GeneralRelu. The std
    panels share their y axis (log scale) and the histograms one colour scale (the
    colorbar on the right), so the columns compare at a glance.

    :param runs: each run's recorded data, by the name to show above its column.
    :param layer: the layer whose histograms are drawn, by index or name; the
        last hooked one by default (where the lesson's problems show most).
    """
    if not runs:
        raise ValueError("runs should hold at least one run's data, got none")
    figure = plots.new_figure((4.5 * len(runs), 7.0))
    grid = figure.subplots(2, len(runs), squeeze=False)
    images = []
    for column, (name, data) in enumerate(runs.items()):
        top, bottom = grid[0][column], grid[1][column]
        if column:
            top.sharey(grid[0][0])
        plot_stds(data, top)
        top.set_yscale("log")
        top.set_title(name, fontsize="large")
        if column:
            top.set_ylabel("")
            legend = top.get_legend()
            if legend is not None:
                legend.remove()
        plot_color_dim(data, layer, bottom, colorbar=False)
        images += bottom.get_images()
    if images:
        high = max(float(image.get_array().max()) for image in images)
        for image in images:
            image.set_clim(0.0, high)
        figure.colorbar(images[-1], ax=list(grid[1]), label="log(1 + count)")
    return figure


def save_activation_plots(
    data: ActivationData,
    directory: str | os.PathLike[str],
    prefix: str = "",
    title: str | None = None,
) -> list[Path]:
    """Write the pictures as PNG files into ``directory``; returns their paths.

    The files are :data:`PLOT_FILES`, each name preceded by ``prefix``, written
    atomically (the folder is created if needed).

    :param data: the observer's recorded data.
    :param directory: the folder to write into.
    :param prefix: put before each file name, e.g. ``grad_``.
    :param title: the run, on every picture (:func:`observers.plots.run_title`).
    """
    folder = Path(directory)
    with not_shown():  # drawn for the files only, not for a notebook's output
        near = plots.new_figure()
        plot_near_zero(data, near.add_subplot())
        if title:
            near.suptitle(title)
        figures = [means_stds_figure(data, title=title), means_stds_figure(data, FIRST, title)]
        figures += [color_dim_figure(data, title=title), near]
    return [
        plots.save_figure(figure, folder / f"{prefix}{name}")
        for name, figure in zip(PLOT_FILES, figures)
    ]
