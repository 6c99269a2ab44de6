"""Show how a fit is going: a live bar per pass, and a table row per epoch.

:class:`Progress` prints one row per epoch with every value of ``learner.log``
(header first), on stdout. In a terminal it also shows a tqdm bar for each
training and validation pass, on stderr, with the latest loss. The loss is read
from the device at most every half second, only while a bar is shown; without a
bar, batches cost nothing but a function call.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine._checks import boolean
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from tqdm import tqdm

    from engine.learner import Learner

REFRESH_S = 0.5
"""The shortest time between two reads of the loss for a bar's postfix, in seconds."""

MISSING = "-"
"""How a value that is ``None`` appears in the table."""


def format_value(value: Any) -> str:
    """Format one value of ``learner.log`` for the table, compactly.

    Integers as they are, floats with 4 significant digits (``0.1235``,
    ``2.303``, ``1.2e-05``), ``None`` as ``-``, anything else with ``str``.

    :param value: the value to format.
    """
    if value is None:
        return MISSING
    if isinstance(value, int):  # bool too
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class Progress:
    """Print a table row per epoch and, in a terminal, a live bar per pass.

    The row holds every key of ``learner.log`` in its order (``epoch`` first);
    a header is printed before the first row of a fit and again whenever the
    keys change. Rows go to stdout and are flushed at once; while bars are on
    they are printed through ``tqdm.write`` so they do not garble the bars.

    :param bar: show a tqdm bar for each pass: true, false, or none for a bar
        only when stderr is a terminal.
    """

    name = "progress"
    order = order.PROGRESS
    pause_during_sweeps = True
    """An LR finder's sweep is no epoch: no row, no bar is printed for it."""

    def __init__(self, bar: bool | None = None) -> None:
        if bar is not None:
            boolean("bar", bar)
        self.bar = bar
        """The option as given: ``True``, ``False`` or ``None`` (auto)."""
        self.use_bar = False
        """Whether bars are shown during the current fit (``bar`` resolved at begin_fit)."""
        self._pbar: tqdm[Any] | None = None
        self._next_refresh = 0.0
        self._keys: list[str] | None = None
        self._widths: list[int] = []

    def begin_fit(self, learner: Learner) -> None:
        self._close()
        # in a distributed fit, rank 0 alone shows progress (learner.is_main)
        self.use_bar = learner.is_main and (
            self.bar if self.bar is not None else _is_terminal(sys.stderr)
        )
        self._keys = None

    def begin_epoch(self, learner: Learner) -> None:
        self._open(learner, "train")

    def begin_validate(self, learner: Learner) -> None:
        self._open(learner, "valid")

    def after_batch(self, learner: Learner) -> None:
        pbar = self._pbar
        if pbar is None:
            return
        now = time.perf_counter()
        if now >= self._next_refresh and learner.loss is not None:
            self._next_refresh = now + REFRESH_S
            pbar.set_postfix(loss=f"{learner.loss.item():.4g}", refresh=False)
        pbar.update()

    def after_cancel_epoch(self, learner: Learner) -> None:
        self._close()

    def after_epoch(self, learner: Learner) -> None:
        self._close()
        if learner.is_main:
            self._print_row(learner.log)

    def after_fit(self, learner: Learner) -> None:
        self._close()

    def _open(self, learner: Learner, desc: str) -> None:
        self._close()
        if not self.use_bar:
            return
        from tqdm import tqdm

        total = learner.iters or None
        self._pbar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)
        self._next_refresh = 0.0

    def _close(self) -> None:
        if self._pbar is not None:
            pbar, self._pbar = self._pbar, None
            pbar.close()

    def _print_row(self, log: Mapping[str, Any]) -> None:
        keys = list(log)
        cells = [format_value(log[key]) for key in keys]
        lines = []
        if keys != self._keys:
            self._keys = keys
            self._widths = [max(len(key), len(cell), 6) for key, cell in zip(keys, cells)]
            lines.append(_join(keys, self._widths))
        lines.append(_join(cells, self._widths))
        for line in lines:
            self._write(line)

    def _write(self, line: str) -> None:
        out = sys.stdout
        if self.use_bar:
            from tqdm import tqdm

            tqdm.write(line, file=out)
        else:
            out.write(line + "\n")
        out.flush()


def _join(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.rjust(width) for cell, width in zip(cells, widths)).rstrip()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty):
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`Progress`, enabled by default.

    :param register: the registration function bound to this module.
    """
    register(Progress, default=True)
