"""Each demo runs in a tiny configuration, and says how to run it."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path

import pytest

from demos._command import available_demos
from engine.cli import main


@pytest.mark.parametrize("name", available_demos())
def test_demo_docstring_shows_the_command(name: str) -> None:
    doc = importlib.import_module(f"demos.{name}").__doc__ or ""
    assert f"lookinside demo {name}" in doc and f"python -m demos.{name}" in doc


def test_cnn_demo_runs_and_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cnn"
    assert main(["demo", "cnn", "--epochs", "2", "--bs", "32", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "begin_batch  device, batch_transform" in text
    assert "valid accuracy after 2 epochs:" in text
    with open(out / "metrics.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    assert (out / "loss.png").stat().st_size > 1000


def test_benchmark_demo_tiny_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "benchmark", "--runs", "1", "--samples", "256", "--only", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["workload", "bs", "samples", "runs"]
    row = lines[2].split()
    assert row[:4] == ["tiny", "64", "256", "1"]
    float(row[-2])  # the ratio


def _takes_config(name: str) -> bool:
    """Whether demo ``name``'s parser has ``--config`` (its --help says so)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(f"demos.{name}").main(["--help"])
    return "--config" in out.getvalue()


@pytest.mark.parametrize("name", [n for n in available_demos() if _takes_config(n)])
def test_every_demo_taking_config_honours_it(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file is read: a plugin only it names is looked up (and missing) before training."""
    config = tmp_path / "lookinside.toml"
    config.write_text('plugins = ["only_in_the_config_file"]\n')
    argv = ["demo", name, "--config", str(config), "--epochs", "1", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "only_in_the_config_file" in capsys.readouterr().err
