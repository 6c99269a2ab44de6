"""``lookinside new-plugin NAME [DIR]``: write a plugin package that installs and tests green.

The package holds a ``setup.cfg`` with the ``lookinside.plugins`` entry point and
the range of lookinside releases it works with (:func:`engine.version.compatible_range`),
a ``pyproject.toml`` naming the build system, a README, the plugin module and
tests written with :mod:`engine.testing`. As generated, ``pip install .`` then ``python -m pytest tests`` passes, and
``lookinside fit -p NAME`` uses the plugin.

The names of the built-in plugins, plugin modules, datasets and commands are
reserved (a package taking one would be left out once installed), so they are
refused here.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.exceptions import LookinsideError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64", "wheel"]
build-backend = "setuptools.build_meta"
"""

_SETUP_CFG = """\
[metadata]
name = {dist}
version = 0.1.0
description = A lookinside plugin: {name}
long_description = file: README.md
long_description_content_type = text/markdown

[options]
py_modules = {module}
python_requires = >=3.10
install_requires =
    lookinside{requirement}

[options.entry_points]
lookinside.plugins =
    {name} = {module}

[tool:pytest]
testpaths = tests
"""

_README = """\
# {dist}

A [lookinside](https://pypi.org/project/lookinside/) plugin.

    pip install .
    lookinside plugins              # lists {name}, its events and options
    lookinside fit -p {name}        # uses it
    lookinside fit -p {name}:every=2
    python -m pytest tests

Edit `{module}.py`: methods named after events (`begin_fit`, `after_batch`,
`after_epoch`, ...) receive the learner; `__init__`'s keyword arguments are the
options (`-p {name}:key=value`), documented by the docstring's `:param:` lines.
"""

_MODULE = '''\
"""{name}: a lookinside plugin."""

from __future__ import annotations

from typing import Any

from engine import Register
from engine import hookimpl
from engine import order


class {cls}:
    """Count the training batches of each epoch and report them in the epoch's log.

    :param every: report every N epochs.
    """

    name = "{name}"
    order = order.PROGRESS - 5  # before progress prints the epoch's log, so the count shows
    log_keys = ("{name}_batches",)  # what it writes into learner.log: monitors are checked

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every should be at least 1, got {{every}}")
        self.every = every
        self.batches = 0

    def begin_epoch(self, learner: Any) -> None:
        self.batches = 0

    def after_batch(self, learner: Any) -> None:
        if learner.in_train:
            self.batches += 1

    def after_epoch(self, learner: Any) -> None:
        if (learner.epoch + 1) % self.every == 0:
            learner.log["{name}_batches"] = self.batches


@hookimpl
def lookinside_register(register: Register) -> None:
    register({cls})
'''

_TEST = '''\
"""Tests of the {name} plugin, with lookinside's test helpers (engine.testing)."""

from __future__ import annotations

import pytest

import {module}
from engine.manager import load_catalog
from engine.testing import make_learner
from engine.testing import run_cli
from {module} import {cls}


def test_counts_training_batches_per_epoch() -> None:
    # a hermetic learner: tiny data (32 samples, bs 8: 4 batches), no config file, no
    # other plugin; the module is registered as if installed, so its name works
    learner = make_learner(["{name}"], modules=[{module}])
    learner.fit(2)
    plugin = learner.plugins["{name}"]
    assert isinstance(plugin, {cls}) and plugin.batches == 4
    assert learner.log["{name}_batches"] == 4


def test_a_bad_option_is_refused_with_the_plugins_name() -> None:
    with pytest.raises(ValueError, match="plugin '{name}': every should be at least 1"):
        make_learner(["{name}:every=0"], modules=[{module}])


def test_from_the_command_line() -> None:
    result = run_cli(["fit", "--epochs", "1", "-p", "{name}"], modules=[{module}])
    assert result.exit_code == 0, result.err
    assert "{name}_batches" in result.lines[0].split()  # the epoch table's header


def test_is_installed_as_a_lookinside_plugin() -> None:
    spec = load_catalog().plugins["{name}"]
    assert spec.origin.distribution == "{dist}"
    assert [option.name for option in spec.options] == ["every"]
'''


def _builtin_use(name: str) -> str | None:
    """What built-in thing is called ``name`` (a command also as ``new-plugin``), or ``None``."""
    from engine.cli import build_parser
    from engine.manager import BUILTIN_DISTRIBUTION
    from engine.manager import load_catalog

    catalog = load_catalog(autoload=False)
    build_parser(catalog)
    kinds = {
        "plugin": {n: s.origin for n, s in catalog.plugins.items()},
        "plugin module": catalog.modules,
        "dataset": {n: d.origin for n, d in catalog.datasets.items()},
        "command": catalog.commands,
    }
    for kind, origins in kinds.items():
        for candidate in (name, name.replace("_", "-")):
            origin = origins.get(candidate)
            if origin is not None and origin.distribution == BUILTIN_DISTRIBUTION:
                return f"{kind} ({origin.entry_point})" if kind != "command" else kind
    return None


def new_plugin(name: str, directory: str | Path = ".") -> Path:
    """Write the package ``lookinside-NAME`` into ``directory``; returns its folder.

    :raises LookinsideError: the name is not a lowercase identifier, is a
        built-in name, or the folder exists already (nothing is overwritten).
    """
    if not _NAME.match(name):
        raise LookinsideError(
            f"plugin name {name!r} should be a lowercase identifier such as 'grad_watch' "
            "(letters, digits, underscores; starting with a letter)"
        )
    builtin = _builtin_use(name)
    if builtin is not None:
        raise LookinsideError(
            f"{name!r} is the name of a built-in {builtin} and built-in names are reserved; "
            "choose another name"
        )
    dist = "lookinside-" + name.replace("_", "-")
    module = "lookinside_" + name
    cls = "".join(part.capitalize() for part in name.split("_"))
    root = Path(directory) / dist
    if root.exists():
        raise LookinsideError(f"{root} exists already; choose another name or folder")
    from engine.version import compatible_range

    values = {
        "name": name,
        "dist": dist,
        "module": module,
        "cls": cls,
        "requirement": compatible_range(),
    }
    files = {
        "pyproject.toml": _PYPROJECT,
        "setup.cfg": _SETUP_CFG,
        "README.md": _README,
        f"{module}.py": _MODULE,
        f"tests/test_{name}.py": _TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return root
