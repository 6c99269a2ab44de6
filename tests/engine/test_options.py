"""Plugin options: parsing ``NAME:key=value``, conversion to the declared type, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Literal

import pytest

from engine import PluginError
from engine.options import REQUIRED
from engine.options import Option
from engine.options import convert
from engine.options import options_from_factory
from engine.options import parse_plugin_arg

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Example:
    """An example plugin.

    :param patience: epochs to wait.
    :param mode: which way is better.
    """

    def __init__(
        self,
        patience: int,
        mode: Literal["min", "max"] = "min",
        delta: float | None = None,
        shape: tuple[int, ...] = (1, 8, 8),
        names: tuple[str, ...] = ("accuracy",),
        verbose: bool = False,
    ) -> None:
        pass


def test_parse_plain_name_and_options() -> None:
    assert parse_plugin_arg("device") == ("device", {})
    assert parse_plugin_arg("device:device=cpu,non_blocking=false") == (
        "device",
        {"device": "cpu", "non_blocking": "false"},
    )
    assert parse_plugin_arg("batch_transform:shape=1,28,28") == (
        "batch_transform",
        {"shape": "1,28,28"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (":x=1", "expected NAME or NAME:key=value"),
        ("p:=1", "empty option name before '='"),
        ("p:oops", "option 'oops' has no value; write key=value"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        parse_plugin_arg(text)


def test_options_are_read_from_signature_and_docstring() -> None:
    options = {o.name: o for o in options_from_factory(Example)}
    assert list(options) == ["patience", "mode", "delta", "shape", "names", "verbose"]
    assert options["patience"].default is REQUIRED and options["patience"].help == "epochs to wait."
    assert options["mode"].help == "which way is better."
    assert options["mode"].type_name == "one of min, max"
    assert options["delta"].type_name == "float | none"


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("patience", "3", 3),
        ("mode", "max", "max"),
        ("delta", "0.5", 0.5),
        ("delta", "none", None),
        ("shape", "1,28,28", (1, 28, 28)),
        ("shape", "1x28x28", (1, 28, 28)),
        ("names", "accuracy,error_rate", ("accuracy", "error_rate")),
        ("verbose", "yes", True),
        ("verbose", "False", False),
    ],
)
def test_convert_to_declared_type(name: str, text: str, value: object) -> None:
    option = {o.name: o for o in options_from_factory(Example)}[name]
    assert convert("example", option, text) == value


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("patience", "three", "int"),
        ("mode", "sideways", "one of min, max"),
        ("verbose", "maybe", "a bool \\(true/false\\)"),
        ("shape", "1,a", "a comma-separated list of int"),
    ],
)
def test_bad_values_name_plugin_option_type_and_value(name: str, text: str, expected: str) -> None:
    option = {o.name: o for o in options_from_factory(Example)}[name]
    with pytest.raises(
        PluginError, match=f"plugin 'example': option '{name}' expects {expected}, got '{text}'"
    ):
        convert("example", option, text)


def test_python_values_pass_through() -> None:
    assert convert("p", Option("n", int, 0), 5) == 5


_Metric = Callable[["Tensor"], "Tensor"]
"""An alias naming ``Tensor``, which only type checkers import (as in observers.metrics)."""


class TypeCheckingOnly:
    """A plugin whose annotations name what only ``if TYPE_CHECKING:`` imports, as the
    built-ins do with torch so that loading the catalogue imports none."""

    def __init__(
        self,
        every: int = 1,
        metric: _Metric | str = "accuracy",
        device: torch.device | None = None,
    ) -> None:
        pass


def test_options_read_when_annotations_name_type_checking_imports() -> None:
    """Each annotation is evaluated on its own: names inside an alias stay unresolved, and
    one naming an absent module is kept as its text, the other options unharmed."""
    options = {o.name: o for o in options_from_factory(TypeCheckingOnly)}
    assert list(options) == ["every", "metric", "device"]
    assert options["every"].type is int
    assert options["metric"].type_name == "str"
    assert convert("p", options["metric"], "error_rate") == "error_rate"
    assert options["device"].type_name == "torch.device | None"
