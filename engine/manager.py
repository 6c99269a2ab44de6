"""The plugin door: load plugin modules through entry points and catalogue them.

Built-in plugins and third-party ones come through the same door, the
``lookinside.plugins`` entry-point group. :func:`make_plugin_manager` builds a
pluggy manager (never at import time) and :func:`load_catalog` turns what it
loaded into a :class:`Catalog`: every plugin's name, factory, options and origin,
every dataset, and every module that failed to load, with its error.

The built-in datasets come through the door too (the ``datasets`` entry point,
:mod:`engine.datasets`), and their names are reserved: a third-party dataset
that takes one is reported in :attr:`Catalog.broken_datasets`, naming both
distributions, and the built-in one stays. Built-in plugin names are reserved
the same way (the third party's plugin is listed in :attr:`Catalog.broken`), and
so are the built-in command names (:mod:`engine.cli`).

A module is checked before it is registered: a ``lookinside_*`` function that
is no hook (``lookinside_registr``), or a hook function left without
``@hookimpl``, makes it broken, with the closest hook name. A plugin class is
checked when it is registered: a method named like an event (``begin_*``,
``after_*``, ``before_*``) that is none (``after_stp``) makes it broken, with the
closest event name, as attaching it from Python does (:func:`engine.bus.event_methods`).

Environment variables:

``LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD=1``
    Third-party entry points are not imported unless named (``-p NAME`` or
    ``plugins=["NAME"]``). The built-in plugins of the ``lookinside``
    distribution always load.
``LOOKINSIDE_PLUGINS=a,b``
    An allow-list: only the third-party entry points named, or those of the
    distributions named (``lookinside-weightwatch``), are loaded (built-in ones
    always are); naming another one is an error saying so. Empty: none. A name
    that is no entry point, plugin or distribution gets a warning.
``LOOKINSIDE_TRACE=1``
    Log every hook call (and every event sent, see :mod:`engine.bus`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from types import ModuleType
from typing import Any

import pluggy

from engine import hookspecs
from engine._checks import did_you_mean
from engine.bus import check_event_names
from engine.bus import trace_log
from engine.events import EVENTS
from engine.exceptions import DataError
from engine.exceptions import PluginError
from engine.exceptions import PluginValidationError
from engine.options import Option
from engine.options import options_from_factory

BUILTIN_DISTRIBUTION = "lookinside"
"""Entry points of this distribution load even when autoload is disabled."""

REQUIRED_PLUGINS: tuple[str, ...] = ()
"""Plugins the loop needs; they are always enabled and cannot be turned off."""

RESERVED_FIX = "the built-in one is kept, the other left out (built-in names are reserved)"
"""How a clash with a built-in name ends, in the messages that name both."""

HOOKS: tuple[str, ...] = tuple(name for name in vars(hookspecs) if name.startswith("lookinside_"))
"""The names of the hooks a plugin module may implement."""


def tracing() -> bool:
    """Whether ``LOOKINSIDE_TRACE`` asks for a log of hooks and events."""
    if os.environ.get("LOOKINSIDE_TRACE", "").strip().lower() in ("", "0", "false", "no"):
        return False
    if not trace_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        trace_log.addHandler(handler)
    trace_log.setLevel(logging.DEBUG)
    return True


def allow_list() -> frozenset[str] | None:
    """The names in ``LOOKINSIDE_PLUGINS``, or ``None`` when it is not set."""
    value = os.environ.get("LOOKINSIDE_PLUGINS")
    if value is None:
        return None
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def autoload_enabled() -> bool:
    """False when ``LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD`` is set to a true value."""
    value = os.environ.get("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "").strip().lower()
    return value in ("", "0", "false", "no")


@dataclass
class Origin:
    """Where a plugin module came from."""

    entry_point: str
    """``name = module`` as written in the distribution's metadata."""
    distribution: str
    """The distribution's name; ``"(local)"`` for modules added by hand."""
    version: str


