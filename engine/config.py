"""The config file: which plugins to enable, and their options.

Found from the current directory upward: the first folder holding a
``lookinside.toml`` or a ``pyproject.toml`` with a ``[tool.lookinside]`` table
wins (``lookinside.toml`` first when a folder has both)::

    # lookinside.toml                    # pyproject.toml
    plugins = ["early_stopping",         [tool.lookinside]
               "no:progress"]            plugins = ["early_stopping"]

    [early_stopping]                     [tool.lookinside.early_stopping]
    patience = 3                         patience = 3

Each table is named after a plugin and holds its options; naming a plugin's table
enables it too. The command line (``-p``) and Python's ``plugins=[...]`` come
after the file, so they win: defaults < file < command line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from engine.exceptions import LookinsideError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_NAME = "lookinside.toml"
"""The config file's own name."""


class ConfigError(LookinsideError):
    """The config file cannot be read or holds something unexpected."""


@dataclass
class Config:
    """What a config file asks for."""

    path: Path | None = None
    """The file, or ``None`` when no file was found."""
    plugins: list[str] = field(default_factory=list)
    """``plugins = [...]``: names, ``NAME:key=value`` and ``no:NAME`` as on the CLI."""
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-plugin option tables."""

    @property
    def label(self) -> str:
        """How ``lookinside plugins`` names this source."""
        return str(self.path) if self.path else "no config file"

    def requests(self) -> Iterator[Any]:
        """The file's plugin requests, in the form :func:`engine.selection.select` takes.

        The option tables come first: a table enables its plugin, and then the
        ``plugins`` list has the last word, so ``"no:NAME"`` there turns it off.
        """
        yield from self.options.items()
        yield from self.plugins


def find_config(start: str | Path | None = None) -> Path | None:
    """The nearest ``lookinside.toml`` or ``pyproject.toml`` with ``[tool.lookinside]``."""
    folder = Path(start or Path.cwd()).resolve()
    for candidate in (folder, *folder.parents):
        own = candidate / CONFIG_NAME
        if own.is_file():
            return own
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and "lookinside" in _read(pyproject).get("tool", {}):
            return pyproject
    return None


def load_config(path: str | Path | None = None, start: str | Path | None = None) -> Config:
    """Read ``path``, or the file :func:`find_config` finds; an empty Config if none."""
    found = Path(path) if path is not None else find_config(start)
    if found is None:
        return Config()
    table = _read(found)
    if found.name == "pyproject.toml":
        table = table.get("tool", {}).get("lookinside", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{found}: [tool.lookinside] should be a table")
    config = Config(path=found)
    for key, value in table.items():
        if key == "plugins":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(
                    f"{found}: 'plugins' should be a list of names such as "
                    f'["early_stopping", "no:progress"], got {value!r}'
                )
            config.plugins = list(value)
        elif isinstance(value, dict):
            config.options[key] = dict(value)
        else:
            raise ConfigError(
                f"{found}: unexpected key {key!r} = {value!r}; expected 'plugins = [...]' "
                f"or a table [{key}] of plugin options"
            )
    return config


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            table: dict[str, Any] = tomllib.load(handle)
            return table
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
