"""``lookinside fit --model --act --init --norm``: the model fits the data, bad choices are one line."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from torch import nn

from engine import cli
from engine.cli import main
from engine.nn import GeneralRelu
from engine.nn import Lambda
from engine.nn import RunningBatchNorm
from engine.nn import build
from tests.helpers import fake_distribution

DATASETS = '''
import torch
from torch import nn

from engine import hookimpl
from engine.data import DataBunch
from engine.data import TensorLoader

SEEN = []


def _rows(n=24, features=6, classes=3):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=gen)
    return x, torch.arange(n) % classes


def flat(bs: int = 8):
    """Flat features, c and input_shape inferred by from_tensors."""
    x, y = _rows()
    return DataBunch.from_tensors(x[:16], y[:16], x[16:], y[16:], bs=bs, name="flat")


def images(bs: int = 8):
    """Tiny 1x8x8 images as flat rows."""
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(16) % 3
    return DataBunch.from_tensors(
        x[:12], y[:12], x[12:], y[12:], bs=bs, c=3, input_shape=(1, 8, 8), name="images"
    )


def noshape(bs: int = 8):
    """Rows in a loader with no input_shape."""
    x, y = _rows()
    return DataBunch(TensorLoader(x, y, bs), None, c=3, name="noshape")


def noclasses(bs: int = 8):
    """Float targets: no c to infer."""
    x, _ = _rows()
    return DataBunch.from_tensors(x, x[:, 0], bs=bs, name="noclasses")


def own(bs: int = 8):
    """Flat features with their own model."""
    x, y = _rows()

    def make_model():
        model = nn.Sequential(nn.Linear(6, 3))
        model.made_by_the_dataset = True
        return model

    return DataBunch.from_tensors(x, y, bs=bs, name="own", make_model=make_model)


class ModelSpy:
    """Keeps the model each fit trains."""

    name = "model_spy"

    def begin_fit(self, learner):
        SEEN.append(learner.model)


@hookimpl
def lookinside_datasets(register):
    for loader in (flat, images, noshape, noclasses, own):
        register(loader.__name__, loader)


@hookimpl
def lookinside_register(register):
    register(ModelSpy, name="model_spy")
'''


@pytest.fixture
def spy_module(site: Path) -> ModuleType:
    """A plugin distribution with small datasets and a plugin keeping the model trained."""
    fake_distribution(
        site, "lookinside-shapes", {"shapes": "fake_shapes"}, {"fake_shapes": DATASETS}
    )
    return importlib.import_module("fake_shapes")


def _fit(tmp_path: Path, *argv: str) -> int:
    out = ["--out", str(tmp_path / "run"), "--epochs", "1", "--no-config"]
    return main(["fit", *argv, *out, "-p", "no:recorder", "-p", "no:progress"])


def _trained(spy: ModuleType) -> nn.Module:
    seen: list[nn.Module] = spy.SEEN
    assert seen, "no fit started"
    return seen[-1]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lookinside: error: ") and err.count("\n") == 1, err
    return err


def test_fit_trains_an_mlp_on_flat_features(
    spy_module: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flat rows once crashed fit with a conv2d traceback; auto now trains an MLP on them."""
    assert _fit(tmp_path, "--data", "flat", "-p", "model_spy") == 0
    model = _trained(spy_module)
    assert isinstance(next(model.children()), Lambda)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert (linears[0].in_features, linears[-1].out_features) == (6, 3)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0"]


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (["--model", "cnn", "--act", "general_relu:leak=0.2,sub=0.3,maxv=none"], "general_relu"),
        (["--model", "cnn_07", "--norm", "running_batch", "--init", "kaiming"], "running_batch"),
        (["--model", "cnn", "--channels", "4,6"], "widths"),
        (["--model", "mlp", "--norm", "layer", "--widths", "5"], "mlp"),
        (["--model", "resnet18", "--norm", "group", "--act", "general_relu"], "resnet18"),
    ],
)
def test_fit_builds_the_model_asked_for(
    argv: list[str], check: str, spy_module: ModuleType, tmp_path: Path
) -> None:
    assert _fit(tmp_path, "--data", "images", "-p", "model_spy", *argv) == 0
    model = _trained(spy_module)
    kinds = {type(m) for m in model.modules()}
    if check == "general_relu":
        acts = [m for m in model.modules() if isinstance(m, GeneralRelu)]
        assert {(m.leak, m.sub, m.maxv) for m in acts} == {(0.2, 0.3, None)}
    elif check == "running_batch":
        assert RunningBatchNorm in kinds
        assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    elif check == "widths":
        assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [4, 6]
    elif check == "mlp":
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == [(64, 5), (5, 3)]
        assert nn.Conv2d not in kinds
    else:
        assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds and GeneralRelu in kinds


