"""Models built by name for the data: every choice builds and runs, kaiming's scale, the errors."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from engine.data import DataBunch
from engine.nn import FLAT_NORMS
from engine.nn import MODELS
from engine.nn import BatchNorm
from engine.nn import GeneralRelu
from engine.nn import Lambda
from engine.nn import ModelError
from engine.nn import ModelSpec
from engine.nn import build_model
from engine.nn import cnn
from engine.nn import parse_activation
from engine.nn import replace_modules
from engine.nn.build import NORM_CHOICES
from tests.engine.nn.test_models import NORM_TYPES as MODEL_NORM_TYPES

BS, C = 4, 3
IMAGES = SimpleNamespace(c=C, input_shape=(1, 8, 8), name="images")
FLAT = SimpleNamespace(c=C, input_shape=(6,), name="flat")
NORM_TYPES: dict[str, type[nn.Module]] = {
    name: kind for name, kind in MODEL_NORM_TYPES.items() if name is not None and kind is not None
}
"""The module each norm name puts into a model (test_models' table, without "none")."""


def _data_for(model: str) -> SimpleNamespace:
    return FLAT if model == "mlp" else IMAGES


def _forward(model: nn.Module, data: SimpleNamespace) -> torch.Tensor:
    """One training-mode and one eval-mode forward pass of a batch of BS inputs."""
    x = torch.randn(BS, *data.input_shape)
    model.train()
    out: torch.Tensor = model(x)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == out.shape
    return out


def _weighted(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# ---------------------------------------------------------------- every choice


NORM_CASES = [(m, n) for m in ("cnn", "cnn_07", "resnet18") for n in NORM_CHOICES]
NORM_CASES += [("mlp", n) for n in ("none", *FLAT_NORMS)]


@pytest.mark.parametrize(("name", "norm"), NORM_CASES)
def test_each_model_takes_each_norm_and_outputs_bs_by_c(name: str, norm: str) -> None:
    torch.manual_seed(0)
    data = _data_for(name)
    model = build_model(name, data, norm=norm)
    assert _forward(model, data).shape == (BS, C)
    kinds = {type(m) for m in model.modules()}
    if norm == "none":
        assert not kinds & set(NORM_TYPES.values())
    else:
        assert NORM_TYPES[norm] in kinds
        assert not kinds & {t for n, t in NORM_TYPES.items() if n != norm}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("act", ["relu", "general_relu"])
@pytest.mark.parametrize("init", ["default", "kaiming"])
def test_each_model_takes_each_activation_and_init(name: str, act: str, init: str) -> None:
    torch.manual_seed(0)
    data = _data_for(name)
    model = build_model(name, data, act=act, init=init)
    assert _forward(model, data).shape == (BS, C)
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, GeneralRelu))]
    assert acts and all(
        isinstance(m, GeneralRelu if act == "general_relu" else nn.ReLU) for m in acts
    )
    if init == "kaiming":
        assert all(m.bias is None or not m.bias.any() for m in _weighted(model))


def test_models_own_norms_and_widths() -> None:
    torch.manual_seed(0)
    assert not any(isinstance(m, BatchNorm) for m in build_model("cnn", IMAGES).modules())
    cnn_07 = build_model("cnn_07", IMAGES)
    assert any(isinstance(m, BatchNorm) for m in cnn_07.modules())
    convs = [m.out_channels for m in cnn_07.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [8, 16, 32, 64, 64]
    resnet = build_model("resnet18", IMAGES)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in resnet.modules()) == 20
    mlp = build_model("mlp", FLAT, widths=[7, 5])
    assert [(m.in_features, m.out_features) for m in _weighted(mlp)] == [(6, 7), (7, 5), (5, C)]
    assert [(m.in_features, m.out_features) for m in _weighted(build_model("mlp", FLAT))] == [
        (6, 50),
        (50, C),
    ]


