"""Which way is better for a monitored value: shared by early stopping and checkpoints."""

from __future__ import annotations

import re
from typing import Literal

MIN_WORDS = frozenset({"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity"})
"""Words of a metric's name that mean lower is better (``mode="auto"``)."""

MAX_WORDS = frozenset(
    {"accuracy", "acc", "f1", "auc", "precision", "recall", "iou", "dice", "r2", "score"}
)
"""Words of a metric's name that mean higher is better (``mode="auto"``)."""


def infer_mode(monitor: str, plugin: str | None = None) -> Literal["min", "max"]:
    """``min`` or ``max`` from the words of a metric's name (split on ``_``, ``-``, ``.``).

    >>> infer_mode("valid_loss"), infer_mode("valid_accuracy"), infer_mode("error_rate")
    ('min', 'max', 'min')

    :param monitor: the metric's name, a key of ``learner.log``.
    :param plugin: the plugin asking, named in the error.
    :raises ValueError: the name has words of both kinds, or of neither.
    """
    words = set(re.split(r"[_\-.\s]+", monitor.lower()))
    low, high = bool(words & MIN_WORDS), bool(words & MAX_WORDS)
    if low != high:
        return "min" if low else "max"
    prefix = f"plugin {plugin!r}: " if plugin else ""
    example = f" (-p {plugin}:monitor={monitor},mode=min)" if plugin else ""
    raise ValueError(
        f"{prefix}cannot tell whether {monitor!r} should go down or up; "
        f"give mode='min' or mode='max'{example}"
    )
