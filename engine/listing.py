"""Text for ``lookinside plugins``: what is installed, and the loop it makes."""

from __future__ import annotations

import re
from collections.abc import Iterable

from engine.bus import PluginBus
from engine.config import Config
from engine.manager import Catalog
from engine.manager import PluginSpec
from engine.options import REQUIRED
from engine.selection import Enabled
from engine.selection import PluginRequest
from engine.selection import select
from engine.training_loop import TrainingLoop

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(doc: str) -> str:
    """A docstring's reST markup as a terminal shows it: ``x`` and :class:`~a.b.X` as x and X.

    >>> plain_text("Raise ``CancelTrainException``; see :class:`~engine.learner.Learner`.")
    'Raise CancelTrainException; see Learner.'
    """
    text = _ROLE.sub(
        lambda m: m.group(1).rpartition(".")[2] if "~" in m.group(0) else m.group(1), doc
    )
    return _LITERAL.sub(r"\1", text)


def _status(spec: PluginSpec, enabled: dict[str, Enabled]) -> str:
    if spec.name in enabled:
        return f"on: {enabled[spec.name].source}"
    return "off (on by default)" if spec.default else "off"


def _format_default(value: object) -> str:
    if value is REQUIRED:
        return "REQUIRED"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def describe_plugins(
    catalog: Catalog,
    requests: Iterable[PluginRequest] = (),
    defaults: bool = True,
    config: Config | None = None,
    source: str = "-p",
) -> str:
    """Every catalogued plugin: status and where it came from, origin, order, events, options."""
    chosen, _ = select(catalog, requests, defaults, config, source)
    enabled = {item.spec.name: item for item in chosen}
    lines: list[str] = []
    if config is not None and config.path is not None:
        lines += [f"config file: {config.path}", ""]
    specs = sorted(catalog.plugins.values(), key=lambda s: (s.order or 0, s.name))
    for spec in specs:
        origin = spec.origin
        version = f"{origin.distribution} {origin.version}".strip()
        order = "" if spec.order is None else f", order {spec.order}"
        lines.append(f"{spec.name}  [{_status(spec, enabled)}]  {version}{order}")
        if spec.doc:
            lines.append(f"    {plain_text(spec.doc)}")
        lines.append(f"    events: {', '.join(spec.events) or '(decided when created)'}")
        item = enabled.get(spec.name)
        for option in spec.options:
            help_text = f"  {plain_text(option.help)}" if option.help else ""
            lines.append(
                f"    -p {spec.name}:{option.name}=  ({option.type_name}; default "
                f"{_format_default(option.default)}){help_text}"
            )
            if item is not None and option.name in item.options:
                value = _format_default(item.options[option.name])
                lines.append(f"        = {value}  (from {item.option_sources[option.name]})")
    if catalog.unloaded:
        lines.append("")
        lines.append("Not loaded (LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD is set; load with -p NAME):")
        for name, ep in sorted(catalog.unloaded.items()):
            lines.append(f"  {name}  ({ep.value})")
    if catalog.blocked:
        lines.append("")
        lines.append("Not loaded (not in the LOOKINSIDE_PLUGINS allow-list):")
        for name, ep in sorted(catalog.blocked.items()):
            lines.append(f"  {name}  ({ep.value})")
    sections = (
        ("Broken plugins (they failed to load; everything else works):", catalog.broken),
        (
            "Commands left out (their lookinside_commands failed; other commands work):",
            catalog.broken_commands,
        ),
    )
    for title, failures in sections:
        if not failures:
            continue
        lines.append("")
        lines.append(title)
        for broken in failures.values():
            origin = broken.origin
            lines.append(
                f"  {broken.name}  [{origin.distribution} {origin.version}, entry point "
                f"'{origin.entry_point}']"
            )
            lines.append(f"    {broken.error}")
    if catalog.broken_datasets:
        lines.append("")
        lines.append("Dataset names registered twice (--data NAME):")
        for dataset in catalog.broken_datasets.values():
            lines.append(f"  {dataset.name}  {dataset.error}")
    return "\n".join(lines)


def training_loop(enabled: list[Enabled], objects: Iterable[object] = ()) -> str:
    """For each event, the plugins that receive it, in the order they run: the
    plugins attached as a learner would attach them (:class:`~engine.bus.PluginBus`)."""
    bus = PluginBus()
    for item in enabled:
        bus.add(item.create(), item.spec.name)
    for plugin in objects:
        bus.add(plugin)
    return str(TrainingLoop.of(bus))
