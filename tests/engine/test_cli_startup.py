"""``lookinside --help`` starts fast: building the parser and the plugin catalogue imports no torch.

torch alone takes seconds to import. The engine's names that need it are imported on
first use (``engine/__init__.py``), and every module the catalogue loads imports torch,
numpy and matplotlib inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import lookinside_command

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "numpy", "matplotlib", "sklearn", "torchvision", "tensorboard")
"""What a command that trains nothing must not import."""

_SCRIPT = """\
import json, sys
from engine.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"status": status, "heavy": heavy}}))
"""


def _env() -> dict[str, str]:
    # the built-in plugins only: a third party's module may import torch, that is its own choice
    return dict(os.environ, LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD="1")


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["plugins"]], ids=" ".join)
def test_command_imports_no_torch(argv: list[str]) -> None:
    """``--help``, ``fit --help`` and the ``plugins`` listing import none of :data:`HEAVY`."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome == {"status": 0, "heavy": []}


def test_help_takes_well_under_two_seconds() -> None:
    """The median of five ``lookinside --help`` (about 0.2 s with bytecode caches, and
    3 s when it imported torch); the bound is loose because machines are noisy."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            lookinside_command("--help"),
            capture_output=True,
            cwd=ROOT,
            env=_env(),
            timeout=120,
            check=True,
        )
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"lookinside --help: median {median:.2f} s of 5 runs")
    assert median < 2.0


def test_every_public_name_of_engine_resolves() -> None:
    """The names imported on first use are there, for ``from engine import ...`` and ``dir()``."""
    import engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    assert set(engine.__all__) <= set(dir(engine))
    from engine import Learner
    from engine.learner import Learner as Defined

    assert Learner is Defined
    with pytest.raises(AttributeError, match="has no attribute 'Lerner'"):
        engine.Lerner