@dataclass
class PluginSpec:
    """One plugin as the catalogue knows it, before it is created."""

    name: str
    factory: Callable[..., Any]
    origin: Origin
    default: bool = False
    options: list[Option] = field(default_factory=list)
    doc: str = ""

    @property
    def required(self) -> bool:
        """Whether the loop needs this plugin (it cannot be turned off)."""
        return self.name in REQUIRED_PLUGINS and self.origin.distribution == BUILTIN_DISTRIBUTION

    @property
    def order(self) -> int | None:
        """The factory's ``order`` attribute, when it is a class that has one."""
        order = getattr(self.factory, "order", None)
        return order if isinstance(order, int) else None

    @property
    def events(self) -> list[str]:
        """The events the plugin subscribes to, when its factory is a class."""
        if not isinstance(self.factory, type):
            return []
        return [name for name in EVENTS if callable(getattr(self.factory, name, None))]

    def option(self, name: str) -> Option:
        """The option called ``name``; an error lists the plugin's options."""
        for option in self.options:
            if option.name == name:
                return option
        known = ", ".join(o.name for o in self.options) or "none"
        hint = did_you_mean(name, [o.name for o in self.options])
        raise PluginError(
            f"plugin {self.name!r} has no option {name!r}{hint}; its options: {known}"
        )


@dataclass
class BrokenPlugin:
    """A plugin module that failed to load or register."""

    name: str
    origin: Origin
    error: str

    def as_error(self) -> PluginError:
        return PluginError(
            f"plugin {self.name!r} (entry point '{self.origin.entry_point}' of "
            f"distribution {self.origin.distribution} {self.origin.version}) failed "
            f"to load: {self.error}"
        )


@dataclass
class DatasetSpec:
    """A dataset for ``--data NAME``."""

    name: str
    loader: Callable[..., Any]
    doc: str
    origin: Origin


@dataclass
class BrokenDataset:
    """A dataset name two distributions register; a built-in one keeps its name."""

    name: str
    origin: Origin
    """The registration left out: the later one, or the third party's against a built-in."""
    error: str

    def as_error(self) -> DataError:
        return DataError(f"dataset {self.name!r} cannot be loaded: {self.error}")


@dataclass
class Catalog:
    """Every plugin the manager loaded, by name, and those that broke."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginSpec] = field(default_factory=dict)
    broken: dict[str, BrokenPlugin] = field(default_factory=dict)
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    broken_datasets: dict[str, BrokenDataset] = field(default_factory=dict)
    """Dataset names registered twice; a built-in name is still in :attr:`datasets`."""
    unloaded: dict[str, importlib.metadata.EntryPoint] = field(default_factory=dict)
    """Third-party entry points not imported because autoload is off."""
    blocked: dict[str, importlib.metadata.EntryPoint] = field(default_factory=dict)
    """Third-party entry points left out by the ``LOOKINSIDE_PLUGINS`` allow-list."""
    modules: dict[str, Origin] = field(default_factory=dict)
    """Every plugin module registered with :attr:`pm`, by its name there, with its origin."""
    commands: dict[str, Origin] = field(default_factory=dict)
    """Who added each subcommand, filled in when the command line is built (:mod:`engine.cli`)."""
    broken_commands: dict[str, BrokenPlugin] = field(default_factory=dict)
    """Modules whose ``lookinside_commands`` failed or clashed, by module name."""

    def get(self, name: str) -> PluginSpec:
        """The plugin called ``name``, loading it now if autoload skipped it."""
        if name in self.plugins:
            return self.plugins[name]
        if name in self.broken:
            raise self.broken[name].as_error()
        if name in self.unloaded:
            self.load_distribution_of(name)
            if name in self.plugins or name in self.broken:
                return self.get(name)
        if self.unloaded:
            # a plugin's name may differ from its entry point's (its class's ``name``):
            # only importing tells, so the rest is loaded before the name is called unknown
            for entry_point in list(self.unloaded):
                self.load_distribution_of(entry_point)
            return self.get(name)
        if name in self.blocked:
            dist_name = _distribution(self.blocked[name])[0]
            raise PluginError(
                f"plugin {name!r} is installed but not in LOOKINSIDE_PLUGINS "
                f"({os.environ.get('LOOKINSIDE_PLUGINS', '')!r}); add it, or its "
                f"distribution {dist_name}, there to use it"
            )
        available = sorted(self.plugins) + sorted(self.unloaded)
        hint = did_you_mean(name, available)
        raise PluginError(
            f"unknown plugin {name!r}{hint}; available: {', '.join(available) or 'none'} "
            "(`lookinside plugins` lists them)"
        )

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset called ``name``; an error lists the datasets there are.

        :raises DataError: no dataset has that name, or two distributions claim it.
        """
        if isinstance(name, str) and name in self.datasets:
            return self.datasets[name]
        if isinstance(name, str) and name in self.broken_datasets:
            raise self.broken_datasets[name].as_error()
        available = ", ".join(sorted(self.datasets)) or "none"
        raise DataError(
            f"unknown dataset {name!r}{did_you_mean(name, self.datasets)}; "
            f"available datasets: {available}"
        )

    def load_distribution_of(self, name: str) -> None:
        """Load the entry point ``name`` that autoload skipped, and every other entry
        point of its distribution: naming one plugin of a package (``-p NAME``) brings
        the package's datasets and commands too. Nothing happens for other names.

        :param name: an entry point's name (a plugin's, usually).
        """
        if name not in self.unloaded:
            return
        dist_name = _distribution(self.unloaded[name])[0]
        for other, ep in list(self.unloaded.items()):
            if _distribution(ep)[0] == dist_name:
                del self.unloaded[other]
                _load_entry_point(self, ep)

    @property
    def defaults(self) -> list[str]:
        """Names of the plugins enabled unless turned off."""
        return [spec.name for spec in self.plugins.values() if spec.default or spec.required]

    def name_of(self, plugin: object) -> str | None:
        """The name a plugin object's class is registered under, if it is registered."""
        cls = type(plugin)
        return next((spec.name for spec in self.plugins.values() if spec.factory is cls), None)

    def add_module(self, module: ModuleType, name: str | None = None) -> None:
        """Load a plugin module by hand (not through an entry point)."""
        plugin_name = name or module.__name__.rpartition(".")[2]
        origin = Origin(f"{plugin_name} = {module.__name__}", "(local)", "")
        _register_module(self, module, plugin_name, origin)


