"""The option checks: what each accepts, and the one rule each message states."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from engine import _checks
from engine._checks import boolean
from engine._checks import did_you_mean
from engine._checks import in_plugin
from engine._checks import integer
from engine._checks import is_int
from engine._checks import is_number
from engine._checks import non_negative_int
from engine._checks import number
from engine._checks import one_of
from engine._checks import positive_int
from engine._checks import strings


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, True), (-2.5, True), (math.nan, True), (math.inf, True), (True, False), ("1", False)],
)
def test_is_number_takes_ints_and_floats_but_not_bools(value: object, expected: bool) -> None:
    assert is_number(value) is expected


@pytest.mark.parametrize(("value", "expected"), [(3, True), (3.0, False), (False, False)])
def test_is_int_takes_ints_but_not_bools(value: object, expected: bool) -> None:
    assert is_int(value) is expected


@pytest.mark.parametrize(
    ("check", "good", "bad", "message"),
    [
        (positive_int, 1, 0, "bins should be a positive integer, got 0"),
        (positive_int, 7, -1, "bins should be a positive integer, got -1"),
        (positive_int, 2, 1.5, "bins should be a positive integer, got 1.5"),
        (positive_int, 3, True, "bins should be a positive integer, got True"),
        (positive_int, 4, "4", "bins should be a positive integer, got '4'"),
        (non_negative_int, 0, -1, "bins should be a non-negative integer, got -1"),
        (non_negative_int, 5, None, "bins should be a non-negative integer, got None"),
    ],
)
def test_integer_checks_return_the_value_or_state_the_rule(
    check: Callable[[str, object], int], good: int, bad: object, message: str
) -> None:
    assert check("bins", good) == good
    with pytest.raises(ValueError) as info:
        check("bins", bad)
    assert str(info.value) == message


def test_integer_with_and_without_a_lower_bound() -> None:
    assert integer("n", -3) == -3
    assert integer("n", 2, at_least=2) == 2
    with pytest.raises(ValueError, match=r"^n should be an integer >= 2, got 1$"):
        integer("n", 1, at_least=2)
    with pytest.raises(ValueError, match=r"^n should be an integer, got 2.0$"):
        integer("n", 2.0)


@pytest.mark.parametrize(
    ("flags", "good", "bad", "rule"),
    [
        ({}, -math.inf, math.nan, "a number"),
        ({}, 1, "1", "a number"),
        ({}, 2.0, False, "a number"),
        ({"finite": True}, -1e300, math.inf, "a finite number"),
        ({"positive": True}, math.inf, 0, "a positive number"),
        ({"positive": True, "finite": True}, 1e-9, math.inf, "a positive finite number"),
        ({"non_negative": True}, 0, -0.1, "a number >= 0"),
        ({"non_negative": True, "finite": True}, 0.0, math.inf, "a finite number >= 0"),
    ],
)
def test_number_states_the_rule_its_flags_make(
    flags: dict[str, bool], good: float, bad: object, rule: str
) -> None:
    result = number("x", good, **flags)
    assert result == good and type(result) is float
    with pytest.raises(ValueError) as info:
        number("x", bad, **flags)
    assert str(info.value) == f"x should be {rule}, got {bad!r}"


def test_boolean_takes_only_bools() -> None:
    assert boolean("save", False) is False
    for bad in (0, "yes", None):
        with pytest.raises(TypeError) as info:
            boolean("save", bad)
        assert str(info.value) == f"save should be a bool, got {bad!r}"


def test_strings_take_one_string_or_a_sequence_of_them() -> None:
    assert strings("types", "Conv2d") == ("Conv2d",)
    assert strings("types", ["Conv2d", "ReLU"]) == ("Conv2d", "ReLU")
    assert strings("types", ()) == ()
    for bad in ([3], 3, None):
        with pytest.raises(TypeError) as info:
            strings("types", bad)
        assert str(info.value) == f"types should be a sequence of strings, got {bad!r}"


def test_one_of_returns_the_choice_and_suggests_the_closest() -> None:
    modes = ("min", "max", "auto")
    assert one_of("mode", "auto", modes) == "auto"
    with pytest.raises(ValueError) as info:
        one_of("mode", "mni", modes)
    assert (
        str(info.value) == "mode should be 'min', 'max' or 'auto', got 'mni' (did you mean 'min'?)"
    )
    with pytest.raises(ValueError) as info:
        one_of("mode", "sideways", modes)
    assert str(info.value) == "mode should be 'min', 'max' or 'auto', got 'sideways'"


def test_one_of_compares_types_too() -> None:
    """``1 == True``, but 1 is not the choice ``True``."""
    assert one_of("bar", None, (True, False, None)) is None
    with pytest.raises(ValueError, match=r"^bar should be True, False or None, got 1$"):
        one_of("bar", 1, (True, False, None))
    with pytest.raises(ValueError, match=r"^only should be 'x', got 'y'$"):
        one_of("only", "y", ("x",))


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("progres", ["progress", "recorder"], " (did you mean 'progress'?)"),
        ("lr_fnd", ["lr_find", "lr"], " (did you mean 'lr_find'?)"),
        ("zzz", ["progress"], ""),
        ("x", [], ""),
        (3, ["3"], ""),
    ],
)
def test_did_you_mean(word: object, choices: list[str], expected: str) -> None:
    assert did_you_mean(word, choices) == expected


def test_in_plugin_prefixes_once() -> None:
    message = in_plugin("grad_clip", "max_norm should be a positive finite number, got -1")
    assert message == "plugin 'grad_clip': max_norm should be a positive finite number, got -1"
    assert in_plugin("grad_clip", message) == message
    assert in_plugin("other", message) == f"plugin 'other': {message}"


@pytest.mark.parametrize(
    "check",
    [_checks.integer, _checks.positive_int, _checks.non_negative_int, _checks.number],
)
def test_numeric_checks_never_accept_a_bool(check: Callable[..., Any]) -> None:
    for flag in (True, False):
        with pytest.raises(ValueError, match="got " + repr(flag)):
            check("x", flag)


def test_optimizer_builds_what_opt_func_returns() -> None:
    import torch

    params = [torch.nn.Parameter(torch.zeros(2))]
    opt = _checks.optimizer(torch.optim.SGD, params, lr=0.5)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.5


def test_optimizer_names_what_opt_func_returned() -> None:
    """A function returning the parameters is refused with what it returned."""
    import torch

    from engine.exceptions import LookinsideError

    def params_back(params: Any, lr: float) -> Any:
        return params

    with pytest.raises(TypeError) as info:
        _checks.optimizer(params_back, (p for p in [torch.zeros(1)]), lr=0.1)
    assert isinstance(info.value, LookinsideError)
    message = str(info.value)
    assert message.startswith(
        "opt_func test_optimizer_names_what_opt_func_returned.<locals>.params_back should "
        "return a torch.optim.Optimizer such as torch.optim.SGD(params, lr=lr), got generator "
        "<generator object"
    )
    assert "\n" not in message


def test_optimizer_refuses_a_signature_without_lr() -> None:
    import torch

    def no_lr(params: Any) -> torch.optim.Optimizer:
        raise AssertionError("not called")

    with pytest.raises(
        TypeError,
        match=r"opt_func .*no_lr should accept \(params, lr=lr\) .*"
        r"its signature is \(params: 'Any'\) -> 'torch.optim.Optimizer'",
    ):
        _checks.optimizer(no_lr, [], lr=0.1)
