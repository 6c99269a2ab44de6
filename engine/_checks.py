"""Checks of user input, written once: one rule per message, the plugin named elsewhere.

Each check takes the option's name and the value given, returns the value when
it obeys the rule, and otherwise raises with a message that states the rule and
what was given:

>>> positive_int("bins", -1)
Traceback (most recent call last):
ValueError: bins should be a positive integer, got -1

The messages leave the plugin out. When a plugin is created by name (``-p NAME``,
``plugins=["NAME"]``, a config file), :meth:`engine.selection.Enabled.create`
puts ``plugin 'NAME': `` in front of any ``ValueError`` or ``TypeError`` its
factory raises (:func:`in_plugin`); a plugin object made in Python raises the
bare message.

The number and integer checks and :func:`one_of` raise ``ValueError`` for any
value outside the rule, a str or a bool included: the rule names the kind ("a
positive integer") as well as the range. :func:`boolean` and :func:`strings`
raise ``TypeError``: their rule is only about the type.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeGuard
from typing import TypeVar

from engine.exceptions import OptimizerError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is a real number: an ``int`` or a ``float``, not a ``bool``.

    NaN and the infinities are numbers here; :func:`number` says which it accepts.

    >>> is_number(2), is_number(0.5), is_number(float("nan")), is_number(True), is_number("2")
    (True, True, True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an ``int`` and not a ``bool``.

    >>> is_int(3), is_int(3.0), is_int(False)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def integer(name: str, value: object, *, at_least: int | None = None) -> int:
    """``value`` when it is an int (not a bool) of at least ``at_least``.

    >>> integer("max_batches", 1, at_least=2)
    Traceback (most recent call last):
    ValueError: max_batches should be an integer >= 2, got 1

    :param name: the option's name, as the user wrote it.
    :param value: the value given.
    :param at_least: the smallest value allowed; ``None``: any int.
    :raises ValueError: ``value`` is not such an int.
    """
    rule = "an integer" if at_least is None else f"an integer >= {at_least}"
    return _integer(name, value, at_least, rule)


def positive_int(name: str, value: object) -> int:
    """``value`` when it is an int >= 1 (not a bool).

    >>> positive_int("every", 1.5)
    Traceback (most recent call last):
    ValueError: every should be a positive integer, got 1.5

    :raises ValueError: ``value`` is not such an int.
    """
    return _integer(name, value, 1, "a positive integer")


def non_negative_int(name: str, value: object) -> int:
    """``value`` when it is an int >= 0 (not a bool).

    >>> non_negative_int("skip_start", -1)
    Traceback (most recent call last):
    ValueError: skip_start should be a non-negative integer, got -1

    :raises ValueError: ``value`` is not such an int.
    """
    return _integer(name, value, 0, "a non-negative integer")


def _integer(name: str, value: object, at_least: int | None, rule: str) -> int:
    if is_int(value) and (at_least is None or value >= at_least):
        return value
    raise ValueError(f"{name} should be {rule}, got {value!r}")


def number(
    name: str,
    value: object,
    *,
    positive: bool = False,
    non_negative: bool = False,
    finite: bool = False,
) -> float:
    """``value`` as a float, when it is a number (not a bool, never NaN) obeying the flags.

    >>> number("max_norm", 0.5, positive=True, finite=True)
    0.5
    >>> number("max_norm", math.inf, positive=True, finite=True)
    Traceback (most recent call last):
    ValueError: max_norm should be a positive finite number, got inf

    :param name: the option's name, as the user wrote it.
    :param value: the value given.
    :param positive: it must be > 0.
    :param non_negative: it must be >= 0 (implied by ``positive``).
    :param finite: it must not be infinite.
    :raises ValueError: ``value`` breaks the rule.
    """
    if (
        is_number(value)
        and not math.isnan(value)
        and (not positive or value > 0)
        and (not non_negative or value >= 0)
        and (not finite or math.isfinite(value))
    ):
        return float(value)
    kind = "finite number" if finite else "number"
    if positive:
        rule = f"a positive {kind}"
    elif non_negative:
        rule = f"a {kind} >= 0"
    else:
        rule = f"a {kind}"
    raise ValueError(f"{name} should be {rule}, got {value!r}")


def boolean(name: str, value: object) -> bool:
    """``value`` when it is a bool (``True`` or ``False``, not 1 or "yes").

    >>> boolean("save", "yes")
    Traceback (most recent call last):
    TypeError: save should be a bool, got 'yes'

    :raises TypeError: ``value`` is not a bool.
    """
    if isinstance(value, bool):
        return value
    raise TypeError(f"{name} should be a bool, got {value!r}")


def strings(name: str, value: object) -> tuple[str, ...]:
    """``value`` as a tuple of strings; a single string is a tuple of one.

    >>> strings("types", "Conv2d"), strings("types", ["Conv2d", "ReLU"])
    (('Conv2d',), ('Conv2d', 'ReLU'))

    :raises TypeError: ``value`` is not a string nor a sequence of strings.
    """
    items = (value,) if isinstance(value, str) else value
    if isinstance(items, Sequence) and all(isinstance(item, str) for item in items):
        return tuple(items)
    raise TypeError(f"{name} should be a sequence of strings, got {value!r}")


def one_of(name: str, value: object, choices: Sequence[T]) -> T:
    """The choice equal to ``value`` (and of its type: ``1`` is not ``True``).

    >>> one_of("mode", "max", ("min", "max", "auto"))
    'max'
    >>> one_of("mode", "mxa", ("min", "max", "auto"))
    Traceback (most recent call last):
    ValueError: mode should be 'min', 'max' or 'auto', got 'mxa' (did you mean 'max'?)

    :param choices: the values allowed, in the order the message lists them.
    :raises ValueError: ``value`` is none of them.
    """
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    shown = [repr(choice) for choice in choices]
    listed = shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"
    hint = did_you_mean(value, [c for c in choices if isinstance(c, str)])
    raise ValueError(f"{name} should be {listed}, got {value!r}{hint}")


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``word``, or ``""`` when none is close.

    It starts with a space, to follow the word it corrects directly.

    >>> did_you_mean("progres", ["progress", "recorder"]), did_you_mean("zzz", ["progress"])
    (" (did you mean 'progress'?)", '')

    :param word: what the user wrote (anything but a str gets no suggestion).
    :param choices: the words that would have been understood.
    """
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def in_plugin(name: str, message: str) -> str:
    """``message`` with ``plugin 'NAME': `` in front, unless it already names the plugin.

    The one place the prefix is written: :meth:`engine.selection.Enabled.create`
    applies it to the errors of a plugin created by name.

    >>> in_plugin("bins_plugin", "bins should be a positive integer, got -1")
    "plugin 'bins_plugin': bins should be a positive integer, got -1"
    >>> in_plugin("tensorboard", "plugin 'tensorboard' needs the tensorboard package")
    "plugin 'tensorboard' needs the tensorboard package"

    :param name: the plugin's name in the catalogue.
    :param message: the error's text.
    """
    prefix = f"plugin {name!r}"
    return message if message.startswith(prefix) else f"{prefix}: {message}"


