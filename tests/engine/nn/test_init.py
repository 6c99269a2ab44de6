"""init_cnn: kaiming scale against the closed form, zero biases, recursion."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.nn import BatchNorm
from engine.nn import cnn
from engine.nn import init_cnn


def _kaiming_std(fan_in: int, a: float) -> float:
    return math.sqrt(2 / ((1 + a * a) * fan_in))


@pytest.mark.parametrize("a", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("uniform", [False, True])
def test_conv_weight_std_matches_kaiming(a: float, uniform: bool) -> None:
    """256x64x3x3 weights (147,456 draws): the sample std is within 2% of the closed form."""
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 256, 3)
    init_cnn(conv, uniform=uniform, a=a)
    expected = _kaiming_std(64 * 9, a)
    assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.02)
    if uniform:
        assert float(conv.weight.detach().abs().max()) <= math.sqrt(3) * expected + 1e-7
    assert torch.equal(conv.bias, torch.zeros(256))


def test_linear_weights_and_default_a() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(1000, 200)
    assert init_cnn(linear) is linear
    assert float(linear.weight.detach().std()) == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert torch.equal(linear.bias, torch.zeros(200))


def test_recurses_into_nested_containers() -> None:
    inner = nn.Sequential(nn.Conv2d(3, 128, 3), nn.Sequential(nn.Linear(512, 64, bias=False)))
    model = nn.Sequential(nn.Sequential(inner, BatchNorm(128)), nn.Linear(64, 10))
    for p in model.parameters():
        nn.init.constant_(p, 5.0)
    torch.manual_seed(0)
    assert init_cnn(model, a=0.1) is model
    conv, linear = inner[0], inner[1][0]
    assert float(conv.weight.detach().std()) == pytest.approx(_kaiming_std(27, 0.1), rel=0.05)
    assert float(linear.weight.detach().std()) == pytest.approx(_kaiming_std(512, 0.1), rel=0.05)
    assert torch.equal(conv.bias, torch.zeros(128))
    assert torch.equal(model[1].bias, torch.zeros(10))
    norm = model[0][1]
    assert torch.equal(norm.mult, torch.full((128,), 5.0))  # norms are left alone
    assert torch.equal(norm.add, torch.full((128,), 5.0))


def test_every_layer_of_the_cnn() -> None:
    model = cnn(channels=(8, 16))
    init_cnn(model)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(convs) == 3
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in convs)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="init_cnn needs an nn.Module"):
        init_cnn([nn.Linear(2, 2)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a \\(the leak\\) should be a finite number"):
        init_cnn(nn.Linear(2, 2), a=float("nan"))
