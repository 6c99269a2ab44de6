"""The LR finder's result: the sweep's points, the suggested learning rates, the plot."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.notebook import not_shown

if TYPE_CHECKING:
    import os

    from matplotlib.axes import Axes


MIN_FALL = 0.1
"""The least fall of the smoothed loss, as a share of its starting value, worth a suggestion.

A sweep whose smoothed loss never drops below ``(1 - MIN_FALL)`` times where it
started (after ``skip_start``) did not find a learning rate at which the model
trains: any point picked on it would be noise."""


DESCENT_START = 0.1
"""The descent of a sweep begins at the last point whose smoothed loss is within this
share of the whole fall (top to minimum) from the top: before it, the loss is flat."""


def fall(smoothed: Iterable[float], skip_start: int = 0) -> float:
    """How far the smoothed loss fell below its start, as a share of the start's size.

    The start is the first point after ``skip_start``; only the finite points
    before the first non-finite one count. NaN with fewer than 2 of them. A loss
    that can be negative (a Gaussian negative log-likelihood) is measured against
    the start's magnitude, or against the span of the curve when it starts at 0.

    :param smoothed: the smoothed loss of each point of the sweep.
    :param skip_start: how many points at the start to leave out.
    """
    values = _finite_prefix(list(smoothed)[skip_start:])
    if len(values) < 2:
        return math.nan
    scale = abs(values[0]) or (max(values) - min(values))
    return (values[0] - min(values)) / scale if scale else 0.0


def _finite_prefix(values: list[float]) -> list[float]:
    kept = []
    for value in values:
        if not math.isfinite(value):
            break
        kept.append(value)
    return kept


def valley(losses: list[float]) -> tuple[int, int]:
    """The first and last index of the longest valley.

    The longest valley ends where the longest falling sequence of points (not
    necessarily adjacent) ends, found by dynamic programming in O(n^2); among
    equally long ones the first wins. It spans as many points as that sequence
    holds, counted back from its end, as fastai's ``valley`` counts it: points
    the sequence skipped (noise on the way down) shorten the valley instead of
    stretching it back into the flat start of a sweep.

    :param losses: the smoothed losses, finite.
    """
    n = len(losses)
    if not n:
        return 0, 0
    length = [1] * n
    for i in range(n):
        for j in range(i):
            if losses[j] > losses[i] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
    end = max(range(n), key=lambda i: (length[i], -i))
    return end - length[end] + 1, end


def suggest(
    lrs: Iterable[float], smoothed: Iterable[float], skip_start: int = 0
) -> dict[str, float]:
    """The suggested learning rates of a sweep, by name; none when the loss never fell.

    ``valley``: halfway along the longest valley of the smoothed loss (see
    :func:`valley`), where the loss is still falling steadily and the lr is
    well below divergence: fastai's default suggestion. The valley is looked for
    on the descent only: from the last point before the minimum still within
    :data:`DESCENT_START` of the whole fall from the top, to the minimum. On a
    sweep that starts with a long flat stretch (decades of learning rates too
    small to train), a falling run could otherwise thread through the noise or
    drift of the flat part and put its middle where nothing trains yet; the
    steepest point is looked for on the descent too, for the same reason. ``steepest``: where the
    smoothed loss falls fastest, the minimum of its gradient with respect to
    ``log10(lr)`` (``numpy.gradient``: central differences, one-sided at the
    ends). ``min/10``: a tenth of the learning rate at the lowest smoothed loss.
    The first ``skip_start`` points are left out (the average is still settling
    there), and so is everything from the first non-finite loss on; fewer than 2
    points left give no suggestion, and so does a sweep whose smoothed loss
    never fell by :data:`MIN_FALL` of its start (see :func:`fall`): it saw
    nothing to suggest.

    :param lrs: the learning rates of the sweep, increasing.
    :param smoothed: the smoothed loss at each of them.
    :param skip_start: how many points at the start to leave out.
    """
    import numpy as np

    points: list[tuple[float, float]] = []
    for lr, loss in list(zip(lrs, smoothed))[skip_start:]:
        if not math.isfinite(loss):
            break
        points.append((lr, loss))
    if len(points) < 2:
        return {}
    y = np.asarray([loss for _, loss in points])
    if not fall(y.tolist()) >= MIN_FALL:
        return {}
    x = np.log10([lr for lr, _ in points])
    low = int(np.argmin(y))
    top = float(np.max(y[: low + 1]))
    near_top = np.nonzero(y[: low + 1] >= top - DESCENT_START * (top - y[low]))[0]
    high = int(near_top[-1])  # where the descent begins
    first, last = valley(y[high : low + 1].tolist())
    middle = points[high + first + (last - first) // 2][0]
    slope = np.gradient(y, x)
    steepest = points[high + int(np.argmin(slope[high : low + 1]))][0]
    lowest = points[int(np.argmin(y))][0]
    return {"valley": middle, "steepest": steepest, "min/10": lowest / 10}


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
        """``{"valley": lr, "steepest": lr, "min/10": lr}`` (see :func:`suggest`).

        Empty when the sweep is too short or its smoothed loss never fell enough.
        """
        return suggest(self.lrs, self.smoothed, self.skip_start)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Plot the loss against the learning rate (log x axis), suggestions marked.

        The raw loss is drawn faintly behind the smoothed one. The y axis spans the
        smoothed loss from its highest point before the minimum down to the
        minimum (after ``skip_start``), so that the final explosion does not
        flatten the curve.

        :param ax: the Axes to draw on; a new figure's when ``None``.
        """
        import numpy as np

        from observers import plots

        ax = plots.axes_or_new(ax)
        if self.lrs:
            ax.plot(self.lrs, self.losses, alpha=0.3, linewidth=1.0, label="loss")
            ax.plot(self.lrs, self.smoothed, linewidth=1.5, label="smoothed loss")
            ax.set_xscale("log")
            logs = np.log10(self.lrs)
            for (name, lr), style in zip(self.suggestions.items(), ("o", "v", "s")):
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

        with not_shown():  # drawn for the file only, not for a notebook's output
            figure = plots.new_figure()
            self.plot(ax=figure.add_subplot())
        return plots.save_figure(figure, path)

    def __repr__(self) -> str:
        return str(self)  # the suggestions, not every recorded number

    def __str__(self) -> str:
        lines = [f"lr_find: {len(self.lrs)} iterations; {self.stop_reason}"]
        if self.lrs:
            lines[0] += f"; lr {self.lrs[0]:.2e} to {self.lrs[-1]:.2e}"
        found = self.suggestions
        fell = fall(self.smoothed, self.skip_start)
        if not found and math.isfinite(fell):
            start = _finite_prefix(self.smoothed[self.skip_start :])
            lines.append(
                f"no suggestion: the smoothed loss never fell by {MIN_FALL:.0%} over the sweep "
                f"(from {start[0]:.4g} to at best {min(start):.4g}, {fell:.1%}); the model "
                "did not train at any of these learning rates: try more iterations "
                "(num_it), a wider range (min_lr/max_lr), or look at the model and data"
            )
        elif not found:
            lines.append("no suggestion: too few finite losses were recorded")
        for name, lr in found.items():
            lines.append(f"suggested lr ({name}): {lr:.3g}")
        return "\n".join(lines)
