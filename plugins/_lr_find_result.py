"""The LR finder's result: the sweep's points, the suggested learning rates, the plot."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import os

    from matplotlib.axes import Axes


def suggest(
    lrs: Iterable[float], smoothed: Iterable[float], skip_start: int = 0
) -> dict[str, float]:
    """The suggested learning rates of a sweep, by name.

    ``steepest``: where the smoothed loss falls fastest, the minimum of its
    gradient with respect to ``log10(lr)`` (``numpy.gradient``: central
    differences, one-sided at the ends). ``min/10``: a tenth of the learning rate
    at the lowest smoothed loss. The first ``skip_start`` points are left out
    (the average is still settling there), and so is everything from the first
    non-finite loss on; fewer than 2 points left give no suggestion.

    :param lrs: the learning rates of the sweep, increasing.
    :param smoothed: the smoothed loss at each of them.
    :param skip_start: how many points at the start to leave out.
    """
    points: list[tuple[float, float]] = []
    for lr, loss in list(zip(lrs, smoothed))[skip_start:]:
        if not math.isfinite(loss):
            break
        points.append((lr, loss))
    if len(points) < 2:
        return {}
    x = np.log10([lr for lr, _ in points])
    y = np.asarray([loss for _, loss in points])
    steepest = points[int(np.argmin(np.gradient(y, x)))][0]
    lowest = points[int(np.argmin(y))][0]
    return {"steepest": steepest, "min/10": lowest / 10}


@dataclass
class LRFindResult:
    """What a sweep measured, the suggested learning rates, and a plot of it."""

    lrs: list[float] = field(default_factory=list)
    """The learning rate of each batch of the sweep."""
    losses: list[float] = field(default_factory=list)
    """The loss of each batch, as computed."""
    smoothed: list[float] = field(default_factory=list)
    """The debiased exponentially weighted average of the losses."""
    stop_reason: str = ""
    """Why the sweep ended."""
    skip_start: int = 0
    """Points left out of the suggestions: ``num_it // 10``, as fastai does."""

    @property
    def suggestions(self) -> dict[str, float]:
        """``{"steepest": lr, "min/10": lr}`` (see :func:`suggest`); empty if too short."""
        return suggest(self.lrs, self.smoothed, self.skip_start)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Plot the loss against the learning rate (log x axis), suggestions marked.

        The raw loss is drawn faintly behind the smoothed one. The y axis spans the
        smoothed loss from its highest point before the minimum down to the
        minimum (after ``skip_start``), so that the final explosion does not
        flatten the curve.

        :param ax: the Axes to draw on; a new figure's when ``None``.
        """
        from observers import plots

        ax = plots.axes_or_new(ax)
        if self.lrs:
            ax.plot(self.lrs, self.losses, alpha=0.3, linewidth=1.0, label="loss")
            ax.plot(self.lrs, self.smoothed, linewidth=1.5, label="smoothed loss")
            ax.set_xscale("log")
            logs = np.log10(self.lrs)
            for (name, lr), style in zip(self.suggestions.items(), ("o", "v")):
                y = float(np.interp(math.log10(lr), logs, self.smoothed))
                ax.plot([lr], [y], style, markersize=8, label=f"{name}: {lr:.2e}")
            finite = [v for v in self.smoothed[self.skip_start :] if math.isfinite(v)]
            if finite:
                lowest = finite.index(min(finite))
                low, high = finite[lowest], max(finite[: lowest + 1])
                if high <= low:
                    high = max(finite)
                if high > low:
                    margin = 0.1 * (high - low)
                    ax.set_ylim(low - margin, high + 2 * margin)
            ax.legend()
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        return ax

    def save_plot(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`plot` to ``path`` as a PNG, atomically; returns the path.

        :param path: where the PNG goes (its folder is created if needed).
        """
        from observers import plots

        figure = plots.new_figure()
        self.plot(ax=figure.add_subplot())
        return plots.save_figure(figure, path)

    def __str__(self) -> str:
        lines = [f"lr_find: {len(self.lrs)} iterations; {self.stop_reason}"]
        if self.lrs:
            lines[0] += f"; lr {self.lrs[0]:.2e} to {self.lrs[-1]:.2e}"
        found = self.suggestions
        if not found:
            lines.append("no suggestion: too few finite losses were recorded")
        for name, lr in found.items():
            lines.append(f"suggested lr ({name}): {lr:.3g}")
        return "\n".join(lines)
