"""The learner's state: what a run needs to go on exactly, in one dict, and back.

:func:`state_dict` gathers it and :func:`load_state_dict` puts it back, like a
module's ``state_dict``/``load_state_dict`` in torch. The dict holds:

- ``epoch`` (int), ``n_iter`` (int) and ``n_epochs`` (float): the counters, which
  schedules read;
- ``lr`` (float): the learning rate an optimizer is created with;
- ``optimizer``: the optimizer's ``state_dict()`` (its hyper-parameters too), or
  ``None`` when the learner has none yet; ``optimizer_class``: its class name;
- ``rng``: the global random-number states (:func:`engine.random_state.capture_rng`);
- ``loaders``: ``{"train": [...], "valid": [...]}``, the state of each
  ``torch.Generator`` the loader shuffles with (:func:`loader_generators`);
- ``model``: the model's ``state_dict()`` (left out with ``model=False``);
- ``plugins``: ``{name: plugin.state_dict()}`` for each attached plugin with the
  state protocol (:class:`Stateful`), in run order (left out with ``plugins=False``).

Everything in it can be written with ``torch.save`` and read back with
``torch.load(path, weights_only=True)``, provided the plugins' states hold only
tensors, dicts, lists, tuples, str, int, float, bool and None. As in torch, the
tensors are the live ones, not copies: save the dict, or ``copy.deepcopy`` it,
to keep a snapshot while training goes on.

Not held: gradients and train/eval modes, and what a fit sets for the pass and
batch in progress (:data:`FIT_ATTRIBUTES`).

>>> import copy
>>> import torch
>>> from engine import DataBunch, Learner
>>> x, y = torch.randn(8, 3), torch.tensor([0, 1] * 4)
>>> learner = Learner(torch.nn.Linear(3, 2), DataBunch.from_tensors(x, y, bs=4), defaults=False)
>>> learner.fit(1)
>>> saved = copy.deepcopy(state_dict(learner))
>>> learner.fit(3)
>>> load_state_dict(learner, saved)  # what could not be restored: nothing
[]
>>> learner.n_iter
2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import Protocol
from typing import TypeGuard

from engine.exceptions import LookinsideError
from engine.random_state import capture_rng
from engine.random_state import restore_rng

if TYPE_CHECKING:
    import torch

    from engine.learner import Learner

REQUIRED: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "n_iter": (int,),
    "n_epochs": (int, float),
    "lr": (int, float),
    "optimizer": (dict, type(None)),
    "optimizer_class": (str, type(None)),
    "rng": (dict,),
    "loaders": (dict,),
}
"""The keys every learner state has, with the types their values must have."""

OPTIONAL: dict[str, tuple[type, ...]] = {"model": (dict,), "plugins": (dict,)}
"""The keys a state may leave out (``model=False``, ``plugins=False``); loading
a state without one leaves that part of the learner as it is."""

FIT_ATTRIBUTES: tuple[str, ...] = (
    "epochs", "iters", "iter", "in_train", "dl", "xb", "yb", "pred", "loss", "log", "error",
    "cancelled", "resuming",
)  # fmt: skip
"""What a fit sets on the learner besides its state: the pass and batch in progress,
the epoch's log and how the fit ended. They are never saved (they hold loaders,
batches and exceptions); code that must leave a learner as it found it around a
fit of its own (:func:`plugins.lr_finder.lr_find`) keeps them aside."""


class StateError(LookinsideError, ValueError):
    """A learner state lacks keys, or does not fit the learner it is loaded into.

    Raised before anything is changed. Both a :class:`~engine.exceptions.LookinsideError`
    (the CLI prints it on one line) and a ``ValueError`` (it is bad input).
    """


class Stateful(Protocol):
    """The state protocol of plugins: what they implement to be saved and resumed.

    ``state_dict`` returns values ``torch.load(weights_only=True)`` can read;
    ``load_state_dict`` takes such a dict back, before the next fit (a resumed
    fit keeps it instead of starting afresh).
    """

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def state_dict(learner: Learner, *, model: bool = True, plugins: bool = True) -> dict[str, Any]:
    """The learner's state, as the module's docstring lists it.

    :param learner: the learner whose state to take.
    :param model: include the model's ``state_dict()`` under ``model``.
    :param plugins: include the attached plugins' states under ``plugins``.
    """
    opt = learner.opt
    state: dict[str, Any] = {
        "epoch": learner.epoch,
        "n_iter": learner.n_iter,
        "n_epochs": float(learner.n_epochs),
        "lr": float(learner.lr),
        "optimizer": opt.state_dict() if opt is not None else None,
        "optimizer_class": type(opt).__name__ if opt is not None else None,
        "rng": capture_rng(),
        "loaders": {
            key: [generator.get_state() for generator in loader_generators(loader)]
            for key, loader in _loaders(learner)
        },
    }
    if model:
        state["model"] = learner.model.state_dict()
    if plugins:
        state["plugins"] = plugin_states(learner)
    return state


def load_state_dict(
    learner: Learner, state: Mapping[str, Any], *, strict: bool = True
) -> list[str]:
    """Put a state from :func:`state_dict` back into ``learner``.

    Everything is checked before anything changes: the keys and their types,
    the model's keys and shapes, the optimizer's class and parameter groups
    and, with ``strict``, that the state has one entry per stateful plugin and
    per loader generator. A learner without an optimizer gets one
    (``learner.create_opt()``) when the state holds an optimizer's state. The
    optimizer's param-group dicts stay the same objects (a schedule may hold
    them); they get the saved values. Keys of ``state`` not listed in the
    module's docstring are ignored, so a checkpoint, which adds its own, loads
    as it is.

    :param learner: the learner to restore.
    :param state: what :func:`state_dict` returned, possibly saved and loaded.
    :param strict: refuse a state whose plugins or loader generators differ from
        the learner's; when false, skip those parts and report them.
    :returns: what was not restored, in words (CUDA generators of another number
        of devices, and what ``strict=False`` skipped); empty when everything was.
    :raises StateError: the state lacks keys or does not fit; the learner is
        unchanged. (A plugin's own ``load_state_dict`` may raise too, later.)
    """
    check_layout(state)
    if "model" in state:
        check_model(learner.model, state["model"])
    opt, created = learner.opt, False
    if opt is None and state["optimizer"] is not None:
        opt, created = learner.create_opt(), True
    try:
        check_optimizer(opt, state)
        skipped = _differences(learner, state, strict)
    except StateError:
        if created:
            learner.opt = None
        raise
    # from here on nothing is refused
    if "model" in state:
        learner.model.load_state_dict(state["model"])
    if opt is not None and state["optimizer"] is not None:
        _load_optimizer(opt, state["optimizer"])
    elif opt is not None:
        skipped.append("the optimizer's state (the state holds none)")
    learner.epoch = state["epoch"]
    learner.n_iter = state["n_iter"]
    learner.n_epochs = float(state["n_epochs"])
    learner.lr = float(state["lr"])
    skipped += restore_rng(state["rng"])
    for key, loader in _loaders(learner):
        generators = loader_generators(loader)
        saved = state["loaders"].get(key, [])
        if len(saved) == len(generators):
            for generator, generator_state in zip(generators, saved):
                generator.set_state(generator_state)
    for name, plugin_state in state.get("plugins", {}).items():
        plugin = learner.plugins.get(name)
        if has_state(plugin):
            plugin.load_state_dict(plugin_state)
    return skipped


def plugin_states(learner: Learner) -> dict[str, Any]:
    """``{name: plugin.state_dict()}`` for each attached :class:`Stateful` plugin, in run order.

    :param learner: the learner whose plugins to ask.
    """
    return {name: plugin.state_dict() for name, plugin in _stateful(learner)}


def has_state(plugin: object) -> TypeGuard[Stateful]:
    """Whether ``plugin`` implements the state protocol (:class:`Stateful`).

    :param plugin: an attached plugin (a plugin class is not: its methods are unbound).
    """
    return (
        not isinstance(plugin, type)
        and callable(getattr(plugin, "state_dict", None))
        and callable(getattr(plugin, "load_state_dict", None))
    )


def loader_generators(loader: object) -> list[torch.Generator]:
    """The ``torch.Generator`` objects a loader shuffles with, each once, in a fixed order.

    Looked up in ``loader.generator`` (:class:`~engine.data.TensorLoader`, and
    ``torch.utils.data.DataLoader`` built with ``generator=``), then in its
    ``sampler``, ``batch_sampler`` and the batch sampler's ``sampler``. A loader
    with none shuffles with the global torch generator, which ``rng`` holds.

    :param loader: a data loader, or ``None``.
    """
    import torch

    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = (
        loader,
        getattr(loader, "sampler", None),
        batch_sampler,
        getattr(batch_sampler, "sampler", None),
    )
    found: list[torch.Generator] = []
    for owner in owners:
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def check_layout(state: object) -> None:
    """Check that ``state`` has the keys of a learner state, with values of the right types.

    :param state: what to check.
    :raises StateError: a key is missing or a value has another type.
    """
    import torch

    if not isinstance(state, Mapping):
        raise StateError(
            "cannot load the learner state: expected a dict from "
            f"engine.learner_state.state_dict, got {type(state).__name__}"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise StateError(
            f"cannot load the learner state: {_listed(missing)} missing; expected the keys "
            f"{_listed(REQUIRED)} (and optionally {_listed(OPTIONAL)}), got {_listed(state)}"
        )
    types = {**REQUIRED, **OPTIONAL}
    for key, expected in types.items():
        if key not in state:
            continue
        value = state[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            raise StateError(
                f"cannot load the learner state: {key!r} should be {names}, got "
                f"{type(value).__name__}"
            )
    for key, saved in state["loaders"].items():
        if not isinstance(saved, list) or not all(isinstance(s, torch.Tensor) for s in saved):
            raise StateError(
                f"cannot load the learner state: loaders[{key!r}] should be a list of "
                f"generator states (tensors), got {saved!r:.80}"
            )


def check_model(model: torch.nn.Module, saved: Mapping[str, Any]) -> None:
    """Check that a saved model ``state_dict`` has the model's keys and shapes.

    :param model: the model to load into.
    :param saved: the saved ``state_dict``.
    :raises StateError: keys are missing or unexpected, or a shape differs.
    """
    import torch

    mine = model.state_dict()
    missing = [key for key in mine if key not in saved]
    unexpected = [key for key in saved if key not in mine]
    if missing or unexpected:
        raise StateError(
            f"the learner state does not fit this model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}; build the model the state was saved from"
        )
    for key, value in mine.items():
        other = saved[key]
        if isinstance(value, torch.Tensor) and (
            not isinstance(other, torch.Tensor) or other.shape != value.shape
        ):
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else other
            raise StateError(
                f"the learner state does not fit this model: {key!r} has shape "
                f"{tuple(value.shape)} in the model, {shape} in the state"
            )


def check_optimizer(opt: torch.optim.Optimizer | None, state: Mapping[str, Any]) -> None:
    """Check that the saved optimizer state is of ``opt``'s class, with its parameter groups.

    :param opt: the optimizer to load into (``None``: nothing to check).
    :param state: the learner state.
    :raises StateError: the class or the sizes of the parameter groups differ.
    """
    saved = state["optimizer"]
    if opt is None or saved is None:
        return
    saved_class = state["optimizer_class"]
    if saved_class not in (None, type(opt).__name__):
        raise StateError(
            f"the learner state holds the state of a {saved_class} optimizer but this "
            f"learner uses {type(opt).__name__}; use the same opt_func"
        )
    sizes = [len(group["params"]) for group in opt.param_groups]
    saved_sizes = [len(group.get("params", ())) for group in saved.get("param_groups", ())]
    if sizes != saved_sizes:
        raise StateError(
            f"the learner state does not fit this optimizer: expected parameter groups of "
            f"sizes {sizes} (this learner's), got {saved_sizes}; use the same model and "
            "parameter groups"
        )


def _differences(learner: Learner, state: Mapping[str, Any], strict: bool) -> list[str]:
    """What of the state has no counterpart here (plugins, loader generators), in words.

    :raises StateError: there is a difference and ``strict`` is true.
    """
    differences: list[str] = []
    for key, loader in _loaders(learner):
        here = len(loader_generators(loader))
        saved = len(state["loaders"].get(key, []))
        if saved != here:
            differences.append(
                f"the {key} loader's shuffling ({saved} generator state(s) saved, {here} "
                "generator(s) here)"
            )
    if "plugins" in state:
        here_plugins = [name for name, _ in _stateful(learner)]
        for name in state["plugins"]:
            if name not in learner.plugins:
                differences.append(f"the state of plugin {name!r} (no such plugin is attached)")
            elif name not in here_plugins:
                differences.append(
                    f"the state of plugin {name!r} (the attached one has no load_state_dict)"
                )
        for name in here_plugins:
            if name not in state["plugins"]:
                differences.append(f"the state of plugin {name!r} (none was saved)")
    if differences and strict:
        raise StateError(
            f"the learner state does not fit this learner: {'; '.join(differences)}. "
            "Attach the same plugins and build the loaders as when it was saved, or load "
            "it with strict=False to skip these parts"
        )
    return differences


def _stateful(learner: Learner) -> list[tuple[str, Stateful]]:
    """The attached plugins with the state protocol, by name, in run order."""
    return [(name, plugin) for name, plugin in learner.plugins.items() if has_state(plugin)]


def _load_optimizer(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    # load_state_dict makes new param-group dicts; plugins that set
    # hyper-parameters (schedules) hold the old ones, so those are kept
    groups = opt.param_groups
    opt.load_state_dict(saved)
    for mine, loaded in zip(groups, opt.param_groups):
        mine.update(loaded)
    opt.param_groups = groups


def _loaders(learner: Learner) -> list[tuple[str, object]]:
    data = learner.data
    return [("train", data.train_dl), ("valid", data.valid_dl)]


def _listed(keys: Any) -> str:
    return ", ".join(repr(key) for key in keys)