def make_plugin_manager() -> pluggy.PluginManager:
    """A fresh pluggy manager for project ``lookinside`` with its hookspecs added."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if tracing():

        def before(hook_name: str, impls: Any, kwargs: Any) -> None:
            trace_log.debug("hook %s -> %s", hook_name, [impl.plugin_name for impl in impls])

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
            trace_log.debug("hook %s done", hook_name)

        pm.add_hookcall_monitoring(before, after)
    return pm


def load_catalog(
    autoload: bool | None = None,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> Catalog:
    """Load the plugin modules of the ``lookinside.plugins`` group and catalogue them.

    A module that fails to import or register is recorded in ``catalog.broken``
    and never stops the others.

    :param autoload: load third-party entry points now; defaults to the
        ``LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD`` switch. When off they are loaded on
        first use by name (:meth:`Catalog.get`, with the rest of their
        distribution), except those ``LOOKINSIDE_PLUGINS`` names (by entry point or
        distribution), which are loaded now.
    :param entry_points: the entry points to use instead of the installed ones
        (for tests).
    """
    if autoload is None:
        autoload = autoload_enabled()
    catalog = Catalog(make_plugin_manager())
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    # built-ins first, so that they hold their names whatever order the entry points come in
    ordered = sorted(entry_points, key=lambda ep: _distribution(ep)[0] != BUILTIN_DISTRIBUTION)
    allowed = allow_list()
    for ep in ordered:
        dist_name = _distribution(ep)[0]
        if dist_name == BUILTIN_DISTRIBUTION:
            _load_entry_point(catalog, ep)
        elif allowed is not None and ep.name not in allowed and dist_name not in allowed:
            catalog.blocked.setdefault(ep.name, ep)
        elif autoload or allowed is not None:
            # named in LOOKINSIDE_PLUGINS: loaded even with autoload off, as pytest
            # loads PYTEST_PLUGINS (its commands and datasets must exist at once)
            _load_entry_point(catalog, ep)
        else:
            catalog.unloaded.setdefault(ep.name, ep)
    if allowed:
        _warn_unmatched(allowed, ordered, catalog)
    return catalog


def _warn_unmatched(
    allowed: frozenset[str], entry_points: list[importlib.metadata.EntryPoint], catalog: Catalog
) -> None:
    """Warn about the ``LOOKINSIDE_PLUGINS`` names that match no entry point, plugin or dist."""
    known = {ep.name for ep in entry_points} | {_distribution(ep)[0] for ep in entry_points}
    known |= set(catalog.plugins)
    for name in sorted(allowed - known):
        warnings.warn(
            f"LOOKINSIDE_PLUGINS names {name!r}, which is no installed plugin, entry point "
            f"or distribution{did_you_mean(name, known)}; it is ignored",
            stacklevel=3,
        )


def _distribution(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "(unknown)", ""
    return _name_and_version(dist)


@functools.lru_cache(maxsize=128)
def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    """A distribution's name and version, read once per distribution object: every
    ``dist.metadata`` (and ``dist.version``) parses the metadata file again, and
    loading the catalogue asks for each entry point's three times."""
    return dist.metadata["Name"] or "(unknown)", dist.version or ""