def optimizer(
    opt_func: Callable[..., Any], params: Iterable[Any], lr: float
) -> torch.optim.Optimizer:
    """``opt_func(params, lr=lr)``, checked: its signature first, then what it returned.

    The learner builds its optimizer here, so that an ``opt_func`` of the wrong
    shape fails with its name instead of deep inside torch (a function returning
    the parameters gives "'generator' object has no attribute
    '_optimizer_step_pre_hooks'" at the first step).

    :param opt_func: the learner's ``opt_func``.
    :param params: the model's parameters.
    :param lr: the learning rate.
    :raises OptimizerError: ``opt_func`` does not accept ``(params, lr=lr)``, or
        returned something other than a ``torch.optim.Optimizer``.
    """
    import torch

    name = getattr(opt_func, "__qualname__", None) or repr(opt_func)
    try:
        signature = inspect.signature(opt_func)
    except (TypeError, ValueError):
        signature = None  # a builtin without one: let the call speak
    if signature is not None:
        try:
            signature.bind(params, lr=lr)
        except TypeError as exc:
            raise OptimizerError(
                f"opt_func {name} should accept (params, lr=lr) and return a "
                f"torch.optim.Optimizer, but its signature is {signature}: {exc}"
            ) from exc
    opt = opt_func(params, lr=lr)
    if not isinstance(opt, torch.optim.Optimizer):
        raise OptimizerError(
            f"opt_func {name} should return a torch.optim.Optimizer such as "
            f"torch.optim.SGD(params, lr=lr), got {type(opt).__name__} {_short(opt)}"
        )
    return opt


def _short(value: object, width: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``width`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10, which has no ``add_note``: there the
    note goes into ``__notes__`` all the same (tracebacks print it from 3.11 on).

    >>> error = ValueError("bad")
    >>> add_note(error, "while plugin 'x' handled 'after_loss'")
    >>> error.__notes__
    ["while plugin 'x' handled 'after_loss'"]
    """
    if hasattr(exc, "add_note"):
        exc.add_note(note)
        return
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        exc.__notes__ = notes  # type: ignore[attr-defined]
    notes.append(note)
