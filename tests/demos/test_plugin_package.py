"""The example plugin package: installed with pip, found, used, tested, removed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_scaffold import pip_uninstall
from tests.helpers import lookinside_command

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_plugin_package_installs_lists_runs_and_uninstalls(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT / "demos" / "plugin_package", source)  # builds write into the tree
    site = tmp_path / "site"
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}", MPLBACKEND="Agg")

    def run(*args: str, cwd: Path = tmp_path) -> str:
        result = subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run(
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(source),
    )
    listing = run(*lookinside_command("plugins")[1:])
    assert "gradnorm  [off]  lookinside-gradnorm 0.1.0, order 25" in listing
    assert "    events: begin_fit, begin_epoch, after_backward, after_epoch, after_fit" in listing
    assert "-p gradnorm:vanish=  (float; default 1e-05)" in listing
    fit = run(
        "-m",
        "engine.cli",
        "fit",
        "-p",
        "gradnorm:every=2",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "out"),
    )
    assert fit.splitlines()[0].split()[-2:] == ["grad_norm_min", "grad_norm_max"]
    tested = run("-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", cwd=source)
    assert "6 passed" in tested, tested
    pip_uninstall(site, "lookinside-gradnorm")
    assert "gradnorm" not in run(*lookinside_command("plugins")[1:])
