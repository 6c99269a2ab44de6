"""The lesson's notebooks run headless and show what they promise; ``lookinside demo`` runs them.

Each notebook is executed once per module, through ``lookinside demo NAME.ipynb`` (a
fresh ``python3`` kernel working in a temporary folder), and the tests read the
executed copy it writes: no error, the pictures each notebook draws, the diagnosis
and the progress bars of look_inside, the accuracies the lesson is about.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from demos import _notebooks
from engine.cli import main
from tests.outcomes import LOOK_INSIDE_NOTEBOOK
from tests.outcomes import NORMALIZATION_NOTEBOOK_FAILURE
from tests.outcomes import NORMALIZATION_NOTEBOOK_FIX
from tests.outcomes import Claim

ROOT = Path(__file__).resolve().parents[2]

IMAGES = {"foundations.ipynb": 1, "look_inside.ipynb": 11, "normalization.ipynb": 1}
"""The pictures each notebook draws: the scatter of two pixels; for each of the three
steps means/stds, the colorful dimension and near-zero, plus the plain run's first ten
batches; the accuracy bars."""

STEPS = ("plain", "kaiming", "general_relu")
WIDGET = "application/vnd.jupyter.widget-view+json"
DIAGNOSIS = "Diagnosis of the activations"
SECONDS = 60.0
"""The most a notebook may take, kernel start included (the issue's promise)."""

Run = tuple[Any, float, str]
"""An executed notebook, the seconds its run took, and what the command printed."""


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Run]]:
    """Run a notebook through ``lookinside demo NAME.ipynb`` the first time it is asked for."""
    runs: dict[str, Run] = {}

    def run(name: str) -> Run:
        if name not in runs:
            out = tmp_path_factory.mktemp(name.removesuffix(".ipynb"))
            printed = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stdout(printed):
                status = main(["demo", name, "--out", str(out)])
            seconds = time.perf_counter() - start
            assert status == 0, f"lookinside demo {name} exited {status}"
            runs[name] = (nbformat.read(out / name, as_version=4), seconds, printed.getvalue())
        return runs[name]

    yield run


def _cell(notebook: Any, cell_id: str) -> Any:
    return next(cell for cell in notebook.cells if cell.get("id") == cell_id)


def _text(cell: Any) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def _html(cell: Any) -> list[str]:
    return [out["data"]["text/html"] for out in cell.outputs if "text/html" in out.get("data", {})]