def test_mlp_flattens_images() -> None:
    model = build_model("mlp", IMAGES)
    assert isinstance(next(model.children()), Lambda)
    assert _weighted(model)[0].in_features == 64
    assert _forward(model, IMAGES).shape == (BS, C)


def test_the_default_cnn_is_the_one_fit_always_trained() -> None:
    """``--model auto`` on images draws the very weights of ``cnn(...)``: same seed, same model."""
    torch.manual_seed(3)
    built = build_model("auto", IMAGES)
    torch.manual_seed(3)
    before = cnn(n_out=C, channels=(8, 16, 32, 32), n_in=1)
    assert str(built) == str(before)
    for (name, a), (_, b) in zip(built.state_dict().items(), before.state_dict().items()):
        assert torch.equal(a, b), name


# ---------------------------------------------------------------- activation and init


@pytest.mark.parametrize("name", ["cnn", "cnn_07", "mlp"])
@pytest.mark.parametrize(("act", "options", "a"), [("relu", {}, 0.0), ("general_relu", {}, 0.1)])
def test_kaiming_matches_the_closed_form_std(
    name: str, act: str, options: dict[str, float], a: float
) -> None:
    """Each conv and linear weight has std sqrt(2 / (1 + a**2)) / sqrt(fan_in): sqrt(2 / fan_in)
    for ReLU; the tolerance is four standard errors of a std estimated from n weights."""
    torch.manual_seed(0)
    data = _data_for(name)
    widths = {"cnn": (32, 64, 64), "cnn_07": (32, 64, 64), "mlp": (128, 128)}[name]
    model = build_model(name, data, act=act, act_options=options, init="kaiming", widths=widths)
    layers = _weighted(model)
    assert len(layers) == len(widths) + 1
    for layer in layers:
        weight = layer.weight.detach()
        fan_in = weight[0].numel()
        expected = math.sqrt(2 / (1 + a**2)) / math.sqrt(fan_in)
        tolerance = 4 / math.sqrt(2 * weight.numel())
        assert weight.std().item() == pytest.approx(expected, rel=tolerance), layer
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0


def test_default_init_is_not_kaiming() -> None:
    """torch's default init draws at std 1/sqrt(3 fan_in), far from kaiming's sqrt(2/fan_in)."""
    torch.manual_seed(0)
    layer = _weighted(build_model("mlp", FLAT, widths=(256,)))[1]
    fan_in = layer.weight[0].numel()
    assert layer.weight.std().item() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)


@pytest.mark.parametrize("name", MODELS)
def test_general_relu_options_reach_every_module(name: str) -> None:
    options = {"leak": 0.2, "sub": 0.3, "maxv": None}
    model = build_model(name, _data_for(name), act="general_relu", act_options=options)
    acts = [m for m in model.modules() if isinstance(m, GeneralRelu)]
    assert acts and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert {(m.leak, m.sub, m.maxv) for m in acts} == {(0.2, 0.3, None)}
    assert len({id(m) for m in acts}) == len(acts) or name == "resnet18"  # one per layer


