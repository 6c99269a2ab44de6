"""Attach plugins to a learner: check them, then keep their receivers in run order.

A plugin is any object whose methods are named after events
(``def after_loss(self, learner) -> None``); it subscribes to exactly the events
it implements. Optional attributes: ``order`` (an int, lower runs first, default
0) and ``name`` (defaults to the class name in snake_case).

Each learner has one :class:`PluginBus`, and the bus is the only registry of its
plugins' receivers: per event, the tuple of receivers in run order, rebuilt when a
plugin is added or removed. The loop calls that tuple. Nothing is connected to the
process-wide signals, so one plugin object can serve several learners (in turn, as
when a notebook cell runs again, or at once), and a learner and its plugins are
freed like any other objects when the last reference goes, even when a plugin keeps
the learner (``self.learner = learner``).

Receivers connected by hand to an event's blinker signal (``after_loss.connect(f)``)
still run: the loop sends the signal, before the plugins, when it has receivers.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine import events as _events
from engine.exceptions import PluginValidationError

_EVENT_LIKE = re.compile(r"^(begin|after|before)_\w+$")

Receiver = Callable[[Any], None]
"""A plugin's bound method for one event, called with the learner."""


def plugin_name(plugin: object) -> str:
    """A plugin's ``name`` attribute, else its class name in snake_case."""
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def event_methods(plugin: object, name: str) -> dict[str, Callable[..., Any]]:
    """The plugin's receivers by event, after checking names and signatures.

    :raises PluginValidationError: a method looks like an event but is none, or
        a receiver cannot be called with the learner alone.
    """
    found: dict[str, Callable[..., Any]] = {}
    for attr in dir(plugin):
        if not _EVENT_LIKE.match(attr):
            continue
        method = getattr(plugin, attr, None)
        if not callable(method):
            continue
        if attr not in _events.EVENTS:
            match = difflib.get_close_matches(attr, _events.EVENTS, n=1, cutoff=0.6)
            hint = f"did you mean {match[0]!r}? " if match else ""
            raise PluginValidationError(
                f"plugin {name!r}: method {attr!r} looks like an event but no event has "
                f"that name; {hint}Events: {', '.join(_events.EVENTS)}. Rename a helper "
                "method so it does not start with begin_/after_/before_ (e.g. prefix '_')."
            )
        _check_signature(name, attr, method)
        found[attr] = method
    return found


def _check_signature(name: str, event: str, method: Callable[..., Any]) -> None:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return  # builtins and some C callables have no signature to check
    try:
        signature.bind(object())
    except TypeError:
        func = getattr(method, "__func__", None)
        shown = inspect.signature(func) if func is not None else signature
        raise PluginValidationError(
            f"plugin {name!r}: receiver for {event!r} takes {shown} but the event sends "
            f"(learner). Define it as 'def {event}(self, learner)' and read anything "
            "else from the learner."
        ) from None


@dataclass
class _Attached:
    name: str
    plugin: object
    order: int
    index: int
    receivers: dict[str, Receiver]


class PluginBus(Mapping[str, object]):
    """The plugins attached to one learner, by name, in the order they run.

    Read it like a dict: ``learner.plugins["metrics"]``. :attr:`dispatch` is what
    the loop calls.
    """

    def __init__(self) -> None:
        self._attached: dict[str, _Attached] = {}
        self._counter = 0
        self.dispatch: dict[str, tuple[Receiver, ...]] = dict.fromkeys(_events.EVENTS, ())
        """Per event, the attached plugins' receivers in run order (rebuilt on every
        add and remove; read-only for everyone else)."""

    def __getitem__(self, name: str) -> object:
        try:
            return self._attached[name].plugin
        except KeyError:
            attached = ", ".join(self._attached) or "none"
            raise KeyError(f"no plugin named {name!r} is attached (attached: {attached})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._ordered())

    def __len__(self) -> int:
        return len(self._attached)

    def _ordered(self) -> list[str]:
        ranked = sorted(self._attached.values(), key=lambda a: (a.order, a.index))
        return [a.name for a in ranked]

    def add(self, plugin: object, name: str | None = None) -> object:
        """Check ``plugin`` and add its receivers; returns the plugin."""
        name = name or plugin_name(plugin)
        if name in self._attached:
            raise PluginValidationError(
                f"a plugin named {name!r} is already attached; remove it first or "
                "attach the new one under another name"
            )
        order = getattr(plugin, "order", 0)
        if isinstance(order, bool) or not isinstance(order, int):
            raise PluginValidationError(
                f"plugin {name!r}: 'order' must be an int (lower runs first), got {order!r}"
            )
        receivers = event_methods(plugin, name)
        self._counter += 1
        self._attached[name] = _Attached(name, plugin, order, self._counter, receivers)
        self._rebuild()
        return plugin

    def remove(self, name: str) -> object:
        """Forget the plugin called ``name`` and its receivers; returns it."""
        if name not in self._attached:
            self[name]  # raises the KeyError listing what is attached
        attached = self._attached.pop(name)
        self._rebuild()
        return attached.plugin

    def clear(self) -> None:
        """Detach every plugin."""
        self._attached.clear()
        self._rebuild()

    def owner(self, receiver: Receiver) -> tuple[str, str] | None:
        """``(plugin name, event)`` of one of this bus's receivers, else ``None``."""
        for entry in self._attached.values():
            for event, method in entry.receivers.items():
                if method is receiver:
                    return entry.name, event
        return None

    def receivers(self, event: str) -> list[str]:
        """Names of the plugins that receive ``event``, in the order they run."""
        return [name for name in self._ordered() if event in self._attached[name].receivers]

    def _rebuild(self) -> None:
        ranked = [self._attached[name] for name in self._ordered()]
        self.dispatch = {
            event: tuple(a.receivers[event] for a in ranked if event in a.receivers)
            for event in _events.EVENTS
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{a}" for a in self._ordered()) or "none"
        return f"<PluginBus: {shown}>"