def test_norm_running_batch_runs_on_digits(tmp_path: Path) -> None:
    argv = ["--norm", "running_batch", "--act", "general_relu", "--init", "kaiming"]
    assert _fit(tmp_path, *argv, "--bs", "512") == 0
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and 0 <= float(rows[0]["valid_accuracy"]) <= 1


def test_auto_trains_the_model_the_dataset_supplies(spy_module: ModuleType, tmp_path: Path) -> None:
    assert _fit(tmp_path, "--data", "own", "-p", "model_spy") == 0
    assert getattr(_trained(spy_module), "made_by_the_dataset", False)
    assert _fit(tmp_path, "--data", "own", "-p", "model_spy", "--model", "mlp") == 0
    assert not hasattr(_trained(spy_module), "made_by_the_dataset")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--data", "noshape"],
            "the data 'noshape' has no input_shape, the shape of one input: (C, H, W) for images, "
            "(F,) for flat features; set it where the data is built, e.g. "
            "DataBunch(train_dl, valid_dl, c=10, input_shape=(1, 28, 28))",
        ),
        (["--data", "noclasses"], "the data 'noclasses' has no c, the number of classes"),
        (["--data", "flat", "--model", "cnn"], "model 'cnn' takes images, input_shape (C, H, W)"),
        (["--data", "flat", "--norm", "instance"], "(model 'auto' chose it for flat features)"),
        (["--data", "own", "--norm", "batch"], "the data 'own' supplies its own model"),
    ],
)
def test_data_the_model_cannot_fit_is_one_line_before_training(
    argv: list[str],
    message: str,
    spy_module: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _fit(tmp_path, *argv, "-p", "model_spy") == 2
    assert message in _one_line_error(capsys)
    assert spy_module.SEEN == []
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--act", "general_relu:lek=1"],
            "activation 'general_relu' has no option 'lek' (did you mean 'leak'?); its options: leak, sub, maxv",
        ),
        (
            ["--act", "general_relu:leak=abc"],
            "act 'general_relu:leak=abc': leak should be a number or none, got 'abc'",
        ),
        (
            ["--act", "general_relu:leak=-1"],
            "activation 'general_relu': leak should be a finite number >= 0, got -1.0",
        ),
        (
            ["--act", "general_relu:leak"],
            "act 'general_relu:leak': options should be key=value separated by commas",
        ),
        (["--act", "relu:leak=0.1"], "activation 'relu' has no option 'leak'; it takes none"),
        (["--act", "gelu"], "act should be 'relu' or 'general_relu', got 'gelu'"),
        (["--model", "mlp", "--norm", "instance"], "model 'mlp' cannot take norm 'instance'"),
        (["--model", "resnet18", "--widths", "8,16"], "model 'resnet18' takes no widths"),
    ],
)
def test_bad_model_options_are_one_line_before_the_data_loads(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing dataset would be the error if the data were loaded first."""
    assert _fit(tmp_path, "--data", "no_such_data", *argv) == 2
    assert f"lookinside: error: {message}" in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_an_unknown_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--norm", "btach"])
    assert info.value.code == 2
    assert "argument --norm: invalid choice: 'btach'" in capsys.readouterr().err


def test_fit_help_documents_the_model_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in (
        "--model {auto,cnn,cnn_07,mlp,resnet18}",
        "--act NAME[:key=value,...]",
        "general_relu:leak=0.1,sub=0.4,maxv=6",
        "--init {default,kaiming}",
        "--norm {none,batch,torch_batch,layer,instance,group,running_batch}",
        "--widths W,W,..., --channels W,W,...",
        "an MLP for flat features",
    ):
        assert text in out, text


def test_the_parser_choices_are_the_builders() -> None:
    """The parser spells the choices out (to build without torch); they must not drift."""
    assert cli._MODEL_CHOICES == build.MODEL_CHOICES
    assert cli._INIT_CHOICES == build.INITS
    assert cli._NORM_CHOICES == build.NORM_CHOICES


def test_model_spec_from_args_reads_every_option() -> None:
    args: Any = cli.build_parser().parse_args(
        [
            "fit",
            "--model",
            "cnn_07",
            "--act",
            "general_relu:maxv=4",
            "--init",
            "kaiming",
            "--norm",
            "group",
            "--widths",
            "4,8",
        ]
    )
    spec = cli.model_spec_from_args(args)
    assert spec == build.ModelSpec(
        "cnn_07", "general_relu", {"maxv": 4.0}, "kaiming", "group", (4, 8)
    )
    default = cli.model_spec_from_args(cli.build_parser().parse_args(["fit"]))
    assert default == build.ModelSpec() and not default.customized