def test_general_relu_defaults_are_the_lessons_and_kaiming_uses_its_leak() -> None:
    spec = ModelSpec("cnn", act="general_relu", act_options={"sub": 0.5}, init="kaiming")
    model = spec.build(IMAGES)
    acts = [m for m in model.modules() if isinstance(m, GeneralRelu)]
    assert {(m.leak, m.sub, m.maxv) for m in acts} == {(0.1, 0.5, 6.0)}
    assert spec.leak == 0.1
    assert ModelSpec("cnn", act="general_relu", act_options={"leak": None}).leak == 0.0
    assert ModelSpec("cnn").leak == 0.0


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("relu", ("relu", {})),
        ("general_relu", ("general_relu", {})),
        ("general_relu:", ("general_relu", {})),
        (
            "general_relu:leak=0.1,sub=0.4,maxv=6",
            ("general_relu", {"leak": 0.1, "sub": 0.4, "maxv": 6.0}),
        ),
        (" general_relu : leak = 0.2 , maxv=None ", ("general_relu", {"leak": 0.2, "maxv": None})),
    ],
)
def test_parse_activation(text: str, parsed: tuple[str, dict[str, Any]]) -> None:
    assert parse_activation(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("general_relu:leak", "act 'general_relu:leak': options should be key=value"),
        ("general_relu:=1", "options should be key=value separated by commas"),
        (
            "general_relu:leak=x",
            "act 'general_relu:leak=x': leak should be a number or none, got 'x'",
        ),
        ("general_relu:leak=1,leak=2", "option 'leak' is given twice"),
    ],
)
def test_parse_activation_refuses_bad_syntax(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_activation(text)


# ---------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"name": "cnnn"},
            "model should be 'auto', 'cnn', 'cnn_07', 'mlp' or 'resnet18', got 'cnnn' (did you mean 'cnn'?)",
        ),
        ({"act": "gelu"}, "act should be 'relu' or 'general_relu', got 'gelu'"),
        ({"init": "xavier"}, "init should be 'default' or 'kaiming', got 'xavier'"),
        (
            {"norm": "btach"},
            "norm should be 'none', 'batch', 'torch_batch', 'layer', 'instance', 'group' or 'running_batch', got 'btach' (did you mean 'batch'?)",
        ),
        ({"act_options": {"leak": 0.1}}, "activation 'relu' has no option 'leak'; it takes none"),
        (
            {"act": "general_relu", "act_options": {"lek": 0.1}},
            "has no option 'lek' (did you mean 'leak'?); its options: leak, sub, maxv",
        ),
        (
            {"act": "general_relu", "act_options": {"leak": -0.1}},
            "leak should be a finite number >= 0, got -0.1",
        ),
        (
            {"act": "general_relu", "act_options": {"maxv": math.inf}},
            "maxv should be a finite number, got inf",
        ),
        (
            {"name": "mlp", "norm": "instance"},
            "model 'mlp' cannot take norm 'instance': instance norm normalizes each channel over its pixels",
        ),
        (
            {"name": "mlp", "norm": "torch_batch"},
            "cannot take norm 'torch_batch': torch_batch is nn.BatchNorm2d",
        ),
        ({"name": "resnet18", "widths": (8,)}, "model 'resnet18' takes no widths"),
        ({"widths": (8, 0)}, "widths[1] should be a positive integer, got 0"),
        ({"widths": ()}, "widths should be positive integers like (8, 16, 32), got ()"),
    ],
)
def test_bad_choices_are_refused_before_any_data(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError) as info:
        ModelSpec(**kwargs)
    assert message in str(info.value)


def test_model_error_is_a_value_error_and_a_lookinside_error() -> None:
    from engine.exceptions import LookinsideError

    assert issubclass(ModelError, ValueError) and issubclass(ModelError, LookinsideError)


