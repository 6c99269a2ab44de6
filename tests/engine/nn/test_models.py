"""The lesson's CNN, its layer factories (with every norm), Lambda and flatten."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from engine.nn import CHANNELS_07
from engine.nn import NORMS
from engine.nn import BatchNorm
from engine.nn import GeneralRelu
from engine.nn import InstanceNorm
from engine.nn import Lambda
from engine.nn import LayerNorm
from engine.nn import RunningBatchNorm
from engine.nn import cnn
from engine.nn import cnn_07
from engine.nn import conv_layer
from engine.nn import conv_norm_layer
from engine.nn import flatten


@pytest.mark.parametrize(("side", "n_out"), [(8, 10), (28, 10), (28, 3)])
def test_cnn_output_shape(side: int, n_out: int) -> None:
    model = cnn(n_out=n_out)
    out = model(torch.randn(5, 1, side, side))
    assert out.shape == (5, n_out)


def test_cnn_layers() -> None:
    model = cnn(channels=(4, 6, 8))
    first = model[0][0]
    assert isinstance(first, nn.Conv2d)
    assert (first.in_channels, first.out_channels) == (1, 4)
    assert first.kernel_size == (5, 5)
    assert first.stride == (2, 2)
    assert first.padding == (2, 2)
    assert isinstance(model[0][1], nn.ReLU)
    second = model[1][0]
    assert (second.in_channels, second.out_channels, second.kernel_size, second.stride) == (
        4,
        6,
        (3, 3),
        (2, 2),
    )
    assert isinstance(model[3], nn.AdaptiveAvgPool2d)
    assert isinstance(model[4], Lambda)
    assert isinstance(model[5], nn.Linear)
    assert (model[5].in_features, model[5].out_features) == (8, 10)
    assert len(model) == 6


def test_cnn_calls_layer_factory_in_order() -> None:
    calls: list[tuple[int, int, int, int]] = []

    def factory(ni: int, nf: int, ks: int = 3, stride: int = 2, **kwargs: Any) -> nn.Module:
        calls.append((ni, nf, ks, stride))
        return conv_layer(ni, nf, ks=ks, stride=stride)

    model = cnn(n_out=7, channels=(3, 5, 9, 11), n_in=2, layer=factory)
    assert calls == [(2, 3, 5, 2), (3, 5, 3, 2), (5, 9, 3, 2), (9, 11, 3, 2)]
    assert model(torch.randn(2, 2, 16, 16)).shape == (2, 7)


def test_conv_layer() -> None:
    layer = conv_layer(3, 4, ks=5, stride=1)
    assert layer[0].padding == (2, 2)
    out = layer(torch.randn(2, 3, 9, 9))
    assert out.shape == (2, 4, 9, 9)
    assert out.min() >= 0
    assert conv_layer(3, 4)(torch.randn(1, 3, 9, 9)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"channels": ()}, ValueError, "at least one"),
        ({"channels": (8, 0)}, ValueError, r"channels\[1\] should be a positive integer, got 0"),
        ({"channels": (8, 2.5)}, TypeError, r"channels\[1\] should be a positive integer"),
        ({"channels": 8}, TypeError, "channels should be a sequence"),
        ({"n_out": 0}, ValueError, "n_out should be a positive integer, got 0"),
        ({"n_in": -1}, ValueError, "n_in should be a positive integer"),
    ],
)
def test_cnn_validation(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        cnn(**kwargs)


def test_flatten() -> None:
    x = torch.arange(24.0).view(2, 3, 2, 2)
    out = flatten(x)
    assert out.shape == (2, 12)
    assert torch.equal(out[1], torch.arange(12.0, 24.0))


def test_lambda_forward_and_repr() -> None:
    module = Lambda(flatten)
    assert repr(module) == "Lambda(flatten)"
    assert module(torch.zeros(3, 2, 2)).shape == (3, 4)
    assert repr(nn.Sequential(Lambda(torch.relu))) == "Sequential(\n  (0): Lambda(relu)\n)"
    double = Lambda(lambda x: x * 2)
    assert "<lambda>" in repr(double)
    assert torch.equal(double(torch.ones(2)), torch.full((2,), 2.0))


def test_lambda_rejects_non_callable() -> None:
    with pytest.raises(TypeError, match="Lambda needs a callable"):
        Lambda(3)  # type: ignore[arg-type]


NORM_TYPES: dict[str | None, type[nn.Module] | None] = {
    None: None,
    "batch": BatchNorm,
    "torch_batch": nn.BatchNorm2d,
    "layer": LayerNorm,
    "instance": InstanceNorm,
    "group": nn.GroupNorm,
    "running_batch": RunningBatchNorm,
}


def test_norm_types_cover_the_registry() -> None:
    assert set(NORM_TYPES) - {None} == set(NORMS)


@pytest.mark.parametrize("norm", list(NORM_TYPES))
def test_every_norm_builds_and_runs(norm: str | None) -> None:
    """conv -> act -> norm in each layer; no conv bias when a norm follows; 8x8 and 28x28."""
    model = cnn_07(norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == list(CHANNELS_07)
    for block in model[: len(CHANNELS_07)]:
        assert isinstance(block[0], nn.Conv2d)
        assert isinstance(block[1], nn.ReLU)
        if norm is None:
            assert len(block) == 2
            assert block[0].bias is not None
        else:
            assert len(block) == 3
            assert type(block[2]) is NORM_TYPES[norm]
            assert block[0].bias is None
    for side in (8, 28):
        out = model(torch.randn(4, 1, side, side))
        assert out.shape == (4, 10)
        assert torch.isfinite(out).all()
    model.eval()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_norm_layer_widths_follow_the_channels() -> None:
    model = cnn(channels=(4, 6), layer=conv_norm_layer("batch"))
    assert [m.nf for m in model.modules() if isinstance(m, BatchNorm)] == [4, 6]
    group = cnn(channels=(4, 6), layer=conv_norm_layer("group"))
    widths = [
        (m.num_groups, m.num_channels) for m in group.modules() if isinstance(m, nn.GroupNorm)
    ]
    assert widths == [(4, 4), (2, 6)]


def test_conv_norm_layer_custom_act_norm_and_bias() -> None:
    layer = conv_norm_layer(lambda nf: nn.GroupNorm(2, nf), act=lambda: GeneralRelu(0.1, 0.4, 6))
    block = layer(3, 8, ks=5, stride=1)
    assert isinstance(block[1], GeneralRelu) and block[1].leak == 0.1
    assert isinstance(block[2], nn.GroupNorm) and block[2].num_groups == 2
    assert block[0].padding == (2, 2) and block[0].bias is None
    assert block(torch.randn(2, 3, 7, 7)).shape == (2, 8, 7, 7)
    assert conv_norm_layer("layer", bias=True)(3, 8)[0].bias is not None
    assert conv_norm_layer(None, bias=False)(3, 8)[0].bias is None
    assert len(conv_norm_layer("none")(3, 8)) == 2


def test_conv_norm_layer_without_norm_is_conv_layer() -> None:
    torch.manual_seed(0)
    ours = cnn(layer=conv_norm_layer(None))
    torch.manual_seed(0)
    reference = cnn()
    assert repr(ours) == repr(reference)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(ours(x), reference(x))


def test_conv_norm_layer_validation() -> None:
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'"):
        conv_norm_layer("batchnorm")
    with pytest.raises(TypeError, match="norm should be a name"):
        conv_norm_layer(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="act should build an activation module"):
        conv_norm_layer("batch", act=nn.ReLU())  # type: ignore[arg-type]
