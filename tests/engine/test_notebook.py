"""Tests of engine.notebook: figures inline at the end of a cell, once, only in a kernel.

Most tests drive the module with a stand-in for IPython's kernel shell (the parts
it uses: ``kernel``, ``display_formatter`` and ``events``), so that each rule is
checked in milliseconds; ``test_in_a_real_kernel`` runs the same code in a real
kernel through nbclient and reads the outputs a notebook would store.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from typing import Any

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from engine import notebook
from observers import plots


class _Formatter:
    def __init__(self) -> None:
        self.types: dict[type, Any] = {}

    def for_type(self, cls: type, func: Any) -> None:
        self.types[cls] = func


class _Events:
    def __init__(self) -> None:
        self.callbacks: dict[str, list[Any]] = {}

    def register(self, name: str, func: Any) -> None:
        self.callbacks.setdefault(name, []).append(func)


class _Shell:
    """What engine.notebook reads of a kernel's InteractiveShell."""

    def __init__(self) -> None:
        self.kernel = object()
        self.display_formatter = types.SimpleNamespace(formatters={"image/png": _Formatter()})
        self.events = _Events()

    def end_cell(self, value: Any = None) -> None:
        for callback in self.events.callbacks.get("post_run_cell", []):
            callback(types.SimpleNamespace(result=value))


@pytest.fixture
def shell(monkeypatch):
    """A fake kernel shell, and the list of what was displayed through IPython."""
    fake = _Shell()
    shown: list[Any] = []
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: fake  # type: ignore[attr-defined]
    ipython.version_info = (9, 0, 0)  # type: ignore[attr-defined]  # matplotlib reads it
    display_module = types.ModuleType("IPython.display")
    display_module.display = lambda obj, display_id=None: shown.append(obj)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display_module)
    monkeypatch.setattr(notebook, "_pending", [])
    fake.shown = shown  # type: ignore[attr-defined]
    return fake


def test_nothing_happens_outside_a_kernel():
    assert not notebook.in_notebook()
    figure = plots.new_figure()
    assert notebook._pending == []  # no reference kept, nothing to show later
    assert notebook.display(figure) is None


def test_a_terminal_ipython_is_no_notebook(shell):
    del shell.kernel
    assert notebook.kernel_shell() is None
    plots.new_figure()
    assert notebook._pending == []


def test_figures_are_shown_when_the_cell_ends_in_the_order_made(shell):
    first = plots.new_figure()
    second = plots.axes_or_new().figure
    assert shell.shown == []  # not before the cell ends
    shell.end_cell()
    assert shell.shown == [first, second]
    shell.end_cell()
    assert shell.shown == [first, second]  # once only


def test_the_cells_value_is_not_shown_a_second_time(shell):
    ax = plots.axes_or_new()
    other = plots.new_figure()
    shell.end_cell(value=ax)  # IPython displayed ax as the cell's result already
    assert shell.shown == [other]
    figure = plots.new_figure()
    shell.end_cell(value=figure)
    assert shell.shown == [other]


def test_figures_for_files_are_not_shown(shell, tmp_path):
    with notebook.not_shown():
        figure = plots.new_figure()
    plots.save_figure(figure, tmp_path / "a.png")
    shell.end_cell()
    assert shell.shown == []
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")


def test_png_formatters_render_figures_and_axes(shell):
    ax = plots.axes_or_new()
    ax.plot([0, 1], [1, 0])
    formatters = shell.display_formatter.formatters["image/png"].types
    assert set(formatters) == {Figure, Axes}
    for value in (ax, ax.figure):
        png = formatters[type(value)](value)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(shell.events.callbacks["post_run_cell"]) == 1
    plots.new_figure()
    assert len(shell.events.callbacks["post_run_cell"]) == 1  # installed once per shell