@pytest.mark.parametrize(
    ("spec", "data", "message"),
    [
        (
            ModelSpec(),
            SimpleNamespace(c=None, input_shape=(6,), name="rows"),
            "the data 'rows' has no c, the number of classes the model outputs; set it where the data is built, e.g. DataBunch.from_tensors(..., c=10)",
        ),
        (
            ModelSpec(),
            SimpleNamespace(c=3, name="rows"),
            "the data 'rows' has no input_shape, the shape of one input: (C, H, W) for images, (F,) for flat features; set it",
        ),
        (ModelSpec("mlp"), object(), "the data has no c,"),
        (
            ModelSpec(),
            SimpleNamespace(c=3, input_shape=(4, 5)),
            "input_shape (4, 5) of 2 dimensions; model 'auto' builds the CNN for images (C, H, W) and an MLP for flat features (F,)",
        ),
        (
            ModelSpec("cnn"),
            FLAT,
            "model 'cnn' takes images, input_shape (C, H, W), but the data 'flat' has input_shape (6,)",
        ),
        (ModelSpec("resnet18"), FLAT, "model 'resnet18' takes images"),
        (
            ModelSpec(norm="instance"),
            FLAT,
            "model 'mlp' (model 'auto' chose it for flat features) cannot take norm 'instance'",
        ),
        (
            ModelSpec(),
            SimpleNamespace(c=2.0, input_shape=(6,)),
            "c should be a positive integer (the number of classes), got 2.0",
        ),
        (
            ModelSpec(),
            SimpleNamespace(c=2, input_shape=(0,)),
            "input_shape should be a tuple of positive integers",
        ),
    ],
)
def test_data_without_what_the_model_needs_is_refused(
    spec: ModelSpec, data: object, message: str
) -> None:
    with pytest.raises(ModelError) as info:
        spec.build(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- the data's own model and shape


def test_auto_picks_the_cnn_for_images_and_an_mlp_for_flat_features() -> None:
    assert ModelSpec().resolve(IMAGES) == "cnn"
    assert ModelSpec().resolve(FLAT) == "mlp"
    assert ModelSpec("resnet18").resolve(FLAT) == "resnet18"
    assert any(isinstance(m, nn.Conv2d) for m in build_model("auto", IMAGES).modules())
    assert not any(isinstance(m, nn.Conv2d) for m in build_model("auto", FLAT).modules())


def test_auto_builds_the_model_the_data_supplies() -> None:
    made = nn.Linear(6, C)
    data = SimpleNamespace(c=C, input_shape=(6,), name="own", make_model=lambda: made)
    assert build_model("auto", data) is made
    assert isinstance(build_model("mlp", data), nn.Sequential)  # a name asks for a built-in one
    with pytest.raises(
        ModelError,
        match="the data 'own' supplies its own model .make_model., which act, init, norm and widths do not change",
    ):
        build_model("auto", data, norm="batch")
    with pytest.raises(ModelError, match=r"make_model\(\) should return an nn.Module, got str"):
        build_model("auto", SimpleNamespace(name="own", make_model=lambda: "net"))
    with pytest.raises(ModelError, match="make_model should build the model when called"):
        build_model("auto", SimpleNamespace(name="own", make_model=3))


def test_from_tensors_infers_c_and_input_shape() -> None:
    x, y = torch.randn(10, 6), torch.tensor([0, 1, 2, 1, 0, 2, 1, 0, 2, 1])
    flat = DataBunch.from_tensors(x[:6], y[:6], x[6:], y[6:] + 2, bs=2)
    assert (flat.c, flat.input_shape) == (5, (6,))  # the validation labels count too
    images = DataBunch.from_tensors(torch.randn(4, 1, 8, 8), torch.arange(4), bs=2)
    assert (images.c, images.input_shape) == (4, (1, 8, 8))
    given = DataBunch.from_tensors(x, y, bs=2, c=10, input_shape=(1, 2, 3))
    assert (given.c, given.input_shape) == (10, (1, 2, 3))
    left = DataBunch.from_tensors(x, y, bs=2, c=None, input_shape=None)
    assert (left.c, left.input_shape) == (None, None)
    for targets in (torch.randn(10), torch.zeros(10, 2, dtype=torch.long), y - 1, y > 0):
        assert DataBunch.from_tensors(x, targets, bs=2).c is None, targets
    assert DataBunch.from_tensors(torch.randn(10), y, bs=2).input_shape is None


def test_replace_modules_swaps_every_one_and_counts() -> None:
    shared = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), shared, nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    model.add_module("again", shared)
    assert replace_modules(model, nn.ReLU, lambda old: nn.Tanh()) == 3
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert replace_modules(model, nn.ReLU, lambda old: nn.Tanh()) == 0
    with pytest.raises(TypeError, match="make should return an nn.Module, got int for '0'"):
        replace_modules(model, nn.Linear, lambda old: 1)  # type: ignore[arg-type,return-value]
