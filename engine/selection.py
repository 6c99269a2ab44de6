"""Turn what the user asked for (names, options, objects) into plugin objects.

The same rules serve Python and the CLI:

- the catalogue's default plugins are enabled unless ``defaults=False``; the
  required ones (``train_eval``) always are;
- ``"NAME"`` or ``"NAME:key=value,..."`` enables a plugin, options converted to
  their declared types; asking twice merges the options, the later winning;
- ``"no:NAME"`` turns a plugin off (a required one cannot be);
- ``("NAME", {"key": value})`` enables a plugin with Python values;
- a plugin object is attached as it is; a plugin class is created with no
  arguments;
- ``"package.module:Class"`` (a dotted module, a colon, a class name, no ``=``)
  imports the module and creates the class with no arguments, like a plugin
  class given in Python: a local plugin, used without packaging it. It is not
  catalogued, so it takes no options (``NAME:key=value`` always has an ``=``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from engine._checks import did_you_mean
from engine._checks import in_plugin
from engine.config import Config
from engine.exceptions import PluginError
from engine.exceptions import PluginTypeError
from engine.exceptions import PluginValueError
from engine.manager import Catalog
from engine.manager import PluginSpec
from engine.options import REQUIRED
from engine.options import convert
from engine.options import parse_plugin_arg

PluginRequest = Any
"""A str, a ``(name, options)`` pair, a plugin object or a plugin class."""

_LOCAL_CLASS = re.compile(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+):([A-Za-z_]\w*)\s*$")
"""``package.module:Class``: a dotted module before the colon, an identifier after it."""


def local_plugin_class(request: str) -> type | None:
    """The class ``package.module:Class`` names, imported; ``None`` for any other request.

    :raises PluginError: the module cannot be imported, or has no such class.
    """
    match = _LOCAL_CLASS.match(request)
    if match is None:
        return None
    module_name, class_name = match.groups()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PluginError(
            f"-p {request.strip()!r}: cannot import module {module_name!r} ({exc}); is it on "
            "sys.path (the current folder, PYTHONPATH)?"
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        classes = [name for name, value in vars(module).items() if isinstance(value, type)]
        raise PluginError(
            f"-p {request.strip()!r}: module {module_name!r} has no class {class_name!r}"
            f"{did_you_mean(class_name, classes)}"
        )
    return cls


@dataclass
class Enabled:
    """A catalogued plugin chosen for a learner, with the options it will get."""

    spec: PluginSpec
    options: dict[str, Any]
    source: str = "default"
    """Where the plugin was enabled: ``default``, ``required``, a config file, ``-p``..."""
    option_sources: dict[str, str] = field(default_factory=dict)
    """Where each option given came from."""

    def create(self) -> object:
        """Call the factory with the options, naming the plugin in the errors it raises.

        This is the one place a plugin's errors get its name: a ``ValueError`` or
        ``TypeError`` from the factory (a check of :mod:`engine._checks`, say)
        comes out as a :class:`PluginValueError` or :class:`PluginTypeError`,
        still a ``ValueError`` or ``TypeError`` and also a :class:`PluginError`,
        with ``plugin 'NAME': `` in front of the same text, chained to the original.

        :raises PluginError: an option the plugin needs was not given.
        :raises PluginValueError: the factory raised a ``ValueError``.
        :raises PluginTypeError: the factory raised a ``TypeError``.
        """
        name = self.spec.name
        for option in self.spec.options:
            if option.default is REQUIRED and option.name not in self.options:
                raise PluginError(
                    f"plugin {name!r} needs option {option.name!r} "
                    f"({option.type_name}): -p {name}:{option.name}=VALUE"
                )
        try:
            return self.spec.factory(**self.options)
        except ValueError as exc:
            raise PluginValueError(in_plugin(name, str(exc))) from exc
        except TypeError as exc:
            raise PluginTypeError(in_plugin(name, str(exc))) from exc


def select(
    catalog: Catalog,
    requests: Iterable[PluginRequest] = (),
    defaults: bool = True,
    config: Config | None = None,
    source: str = "python",
) -> tuple[list[Enabled], list[object]]:
    """Resolve requests against the catalogue: defaults, then the config file, then ``requests``.

    :param config: a config file's requests, applied before ``requests`` (which win).
    :param source: how ``requests`` are labelled in ``lookinside plugins``.
    :returns: the catalogued plugins to create, in the catalogue's order, and the
        plugin objects given directly, in the order given.
    """
    chosen: dict[str, Enabled] = {}
    for name in catalog.defaults if defaults else []:
        spec = catalog.plugins[name]
        chosen[name] = Enabled(spec, {}, "required" if spec.required else "default")
    for spec in catalog.plugins.values():
        if spec.required and spec.name not in chosen:
            chosen[spec.name] = Enabled(spec, {}, "required")
    objects: list[object] = []
    if config is not None and config.path is not None:
        try:
            _apply(catalog, config.requests(), chosen, objects, config.label)
        except PluginError as exc:
            raise PluginError(f"{config.path}: {exc}") from exc
    _apply(catalog, requests, chosen, objects, source)
    ordered = [name for name in catalog.plugins if name in chosen]
    return [chosen[name] for name in ordered], objects


def _apply(
    catalog: Catalog,
    requests: Iterable[PluginRequest],
    chosen: dict[str, Enabled],
    objects: list[object],
    source: str,
) -> None:
    for request in requests:
        if isinstance(request, str) and request.startswith("no:"):
            _turn_off(catalog, request[3:].strip(), chosen)
            continue
        local = local_plugin_class(request) if isinstance(request, str) else None
        if local is not None:
            objects.append(local())
            continue
        if isinstance(request, str):
            name, given = parse_plugin_arg(request)
        elif isinstance(request, tuple) and len(request) == 2 and isinstance(request[0], str):
            name, given = request
            if not isinstance(given, dict):
                raise PluginError(in_plugin(name, f"options must be a dict, got {given!r}"))
        elif isinstance(request, type):
            objects.append(request())
            continue
        else:
            objects.append(request)
            continue
        spec = catalog.get(name)
        options = {key: convert(name, spec.option(key), value) for key, value in given.items()}
        if name not in chosen:
            chosen[name] = Enabled(spec, {}, source)
        enabled = chosen[name]
        if not given and enabled.source in ("default", "required"):
            enabled.source = f"{enabled.source}, {source}"
        enabled.options.update(options)
        enabled.option_sources.update(dict.fromkeys(options, source))


def _turn_off(catalog: Catalog, name: str, chosen: dict[str, Enabled]) -> None:
    if name in catalog.plugins:
        if catalog.plugins[name].required:
            raise PluginError(
                f"plugin {name!r} is required by the training loop and cannot be turned off"
            )
        chosen.pop(name, None)
    elif name not in catalog.unloaded and name not in catalog.broken:
        catalog.get(name)  # raises: unknown plugin, with the closest match
