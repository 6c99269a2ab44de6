"""The project itself: modules import cleanly, docstring examples run, the README's Python works."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "plugins", "observers", "demos")


def all_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        module = importlib.import_module(package)
        names += [
            info.name for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}.")
        ]
    return names


def test_every_module_imports_without_warnings() -> None:
    """One interpreter with -W error imports each module (fresh interpreters cost seconds each)."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, *all_modules()],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", [n for n in all_modules() if not n.startswith("demos")])
def test_docstring_examples_run(name: str) -> None:
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.failed == 0


def test_every_module_starts_with_future_annotations() -> None:
    for name in all_modules():
        path = Path(importlib.import_module(name).__file__ or "")
        source = path.read_text()
        if source.strip() and path.name != "__init__.py":
            assert "from __future__ import annotations" in source, path


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every README Python block that trains runs as shown (one epoch to be quick)."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "learner.fit(" in b]
    # the plugin-author reference's blocks build on each other: test_readme_reference
    blocks = [b for b in blocks if "engine.testing" not in b]
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict[str, object] = {}
        code = re.sub(r"learner\.fit\(\d+\)", "learner.fit(1)", block)
        exec(compile(code, "README.md", "exec"), namespace)
        if "ax = " in block:
            assert namespace["ax"] is not None
    assert (tmp_path / "runs" / "b" / "metrics.csv").exists()
    assert (tmp_path / "runs" / "c" / "model.pt").exists()  # the one-or-several-process script


def test_readme_plugin_example_attaches_and_stops_training() -> None:
    readme = (ROOT / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "class StopAtLoss" in b
    )
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    from engine import Learner
    from tests.helpers import Spy
    from tests.helpers import tiny_data
    from tests.helpers import tiny_model

    spy = Spy()
    stop = namespace["StopAtLoss"](threshold=10.0)  # type: ignore[operator]
    Learner(tiny_model(), tiny_data(), plugins=[spy, stop], defaults=False).fit(3)
    assert spy.seen[-2:] == ["after_cancel_train", "after_fit"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 dev.py test" in readme and "\npython3 dev.py test" in ci
    assert "python3 dev.py demo" in readme


def _declared_requirements() -> dict[str, str]:
    """``install_requires`` of setup.cfg: normalized distribution name -> its marker ('' if none)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    declared = {}
    for line in parser["options"]["install_requires"].strip().splitlines():
        requirement, _, marker = line.partition(";")
        name = re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0]
        declared[name.lower().replace("_", "-")] = marker.strip()
    return declared


def _declared_extras() -> set[str]:
    """The distributions of setup.cfg's extras but ``dev`` (tensorboard, notebook)."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    found = set()
    for extra, lines in parser["options.extras_require"].items():
        if extra != "dev":
            for line in lines.strip().splitlines():
                found.add(re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0].lower())
    return found


def test_every_third_party_import_is_declared() -> None:
    """Each top-level import of the packages is the standard library, ours, or declared
    in install_requires (with the marker the import needs: tomli only before 3.11)."""
    import ast

    imported: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "plugin_package" in path.parts:
                continue  # the example third-party package declares its own requirements
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    ours = set(PACKAGES)
    # imported only where an extra is installed (the code says which extra when missing):
    # the module's distribution, or the extra's distribution that brings it along
    extra_of = {"IPython": "ipykernel", "jupyter_client": "nbclient"}
    extras = _declared_extras()
    optional = {m for m in imported if extra_of.get(m, m.lower()) in extras}
    stdlib = set(sys.stdlib_module_names) | {"tomllib"}  # 3.11's; tomli stands in before
    third_party = imported - stdlib - ours - optional - {"__future__"}
    distribution = {"sklearn": "scikit-learn", "torchvision": "torchvision", "tomli": "tomli"}
    declared = _declared_requirements()
    missing = sorted(m for m in third_party if distribution.get(m, m) not in declared)
    assert missing == []
    assert declared["tomli"] == 'python_version < "3.11"'


def test_python_requires_is_what_mypy_checks() -> None:
    """mypy checks against the oldest Python that python_requires admits."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    oldest = parser["options"]["python_requires"].removeprefix(">=")
    assert parser["mypy"]["python_version"] == oldest
    assert sys.version_info >= tuple(int(p) for p in oldest.split("."))


@pytest.mark.parametrize("module", ["engine.learner", "engine.cli", "engine"])
def test_engine_imports_nothing_above_it(module: str) -> None:
    """The engine is the bottom layer: plugins, observers and demos plug into it
    through entry points, never the other way round."""
    script = (
        f"import sys, {module}\n"
        "above = ('plugins', 'observers', 'demos')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in above))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"
    source = "\n".join(p.read_text() for p in (ROOT / "engine").rglob("*.py"))
    assert not re.search(r"^\s*(from|import) (plugins|observers|demos)\b", source, re.MULTILINE)
