"""The ``lookinside demo`` command, plugged in through the ``lookinside_commands`` hook.

The engine's command line knows nothing of the demos: this module is an entry point
of the ``lookinside.plugins`` group, like a third-party package's commands.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine._checks import did_you_mean
from engine.exceptions import LookinsideError
from engine.hookspecs import hookimpl

MAIN_DEMO = "look_inside"
"""The demo ``lookinside demo`` runs without a name (the README's first command)."""


def available_demos() -> list[str]:
    """The demo modules of the ``demos`` package."""
    import demos

    return sorted(
        info.name for info in pkgutil.iter_modules(demos.__path__) if not info.name.startswith("_")
    )


def describe(name: str) -> str:
    """The first line of demo ``name``'s docstring (read without importing it)."""
    import ast

    import demos

    for folder in demos.__path__:
        path = Path(folder) / f"{name}.py"
        if path.exists():
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            return doc.partition("\n")[0]
    return ""


def run_demo(name: str, argv: Sequence[str]) -> int:
    """Run demo ``name`` with ``argv``, or list the demos and notebooks for ``list``;
    a name ending with ``.ipynb`` runs that notebook headless. Returns the exit status.

    :raises LookinsideError: no demo has that name (the closest one is suggested).
    """
    from demos import _notebooks

    names = available_demos()
    if name == "list":
        rows = [(demo, describe(demo)) for demo in names]
        rows += [(nb, _notebooks.describe_notebook(nb)) for nb in _notebooks.available_notebooks()]
        width = max(len(row[0]) for row in rows)
        for demo, text in rows:
            print(f"{demo:<{width}}  {text}")
        return 0
    if _notebooks.is_notebook(name):
        return _notebooks.run_notebook(name, argv)
    if name not in names:
        hint = did_you_mean(name, names)
        raise LookinsideError(f"unknown demo {name!r}{hint}; demos: {', '.join(names)}")
    module = importlib.import_module(f"demos.{name}")
    return int(module.main(list(argv)) or 0)


def _run(args: argparse.Namespace) -> int:
    return run_demo(args.name, args.args)


@hookimpl
def lookinside_commands(commands: Any) -> None:
    """Add ``lookinside demo [NAME|list] [ARGS...]``.

    :param commands: the sub-parsers of the ``lookinside`` parser.
    """
    demo = commands.add_parser("demo", help=f"run a demo (default: {MAIN_DEMO})")
    demo.add_argument(
        "name",
        nargs="?",
        default=MAIN_DEMO,
        help="the demo, or a notebook NAME.ipynb to run headless; 'list' lists them",
    )
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the demo")
    demo.set_defaults(run=_run)
