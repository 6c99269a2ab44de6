"""Read what :class:`~observers.activation_stats.ActivationStats` recorded and say what is wrong.

:func:`diagnose` looks at each hooked layer over the training rows and flags
what the lesson teaches to look for:

- ``dead``: far more activations sit near zero late in training than a healthy
  ReLU layer's (the lesson found over 90% of them there in its later layers:
  dead ReLUs); only for ReLU-like layers, whose outputs are never negative
  (histogram range starting at 0) and unbounded above: not for logits, signed
  activations or a sigmoid; and not for a layer whose signal fades with depth
  (its values are near zero because they are small, not because units died);
- ``saturated``: a bounded activation (tanh, sigmoid, hardtanh...: the hooked
  layer's last module) puts more than :data:`SATURATED` of its values within
  15% of its range from its bounds (``|tanh| > 0.7``, late in training): its
  gradient is nearly zero there;
- ``collapsed``: the histogram puts nearly everything into one bin;
- ``exploding`` / ``vanishing``: the late standard deviation is huge or tiny;
- ``grows with depth`` / ``fades with depth``: the layer's standard deviation
  over the first layer's, at the start (the first :data:`FIRST_ROWS` rows) or
  late, beyond :data:`DEPTH_RATIO` or below its inverse: the signal grows or
  fades from layer to layer, as it does with a badly scaled initialization;
- ``grows over time``: the late standard deviation is more than
  :data:`TIME_RATIO` times the starting one: the layer spent the start of the
  fit nearly flat and had to climb out of it (torch's default init on a deep
  stack of ReLUs);
- ``crashed``: the standard deviation fell far below a peak it had reached (the
  lesson's explode-and-crash picture at a high learning rate);
- ``out of range``: most values fall outside the histogram's range;
- ``nan``: some statistics are not finite (the fit diverged), at any time.

Across layers it also reports the standard deviation of the last layer over
the first's, late in training and over the first :data:`FIRST_ROWS` rows (``std
last/first``). It is read on the layers hooked: by default the blocks that
transform, without the output logits (:mod:`observers.default_layers`); the
logits' scale is the loss's business, so a ratio that ends on them means
nothing. Then it says what the lesson would try next, in its order:
kaiming initialization (``init_cnn``), ``GeneralRelu``, ``BatchNorm``, and
``RunningBatchNorm`` when batch norm meets a small batch.

"No problem found" is said only when no layer has any flag. The thresholds are
the constants below. "Late" means the last :data:`LATE_FRACTION` of the training
rows. The table's columns: the layer as ``name (Type)``; the late ``mean`` and
``std``; ``start std``, the std over the first :data:`FIRST_ROWS` rows; ``peak
std``, the largest std after the first row; ``drop``, the largest fall of the
std from a peak, as a ratio; ``near 0``, the late near-zero fraction; ``at
bounds``, the late share near a bounded activation's bounds (``-`` for
unbounded layers); ``top bin``, the share of the fullest bin; ``outside``, the
share of values outside the histogram's range.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.atomic_write import atomic_write
from engine.notebook import html_table

if TYPE_CHECKING:
    from collections.abc import Iterable

    from observers.activation_data import ActivationData

LATE_FRACTION = 0.25
"""The share of the training rows, at the end, that "late in training" averages over."""

DEAD = 0.75
"""A layer is ``dead`` when more than this fraction of its activations is near zero, late.

A ReLU fed a standard normal puts 69% of its outputs in ``[0, 0.5)`` (half of them
exactly 0), so a healthy ReLU layer sits around 0.7 by the lesson's measure; the
lesson's later layers reached 0.9 and more."""

COLLAPSED = 0.95
"""A layer is ``collapsed`` when its fullest bin holds more than this fraction of the values."""

OUT_OF_RANGE = 0.5
"""A layer is ``out of range`` when more than this fraction of values misses the histogram."""

EXPLODING = 100.0
"""A layer is ``exploding`` when its late standard deviation is above this."""

