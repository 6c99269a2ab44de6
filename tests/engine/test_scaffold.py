"""`lookinside new-plugin`, and the README's "Write a plugin package" commands, followed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import LookinsideError
from engine.scaffold import new_plugin
from tests.helpers import lookinside_command

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    marker = "<!-- commands followed by tests/engine/test_scaffold.py -->"
    block = re.search(re.escape(marker) + r"\n```bash\n(.*?)```", readme, re.S)
    assert block, "the README's plugin-package commands are missing"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def pip_uninstall(site: Path, dist: str) -> None:
    """What ``pip uninstall`` does to a --target install: remove the files its RECORD lists."""
    info = next(site.glob(dist.replace("-", "_") + "-*.dist-info"))
    for line in (info / "RECORD").read_text().splitlines():
        path = site / line.split(",")[0]
        if path.is_file():
            path.unlink()
    shutil.rmtree(info, ignore_errors=True)


@pytest.mark.slow
def test_readme_plugin_package_commands_work(tmp_path: Path) -> None:
    """Each command as the README shows it; pip installs into a folder, not this venv."""
    site = tmp_path / "site"
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}", MPLBACKEND="Agg")
    cwd = tmp_path / "work"
    cwd.mkdir()
    outputs: dict[str, str] = {}
    for command in readme_commands():
        words = shlex.split(command)
        if words[0] == "cd":
            cwd = cwd / words[1]
            continue
        if words[0] == "pip" and words[1] == "uninstall":
            pip_uninstall(site, words[-1])
            words = ["lookinside", "plugins"]  # and check it is gone
            command = "lookinside plugins (after uninstall)"
        if words[0] == "pip":
            words = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
            words += ["--no-build-isolation", "--target", str(site), *words[-1:]]
            words[-1] = "."
        elif words[0] == "lookinside":
            # -P: like the console script, don't put the current folder on sys.path
            # (a local build's .egg-info there would still look installed)
            words = lookinside_command(*words[1:])
        elif words[:3] == ["python", "-m", "pytest"]:
            words = [sys.executable, *words[1:], "-p", "no:cacheprovider"]
        result = subprocess.run(
            words, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        outputs[command] = result.stdout
    assert "shout  [off]  lookinside-shout 0.1.0, order 25" in outputs["lookinside plugins"]
    assert (
        "-p shout:every=  (int; default 1)  report every N epochs." in outputs["lookinside plugins"]
    )
    fit = next(out for command, out in outputs.items() if command.startswith("lookinside fit"))
    assert fit.splitlines()[0].split()[-1] == "shout_batches"
    assert "4 passed" in next(out for c, out in outputs.items() if "pytest" in c)
    setup = (cwd / "setup.cfg").read_text()
    from engine.version import __version__
    from engine.version import compatible_range

    assert f"install_requires =\n    lookinside{compatible_range(__version__)}\n" in setup
    assert "shout" not in outputs["lookinside plugins (after uninstall)"]


def test_new_plugin_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    with pytest.raises(LookinsideError, match="'Bad-Name' should be a lowercase identifier"):
        new_plugin("Bad-Name", tmp_path)
    root = new_plugin("watch", tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md",
        "lookinside_watch.py",
        "pyproject.toml",
        "setup.cfg",
        "tests/test_watch.py",
    ]
    with pytest.raises(LookinsideError, match="exists already"):
        new_plugin("watch", tmp_path)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("progress", "plugin"),
        ("early_stopping", "plugin"),
        ("digits", "dataset"),
        ("fit", "command"),
        ("lr_find", "plugin"),
        ("new_plugin", "command"),
    ],
)
def test_new_plugin_refuses_builtin_names(name: str, kind: str, tmp_path: Path) -> None:
    with pytest.raises(LookinsideError, match=f"{name!r} is the name of a built-in {kind}"):
        new_plugin(name, tmp_path)
    assert not any(tmp_path.iterdir())


def test_new_plugin_with_a_builtin_name_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    assert main(["new-plugin", "progress", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lookinside: error: 'progress' is the name of a built-in plugin")
    assert err.count("\n") == 1
