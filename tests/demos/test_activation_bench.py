"""The activation benchmark in a tiny configuration: four variants, their ratios to none."""

from __future__ import annotations

import pytest

from demos.activation_bench import main


def test_activation_bench_tiny_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", "1", "--samples", "64", "--bs", "32", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("cpu, 1 thread(s); lesson CNN, bs 32, 64 random 28x28 samples, 1 runs")
    assert lines[1].split() == ["variant", "median", "s", "ratio"]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["none", "lesson", "histc", "activation_stats"]
    assert rows[0][2] == "1.000" and all(float(row[2]) > 0 for row in rows)