def _load_entry_point(catalog: Catalog, ep: importlib.metadata.EntryPoint) -> None:
    dist_name, version = _distribution(ep)
    origin = Origin(f"{ep.name} = {ep.value}", dist_name, version)
    taken = (
        catalog.modules.get(ep.name) or catalog.plugins.get(ep.name) or catalog.broken.get(ep.name)
    )
    if taken is not None:
        other = taken if isinstance(taken, Origin) else taken.origin
        if (other.distribution, other.entry_point) == (dist_name, origin.entry_point):
            return  # the same entry point seen twice (e.g. a dist on sys.path twice)
        if other.distribution == BUILTIN_DISTRIBUTION:
            error = clash("plugin", ep.name, other, origin, RESERVED_FIX)
        else:
            error = clash("plugin", ep.name, other, origin)
            catalog.plugins.pop(ep.name, None)
        catalog.broken[ep.name] = BrokenPlugin(ep.name, origin, error)
        return
    try:
        module = ep.load()
    except Exception as exc:  # noqa: BLE001 -- any import-time error: report it, never crash
        catalog.broken[ep.name] = BrokenPlugin(ep.name, origin, f"{type(exc).__name__}: {exc}")
        return
    _register_module(catalog, module, ep.name, origin)


def clash(
    kind: str, name: str, first: Origin, second: Origin, fix: str = "uninstall one of them"
) -> str:
    """The message for a ``kind`` name two distributions register, naming both, and the fix."""
    return (
        f"two distributions register the {kind} name {name!r}: {first.distribution} "
        f"({first.entry_point}) and {second.distribution} ({second.entry_point}); {fix}"
    )


def _claim(
    kind: str,
    spec: PluginSpec | DatasetSpec,
    table: dict[str, Any],
    broken: dict[str, Any],
    broken_type: type[BrokenPlugin] | type[BrokenDataset],
    only_clashes: bool,
) -> None:
    """Catalogue ``spec`` in ``table`` under its name; when the name is taken, record
    the clash in ``broken``, naming both origins.

    A built-in keeps its name whichever distribution loads first; between two third
    parties neither wins.

    :param kind: ``plugin`` or ``dataset``, for the message.
    :param only_clashes: ``broken`` holds nothing but clashes, so a name found there
        was fought over already and a third claimant does not win it either (datasets;
        ``Catalog.broken`` also holds modules that failed to load, whose error must stay).
    """
    name = spec.name
    taken = table.get(name)
    previous = taken if taken is not None or not only_clashes else broken.get(name)
    if previous is None:
        table[name] = spec
        return
    first: Origin = previous.origin
    if taken is not None and first.distribution == BUILTIN_DISTRIBUTION:
        kept, left_out = taken, spec.origin
    elif spec.origin.distribution == BUILTIN_DISTRIBUTION:
        kept, left_out = spec, first
    else:
        table.pop(name, None)
        broken[name] = broken_type(name, spec.origin, clash(kind, name, first, spec.origin))
        return
    table[name] = kept
    broken[name] = broken_type(
        name, left_out, clash(kind, name, kept.origin, left_out, RESERVED_FIX)
    )


def call_own_hook(pm: pluggy.PluginManager, module: object, hook: str, **kwargs: Any) -> None:
    """Call ``module``'s implementation of ``hook`` alone, none of the other modules'.

    So that what one module registers (or raises) is known to be its own.
    """
    others = [plugin for plugin in pm.get_plugins() if plugin is not module]
    pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)


