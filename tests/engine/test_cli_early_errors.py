"""Bad options found before training starts: one line, exit 2, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main


def _outputs(out: Path) -> dict[Path, bytes]:
    """An --out folder holding a previous run's metrics.csv and last.pt."""
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.csv").write_text("epoch,train_loss\n0,0.5\n")
    (out / "checkpoints" / "last.pt").write_bytes(b"the last good checkpoint")
    return {path: path.read_bytes() for path in (out / "metrics.csv", out / "checkpoints/last.pt")}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "checkpoint:monitor=valid_acc",
            "lookinside: error: plugin 'checkpoint': monitor 'valid_acc' is not written into "
            "learner.log by any plugin (did you mean 'valid_accuracy'?)",
        ),
        (
            "early_stopping:monitor=valid_acc,mode=max",
            "lookinside: error: plugin 'early_stopping': monitor 'valid_acc' is not written "
            "into learner.log by any plugin (did you mean 'valid_accuracy'?)",
        ),
        ("csv_logger:path=.", "lookinside: error: plugin 'csv_logger': path '"),
    ],
)
def test_bad_option_is_one_line_exit_2_before_anything_is_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    out = tmp_path / "run"
    before = _outputs(out)
    argv = ["fit", "--out", str(out), "--epochs", "1", "--no-config", "-p", "no:progress"]
    status = main([*argv, "-p", "checkpoint", "-p", option])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(message)
    assert err.count("\n") == 1, err
    assert {path: path.read_bytes() for path in before} == before


def test_csv_logger_absolute_folder_is_refused_when_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    before = _outputs(out)
    argv = ["fit", "--out", str(out), "--epochs", "1", "--no-config"]
    assert main([*argv, "-p", f"csv_logger:path={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"lookinside: error: plugin 'csv_logger': path '{tmp_path}' is a folder; give a file "
        f"path for the CSV rows, e.g. -p csv_logger:path={tmp_path / 'metrics.csv'}\n"
    )
    assert {path: path.read_bytes() for path in before} == before
