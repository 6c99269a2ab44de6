"""Run the lesson's notebooks headless: ``lookinside demo NAME.ipynb``.

The notebooks in ``demos/notebooks/`` are stored without outputs. This module
lists them (their title is the first line of their first markdown cell) and
executes one in a fresh kernel with nbclient, as a person pressing "Run all"
would, then writes the executed copy, outputs included::

    lookinside demo list                       # the demos, then the notebooks
    lookinside demo look_inside.ipynb          # -> lookinside-out/notebooks/look_inside.ipynb
    lookinside demo normalization.ipynb --data-path mnist.pkl.gz --out runs/nb

The kernel runs in the output folder, so anything a notebook writes lands there.
``--data``, ``--data-path`` and ``--seed`` set the notebook's parameters: a cell
assigning them is inserted after the cell tagged ``parameters`` (papermill's
convention, so papermill can set them too). Running needs the ``notebook`` extra
(nbclient, nbformat, ipykernel, ipywidgets): ``pip install 'lookinside[notebook]'``.
The kernel process's own messages on stderr are kept back, and shown only when
the kernel dies.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from typing import Any

from engine._checks import did_you_mean
from engine.atomic_write import atomic_write
from engine.exceptions import LookinsideError

FOLDER = Path(__file__).parent / "notebooks"
"""Where the notebooks are stored, without outputs."""

SUFFIX = ".ipynb"
"""A demo name ending with this is a notebook."""

OUT = "lookinside-out/notebooks"
"""The default folder for executed notebooks (and the kernel's working folder)."""

INSTALL = "pip install 'lookinside[notebook]'"
"""How to get what running a notebook needs."""

IMAGE = "image/png"
"""The MIME type of the pictures a notebook shows."""

PARAMETERS_TAG = "parameters"
"""The tag of the cell that sets a notebook's parameters."""


def available_notebooks() -> list[str]:
    """The notebooks' file names, ``look_inside.ipynb`` and the others, sorted."""
    return sorted(path.name for path in FOLDER.glob(f"*{SUFFIX}"))


def is_notebook(name: str) -> bool:
    """Whether the demo ``name`` names a notebook (``NAME.ipynb``)."""
    return name.endswith(SUFFIX)


def describe_notebook(name: str) -> str:
    """The first line of notebook ``name``'s first markdown cell, without its ``#``.

    :param name: a file name among :func:`available_notebooks`.
    """
    cells = json.loads((FOLDER / name).read_text(encoding="utf-8")).get("cells", [])
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            return source.strip().partition("\n")[0].lstrip("#").strip()
    return ""


def notebook_path(name: str) -> Path:
    """The stored notebook called ``name``.

    :raises LookinsideError: no notebook has that name (the closest one is suggested).
    """
    names = available_notebooks()
    if name not in names:
        hint = did_you_mean(name, names)
        raise LookinsideError(f"unknown notebook {name!r}{hint}; notebooks: {', '.join(names)}")
    return FOLDER / name


def outputs(notebook: Any) -> list[Any]:
    """Every output of every code cell of ``notebook``, in order."""
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def image_count(notebook: Any) -> int:
    """How many pictures ``notebook``'s outputs show (``image/png`` outputs)."""
    return sum(IMAGE in out.get("data", {}) for out in outputs(notebook))


def code_cell_count(notebook: Any) -> int:
    """How many code cells ``notebook`` holds."""
    return sum(cell.cell_type == "code" for cell in notebook.cells)


@dataclass
class Executed:
    """A notebook after a run: its cells with their outputs, and how the run went."""

    notebook: Any
    """The notebook (an ``nbformat.NotebookNode``), outputs included."""
    seconds: float
    """The wall time of the run, kernel start included."""
    error: str | None = None
    """Why the run stopped early (one line), or ``None`` when every cell ran."""
    kernel_messages: str = ""
    """What the kernel process wrote on stderr, kept only when the kernel died."""


def _nb_modules() -> tuple[Any, Any]:
    try:
        import nbclient
        import nbclient.exceptions
        import nbformat
    except ImportError as err:
        raise LookinsideError(f"running a notebook needs nbclient and nbformat: {INSTALL}") from err
    return nbformat, nbclient


def inject_parameters(notebook: Any, parameters: dict[str, object]) -> None:
    """Insert a cell assigning ``parameters`` after the cell tagged ``parameters``.

    The new cell is tagged ``injected-parameters``; with no tagged cell it goes first.

    :param notebook: the notebook, changed in place.
    :param parameters: the values, by variable name (written with ``repr``).
    """
    nbformat, _ = _nb_modules()
    lines = ["# parameters given to lookinside demo"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    tagged = [
        i
        for i, c in enumerate(notebook.cells)
        if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    notebook.cells.insert(tagged[0] + 1 if tagged else 0, cell)


def execute(
    path: str | Path,
    cwd: str | Path,
    *,
    parameters: dict[str, object] | None = None,
    timeout: int = 600,
    kernel: str = "python3",
) -> Executed:
    """Run the notebook at ``path`` in a new kernel working in ``cwd``; return it executed.

    A cell that raises stops the run: the notebook is returned as far as it ran,
    with the error in :attr:`Executed.error`.

    :param path: the ``.ipynb`` file.
    :param cwd: the kernel's working folder (it must exist).
    :param parameters: values to assign after the ``parameters`` cell.
    :param timeout: the longest a cell may run, in seconds.
    :param kernel: the Jupyter kernel's name.
    :raises LookinsideError: nbclient is missing, or there is no such kernel.
    """
    nbformat, nbclient = _nb_modules()
    notebook = nbformat.read(str(path), as_version=4)
    if parameters:
        inject_parameters(notebook, parameters)
    client = nbclient.NotebookClient(
        notebook, timeout=timeout, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}
    )
    error = None
    died = False
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
        try:
            _run(client, log)
        except nbclient.exceptions.CellExecutionError as exc:
            message = " ".join(str(exc.evalue).split())
            error = f"cell {_failed_cell(notebook)} raised {exc.ename}: {message}"
        except nbclient.exceptions.CellTimeoutError:
            error = f"a cell ran for more than {timeout} s (--timeout)"
        except nbclient.exceptions.DeadKernelError:
            error = "the kernel died"
            died = True
        seconds = time.perf_counter() - start
        log.seek(0)
        messages = log.read()
    return Executed(notebook, seconds, error, messages if died else "")


def _failed_cell(notebook: Any) -> str:
    """The id of the first cell with an error output (its number when it has no id)."""
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code" and any(o.output_type == "error" for o in cell.outputs):
            return repr(cell.get("id", number))
    return "?"


def _run(client: Any, log: IO[str]) -> None:
    """Execute with ``client``, the kernel's stderr going to ``log``."""
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        client.execute(stderr=log)
    except NoSuchKernel as err:
        raise LookinsideError(
            f"no Jupyter kernel named {client.kernel_name!r}: {INSTALL} (it brings ipykernel), "
            "or name another kernel with --kernel"
        ) from err


def save(notebook: Any, path: Path) -> Path:
    """Write ``notebook`` to ``path`` atomically (the folder is created); returns the path."""
    nbformat, _ = _nb_modules()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = nbformat.writes(notebook).encode("utf-8")
    return atomic_write(path, lambda file: file.write(data))


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"lookinside demo {name}",
        description=f"Run {name} headless and write it with its outputs.",
    )
    parser.add_argument("--out", default=OUT, help=f"the folder for the result (default {OUT})")
    parser.add_argument("--data", default=None, help="the notebook's DATA (default digits)")
    parser.add_argument(
        "--data-path", default=None, help="DATA_PATH: MNIST's folder, or mnist.pkl.gz"
    )
    parser.add_argument("--seed", type=int, default=None, help="the notebook's SEED (default 0)")
    parser.add_argument(
        "--timeout", type=int, default=600, help="the longest a cell may run, in seconds"
    )
    parser.add_argument("--kernel", default="python3", help="the Jupyter kernel (default python3)")
    return parser


def run_notebook(name: str, argv: Sequence[str]) -> int:
    """``lookinside demo NAME.ipynb [ARGS]``: run it, write it, print one line; the status.

    :raises LookinsideError: unknown notebook, nbclient missing, no such kernel.
    """
    path = notebook_path(name)
    args = _parser(name).parse_args(list(argv))
    if args.timeout < 1:
        raise LookinsideError(
            f"--timeout should be a positive number of seconds, got {args.timeout}"
        )
    # the kernel works in the output folder: a relative path is made absolute here
    data_path = None if args.data_path is None else str(Path(args.data_path).resolve())
    given = {"DATA": args.data, "DATA_PATH": data_path, "SEED": args.seed}
    parameters = {key: value for key, value in given.items() if value is not None}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = execute(
        path, out.resolve(), parameters=parameters, timeout=args.timeout, kernel=args.kernel
    )
    written = save(run.notebook, out / name)
    if run.error is not None:
        if run.kernel_messages.strip():
            print(run.kernel_messages.rstrip(), file=sys.stderr)
        print(
            f"lookinside: error: {name}: {run.error}; the notebook as far as it ran is in {written}",
            file=sys.stderr,
        )
        return 1
    images = image_count(run.notebook)
    print(
        f"{name}: {code_cell_count(run.notebook)} code cells, {images} "
        f"image{'' if images == 1 else 's'}, {run.seconds:.1f} s; written to {written}"
    )
    return 0
