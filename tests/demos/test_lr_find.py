"""The lr_find demo in a tiny configuration: sweep, fit at the suggestion, benchmark line."""

from __future__ import annotations

from pathlib import Path

import pytest

from demos.lr_find import main


def test_lr_find_demo_tiny_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--num-it", "12", "--epochs", "1", "--bs", "128", "--bench-runs", "1"]
    assert main([*argv, "--out", str(tmp_path), "-p", "no:progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lr_find: 12 iterations")
    suggested = [line for line in lines if line.startswith("suggested lr (min/10): ")]
    if suggested:
        lr = float(suggested[0].rpartition(" ")[2])
        assert any(line.startswith(f"training 1 epochs at lr {lr:.3g} (min/10)") for line in lines)
    else:  # a 12-batch sweep may see no fall: no suggestion, the demo trains at --lr
        assert any(line.startswith("no suggestion: the smoothed loss never") for line in lines)
        assert any(line.startswith("training 1 epochs at lr ") for line in lines)
    assert any(line.startswith("valid accuracy after 1 epochs at lr ") for line in lines)
    bench = lines[-1]
    assert bench.startswith("benchmark (1 runs, 12 steps, bs 128): lr_find ")
    assert float(bench.split("ratio ")[1].split()[0]) > 0
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
