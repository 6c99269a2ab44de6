"""Plugin options: declared from a factory's signature, given as ``NAME:key=value``.

A plugin's options are the keyword arguments of its factory. The CLI gives them as
strings (``-p device:device=cpu,non_blocking=false``); :func:`convert` turns each
string into the option's type and says what was expected when it cannot.
"""

from __future__ import annotations

import collections.abc
import contextlib
import inspect
import re
import types
import typing
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from typing import Literal
from typing import Union

from engine._checks import did_you_mean
from engine._checks import in_plugin
from engine._checks import is_int
from engine._checks import is_number
from engine.exceptions import PluginError

_EMPTY = inspect.Parameter.empty

_PYTHON_ONLY = "a Python callable (Python only)"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Option:
    """One option of a plugin.

    :param name: the keyword argument's name.
    :param type: the annotated type (``int``, ``float``, ``bool``, ``str``,
        ``Literal[...]``, ``X | None``, ``tuple[int, ...]``, ``list[str]``...).
    :param default: the default value; :data:`REQUIRED` when there is none.
    :param help: one line for ``lookinside plugins`` and ``fit --help``.
    """

    name: str
    type: Any = str
    default: Any = None
    help: str = ""

    @property
    def type_name(self) -> str:
        """The type as users read it: ``int``, ``float | None``, ``one of a, b``."""
        return _type_name(self.type)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The default of an option the user must give."""


def options_from_factory(factory: Callable[..., Any]) -> list[Option]:
    """Read a factory's options from its signature, annotations and docstring."""
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        signature = inspect.signature(target)
        hints = _type_hints(target)
    except (TypeError, ValueError, NameError):
        return []
    helps = _param_docs(inspect.getdoc(factory) or "") | _param_docs(inspect.getdoc(target) or "")
    options = []
    for param in signature.parameters.values():
        if param.name == "self" or param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            continue
        default = REQUIRED if param.default is _EMPTY else param.default
        kind = hints.get(param.name, type(default) if default not in (None, REQUIRED) else str)
        options.append(Option(param.name, kind, default, helps.get(param.name, "")))
    return options


def _type_hints(target: Callable[..., Any]) -> dict[str, Any]:
    """``typing.get_type_hints(target)``, also when an annotation names what only type
    checkers import.

    A plugin module imports torch under ``if TYPE_CHECKING:`` so that loading the
    catalogue imports no torch; ``get_type_hints`` then fails on ``torch.device``, or
    on an alias spelled with ``"Tensor"``. Each annotation is evaluated on its own
    instead, names inside aliases left unresolved, and one naming an absent module
    is kept as its text.
    """
    try:
        return typing.get_type_hints(target)
    except NameError:
        pass
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    hints: dict[str, Any] = {}
    for name, annotation in getattr(target, "__annotations__", {}).items():
        hints[name] = annotation
        if isinstance(annotation, str):
            with contextlib.suppress(NameError):
                hints[name] = eval(annotation, namespace)  # as get_type_hints does
    return hints


def _param_docs(doc: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in re.finditer(r":param (\w+):\s*(.*?)(?=\n\s*:|\n\s*\n|\Z)", doc, re.S):
        found[match.group(1)] = " ".join(match.group(2).split())
    return found


def parse_plugin_arg(text: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME:key=value,key2=value2`` into the name and raw option strings.

    A comma-separated piece without ``=`` continues the previous value, so
    ``shape=1,28,28`` is one option.

    >>> parse_plugin_arg("batch_transform:shape=1,8,8,flat=true")
    ('batch_transform', {'shape': '1,8,8', 'flat': 'true'})
    """
    name, _, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise PluginError(f"-p {text!r}: expected NAME or NAME:key=value[,key=value]")
    raw: dict[str, str] = {}
    last: str | None = None
    for piece in rest.split(",") if rest else []:
        key, eq, value = piece.partition("=")
        if eq:
            last = key.strip()
            if not last:
                raise PluginError(f"-p {text!r}: empty option name before '='")
            raw[last] = value.strip()
        elif last is not None:
            raw[last] += "," + piece.strip()
        else:
            raise PluginError(f"-p {text!r}: option {piece!r} has no value; write key=value")
    return name, raw


def convert(plugin: str, option: Option, value: Any) -> Any:
    """Convert ``value`` (a string from the CLI, or a Python value) to the option's type."""
    if not isinstance(value, str):
        _check_value(plugin, option, value)
        return value
    try:
        return _convert(option.type, value)
    except ValueError as exc:
        hint = did_you_mean(value, [str(choice) for choice in _choices(option.type)])
        message = f"option {option.name!r} expects {option.type_name}, got {value!r}{hint}"
        raise PluginError(in_plugin(plugin, message)) from exc


def _check_value(plugin: str, option: Option, value: Any) -> None:
    """Python (or TOML) values for the simple types must have that type."""
    kind = option.type
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = is_int(value)
    elif kind is float:
        ok = is_number(value)
    elif kind is str:
        ok = isinstance(value, str)
    else:
        return  # unions, literals, sequences, callables: the plugin checks them
    if not ok:
        message = (
            f"option {option.name!r} expects {option.type_name}, got {value!r} "
            f"({type(value).__name__})"
        )
        raise PluginError(in_plugin(plugin, message))


def _choices(kind: Any) -> list[Any]:
    """The values of the ``Literal`` types in ``kind`` (``X | None`` included)."""
    if typing.get_origin(kind) is Literal:
        return list(typing.get_args(kind))
    if typing.get_origin(kind) in (Union, types.UnionType):
        return [choice for arg in typing.get_args(kind) for choice in _choices(arg)]
    return []


def _convert(kind: Any, text: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, text)
            except ValueError:
                continue
        raise ValueError(text)
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(text)
    if origin in (tuple, list, Sequence, typing.Sequence) or kind in (tuple, list):
        item = args[0] if args and args[0] is not Ellipsis else str
        # "1x28x28" reads as a shape; only numbers may use x as the separator
        separator = r"[,x]" if item in (int, float) else ","
        pieces = [piece.strip() for piece in re.split(separator, text)]
        items = [_convert(item, piece) for piece in pieces if piece]
        return tuple(items) if origin is tuple or kind is tuple else items
    if kind is bool:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(text)
    if kind in (int, float, str):
        return kind(text)
    if kind is Any:
        return text
    raise ValueError(text)


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (Union, types.UnionType):
        names = list(dict.fromkeys(_type_name(arg) for arg in args))
        # what the command line can give, when Python can give more
        simple = [n for n in names if n != _PYTHON_ONLY and not n.endswith(" of Any")]
        if all(n == "none" for n in simple):
            simple = names
        return " | ".join(simple)
    if origin is Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    if origin in (tuple, list, Sequence, typing.Sequence):
        item = _type_name(args[0]) if args else "str"
        return f"a comma-separated list of {item}"
    if kind is type(None):
        return "none"
    if origin is collections.abc.Callable or kind is collections.abc.Callable:
        return _PYTHON_ONLY
    if kind is bool:
        return "a bool (true/false)"
    return getattr(kind, "__name__", str(kind))
