"""The look_inside demo in a tiny configuration: its steps' models, table and files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from demos.look_inside import STEPS
from demos.look_inside import main
from engine.nn import GeneralRelu


def test_the_steps_build_the_lessons_models() -> None:
    torch.manual_seed(0)
    plain, kaiming, general = (STEPS[name](10, 1) for name in STEPS)
    assert list(STEPS) == ["plain", "kaiming", "general_relu"]
    assert isinstance(plain[0][1], nn.ReLU)
    assert torch.count_nonzero(kaiming[0][0].bias) == 0  # init_cnn zeroes the biases
    act = general[1][1]
    assert isinstance(act, GeneralRelu) and (act.leak, act.sub, act.maxv) == (0.1, 0.4, 6)
    fan_in = general[1][0].weight[0].numel()
    gain = (2 / (1 + 0.1**2)) ** 0.5
    assert general[1][0].weight.std().item() == pytest.approx(gain / fan_in**0.5, rel=0.1)


def test_look_inside_tiny_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--epochs", "1", "--bs", "256", "--steps", "kaiming", "--out", str(tmp_path)]
    assert main([*argv, "-p", "no:progress", "-p", "no:recorder"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("== step 1: kaiming (")
    assert lines[1] == "Diagnosis of the activations (last 25% of 6 rows)"
    assert lines[2].startswith("model Sequential (") and ", lr 0.6, epochs 1, " in lines[2]
    assert [line.split()[0] for line in lines[4:8]] == ["0", "1", "2", "3"]  # the conv layers
    table = next(lines[i:] for i, line in enumerate(lines) if line.startswith("near zero, late"))
    assert table[0].split()[-1] == "kaiming"
    assert [row.split()[0] for row in table[1:5]] == ["0", "1", "2", "3"]
    assert table[5].startswith("valid accuracy") and 0 <= float(table[5].split()[-1]) <= 1
    folder = tmp_path / "kaiming" / "activations"
    assert (folder / "diagnosis.md").exists() and (folder / "color_dim.png").stat().st_size > 1000
    assert lines[-1] == f"the steps side by side: {tmp_path / 'look_inside.png'}"
    assert (tmp_path / "look_inside.png").read_bytes().startswith(b"\x89PNG")


def test_unknown_step_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--steps", "plain,batchnorm"])
    assert "expected steps among plain, kaiming, general_relu" in capsys.readouterr().err