def check_hook_names(pm: pluggy.PluginManager, module: object, name: str) -> None:
    """Refuse a module whose ``lookinside_*`` functions are no hook or lack ``@hookimpl``.

    pluggy passes both over in silence: ``lookinside_registr`` would be an
    unknown hook, and a hook function without the marker is never called.

    :param pm: the manager the module is about to be registered with.
    :param module: the plugin module.
    :param name: its name, for the message.
    :raises PluginValidationError: naming the function and the closest hook.
    """
    for attr in sorted(vars(module) if hasattr(module, "__dict__") else ()):
        function = getattr(module, attr, None)
        if not attr.startswith("lookinside_") or not inspect.isfunction(function):
            continue
        if attr not in HOOKS:
            raise PluginValidationError(
                f"plugin module {name!r}: function {attr!r} is no hook"
                f"{did_you_mean(attr, HOOKS)}; hooks: {', '.join(HOOKS)}"
            )
        if pm.parse_hookimpl_opts(module, attr) is None:
            raise PluginValidationError(
                f"plugin module {name!r}: function {attr!r} is not marked with @hookimpl, "
                "so it would never be called; add '@hookimpl' (from engine import hookimpl) "
                "above it"
            )


def _name_attribute(factory: Any) -> str | None:
    """A plugin class's own ``name`` attribute, if it has a usable one."""
    name = getattr(factory, "name", None) if isinstance(factory, type) else None
    return name if isinstance(name, str) and name else None


def _register_module(catalog: Catalog, module: Any, name: str, origin: Origin) -> None:
    pm = catalog.pm
    try:
        check_hook_names(pm, module, name)
        pm.register(module, name=name)
    except Exception as exc:  # noqa: BLE001 -- pluggy validation: bad hookimpl signatures etc.
        catalog.broken[name] = BrokenPlugin(name, origin, f"{type(exc).__name__}: {exc}")
        return
    registered: list[PluginSpec] = []

    def register(
        factory: Callable[..., Any],
        *,
        name: str | None = None,
        default: bool = False,
        options: list[Option] | None = None,
        doc: str | None = None,
    ) -> None:
        plugin_name = name or _name_attribute(factory) or origin.entry_point.partition(" = ")[0]
        if not callable(factory):
            raise PluginError(
                f"plugin {plugin_name!r}: register() expects a plugin class or factory, "
                f"got {factory!r}"
            )
        if isinstance(factory, type):
            check_event_names(factory, plugin_name)
        if isinstance(factory, type) and not any(
            callable(getattr(factory, e, None)) for e in EVENTS
        ):
            raise PluginError(
                f"plugin {plugin_name!r}: class {factory.__name__} has no event methods; "
                "define at least one, e.g. 'def after_epoch(self, learner)' (events: "
                f"{', '.join(EVENTS)})"
            )
        summary = doc or (inspect.getdoc(factory) or "").partition("\n")[0]
        registered.append(
            PluginSpec(
                plugin_name,
                factory,
                origin,
                default=default,
                options=options_from_factory(factory) if options is None else options,
                doc=summary,
            )
        )

    datasets: list[DatasetSpec] = []

    def register_dataset(name: str, loader: Callable[..., Any], doc: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"register() expects a dataset name (a str), got {name!r}")
        if not callable(loader):
            raise PluginError(
                f"dataset {name!r}: register() expects a loader returning a DataBunch, "
                f"got {loader!r}"
            )
        summary = doc or (inspect.getdoc(loader) or "").partition("\n")[0]
        datasets.append(DatasetSpec(name, loader, summary, origin))

    try:
        call_own_hook(pm, module, "lookinside_register", register=register)
        call_own_hook(pm, module, "lookinside_datasets", register=register_dataset)
    except Exception as exc:  # noqa: BLE001 -- a plugin's own hook failed: report it
        pm.unregister(module)
        catalog.broken[name] = BrokenPlugin(name, origin, f"{type(exc).__name__}: {exc}")
        return
    catalog.modules[name] = origin
    for spec in registered:
        _claim("plugin", spec, catalog.plugins, catalog.broken, BrokenPlugin, only_clashes=False)
    for dataset in datasets:
        _claim(
            "dataset",
            dataset,
            catalog.datasets,
            catalog.broken_datasets,
            BrokenDataset,
            only_clashes=True,
        )
