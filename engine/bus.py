"""Attach plugins to a learner: check them, then connect their methods to the events.

A plugin is any object whose methods are named after events
(``def after_loss(self, learner) -> None``); it subscribes to exactly the events
it implements. Optional attributes: ``order`` (an int, lower runs first, default
0) and ``name`` (defaults to the class name in snake_case).

The plugin's bound methods are connected with the learner as the sender and held
strongly while the plugin is attached (blinker's default weak references would silently drop a
plugin defined inside a function); detaching releases them.
"""

from __future__ import annotations

import difflib
import inspect
import re
import weakref
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from engine import events as _events
from engine.exceptions import PluginValidationError

_EVENT_LIKE = re.compile(r"^(begin|after|before)_\w+$")


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
    receivers: dict[str, Callable[[Any], None]]


def _disconnect(attached: dict[str, _Attached]) -> None:
    # Disconnect from every sender (ANY): that also removes the receiver from
    # signal.receivers, where a per-sender disconnect would leave it, held strongly.
    for entry in attached.values():
        for event, receiver in entry.receivers.items():
            _events.events[event].disconnect(receiver)


class PluginBus(Mapping[str, object]):
    """The plugins attached to one learner, by name, in the order they run.

    Read it like a dict: ``learner.plugins["metrics"]``.
    """

    def __init__(self, sender: object) -> None:
        # a weak reference: the learner owns this bus, and blinker drops the
        # learner's receivers itself once the learner is garbage-collected
        self._sender_ref = weakref.ref(sender)
        self._attached: dict[str, _Attached] = {}
        self._counter = 0
        # blinker forgets a dead sender's buckets but keeps strong receivers in
        # signal.receivers forever; drop ours when the learner goes away.
        weakref.finalize(sender, _disconnect, self._attached)

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
        """Check ``plugin`` and connect its receivers; returns the plugin."""
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
        self._reconnect()
        return plugin

    def remove(self, name: str) -> object:
        """Disconnect and forget the plugin called ``name``; returns it."""
        if name not in self._attached:
            self[name]  # raises the KeyError listing what is attached
        self._disconnect_all()
        attached = self._attached.pop(name)
        self._reconnect()
        return attached.plugin

    def receiver_set(self) -> set[Callable[[Any], None]]:
        """Every receiver this bus connected, for the loop's direct dispatch."""
        return {r for entry in self._attached.values() for r in entry.receivers.values()}

    def owner(self, receiver: Callable[[Any], None]) -> tuple[str, str] | None:
        """``(plugin name, event)`` of one of this bus's receivers, else ``None``."""
        for entry in self._attached.values():
            for event, method in entry.receivers.items():
                if method == receiver:
                    return entry.name, event
        return None

    def owner_in_traceback(self, tb: TracebackType | None) -> tuple[str, str] | None:
        """The first of this bus's receivers running in a traceback, if any."""
        while tb is not None:
            frame = tb.tb_frame
            bound_self = frame.f_locals.get("self")
            for entry in self._attached.values():
                if entry.plugin is not bound_self:
                    continue
                for event, method in entry.receivers.items():
                    if getattr(method, "__code__", None) is frame.f_code:
                        return entry.name, event
            tb = tb.tb_next
        return None

    def receivers(self, event: str) -> list[str]:
        """Names of the plugins that receive ``event``, in the order they run."""
        return [name for name in self._ordered() if event in self._attached[name].receivers]

    def _disconnect_all(self) -> None:
        _disconnect(self._attached)

    def _reconnect(self) -> None:
        # blinker keeps receivers in connection order (our OrderedSet), so
        # reconnecting everything in sorted order keeps `order` exact.
        self._disconnect_all()
        sender = self._sender_ref()
        if sender is None:
            return
        for name in self._ordered():
            for event, receiver in self._attached[name].receivers.items():
                _events.events[event].connect(receiver, sender=sender, weak=False)