def _at_one_thread(claim: Claim, seed: int = 0) -> float:
    """The claim's measure as the notebook runs it on the digits: on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return claim.measure(seed)
    finally:
        torch.set_num_threads(threads)


def test_every_notebook_is_counted_here() -> None:
    assert sorted(IMAGES) == _notebooks.available_notebooks()


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_stored_notebook_has_no_outputs_and_takes_its_parameters_first(name: str) -> None:
    notebook = nbformat.read(_notebooks.FOLDER / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
    first = code[0]
    assert first.metadata.get("tags") == ["parameters"]
    assert 'DATA = "digits"' in first.source and "DATA_PATH = None" in first.source
    assert not any("pyplot" in cell.source for cell in code)  # our figures show themselves


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_notebook_runs_headless_and_shows_its_pictures(
    name: str, executed: Callable[[str], Run]
) -> None:
    notebook, seconds, _ = executed(name)
    outputs = _notebooks.outputs(notebook)
    assert [out for out in outputs if out.output_type == "error"] == []
    # nothing on stderr either: a newcomer sees no warning box
    assert [out.text for out in outputs if out.get("name") == "stderr"] == []
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")
    assert _notebooks.image_count(notebook) == IMAGES[name]
    assert seconds < SECONDS, f"{name} took {seconds:.1f} s"


def test_look_inside_shows_progress_and_the_diagnosis_after_each_step(
    executed: Callable[[str], Run],
) -> None:
    notebook, _, _ = executed("look_inside.ipynb")
    for step in STEPS:
        train = _cell(notebook, f"train-{step}")
        assert any(WIDGET in out.get("data", {}) for out in train.outputs)  # tqdm's bars
        assert any("<table" in html and "epoch" in html for html in _html(train))
        assert sum(DIAGNOSIS in html for html in _html(train)) == 1
        pictures = _cell(notebook, f"pictures-{step}").outputs
        assert sum(_notebooks.IMAGE in out.get("data", {}) for out in pictures) == 3


def test_look_inside_ends_with_the_dead_table_and_a_trained_general_relu(
    executed: Callable[[str], Run],
) -> None:
    notebook, _, _ = executed("look_inside.ipynb")
    lines = _text(_cell(notebook, "dead-table")).splitlines()
    assert lines[0].split()[-3:] == list(STEPS)
    accuracies = [float(value) for value in lines[-1].split()[-3:]]
    assert lines[-1].startswith("valid accuracy")
    assert LOOK_INSIDE_NOTEBOOK.holds(accuracies[-1]), LOOK_INSIDE_NOTEBOOK.describe(accuracies[-1])
    # the claim measures what the notebook trains
    assert accuracies[-1] == pytest.approx(_at_one_thread(LOOK_INSIDE_NOTEBOOK), abs=1e-4)


def test_normalization_shows_the_small_batch_failure_and_its_fix(
    executed: Callable[[str], Run],
) -> None:
    notebook, _, _ = executed("normalization.ipynb")
    line = _text(_cell(notebook, "fix"))
    found = re.search(r"BatchNorm ([\d.]+), RunningBatchNorm ([\d.]+)", line)
    assert found, line
    batch, running = float(found[1]), float(found[2])
    fix, failure = NORMALIZATION_NOTEBOOK_FIX, NORMALIZATION_NOTEBOOK_FAILURE
    assert fix.holds(running), fix.describe(running)
    assert failure.holds(running - batch), failure.describe(running - batch)
    assert running == pytest.approx(_at_one_thread(fix), abs=1e-4)
    for table in ("fit-usual", "fit-small"):
        rows = [row for row in _text(_cell(notebook, table)).splitlines() if row.startswith("|")]
        assert len(rows) == 2 + 6  # header, rule, one row per norm


def readme_example() -> str:
    """The first Python block under the README's "## Use it": the Learner example."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]


def test_readme_example_shows_its_plot_in_a_kernel(tmp_path: Path) -> None:
    example = readme_example()
    assert "Learner(init_cnn(cnn()), digits(bs=16)" in example
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("import torch\ntorch.set_num_threads(1)  # quicker on shared CI"),
        nbformat.v4.new_code_cell(example),
    ]
    path = tmp_path / "readme.ipynb"
    nbformat.write(notebook, path)
    run = _notebooks.execute(path, tmp_path, timeout=300)
    assert run.error is None, run.error
    outputs = run.notebook.cells[-1].outputs
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert (tmp_path / "runs" / "b" / "metrics.csv").exists()  # out_dir is the kernel's folder


def test_demo_list_shows_the_notebooks_with_their_titles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "list"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "look_inside" in rows  # the demos first
    assert rows["look_inside.ipynb"].split(None, 1)[1] == (
        "Look inside the model: plain, kaiming init, GeneralRelu"
    )
    assert {"foundations.ipynb", "normalization.ipynb"} <= set(rows)


def test_demo_runs_a_notebook_and_prints_one_line(executed: Callable[[str], Run]) -> None:
    notebook, _, printed = executed("foundations.ipynb")
    cells = _notebooks.code_cell_count(notebook)
    pattern = rf"foundations\.ipynb: {cells} code cells, 1 image, [\d.]+ s; written to (.+)\n"
    found = re.fullmatch(pattern, printed)
    assert found, printed
    assert Path(found[1]).name == "foundations.ipynb" and Path(found[1]).exists()


def test_parameters_go_right_after_the_parameters_cell() -> None:
    notebook = nbformat.read(_notebooks.FOLDER / "look_inside.ipynb", as_version=4)
    _notebooks.inject_parameters(notebook, {"DATA_PATH": "mnist.pkl.gz", "SEED": 3})
    assert notebook.cells[1].metadata["tags"] == ["parameters"]
    injected = notebook.cells[2]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert "DATA_PATH = 'mnist.pkl.gz'\nSEED = 3" in injected.source


def test_demo_refuses_an_unknown_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "look_insid.ipynb"]) == 2
    assert "did you mean 'look_inside.ipynb'?" in capsys.readouterr().err


def test_demo_without_nbclient_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "nbclient", None)  # import nbclient raises ImportError
    assert main(["demo", "foundations.ipynb", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'lookinside[notebook]'" in err
