"""A monitored value: which way is better, and whether any plugin writes it.

Shared by early stopping and checkpoints. A plugin declares the keys it writes
into ``learner.log`` in a ``log_keys`` attribute (a collection of strings, or a
property computing one), like the ``metrics`` observer's ``train_loss``,
``valid_loss``, ``valid_accuracy``... :func:`check_monitor` compares a monitor
with what the attached plugins declare at ``begin_fit``, so a misspelt monitor
stops the fit before its first epoch instead of after it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Literal

from engine import events
from engine._checks import did_you_mean
from engine.events import EVENTS
from engine.exceptions import PluginValueError
from engine.hookspecs import ENTRY_POINT_GROUP
from engine.manager import BUILTIN_DISTRIBUTION

if TYPE_CHECKING:
    from engine.learner import Learner

LOOP_KEYS = ("epoch",)
"""The keys the loop itself writes into ``learner.log`` (at each epoch's start)."""

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


@functools.cache
def _builtin_modules() -> frozenset[str]:
    """The modules of the ``lookinside`` distribution's own plugins."""
    return frozenset(
        ep.module
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.metadata["Name"] == BUILTIN_DISTRIBUTION
    )


def logged_keys(learner: Learner) -> list[str] | None:
    """The keys the learner's plugins write into ``learner.log``, or ``None`` when unknown.

    A plugin's keys are its ``log_keys``. A built-in plugin without ``log_keys``
    writes none. The keys are unknown (``None``) when another plugin has no
    ``log_keys`` (it may write any key), or when a receiver connected by hand
    to an event could write one.

    :param learner: the learner whose attached plugins are asked.
    """
    keys = list(LOOP_KEYS)
    for plugin in learner.plugins.values():
        declared: Iterable[str] | None = getattr(plugin, "log_keys", None)
        if declared is not None:
            keys += [key for key in declared if key not in keys]
        elif type(plugin).__module__ not in _builtin_modules():
            return None
    if any(events.events[name].receivers for name in EVENTS):
        return None
    return keys


def check_monitor(learner: Learner, monitor: str, plugin: str, fix: str) -> None:
    """Stop a fit at ``begin_fit`` when no plugin writes ``monitor`` into ``learner.log``.

    Nothing is checked when the keys are not all known (see :func:`logged_keys`):
    then the plugin finds out at the end of the first epoch.

    :param learner: the learner starting its fit.
    :param monitor: the key the plugin reads.
    :param plugin: the plugin's name, for the message.
    :param fix: the last sentence of the message: how to turn the check off.
    :raises PluginValueError: no attached plugin declares ``monitor``.
    """
    keys = logged_keys(learner)
    if keys is None or monitor in keys:
        return
    raise PluginValueError(
        f"plugin {plugin!r}: monitor {monitor!r} is not written into learner.log by any "
        f"plugin{did_you_mean(monitor, keys)}; the plugins write: {', '.join(keys)}. "
        f"Set -p {plugin}:monitor= to one of them{fix} (a plugin of your own that writes "
        "other keys declares them in its log_keys attribute)"
    )