VANISHING = 1e-3
"""A layer is ``vanishing`` when its late standard deviation is below this."""

CRASHED = 5.0
"""A layer ``crashed`` when its standard deviation fell to less than 1/this of the
highest it had reached before (rows after the first)."""

DEPTH_RATIO = 10.0
"""A layer's std over the first layer's, beyond which (or below its inverse) the
signal is said to grow or fade with depth."""

TIME_RATIO = 10.0
"""A layer's late std over its starting std beyond which it ``grows over time``."""

SATURATED = 0.6
"""A bounded activation is ``saturated`` when more than this share of its values sits
near its bounds. A tanh fed a standard normal puts 38% of its outputs beyond +-0.7."""

BOUNDS: dict[str, tuple[float, float]] = {
    "Tanh": (-1.0, 1.0),
    "Hardtanh": (-1.0, 1.0),
    "Softsign": (-1.0, 1.0),
    "Sigmoid": (0.0, 1.0),
    "Hardsigmoid": (0.0, 1.0),
}
"""The bounded activations by class name, and their bounds."""

FIRST_ROWS = 10
"""The rows at the start of training the starting depth ratio averages over."""

SMALL_BATCH = 8
"""Batch sizes up to this make batch statistics unreliable (the lesson fails at bs 2)."""

ADVICE = {
    "init": "Initialize with kaiming normal (init_cnn(model), a = the activation's leak) "
    "and/or lower the learning rate: the lesson's first fix for activations that explode, "
    "crash or fade with depth.",
    "relu": "Use GeneralRelu(leak=0.1, sub=0.4, maxv=6) with init_cnn(model, a=0.1): a "
    "leaky, shifted activation keeps units from dying.",
    "norm": "Add BatchNorm after each activation (conv -> activation -> BatchNorm, lesson "
    "07): it keeps every layer's mean near 0 and std near 1 during training.",
    "small": "Batch statistics are unreliable at this batch size: use RunningBatchNorm "
    "(or GroupNorm / LayerNorm) instead of BatchNorm.",
    "range": "Most values fall outside the histogram: set range_min/range_max.",
    "saturated": "A bounded activation sits at its bounds, where its gradient vanishes: "
    "scale its inputs down (a smaller init, xavier for tanh, or a norm before it) or use "
    "a ReLU-like activation.",
    "ok": "No problem found: activations keep their spread through depth and time, few sit "
    "near zero, none sits at the bounds of its activation, and every value is finite.",
}
"""What the lesson would try next, by problem."""


_HEADER = (
    "layer",
    "mean",
    "std",
    "start std",
    "peak std",
    "drop",
    "near 0",
    "at bounds",
    "top bin",
    "outside",
    "problems",
)

COLUMNS = {
    "layer": "the hooked layer, as `name (Type)`",
    "mean": "the mean of its activations, late in training",
    "std": "their standard deviation, late in training",
    "start std": f"the standard deviation over the first {FIRST_ROWS} batches",
    "peak std": "the largest standard deviation after the first batch",
    "drop": "the largest fall of the standard deviation from a peak it had reached, "
    "as a ratio (1: it never fell)",
    "near 0": "the share of activations near zero, late (the histogram's lowest bins: "
    "the near-zero band of the pictures)",
    "at bounds": "the share near a bounded activation's bounds, late (`-`: unbounded)",
    "top bin": "the share of activations in the histogram's fullest bin",
    "outside": "the share of activations outside the histogram's range",
    "problems": "what was found (see the advice below), or `ok`",
}
"""What each column of the table means, in words (the report prints it)."""


