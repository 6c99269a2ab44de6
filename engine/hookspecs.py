"""The pluggy hooks of lookinside: how a plugin module plugs in.

Hooks wire things up once, when the plugin manager loads a module; what happens
during training travels on the event bus (:mod:`engine.events`), not here.

A plugin module is found through the ``lookinside.plugins`` entry-point group::

    [options.entry_points]
    lookinside.plugins =
        gradnorm = lookinside_gradnorm.plugin

and implements one or more of the hooks below, marked with :data:`hookimpl`::

    from engine import hookimpl

    @hookimpl
    def lookinside_register(register):
        register(GradNorm)

An implementation may accept a subset of a hook's arguments, so adding an argument
to a hook later does not break existing plugins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.data import DataBunch
    from engine.options import Option

PROJECT = "lookinside"
"""The pluggy project name; hooks are prefixed ``lookinside_``."""

ENTRY_POINT_GROUP = "lookinside.plugins"
"""The entry-point group scanned for plugin modules, built-in ones included."""

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function of this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin module's function as the implementation of a hook."""


class Register(Protocol):
    """The ``register`` a :func:`lookinside_register` implementation is called with."""

    def __call__(
        self,
        factory: Callable[..., object],
        *,
        name: str | None = None,
        default: bool = False,
        options: list[Option] | None = None,
        doc: str | None = None,
    ) -> None: ...


class RegisterDataset(Protocol):
    """The ``register`` a :func:`lookinside_datasets` implementation is called with."""

    def __call__(
        self, name: str, loader: Callable[..., DataBunch], doc: str | None = None
    ) -> None: ...


@hookspec
def lookinside_register(register: Register) -> None:
    """Declare the training plugins this module provides.

    Called once for each loaded plugin module, right after it is loaded, with a
    ``register`` bound to that module's entry point. Call it once per plugin::

        register(factory, *, name=None, default=False, options=None, doc=None)

    ``factory`` is a plugin class (or any callable returning a plugin object)
    whose keyword arguments are the plugin's options. The plugin's name is
    ``name``, else the class's own ``name`` attribute, else the entry point's
    name; a plugin object attached from Python (``Learner(plugins=[obj])``) gets
    the same one (its ``name`` attribute, else the name its class is registered
    under), so checkpoints and options find it either way. ``default=True`` enables the plugin unless the user turns
    it off with ``-p no:NAME``. ``options`` is a list of
    :class:`engine.options.Option`; when left out, the options are read from the
    factory's signature (names, annotated types, defaults) and its docstring's
    ``:param name:`` lines. ``doc`` defaults to the first line of the factory's
    docstring.

    Results are not collected; registering the same name twice, from one
    distribution or two, is an error naming both.

    :param register: the registration function bound to this module.
    """


@hookspec
def lookinside_datasets(register: RegisterDataset) -> None:
    """Declare datasets for ``lookinside fit --data NAME``.

    Called once for each loaded plugin module. Call
    ``register(name, loader, doc=None)`` where ``loader(**kwargs)`` returns an
    :class:`engine.data.DataBunch`; the keyword arguments it receives are
    ``bs``, ``seed``, ``data_dir``, ``data_path`` and ``download``, and it may
    accept any subset of them.

    The built-in datasets are registered here too (:mod:`engine.datasets`), and
    their names are reserved: a plugin registering one is reported and left out.
    Two plugins registering one name are reported naming both, and neither is
    loaded.

    :param register: the registration function.
    """


@hookspec
def lookinside_commands(commands: Any) -> None:
    """Add subcommands to the ``lookinside`` command line.

    Called once, when the command line is parsed, for every loaded plugin module.
    ``commands`` is the ``argparse`` sub-parsers object: add a parser with
    ``commands.add_parser(NAME, help=...)`` and give it ``set_defaults(run=FUNC)``;
    ``FUNC(args)`` returns the exit status. Raise
    :class:`engine.exceptions.LookinsideError` for bad input: the CLI prints it
    on one line and exits with status 2.

    :param commands: the sub-parsers of the ``lookinside`` parser.
    """
