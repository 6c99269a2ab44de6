"""Turn what the user asked for (names, options, objects) into plugin objects.

The same rules serve Python and the CLI:

- the catalogue's default plugins are enabled unless ``defaults=False``; the
  required ones (``train_eval``) always are;
- ``"NAME"`` or ``"NAME:key=value,..."`` enables a plugin, options converted to
  their declared types; asking twice merges the options, the later winning;
- ``"no:NAME"`` turns a plugin off (a required one cannot be);
- ``("NAME", {"key": value})`` enables a plugin with Python values;
- a plugin object is attached as it is; a plugin class is created with no
  arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.exceptions import PluginError
from engine.manager import Catalog
from engine.manager import PluginSpec
from engine.options import REQUIRED
from engine.options import convert
from engine.options import parse_plugin_arg

PluginRequest = Any
"""A str, a ``(name, options)`` pair, a plugin object or a plugin class."""


@dataclass
class Enabled:
    """A catalogued plugin chosen for a learner, with the options it will get."""

    spec: PluginSpec
    options: dict[str, Any]

    def create(self) -> object:
        """Call the factory with the options; bad values become a PluginError."""
        for option in self.spec.options:
            if option.default is REQUIRED and option.name not in self.options:
                raise PluginError(
                    f"plugin {self.spec.name!r} needs option {option.name!r} "
                    f"({option.type_name}): -p {self.spec.name}:{option.name}=VALUE"
                )
        try:
            return self.spec.factory(**self.options)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"plugin {self.spec.name!r}: {exc}") from exc


def select(
    catalog: Catalog, requests: Iterable[PluginRequest] = (), defaults: bool = True
) -> tuple[list[Enabled], list[object]]:
    """Resolve requests against the catalogue.

    :returns: the catalogued plugins to create, in the catalogue's order, and the
        plugin objects given directly, in the order given.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for name in catalog.defaults if defaults else []:
        chosen[name] = {}
    for spec in catalog.plugins.values():
        if spec.required:
            chosen.setdefault(spec.name, {})
    objects: list[object] = []
    for request in requests:
        if isinstance(request, str) and request.startswith("no:"):
            _turn_off(catalog, request[3:].strip(), chosen)
        elif isinstance(request, str):
            name, raw = parse_plugin_arg(request)
            spec = catalog.get(name)
            options = {key: convert(name, spec.option(key), value) for key, value in raw.items()}
            chosen.setdefault(name, {}).update(options)
        elif isinstance(request, tuple) and len(request) == 2 and isinstance(request[0], str):
            name, given = request
            spec = catalog.get(name)
            if not isinstance(given, dict):
                raise PluginError(f"plugin {name!r}: options must be a dict, got {given!r}")
            options = {key: convert(name, spec.option(key), value) for key, value in given.items()}
            chosen.setdefault(name, {}).update(options)
        elif isinstance(request, type):
            objects.append(request())
        else:
            objects.append(request)
    ordered = [name for name in catalog.plugins if name in chosen]
    return [Enabled(catalog.plugins[name], chosen[name]) for name in ordered], objects


def _turn_off(catalog: Catalog, name: str, chosen: dict[str, dict[str, Any]]) -> None:
    if name in catalog.plugins:
        if catalog.plugins[name].required:
            raise PluginError(
                f"plugin {name!r} is required by the training loop and cannot be turned off"
            )
        chosen.pop(name, None)
    elif name not in catalog.unloaded and name not in catalog.broken:
        catalog.get(name)  # raises: unknown plugin, with the closest match
