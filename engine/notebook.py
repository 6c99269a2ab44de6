"""Show results in a Jupyter notebook: figures inline, tables as HTML, nothing elsewhere.

lookinside draws with matplotlib's object API and never touches ``pyplot``
(:mod:`observers.plots`), so no window opens in a script and no figure piles up in
pyplot's global list. The price is that a notebook does not show those figures by
itself either: ``pyplot``'s inline backend only knows the figures ``pyplot`` made.
This module closes that gap, and does nothing at all outside a notebook kernel:

- Every figure made through :func:`observers.plots.new_figure` while a notebook
  cell runs is shown inline when the cell ends, once, in the order made, whether or
  not the cell keeps the returned ``Axes`` (``ax = recorder.plot_loss()`` shows the
  plot too, as ``pyplot`` does). No ``%matplotlib inline`` is needed.
- A figure or its ``Axes`` left as the cell's value is shown as the cell's result
  (a PNG), not as ``<Axes: ...>`` text, and not a second time at the end. Only
  lookinside's figures (marked by :func:`figure_made`): ``pyplot``'s keep whatever
  its inline backend does with them.
- Figures drawn only to be written to a file (:func:`not_shown`: the observers'
  ``after_fit`` plots) are not shown.

Shown figures are dropped from the list; nothing keeps them alive afterwards.
What is *not* done: figures of ``pyplot`` are left to ``pyplot``'s own backend,
and a terminal IPython (no kernel, no inline images) shows nothing.
"""

from __future__ import annotations

import contextvars
import html
import io
import sys
import weakref
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_quiet: contextvars.ContextVar[bool] = contextvars.ContextVar("lookinside_not_shown", default=False)
_pending: list[Figure] = []
_installed: weakref.WeakSet[Any] = weakref.WeakSet()


def kernel_shell() -> Any | None:
    """The IPython shell of a running notebook kernel, or ``None`` anywhere else.

    A kernel's shell has a ``kernel`` attribute; a terminal IPython's has none.
    IPython is never imported here: if nothing imported it, this is no notebook.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return shell


def in_notebook() -> bool:
    """Whether the code runs in a notebook kernel (Jupyter, VS Code, Colab, nbclient)."""
    return kernel_shell() is not None


@contextmanager
def not_shown() -> Iterator[None]:
    """Within this block, figures made are not shown in a notebook.

    For figures drawn only to be written to a file, such as the plots observers
    save in ``after_fit``.
    """
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


MARK = "_lookinside_figure"
"""The attribute that marks a figure as lookinside's: only those are rendered by the
formatters installed here, so that ``pyplot``'s figures stay its inline backend's."""


def figure_made(figure: Figure) -> None:
    """Note a new figure: in a notebook cell (and outside :func:`not_shown`), it is
    shown when the cell ends. Elsewhere this does nothing.

    :param figure: the figure, as made by :func:`observers.plots.new_figure`.
    """
    setattr(figure, MARK, True)
    if _quiet.get():
        return
    shell = kernel_shell()
    if shell is None:
        return
    _install(shell)
    _pending.append(figure)


def figure_png(figure: Figure) -> bytes:
    """Render ``figure`` as PNG bytes with an Agg canvas, as a notebook shows it.

    :param figure: the figure to render.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, bbox_inches="tight")
    return buffer.getvalue()


def display(obj: Any, *, display_id: bool = False) -> Any:
    """``IPython.display.display(obj)`` in a notebook; nothing (``None``) elsewhere.

    :param obj: what to show; its ``_repr_html_`` and friends decide how.
    :param display_id: return a handle whose ``update(new)`` replaces the output in
        place, for a table that grows during a fit.
    """
    if kernel_shell() is None:
        return None
    from IPython.display import display as ipython_display

    return ipython_display(obj, display_id=display_id or None)  # type: ignore[no-untyped-call]


def html_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    style: Callable[[int, str], str] | None = None,
) -> str:
    """An HTML table of text cells, each escaped, its runs of spaces kept.

    :param header: the column names.
    :param rows: the rows, one text per column.
    :param style: ``style(column, cell)`` gives a cell's CSS (``text-align:left``),
        or ``""`` for none.
    """

    def td(column: int, text: str) -> str:
        css = style(column, text) if style is not None else ""
        shown = html.escape(text).replace("  ", "&nbsp;&nbsp;")
        return f"<td style='{css}'>{shown}</td>" if css else f"<td>{shown}</td>"

    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(td(i, cell) for i, cell in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class HTML:
    """Markup to show as HTML in a notebook, with a plain-text fallback.

    :param html: the markup.
    :param text: what a non-HTML front end shows instead.
    """

    def __init__(self, html: str, text: str = "") -> None:
        self.html = html
        self.text = text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


def _install(shell: Any) -> None:
    """Register the PNG formatters and the end-of-cell hook, once per shell; the
    formatters again each time, in case ``pyplot``'s backend replaced them since."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    png = shell.display_formatter.formatters["image/png"]
    for kind, ours in ((Figure, _figure_formatter), (Axes, _axes_formatter)):
        previous = png.for_type(kind, ours)
        if previous is not None and previous is not ours:
            _previous[kind] = previous  # pyplot's inline backend's, for its own figures
    if shell in _installed:
        return
    shell.events.register("post_run_cell", _show_pending)
    _installed.add(shell)


_previous: dict[type, Any] = {}
"""The PNG formatters the ones installed here replaced, by type."""


def _figure_formatter(figure: Any) -> bytes | None:
    if getattr(figure, MARK, False):
        return figure_png(figure)
    previous = _previous.get(type(figure)) or _previous_for(figure)
    return previous(figure) if previous is not None else None  # None: no PNG from us


def _axes_formatter(ax: Any) -> bytes | None:
    if getattr(ax.figure, MARK, False):
        return figure_png(ax.figure)
    previous = _previous_for(ax)
    return previous(ax) if previous is not None else None


def _previous_for(obj: Any) -> Any:
    return next((f for kind, f in _previous.items() if isinstance(obj, kind)), None)


def _show_pending(result: Any = None) -> None:
    """At the end of a cell: show the figures it made, except the one that is already
    the cell's result (an ``Axes``, or the figure itself)."""
    figures = list(_pending)
    _pending.clear()
    value = getattr(result, "result", None)
    shown = getattr(value, "figure", value)
    seen: set[int] = set()
    for figure in figures:
        if figure is shown or id(figure) in seen:
            continue
        seen.add(id(figure))
        display(figure)
