"""Fits that borrow a plugin: the one-cycle policy and the learning-rate finder.

The engine never imports a plugin: plugins plug into it (:mod:`engine.manager`).
So these recipes reach the ``schedule`` and ``lr_find`` plugins the way every
other user does, by name through the learner's catalogue: :func:`fit_one_cycle`
creates the ``schedule`` plugin from a schedule expression (the syntax of
``-p schedule:lr=...``), and :func:`lr_find` calls the ``lr_find`` function of
the module that registered the ``lr_find`` plugin. Either fails with a
:class:`~engine.exceptions.PluginError` naming the plugin when it is not
installed, blocked or broken.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import torch

from engine._checks import number
from engine.exceptions import PluginError
from engine.manager import PluginSpec
from engine.manager import load_catalog
from engine.selection import Enabled

if TYPE_CHECKING:
    from engine.learner import Learner

SCHEDULED = ("lr", "momentum", "betas")
"""The param-group keys a one-cycle fit schedules (``betas``: Adam's momentum), put back after it."""


def plugin_spec(learner: Learner, name: str, needed_by: str) -> PluginSpec:
    """The catalogue's plugin called ``name``; the catalogue is loaded on first use.

    :param learner: the learner whose catalogue to look in (loaded and kept there
        when the learner was made without one).
    :param name: the plugin's name.
    :param needed_by: what needs it, for the error.
    :raises PluginError: no usable plugin has that name.
    """
    if learner.catalog is None:
        learner.catalog = load_catalog()
    try:
        return learner.catalog.get(name)
    except PluginError as exc:
        raise PluginError(f"{needed_by} needs the {name!r} plugin: {exc}") from exc


def lr_find(learner: Learner, **options: Any) -> Any:
    """Sweep the learning rate on ``learner`` with the ``lr_find`` plugin's ``lr_find``.

    :param learner: the learner to sweep; restored afterwards.
    :param options: the sweep's options (``min_lr``, ``max_lr``, ``num_it``,
        ``stop_div``, ``stop_factor``, ``beta``), as for
        :func:`plugins.lr_finder.lr_find`.
    :returns: its result, with ``.suggestions``.
    """
    spec = plugin_spec(learner, "lr_find", "learner.lr_find()")
    function = getattr(inspect.getmodule(spec.factory), "lr_find", None)
    if not callable(function):
        raise PluginError(
            f"learner.lr_find() calls the function lr_find of the module that registers the "
            f"'lr_find' plugin ({spec.origin.entry_point}), and that module has none"
        )
    return function(learner, **options)


def one_cycle_expression(lr_max: float, **options: float | Sequence[float] | None) -> str:
    """The schedule expression of a one-cycle learning rate, as the ``schedule`` plugin reads it.

    >>> one_cycle_expression(0.4, pct_start=0.3, moms=[0.95, 0.85, 0.95])
    'one_cycle(0.4, pct_start=0.3, moms=[0.95, 0.85, 0.95])'

    :param lr_max: the peak learning rate.
    :param options: ``one_cycle``'s other arguments (``div``, ``final_div``,
        ``pct_start``, ``moms``): numbers, a list of numbers, or ``None``.
    :raises TypeError: an option is not a number, a list of numbers or ``None``.
    :raises ValueError: an option's name is not a name.
    """
    parts = [_literal("lr_max", lr_max)]
    for key, value in options.items():
        if not key.isidentifier():
            raise ValueError(f"fit_one_cycle: {key!r} is not an option name")
        parts.append(f"{key}={_literal(key, value)}")
    return f"one_cycle({', '.join(parts)})"


def _literal(name: str, value: object) -> str:
    """``value`` written for the schedule parser: a number exactly, a list, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return "[" + ", ".join(_literal(name, item) for item in value) + "]"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(number(name, value, finite=True))  # repr: the float, exactly
    raise TypeError(
        f"fit_one_cycle: {name} should be a number (or, for moms, three numbers or None), "
        f"got {value!r}"
    )


def fit_one_cycle(
    learner: Learner,
    epochs: int,
    lr_max: float | None = None,
    **options: float | Sequence[float] | None,
) -> None:
    """Train ``epochs`` epochs with the lr (and momentum) following the one-cycle policy.

    The ``schedule`` plugin, attached for this fit only (removed afterwards, also
    when the fit raises), sets ``one_cycle(lr_max, **options)`` at every training
    batch; momentum (SGD's, or the first of Adam's betas) follows its companion
    schedule when the optimizer has momentum. Afterwards the optimizer's ``lr``,
    ``momentum`` and ``betas`` are put back as they were before the fit, so that a
    later ``fit()`` does not go on at the cycle's last, tiny learning rate.

    :param learner: the learner to train.
    :param epochs: the number of epochs.
    :param lr_max: the peak learning rate; by default the learner's ``lr``.
    :param options: ``one_cycle``'s other arguments: ``div``, ``final_div``,
        ``pct_start``, ``moms`` (:func:`plugins._schedules.one_cycle`).
    :raises PluginError: a schedule plugin is attached already (it would set the
        same hyper-parameters), or the ``schedule`` plugin is not available.
    :raises PluginValueError: ``one_cycle`` rejected a value (also a ``ValueError``).
    """
    spec = plugin_spec(learner, "schedule", "fit_one_cycle()")
    kind = spec.factory if isinstance(spec.factory, type) else None
    for name, plugin in learner.plugins.items():
        if name == spec.name or (kind is not None and isinstance(plugin, kind)):
            raise PluginError(
                f"fit_one_cycle() attaches a schedule for its fit, but plugin {name!r} "
                f"schedules the hyper-parameters already and the two would fight; detach it "
                f"(learner.remove_plugin({name!r})) or train with learner.fit(epochs)"
            )
    peak = learner.lr if lr_max is None else lr_max
    schedule = Enabled(
        spec, {"lr": one_cycle_expression(peak, **options)}, "fit_one_cycle"
    ).create()
    opt = learner.opt if learner.opt is not None else learner.create_opt()
    saved = [{k: _copied(group[k]) for k in SCHEDULED if k in group} for group in opt.param_groups]
    try:
        with learner.added(schedule, spec.name):
            learner.fit(epochs)
    finally:
        if learner.opt is opt:  # not replaced (a new model) during the fit
            for group, values in zip(opt.param_groups, saved):
                for key, value in values.items():
                    _put(group, key, value)


def _copied(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _put(group: dict[str, Any], key: str, value: Any) -> None:
    """Set ``group[key]``; a tensor there (a capturable optimizer's lr) keeps its identity."""
    current = group[key]
    if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor):
        current.copy_(value)
    else:
        group[key] = value