def test_plotting_never_imports_pyplot(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from observers import plots
        ax = plots.plot_series([0, 1, 2], [3, 1, 2])
        plots.save_figure(ax.figure, sys.argv[1])
        print("matplotlib.pyplot" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p.png")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "False"


KERNEL_CELLS = [
    """
    import sys
    import torch
    from engine import Learner
    from engine.data import DataBunch
    from engine.nn import cnn
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    data = DataBunch.from_tensors(x[:48], y[:48], x[48:], y[48:], bs=16)
    learner = Learner(cnn(), data, plugins=["activation_stats"], out_dir="runs")
    learner.fit(2)
    """,
    "learner.plugins['recorder'].plot_loss()",
    """
    ax = learner.plugins['recorder'].plot_loss()
    from observers.activation_plots import color_dim_figure
    color_dim_figure(learner.plugins['activation_stats'].data)
    print("matplotlib.pyplot" in sys.modules)
    """,
    "learner.plugins",
    "learner.plugins['activation_stats'].diagnosis",
    """
    %matplotlib inline
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    ax
    """,
]


@pytest.mark.timeout(180)
def test_in_a_real_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = [nbformat.v4.new_code_cell(textwrap.dedent(code).strip()) for code in KERNEL_CELLS]
    nb = nbformat.v4.new_notebook(cells=cells)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [cell.outputs for cell in nb.cells]

    def kinds(cell: list[Any]) -> list[tuple[str, str]]:
        return [(out.output_type, _richest(out)) for out in cell]

    fit = kinds(outputs[0])
    widget = "application/vnd.jupyter.widget-view+json"
    assert ("display_data", widget) in fit  # tqdm's widget bars
    tables = [out for out in outputs[0] if "text/html" in out.get("data", {})]
    epoch_table, diagnosis = tables  # the epoch table, updated in place, then the diagnosis
    assert epoch_table.data["text/html"].count("<tr>") == 3  # header + 2 epochs
    assert "Diagnosis of the activations" in diagnosis.data["text/html"]
    assert not any(out.output_type == "stream" for out in outputs[0])  # no text spam
    assert kinds(outputs[1]) == [("execute_result", "image/png")]
    assert kinds(outputs[2]) == [
        ("stream", "text"),
        ("display_data", "image/png"),
        ("display_data", "image/png"),
    ]
    assert outputs[2][0].text.strip() == "False"  # pyplot was never imported
    assert kinds(outputs[3]) == [("execute_result", "text/html")]
    assert "activation_stats" in outputs[3][0].data["text/html"]
    assert kinds(outputs[4]) == [("execute_result", "text/html")]
    # pyplot's own figure: shown once, by pyplot's inline backend, not again by us
    images = [out for out in outputs[5] if "image/png" in out.get("data", {})]
    assert len(images) == 1, kinds(outputs[5])
    assert (tmp_path / "runs" / "loss.png").exists()  # files written, not shown


def _richest(out: Any) -> str:
    if out.output_type == "stream":
        return "text"
    data = out.get("data", {})
    for kind in ("image/png", "application/vnd.jupyter.widget-view+json", "text/html"):
        if kind in data:
            return kind
    return "text/plain"


def test_lr_find_plots_itself_in_a_notebook(shell):
    from engine.testing import make_learner

    learner = make_learner(lr=0.1)
    result = learner.lr_find(num_it=12)
    shell.end_cell(value=result)
    (figure,) = shell.shown
    (ax,) = figure.axes
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    assert repr(result) == str(result) and repr(result).startswith("lr_find: 12 iterations")


def test_learner_and_its_plugins_show_what_is_attached_with_options():
    from engine.testing import make_learner

    learner = make_learner(["metrics", "progress:bar=false", ("recorder", {"save": False})])
    text = repr(learner)
    assert text.splitlines()[0] == "Learner of Linear (10 parameters)"
    assert "  data: 32 train / 16 valid samples, bs 8, 2 classes, input (4,)" in text
    rows = learner.plugins.rows()
    assert [row["plugin"] for row in rows] == ["metrics", "recorder", "progress"]  # run order
    assert [row["options"] for row in rows] == ["-", "save=False", "bar=False"]
    html = learner._repr_html_()
    assert "<td style='text-align:left'>bar=False</td>" in html
    assert html.count("<tr>") == 4 + 1 + len(rows)  # model, data, loss, optimizer; header, plugins


def test_the_learners_description_holds_for_unusual_learners():
    from functools import partial

    import torch
    from torch import nn

    from engine.testing import make_learner

    opt = partial(torch.optim.AdamW, weight_decay=0.1)
    learner = make_learner(model=nn.Sequential(nn.LazyLinear(2)), opt_func=opt)
    lines = repr(learner).splitlines()  # a lazy layer before its first batch: no error
    assert lines[0] == "Learner of Sequential (0 parameters)"
    assert "  optimizer: AdamW, lr 0.1" in lines
    learner.fit(2)
    assert "  trained: last fit 2 epochs, 8 training batches" in repr(learner).splitlines()
    assert repr(learner).splitlines()[0] == "Learner of Sequential (10 parameters)"
