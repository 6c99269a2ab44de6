"""Attach plugins to a learner: check them, then keep their receivers in run order.

A plugin is any object whose methods are named after events
(``def after_loss(self, learner) -> None``); it subscribes to exactly the events
it implements. Optional attributes: ``order`` (an int, lower runs first, default
0; see :mod:`engine.order`), ``event_order`` (a dict giving some events an order
of their own: ``{"begin_fit": order.RESUME}`` restores a checkpoint before any
other plugin's ``begin_fit``, while the plugin's other receivers keep ``order``)
and ``name`` (defaults to the class name in snake_case).

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
from engine.notebook import html_table

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
    options: Mapping[str, Any]
    source: str
    event_order: Mapping[str, int]


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

    def _ordered(self, event: str | None = None) -> list[str]:
        """The plugins' names in run order: for ``event``, with its ``event_order``."""

        def rank(a: _Attached) -> tuple[int, int]:
            return (a.event_order.get(event, a.order) if event else a.order, a.index)

        return [a.name for a in sorted(self._attached.values(), key=rank)]

    def add(
        self,
        plugin: object,
        name: str | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        source: str = "python",
    ) -> object:
        """Check ``plugin`` and add its receivers; returns the plugin.

        :param plugin: the plugin object.
        :param name: its name on this bus; by default :func:`plugin_name`.
        :param options: the options it was made with, for the listing (:meth:`table`).
        :param source: where it was enabled (``default``, ``-p``, a config file...),
            for the listing; ``python`` for an object attached from code.
        """
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
        event_order = _event_order(plugin, name, receivers)
        self._counter += 1
        self._attached[name] = _Attached(
            name,
            plugin,
            order,
            self._counter,
            receivers,
            around,
            dict(options or {}),
            source,
            event_order,
        )
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
        return [name for name in self._ordered(event) if event in self._attached[name].receivers]

    def trace(self, on: bool) -> None:
        """Log every receiver call to ``lookinside.trace`` (``LOOKINSIDE_TRACE=1``), or stop."""
        if on != self.tracing:
            self.tracing = on
            self._rebuild()

    def _rebuild(self) -> None:
        dispatch = {}
        for event in _events.EVENTS:
            ranked = [self._attached[name] for name in self.receivers(event)]
            dispatch[event] = tuple(
                _traced(a.name, event, a.receivers[event]) if self.tracing else a.receivers[event]
                for a in ranked
            )
        self.dispatch = dispatch
        ordered = [self._attached[name] for name in self._ordered()]
        self.around = tuple(a.around for a in ordered if a.around is not None)

    def rows(self) -> list[dict[str, str]]:
        """One row per plugin, in run order: name, order, where it was enabled, the
        options it was made with, and the events it receives."""
        rows = []
        for name in self._ordered():
            a = self._attached[name]
            options = ", ".join(f"{key}={value!r}" for key, value in a.options.items())
            events = [e for e in _events.EVENTS if e in a.receivers]
            if a.around is not None:
                events.append("around_forward")
            rows.append(
                {
                    "plugin": name,
                    "order": str(a.order) + "".join(f", {e} {o}" for e, o in a.event_order.items()),
                    "enabled by": a.source,
                    "options": options or "-",
                    "events": ", ".join(events) or "-",
                }
            )
        return rows

    def table(self) -> str:
        """:meth:`rows` as a plain-text table (what ``repr`` shows)."""
        rows = self.rows()
        if not rows:
            return "no plugins attached"
        keys = list(rows[0])
        widths = [max(len(key), *(len(row[key]) for row in rows)) for key in keys[:-1]]
        lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)) + "  " + keys[-1]]
        for row in rows:
            cells = [row[k].ljust(w) for k, w in zip(keys, widths)]
            lines.append("  ".join(cells) + "  " + row[keys[-1]])
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = self.rows()
        if not rows:
            return "<p>no plugins attached</p>"
        cells = [list(row.values()) for row in rows]
        return html_table(list(rows[0]), cells, lambda column, cell: "text-align:left")

    def __repr__(self) -> str:
        count = f"{len(self)} plugin" + ("" if len(self) == 1 else "s")
        return f"{count}, in run order:\n{self.table()}"


def _event_order(plugin: object, name: str, receivers: Mapping[str, Any]) -> dict[str, int]:
    """The plugin's ``event_order``, checked: events it receives, int orders."""
    found = getattr(plugin, "event_order", None)
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise PluginValidationError(
            f"plugin {name!r}: 'event_order' should be a dict of event -> order "
            f"(e.g. {{'begin_fit': -100}}), got {found!r}"
        )
    for event, value in found.items():
        if event not in receivers:
            raise PluginValidationError(
                f"plugin {name!r}: 'event_order' names {event!r}, which is no event it "
                f"receives{did_you_mean(str(event), list(receivers))}; it receives: "
                f"{', '.join(receivers) or 'none'}"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise PluginValidationError(
                f"plugin {name!r}: 'event_order' for {event!r} must be an int, got {value!r}"
            )
    return dict(found)


def _traced(name: str, event: str, receiver: Receiver) -> Receiver:
    """``receiver``, logging each call as ``  NAME.EVENT``."""

    def traced(learner: Any) -> None:
        trace_log.debug("  %s.%s", name, event)
        receiver(learner)

    traced.__wrapped__ = receiver  # type: ignore[attr-defined]
    return traced