@dataclass
class LayerReport:
    """One layer's late-training figures and the problems found."""

    name: str
    mean: float
    std: float
    start_std: float
    """The std over the first :data:`FIRST_ROWS` rows."""
    peak_std: float
    """The largest std after the first row."""
    drop: float
    """The largest fall of the std from a peak it had reached, as a ratio (1: none)."""
    near_zero: float
    top_bin: float
    """The fraction of values in the fullest bin."""
    out_of_range: float
    at_bounds: float = math.nan
    """The share of values near a bounded activation's bounds (NaN when unbounded)."""
    label: str = ""
    """``name (Type)``, as the table shows the layer."""
    flags: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    """A per-layer report, the depth ratio and the advice; print it or save it."""

    kind: str
    layers: list[LayerReport]
    depth_ratio: float
    """Late std of the last layer over the first's (NaN when unknown)."""
    start_ratio: float
    """The same over the first :data:`FIRST_ROWS` rows."""
    advice: list[str]
    rows: int
    """How many training rows were read."""
    batch_size: int | None = None
    context: dict[str, str] = field(default_factory=dict)
    """The run the report is about (model, lr, epochs, batch size, final metrics), as
    ``{what: value}`` in display order; :class:`~observers.activation_stats.ActivationStats`
    fills it in."""
    pictures: list[str] = field(default_factory=list)
    """The pictures drawn from the same data, as paths relative to the report's folder."""

    @property
    def problems(self) -> dict[str, list[str]]:
        """The layers with each flag."""
        found: dict[str, list[str]] = {}
        for layer in self.layers:
            for flag in layer.flags:
                found.setdefault(flag, []).append(layer.name)
        return found

    def _rows(self) -> list[list[str]]:
        rows = []
        for layer in self.layers:
            rows.append(
                [
                    layer.label or layer.name,
                    _num(layer.mean),
                    _num(layer.std),
                    _num(layer.start_std),
                    _num(layer.peak_std),
                    _num(layer.drop),
                    _pct(layer.near_zero),
                    _pct(layer.at_bounds) if math.isfinite(layer.at_bounds) else "-",
                    _pct(layer.top_bin),
                    _pct(layer.out_of_range),
                    ", ".join(layer.flags) or "ok",
                ]
            )
        return rows

    def _summary(self) -> list[str]:
        lines = [
            f"std last/first layer: {_num(self.depth_ratio)} late, "
            f"{_num(self.start_ratio)} over the first {FIRST_ROWS} rows"
        ]
        if self.batch_size is not None:
            lines[0] += f"; batch size {self.batch_size}"
        return lines + [f"- {line}" for line in self.advice]

    def table(self) -> str:
        """The report as plain text, for a terminal."""
        rows = [list(_HEADER), *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
        lines = [f"Diagnosis of the {self.kind} (last {LATE_FRACTION:.0%} of {self.rows} rows)"]
        if self.context:
            lines.append(", ".join(f"{key} {value}" for key, value in self.context.items()))
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        return "\n".join(lines + self._summary())

    def to_markdown(self) -> str:
        """The report as a Markdown document: the run, the table, the advice, what
        the columns mean and links to the pictures."""
        lines = [f"# Diagnosis of the {self.kind}", ""]
        if self.context:
            lines += [", ".join(f"{key} {value}" for key, value in self.context.items()), ""]
        lines += [
            f"Late training: the last {LATE_FRACTION:.0%} of {self.rows} recorded batches.",
            "",
            "| " + " | ".join(_HEADER) + " |",
            "|" + "---|" * len(_HEADER),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self._rows()]
        lines += ["", *self._summary(), "", "## The columns", ""]
        lines += [f"- **{name}**: {words}" for name, words in COLUMNS.items()]
        if self.pictures:
            lines += ["", "## Pictures", ""]
            lines += [f"![{Path(path).stem}]({path})" for path in self.pictures]
        return "\n".join([*lines, ""])

    def _repr_html_(self) -> str:
        """The report as an HTML table with the advice, for a notebook."""
        last = len(_HEADER) - 1

        def style(column: int, cell: str) -> str:
            if column == 0:
                return "text-align:left"  # the layer
            return "color:#b00;font-weight:bold" if column == last and cell != "ok" else ""

        table = html_table(_HEADER, self._rows(), style)
        context = ", ".join(
            f"{html.escape(key)} <b>{html.escape(value)}</b>" for key, value in self.context.items()
        )
        ratio, *advice = self._summary()
        columns = "; ".join(
            f"<b>{html.escape(name)}</b>: {html.escape(words.replace('`', ''))}"
            for name, words in COLUMNS.items()
        )
        parts = [
            f"<h4>Diagnosis of the {html.escape(self.kind)}</h4>",
            f"<p>{context}</p>" if context else "",
            f"<p>Late training: the last {LATE_FRACTION:.0%} of {self.rows} recorded batches; "
            f"{html.escape(ratio)}.</p>",
            table,
            "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in advice) + "</ul>",
            f"<details><summary>the columns</summary><p>{columns}</p></details>",
        ]
        return "".join(parts)

    def __repr__(self) -> str:
        return self.table()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_markdown` to ``path`` in UTF-8, atomically; returns the path.

        See :func:`engine.atomic_write.atomic_write`.

        :param path: the Markdown file; its folder is created if needed.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_markdown().encode("utf-8")
        return atomic_write(target, lambda file: file.write(data))

    def __str__(self) -> str:
        return self.table()


def diagnose(
    data: ActivationData,
    *,
    batch_size: int | None = None,
    layer_types: Iterable[str] = (),
) -> Diagnosis:
    """Diagnose the training rows of ``data``, layer by layer.

    :param data: what :class:`~observers.activation_stats.ActivationStats` recorded.
    :param batch_size: the training batch size, for the small-batch advice.
    :param layer_types: the class names of the model's modules (to tell whether
        it uses batch norm).
    """
    train = data.training()
    rows = len(train)
    late = slice(max(0, rows - max(1, math.ceil(rows * LATE_FRACTION))), rows)
    start = slice(0, min(rows, FIRST_ROWS))
    layers = [_layer(train, m, late, start) for m in range(len(train.names))]
    ratio = _ratio([layer.std for layer in layers])
    start_ratio = _ratio([layer.start_std for layer in layers])
    _depth_flags(layers)
    advice = _advice(layers, [ratio, start_ratio], batch_size, set(layer_types))
    return Diagnosis(data.kind, layers, ratio, start_ratio, advice, rows, batch_size)


def _ratio(stds: list[float]) -> float:
    finite = [std for std in stds if math.isfinite(std)]
    return finite[-1] / finite[0] if len(finite) > 1 and finite[0] > 0 else math.nan


def _late_mean(values: torch.Tensor, late: slice) -> float:
    window = values[late]
    window = window[~window.isnan()]
    return float(window.mean()) if window.numel() else math.nan


def _layer(data: ActivationData, m: int, late: slice, start: slice) -> LayerReport:
    stds = data.stds[:, m]
    mean, std = _late_mean(data.means[:, m], late), _late_mean(stds, late)
    finite = bool(torch.isfinite(data.means[:, m]).all() and torch.isfinite(stds).all())
    after_first = stds[1:][~stds[1:].isnan()]
    peak = float(after_first.max()) if after_first.numel() else std
    drop = 1.0
    if after_first.numel():
        peaks = after_first.cummax(0).values
        drop = float((peaks / after_first.clamp(min=1e-12)).max())
    hist = data.hists[late, m].double().sum(0)
    total = float(data.numel[late, m].nan_to_num(0.0).sum())
    top = float(hist.max()) / total if total > 0 else math.nan
    bounds = BOUNDS.get(data.types[m].split("+")[-1])
    at_bounds = math.nan
    if bounds is not None and total > 0:
        at_bounds = _near_bounds(data, m, hist, bounds) / total
    report = LayerReport(
        data.names[m],
        mean,
        std,
        _late_mean(stds, start),
        peak,
        drop,
        _late_mean(data.near_zero[:, m], late),
        top,
        _late_mean(data.out_of_range[:, m], late),
        at_bounds,
        data.labels[m],
    )
    # "dead" is about ReLU-like outputs (never negative: the range starts at 0 or
    # above, and unbounded); near zero means nothing of the kind for logits,
    # signed activations or a sigmoid
    relu_like = data.ranges[m][0] >= 0 and bounds is None
    report.flags = _flags(report, relu_like, finite)
    return report


def _near_bounds(
    data: ActivationData, m: int, hist: torch.Tensor, bounds: tuple[float, float]
) -> float:
    """The histogram's count in the bins whose centres lie within 15% of the range of a bound."""
    edges = data.edges(m)
    centres = (edges[:-1] + edges[1:]) / 2
    low, high = bounds
    margin = 0.15 * (high - low)
    near = (centres <= low + margin) | (centres >= high - margin)
    return float(hist[near].sum())


def _flags(r: LayerReport, relu_like: bool = True, finite: bool = True) -> list[str]:
    if not (finite and math.isfinite(r.mean) and math.isfinite(r.std)):
        return ["nan"]
    flags = []
    if relu_like and r.near_zero > DEAD:
        flags.append("dead")
    if r.at_bounds > SATURATED:
        flags.append("saturated")
    if r.top_bin > COLLAPSED:
        flags.append("collapsed")
    if r.out_of_range > OUT_OF_RANGE:
        flags.append("out of range")
    if r.std > EXPLODING:
        flags.append("exploding")
    if 0 < r.std < VANISHING:
        flags.append("vanishing")
    if r.start_std > 0 and r.std / r.start_std > TIME_RATIO:
        flags.append("grows over time")
    if r.drop > CRASHED:
        flags.append("crashed")
    return flags


def _depth_flags(layers: list[LayerReport]) -> None:
    """Flag the layers whose std, over the first layer's, is beyond :data:`DEPTH_RATIO`.

    A layer that fades with depth is not also called dead: its values sit near
    zero because they are small.
    """
    if not layers:
        return
    first = layers[0]
    for layer in layers[1:]:
        ratios = [
            mine / theirs
            for mine, theirs in ((layer.start_std, first.start_std), (layer.std, first.std))
            if math.isfinite(mine) and math.isfinite(theirs) and mine > 0 and theirs > 0
        ]
        if any(r > DEPTH_RATIO for r in ratios):
            layer.flags.append("grows with depth")
        if any(r < 1 / DEPTH_RATIO for r in ratios):
            layer.flags.append("fades with depth")
            if "dead" in layer.flags:
                layer.flags.remove("dead")


def _advice(
    layers: list[LayerReport], ratios: list[float], batch_size: int | None, types: set[str]
) -> list[str]:
    flags = {flag for layer in layers for flag in layer.flags}
    deep = any(math.isfinite(r) and not 1 / DEPTH_RATIO <= r <= DEPTH_RATIO for r in ratios)
    scale = {"nan", "exploding", "vanishing", "crashed", "grows with depth", "fades with depth"}
    unstable = bool(flags & (scale | {"grows over time"})) or deep
    batchnorm = any("BatchNorm" in t and not t.startswith("Running") for t in types)
    advice = []
    if unstable:
        advice.append(ADVICE["init"])
    if flags & {"dead", "collapsed"}:
        advice.append(ADVICE["relu"])
    if "saturated" in flags:
        advice.append(ADVICE["saturated"])
    if unstable and not batchnorm:
        advice.append(ADVICE["norm"])
    if batchnorm and batch_size is not None and batch_size <= SMALL_BATCH:
        advice.append(ADVICE["small"])
    if "out of range" in flags:
        advice.append(ADVICE["range"])
    return advice or [ADVICE["ok"]]


def _num(value: float) -> str:
    # + 0.0 turns -0.0 into 0.0: "-0" would read as a sign that means something
    return f"{value + 0.0:.3g}" if math.isfinite(value) else str(value)


def _pct(value: float) -> str:
    if not math.isfinite(value):
        return "nan"
    text = f"{value + 0.0:.1%}"
    return "0.0%" if text == "-0.0%" else text
