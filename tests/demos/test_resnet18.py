"""The resnet18 demo: the adapted network, the layer swap, and a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from demos.resnet18 import main
from demos.resnet18 import small_resnet18
from demos.resnet18 import swap_layers


def test_small_resnet18_takes_one_channel_8x8_images() -> None:
    torch.manual_seed(0)
    model = small_resnet18()
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (
        1,
        (3, 3),
        (1, 1),
    )
    assert isinstance(model.maxpool, nn.Identity)
    model.eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_swap_replaces_every_batchnorm_and_relu() -> None:
    model = swap_layers(small_resnet18())
    kinds = {type(m) for m in model.modules()}
    assert nn.BatchNorm2d not in kinds and nn.ReLU not in kinds
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 20  # as many as torchvision's ResNet18 has BatchNorm2d layers
    assert {(m.num_groups, m.num_channels) for m in norms} >= {(32, 64), (32, 512)}
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.1 for m in leaky)


def test_resnet18_tiny_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--subset", "4", "--variants", "groupnorm", "--out", str(tmp_path)]
    assert main([*argv, "-p", "no:progress", "-p", "no:recorder"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "== groupnorm: ResNet18, bs 2, lr 0.01, 4 samples"
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    assert [line.split()[0] for line in lines[3:11]] == blocks
    table = lines[lines.index(next(line for line in lines if line.startswith("block"))) :]
    assert [row.split()[0] for row in table[1:9]] == blocks
    assert table[9].startswith("valid acc") and table[10].startswith("seconds")
    assert (tmp_path / "groupnorm" / "activations" / "diagnosis.md").exists()


def test_bad_variant_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--variants", "layernorm"])
    assert "--variants takes batchnorm and/or groupnorm" in capsys.readouterr().err
