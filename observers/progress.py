"""Show how a fit is going: a table row per epoch, a bar across epochs and one per pass.

:class:`Progress` shows one row per epoch with every value of ``learner.log``: as
text on stdout, or as an HTML table growing in place in a notebook. In a terminal
or a notebook it also shows a tqdm bar across the epochs and one for each training
and validation pass, with the latest loss. The loss is read from the device at
most every half second, only while a bar is shown; without a bar, batches cost
nothing but a function call.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from typing import TYPE_CHECKING
from typing import Any

from engine import notebook
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
    """Show a table row per epoch and live bars: one across epochs, one per pass.

    Where the output goes decides how it looks:

    - in a notebook (:func:`engine.notebook.in_notebook`), the table is one HTML
      table that grows in place, epoch by epoch, and the bars are tqdm's widgets
      (``ipywidgets`` installed: ``pip install lookinside[notebook]``; without it,
      no bars and no text in their place);
    - in a terminal (stderr is one), tqdm bars on stderr, the rows on stdout
      through ``tqdm.write`` so that they do not garble the bars;
    - anywhere else (a log file, a pipe, captured output), the rows alone, as
      plain text: no bar, no carriage returns.

    A row holds every key of ``learner.log`` in its order (``epoch`` first); in
    text, a header is printed before the first row of a fit and again whenever the
    keys change. When a plugin stops the fit (``CancelTrainException``), its
    reason (``learner.cancelled``) is shown after the rows.

    :param bar: show bars: true, false, or none for bars only in a terminal or a
        notebook.
    """

    name = "progress"
    order = order.PROGRESS
    pause_during_sweeps = True
    """An LR finder's sweep is no epoch: no row, no bar is shown for it."""

    def __init__(self, bar: bool | None = None) -> None:
        if bar is not None:
            boolean("bar", bar)
        self.bar = bar
        """The option as given: ``True``, ``False`` or ``None`` (auto)."""
        self.use_bar = False
        """Whether bars are shown during the current fit (``bar`` resolved at begin_fit)."""
        self.in_notebook = False
        """Whether the current fit shows its table (and bars) as notebook outputs."""
        self.rows: list[dict[str, Any]] = []
        """The rows of the current (or last) fit, as shown."""
        self._pbar: tqdm[Any] | None = None
        self._overall: tqdm[Any] | None = None
        self._bar_class: Any = None
        self._next_refresh = 0.0
        self._keys: list[str] | None = None
        self._widths: list[int] = []
        self._table: Any = None

    def begin_fit(self, learner: Learner) -> None:
        self._close(overall=True)
        # in a distributed fit, rank 0 alone shows progress (learner.is_main)
        self.in_notebook = learner.is_main and notebook.in_notebook()
        wanted = (
            self.bar if self.bar is not None else (self.in_notebook or _is_terminal(sys.stderr))
        )
        self._bar_class = _bar_class(self.in_notebook) if learner.is_main and wanted else None
        self.use_bar = self._bar_class is not None
        self._keys = None
        self.rows = []
        self._table = None

    def begin_epoch(self, learner: Learner) -> None:
        if self.use_bar and self._overall is None:
            # made at the first epoch: a resumed fit has moved learner.epoch by now
            self._overall = self._new_bar(learner.epochs, "epochs", leave=True)
            self._overall.update(learner.epoch)
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
        if self._overall is not None:
            self._overall.update()
        if learner.is_main:
            self._show_row(dict(learner.log))

    def after_cancel_train(self, learner: Learner) -> None:
        cancelled = learner.cancelled
        if not learner.is_main or cancelled is None:
            return
        shown = bool(self.rows) and self.rows[-1].get("epoch") == learner.epoch
        if not shown and set(learner.log) - {"epoch"}:
            # stopped in after_epoch before this plugin showed the row it decided on
            self._close()
            self._show_row(dict(learner.log))
            shown = True
        if getattr(cancelled, "printed", False):
            return
        when = "after" if shown else "during"
        reason = str(cancelled) or "no reason given"
        self._write(f"stopped {when} epoch {learner.epoch}: {reason}")

    def after_fit(self, learner: Learner) -> None:
        self._close(overall=True)

    def _new_bar(self, total: int | None, desc: str, leave: bool = False) -> tqdm[Any]:
        bar: tqdm[Any] = self._bar_class(
            total=total, desc=desc, leave=leave, file=sys.stderr, dynamic_ncols=True
        )
        return bar

    def _open(self, learner: Learner, desc: str) -> None:
        self._close()
        if not self.use_bar:
            return
        self._pbar = self._new_bar(learner.iters or None, desc)
        self._next_refresh = 0.0

    def _close(self, overall: bool = False) -> None:
        if self._pbar is not None:
            pbar, self._pbar = self._pbar, None
            pbar.close()
        if overall and self._overall is not None:
            bar, self._overall = self._overall, None
            bar.close()

    def _show_row(self, log: dict[str, Any]) -> None:
        self.rows.append(log)
        if self.in_notebook:
            table = _html_table(self.rows)
            if self._table is None:
                self._table = notebook.display(table, display_id=True)
            else:
                self._table.update(table)
            return
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
        if self.use_bar and not self.in_notebook:
            from tqdm import tqdm

            tqdm.write(line, file=out)
        else:
            out.write(line + "\n")
        out.flush()


def _bar_class(in_notebook: bool) -> Any:
    """tqdm's widget bar in a notebook (``None`` when ipywidgets is missing: its text
    fallback would spam the output), else tqdm's terminal bar."""
    if in_notebook:
        if importlib.util.find_spec("ipywidgets") is None:
            return None
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    import tqdm

    return tqdm.tqdm


def _html_table(rows: list[dict[str, Any]]) -> notebook.HTML:
    """The rows as one HTML table (the keys of every row, in first-seen order), with
    the text table as the plain fallback."""
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row if key not in keys]
    cells = [[format_value(row.get(key)) for key in keys] for row in rows]
    widths = [max(len(key), *(len(row[i]) for row in cells), 6) for i, key in enumerate(keys)]
    text = "\n".join([_join(keys, widths), *(_join(row, widths) for row in cells)])
    return notebook.HTML(notebook.html_table(keys, cells), text)


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
