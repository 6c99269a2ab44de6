"""Attach plugins to a learner: check them, then keep their receivers in run order.

A plugin is any object whose methods are named after events
(``def after_loss(self, learner) -> None``); it subscribes to exactly the events
it implements. Optional attributes: ``order`` (an int, lower runs first, default
0; see :mod:`engine.order`) and ``name`` (defaults to the class name in snake_case).

A plugin may also wrap the model's forward and the loss in a context of its own
(``torch.autocast`` for mixed precision, a profiler's range...):
``def around_forward(self, learner)`` returns a context manager, which the loop
enters around ``model(xb)`` and again around ``loss_func(pred, yb)``, in every
batch, and always leaves, whatever is raised. The plugins' contexts nest in run
order (the lowest ``order`` outermost); the events themselves run outside them.

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

import inspect
import logging
import re
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from typing import TypeVar
from typing import cast

from engine import events as _events
from engine._checks import did_you_mean
from engine.exceptions import PluginValidationError

_EVENT_LIKE = re.compile(r"^(begin|after|before)_\w+$")

trace_log = logging.getLogger("lookinside.trace")
"""Where ``LOOKINSIDE_TRACE=1`` logs hook calls, events sent and receivers called."""

P = TypeVar("P")

Receiver = Callable[[Any], None]
"""A plugin's bound method for one event, called with the learner."""


def plugin_name(plugin: object) -> str:
    """A plugin's ``name`` attribute, else its class name in snake_case."""
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


def check_event_names(plugin: object, name: str) -> None:
    """Refuse a plugin (class or object) with a method named like an event that is none.

    Made when a plugin object is attached (:func:`event_methods`) and when a plugin
    class is registered by a plugin module, so a typo is caught on every path in.

    :raises PluginValidationError: naming the method and the closest event.
    """
    for attr in dir(plugin):
        if (
            _EVENT_LIKE.match(attr)
            and attr not in _events.EVENTS
            and callable(getattr(plugin, attr, None))
        ):
            raise PluginValidationError(
                f"plugin {name!r}: method {attr!r} looks like an event but no event has "
                f"that name{did_you_mean(attr, _events.EVENTS)}; events: {', '.join(_events.EVENTS)}. Rename "
                "a helper method so it does not start with begin_/after_/before_ (e.g. "
                "prefix '_')."
            )


def event_methods(plugin: object, name: str) -> dict[str, Callable[..., Any]]:
    """The plugin's receivers by event, after checking names and signatures.

    :raises PluginValidationError: a method looks like an event but is none, or
        a receiver cannot be called with the learner alone.
    """
    check_event_names(plugin, name)
    found: dict[str, Callable[..., Any]] = {}
    for attr in dir(plugin):
        if attr not in _events.EVENTS:
            continue
        method = getattr(plugin, attr, None)
        if not callable(method):
            continue
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


AroundForward = Callable[[Any], AbstractContextManager[Any]]
"""A plugin's ``around_forward``: called with the learner, returns the context to enter."""


def around_forward(plugin: object, name: str) -> AroundForward | None:
    """The plugin's ``around_forward`` method, checked, or ``None`` if it has none.

    :raises PluginValidationError: it is not a method taking the learner alone.
    """
    method = getattr(plugin, "around_forward", None)
    if method is None:
        return None
    if not callable(method):
        raise PluginValidationError(
            f"plugin {name!r}: 'around_forward' should be a method returning a context "
            f"manager, got {method!r}"
        )
    _check_signature(name, "around_forward", method)
    return cast(AroundForward, method)


@dataclass
class _Attached:
    name: str
    plugin: object
    order: int
    index: int
    receivers: dict[str, Receiver]
    around: AroundForward | None


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
        self.around: tuple[AroundForward, ...] = ()
        """The plugins' ``around_forward`` methods, in run order."""
        self.tracing = False
        """Whether receiver calls are logged (``LOOKINSIDE_TRACE``); set with :meth:`trace`."""

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
        around = around_forward(plugin, name)
        self._counter += 1
        self._attached[name] = _Attached(name, plugin, order, self._counter, receivers, around)
        self._rebuild()
        return plugin

    def remove(self, name: str) -> object:
        """Forget the plugin called ``name`` and its receivers; returns it."""
        if name not in self._attached:
            self[name]  # raises the KeyError listing what is attached
        attached = self._attached.pop(name)
        self._rebuild()
        return attached.plugin

    def owner(self, receiver: Receiver | AroundForward) -> tuple[str, str] | None:
        """``(plugin name, event)`` of one of this bus's receivers (or ``around_forward``
        methods), else ``None``."""
        for entry in self._attached.values():
            if entry.around is receiver:
                return entry.name, "around_forward"
            for event, method in entry.receivers.items():
                if method is getattr(receiver, "__wrapped__", receiver):
                    return entry.name, event
        return None

    def of(self, kind: type[P]) -> P:
        """The attached plugin that is a ``kind``, typed as one (for editors and mypy).

        ``learner.plugins.of(Recorder).plot_loss()`` where ``learner.plugins["recorder"]``
        is only an ``object`` to a type checker.

        :raises LookupError: no attached plugin, or more than one, is a ``kind``.
        """
        found = [a for a in self._attached.values() if isinstance(a.plugin, kind)]
        if len(found) != 1:
            which = ", ".join(a.name for a in found) or "none"
            raise LookupError(
                f"expected one attached plugin of type {kind.__name__}, found {len(found)} "
                f"({which}); read it by name instead: learner.plugins[NAME]"
            )
        return cast(P, found[0].plugin)

    def receivers(self, event: str) -> list[str]:
        """Names of the plugins that receive ``event``, in the order they run."""
        return [name for name in self._ordered() if event in self._attached[name].receivers]

    def trace(self, on: bool) -> None:
        """Log every receiver call to ``lookinside.trace`` (``LOOKINSIDE_TRACE=1``), or stop."""
        if on != self.tracing:
            self.tracing = on
            self._rebuild()

    def _rebuild(self) -> None:
        ranked = [self._attached[name] for name in self._ordered()]
        self.dispatch = {
            event: tuple(
                _traced(a.name, event, a.receivers[event]) if self.tracing else a.receivers[event]
                for a in ranked
                if event in a.receivers
            )
            for event in _events.EVENTS
        }
        self.around = tuple(a.around for a in ranked if a.around is not None)

    def __repr__(self) -> str:
        shown = ", ".join(f"{a}" for a in self._ordered()) or "none"
        return f"<PluginBus: {shown}>"


def _traced(name: str, event: str, receiver: Receiver) -> Receiver:
    """``receiver``, logging each call as ``  NAME.EVENT``."""

    def traced(learner: Any) -> None:
        trace_log.debug("  %s.%s", name, event)
        receiver(learner)

    traced.__wrapped__ = receiver  # type: ignore[attr-defined]
    return traced
