"""Test a plugin: a hermetic learner, the command line in-process, a module as if installed.

For the tests of a plugin package (``lookinside new-plugin`` writes tests that use
this module), and for lookinside's own::

    from engine.testing import make_learner, run_cli, tiny_data

    import my_plugin

    def test_logs_its_column():
        learner = make_learner(["my_plugin"], modules=[my_plugin])
        learner.fit(2)
        assert "my_column" in learner.log

    def test_from_the_command_line():
        result = run_cli(["fit", "--epochs", "1", "-p", "my_plugin"], modules=[my_plugin])
        assert result.exit_code == 0, result.err
        assert "my_column" in result.out

**Hermetic** means: no config file is read (``lookinside.toml`` in the working
folder changes nothing), the ``LOOKINSIDE_*`` environment variables are cleared
while the learner is made and the command runs, and no installed third-party
plugin package is loaded unless asked for (``installed=True``): only the
built-ins and the modules given, registered as if installed (their
``lookinside_register``, ``lookinside_datasets`` and ``lookinside_commands``
hooks run, under the module's last dotted name, or the name given). By default
the learner has no default plugins (``defaults=False``): only what the test names,
so that what it asserts does not depend on other plugins.

What is *not* isolated: torch's global random state (seed it in the test) and
the threads torch uses.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from engine.manager import BUILTIN_DISTRIBUTION
from engine.manager import Catalog
from engine.manager import load_catalog

ENV_PREFIX = "LOOKINSIDE_"
"""Environment variables with this prefix are cleared while a hermetic learner or
command is made (``LOOKINSIDE_PLUGINS``, ``LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD``...)."""

ModuleLike = ModuleType | str | tuple[str, ModuleType | str]
"""A plugin module: the module, its dotted name, or ``(name, module)`` to register
it under another name."""


@contextlib.contextmanager
def hermetic_env(env: dict[str, str] | None = None) -> Iterator[None]:
    """Within this block, no ``LOOKINSIDE_*`` variable is set, except those in ``env``.

    The environment is put back as it was afterwards, whatever happens.

    :param env: variables to set for the block (``{"LOOKINSIDE_TRACE": "1"}``).
    """
    saved = {key: value for key, value in os.environ.items() if key.startswith(ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    extra = dict(env or {})
    overwritten = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, old in overwritten.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def catalog_with(modules: Iterable[ModuleLike] = (), *, installed: bool = False) -> Catalog:
    """The built-in plugins, and ``modules`` registered as if installed.

    :param modules: plugin modules (objects, dotted names, or ``(name, module)``).
    :param installed: also load the installed third-party plugin packages.
    """
    with hermetic_env():
        entry_points = None if installed else _builtin_entry_points()
        catalog = load_catalog(autoload=installed, entry_points=entry_points)
        for item in modules:
            name, module = item if isinstance(item, tuple) else (None, item)
            if isinstance(module, str):
                module = importlib.import_module(module)
            catalog.add_module(module, name)
    return catalog


def _builtin_entry_points() -> list[importlib.metadata.EntryPoint]:
    from engine import hookspecs

    found = importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    return [ep for ep in found if ep.dist is not None and ep.dist.name == BUILTIN_DISTRIBUTION]


def tiny_data(
    n_train: int = 32,
    n_valid: int = 16,
    *,
    features: int = 4,
    classes: int = 2,
    image: bool = False,
    bs: int = 8,
    seed: int = 0,
) -> DataBunch:
    """Small, learnable classification data made on the spot (nothing is read or fetched).

    The label is the index of the largest of the first ``classes`` features (or of
    the first ``classes`` pixels' rows), so a model can learn it.

    :param n_train: training samples.
    :param n_valid: validation samples (0 for no validation loader).
    :param features: features per sample (flat data) or the image side (``image=True``).
    :param classes: the number of classes (at most ``features``).
    :param image: images ``(1, features, features)`` instead of flat vectors.
    :param bs: the batch size.
    :param seed: the seed of the data and of the loader's shuffling.
    """
    if not 2 <= classes <= features:
        raise ValueError(f"classes should be between 2 and features ({features}), got {classes}")
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_valid
    if image:
        x = torch.randn(n, 1, features, features, generator=gen)
        y = x[:, 0, :classes, :].mean(dim=2).argmax(dim=1)
    else:
        x = torch.randn(n, features, generator=gen)
        y = x[:, :classes].argmax(dim=1)
    x_valid, y_valid = (x[n_train:], y[n_train:]) if n_valid else (None, None)
    return DataBunch.from_tensors(x[:n_train], y[:n_train], x_valid, y_valid, bs=bs, seed=seed)


def tiny_model(data: DataBunch | None = None, seed: int = 0) -> nn.Module:
    """A small model for ``data`` (:func:`tiny_data`'s by default): a linear layer on
    flat features, a small convolution, ReLU and linear head on images.

    :param data: the data it must fit (its ``input_shape``, else its first batch's
        shape, and ``data.c``).
    :param seed: the seed of the initial weights; torch's global random state is
        left as it was.
    """
    data = data if data is not None else tiny_data()
    shape = data.input_shape or tuple(next(iter(data.train_dl))[0].shape[1:])
    classes = data.c or 2
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left alone
        torch.manual_seed(seed)
        if len(shape) == 1:
            return nn.Linear(shape[0], classes)
        return nn.Sequential(
            nn.Conv2d(shape[0], 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, classes),
        )


def make_learner(
    plugins: Iterable[Any] = (),
    *,
    model: nn.Module | None = None,
    data: DataBunch | None = None,
    modules: Iterable[ModuleLike] = (),
    installed: bool = False,
    defaults: bool = False,
    **kwargs: Any,
) -> Learner:
    """A :class:`~engine.learner.Learner` that depends on nothing but its arguments.

    :param plugins: as ``Learner``'s: names (``"my_plugin:every=2"``), ``(name,
        options)`` pairs, objects or classes.
    :param model: the model; :func:`tiny_model` for the data by default.
    :param data: the data; :func:`tiny_data` by default.
    :param modules: plugin modules to register as if installed (:func:`catalog_with`).
    :param installed: also load the installed third-party plugin packages.
    :param defaults: attach the built-in default plugins (metrics, recorder,
        progress...) as well.
    :param kwargs: passed on to ``Learner`` (``lr``, ``loss_func``, ``out_dir``...).
    """
    data = data if data is not None else tiny_data()
    model = model if model is not None else tiny_model(data)
    catalog = catalog_with(modules, installed=installed)
    with hermetic_env():
        return Learner(
            model,
            data,
            plugins=list(plugins),
            defaults=defaults,
            catalog=catalog,
            config=False,
            **kwargs,
        )


@dataclass
class CliResult:
    """What :func:`run_cli` saw: the exit status and the two output streams."""

    exit_code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        """``out`` as lines, for assertions on rows."""
        return self.out.splitlines()


def run_cli(
    argv: Sequence[str],
    *,
    modules: Iterable[ModuleLike] = (),
    installed: bool = False,
    env: dict[str, str] | None = None,
) -> CliResult:
    """Run ``lookinside ARGV...`` in this process and return its exit status and output.

    Hermetic like :func:`make_learner`, except that the built-in default plugins
    are on as on the real command line. Argument errors (exit status 2 with
    argparse's message) and ``--help`` (status 0) are returned, not raised.

    :param argv: the arguments after ``lookinside``, e.g. ``["fit", "--epochs", "1"]``.
    :param modules: plugin modules to register as if installed.
    :param installed: also load the installed third-party plugin packages.
    :param env: ``LOOKINSIDE_*`` variables to set for the run.
    """
    from engine.cli import main

    catalog = catalog_with(modules, installed=installed)
    out, err = io.StringIO(), io.StringIO()
    with hermetic_env(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv), catalog=catalog, config=False)
        except SystemExit as exc:  # argparse: --help, or a usage error
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                err.write(exc.code + "\n")
    return CliResult(code, out.getvalue(), err.getvalue())
