"""The ``lookinside`` command end to end, and its one-line errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.helpers import fake_distribution
from tests.outcomes import CLI_FIT_ON_DIGITS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_fit_on_digits_trains_and_writes_files(tmp_path: Path) -> None:
    """Default settings on real digits train: a fresh process on torch's default thread
    count, its last valid accuracy bounded by CLI_FIT_ON_DIGITS (tests/outcomes.py)."""
    out = tmp_path / "run"
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "fit", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "epoch",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_accuracy",
        "time",
    ]
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(10))
    accuracy = float(rows[-1]["valid_accuracy"])
    assert CLI_FIT_ON_DIGITS.holds(accuracy), CLI_FIT_ON_DIGITS.describe(accuracy)
    content = (out / "loss.png").read_bytes()
    assert content.startswith(PNG_MAGIC) and len(content) > 1000
    assert not (out / "lr.png").exists()  # a constant lr: no flat line to draw


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--data", "digitz"], "unknown dataset 'digitz' (did you mean 'digits'?)"),
        (
            ["fit", "--data", "mnist_pkl", "--data-path", "/nonexistent/mnist.pkl.gz"],
            "/nonexistent/mnist.pkl.gz",
        ),
        (["fit", "-p", "progres"], "unknown plugin 'progres' (did you mean 'progress'?)"),
        (["fit", "-p", "device:device=gpu"], "plugin 'device': unknown device 'gpu'"),
        (["fit", "-p", "device:speed=1"], "plugin 'device' has no option 'speed'"),
        (["demo", "nope"], "unknown demo 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if argv[0] == "fit":
        argv = [*argv, "--out", str(tmp_path), "--epochs", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lookinside: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--epochs", "-1"], "expected a non-negative integer, got '-1'"),
        (["fit", "--lr", "zero"], "expected a number, got 'zero'"),
        (["fit", "--bs", "0"], "expected a positive integer, got '0'"),
    ],
)
def test_bad_numbers_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_plugins_lists_builtins_with_status_events_and_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins", "-p", "no:progress"]) == 0
    out = capsys.readouterr().out
    assert "device  [on: default]  lookinside 0.1.0, order -50" in out
    assert "progress  [off (on by default)]" in out
    assert "device  [on: default]" in out
    assert "    events: begin_fit, begin_batch" in out
    assert "-p device:device=  (str; default auto)" in out


def test_plugins_events_prints_the_training_loop(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--events"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert rows["begin_batch"] == "device, batch_transform"
    assert rows["after_step"] == "-"
    assert rows["after_epoch"].split(", ")[-2:] == ["progress", "csv_logger"]


def test_demo_list_names_each_demo_with_its_first_docstring_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib

    from demos._command import available_demos

    assert main(["demo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lines = [line for line in lines if not line.split()[0].endswith(".ipynb")]  # test_notebooks
    assert [line.split()[0] for line in lines] == available_demos()
    for line in lines:
        name, description = line.split(None, 1)
        doc = importlib.import_module(f"demos.{name}").__doc__ or ""
        assert description == doc.partition("\n")[0] and description


def test_plugins_listing_shows_no_rest_markup(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:`" not in out and ":func:`" not in out
    assert "Raise CancelTrainException when a batch's loss is not finite." in out


def test_version_names_lookinside_torch_torchvision_and_python(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The resolver picks torch; --version says which, with torch's own build tag."""
    import platform

    import torch

    import engine

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"lookinside {engine.__version__}, torch {torch.__version__}, ")
    assert line.endswith(f", Python {platform.python_version()}") and "torchvision " in line


REPORT_MODULE = """
from engine import hookimpl

def report(args):
    print("report {label}")
    return 0

@hookimpl
def lookinside_commands(commands):
    commands.add_parser("{command}", help="a report").set_defaults(run=report)
"""


def _command_module(command: str, label: str) -> str:
    return REPORT_MODULE.replace("{command}", command).replace("{label}", label)


def test_two_distributions_with_one_command_break_neither_cli_nor_each_other(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first keeps the command; the clash is listed naming both; other commands work."""
    fake_distribution(
        site, "dist-one", {"ww": "fake_ww_one"}, {"fake_ww_one": _command_module("ww-report", "1")}
    )
    fake_distribution(
        site, "dist-two", {"ww2": "fake_ww_two"}, {"fake_ww_two": _command_module("ww-report", "2")}
    )
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    listed = out.partition("Commands left out")[2]
    assert "ww-report" in listed and "dist-one (ww = fake_ww_one)" in listed
    assert "dist-two (ww2 = fake_ww_two)" in listed
    assert main(["ww-report"]) == 0
    assert capsys.readouterr().out.startswith("report ")


@pytest.mark.parametrize("command", ["fit", "plugins", "demo", "new-plugin", "lr-find"])
def test_a_command_with_a_builtin_name_is_left_out_and_named(
    command: str, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_distribution(
        site, "dist-one", {"mine": "fake_mine"}, {"fake_mine": _command_module(command, "x")}
    )
    assert main(["plugins"]) == 0
    listed = capsys.readouterr().out.partition("Commands left out")[2]
    assert f"{command!r}" in listed and "dist-one (mine = fake_mine)" in listed
    assert "lookinside" in listed and "built-in names are reserved" in listed
