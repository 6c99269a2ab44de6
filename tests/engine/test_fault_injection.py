"""Fault injection: an error or Ctrl-C at any event, with every built-in CPU plugin attached.

A compact version of the audit. For every event and for ``RuntimeError`` and
``KeyboardInterrupt``, an injector plugin raises at the event's first sending,
placed before, among and after the built-ins. Then the very exception comes out of
``fit``; ``learner.error`` is it; every plugin's ``after_fit`` ran once, was given
it and returned; no module hook, open file, writer thread, receiver on the global
signals, autocast or no-grad mode is left; the model is in training mode, as the
loop promises; and the next fit, of the same learner and plugins as of fresh ones,
gives the weights of a never-faulted fit, bit for bit. The same holds for a fault
inside :func:`plugins.lr_finder.lr_find`, which also puts the learner back.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from engine import Learner
from engine.data import DataBunch
from engine.events import EVENTS
from engine.events import events
from engine.exceptions import CancelEpochException
from engine.exceptions import CancelTrainException
from engine.manager import BUILTIN_DISTRIBUTION
from engine.manager import Catalog
from engine.manager import load_catalog
from engine.nn import cnn
from plugins.lr_finder import lr_find

EPOCHS = 2
SEED = 0
FAULTS = (RuntimeError, KeyboardInterrupt)
ORDERS = (-1000, 0, 1000)
"""Before every built-in, among them (after schedule, before metrics), after every one."""

NOT_ATTACHED = {"datasets", "demos", "lr_find"}
"""Built-in entry points that attach no plugin here: the datasets and the demo
command, and the LR finder, which cancels the fit (faulted through lr_find below)."""

TRIGGERS: dict[str, tuple[str, type[BaseException]]] = {
    "after_cancel_epoch": ("begin_validate", CancelEpochException),
    "after_cancel_train": ("after_epoch", CancelTrainException),
}
"""The cancellation the injector raises first, and where, so that the event it
faults is sent; ``after_cancel_batch`` needs none: grad_accumulation cancels
every other training batch."""

LR_FIND_EVENTS = (
    "begin_fit",
    "after_backward",
    "after_cancel_batch",
    "after_cancel_epoch",
    "after_cancel_train",
    "after_fit",
)
"""A sweep's start, a batch, grad_accumulation's held-back step, the finder's skipped
validation, its stop, and its end."""

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)
"""The hook registries of an ``nn.Module``."""


def requests() -> list[tuple[str, dict[str, Any]]]:
    """On top of the defaults, every built-in plugin that runs on the CPU, set up cheaply.

    ``ddp`` (a default) is idle in a single process; plots and the diagnosis, which
    take seconds, are off.
    """
    return [
        ("device", {"device": "cpu"}),
        ("progress", {"bar": False}),
        ("recorder", {"save": False}),
        ("schedule", {"lr": "cos(0.1,0.01)"}),
        ("checkpoint", {}),
        ("early_stopping", {"patience": 3, "restore_best": True}),
        ("grad_clip", {"max_norm": 1.0}),
        ("grad_accumulation", {"steps": 2}),
        ("mixed_precision", {}),
        ("terminate_on_nan", {}),
        ("activation_stats", {"grads": True, "save": False, "report": False}),
        ("tensorboard", {}),
    ]


def make_data() -> DataBunch:
    """80 flat rows of 8x8 images, which batch_transform views as such: 4 training
    batches of 16 and 1 validation batch."""
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(80, 64, generator=gen)
    y = (x[:, :32].mean(1) > x[:, 32:].mean(1)).long()
    return DataBunch.from_tensors(
        x[:64], y[:64], x[64:], y[64:], bs=16, valid_bs=16, seed=SEED, c=2, input_shape=(1, 8, 8)
    )


def make_model() -> nn.Module:
    """The lesson's CNN, small: two conv blocks for activation_stats to hook."""
    torch.manual_seed(SEED)
    return cnn(n_out=2, channels=(4, 8), n_in=1)


class AfterFitLog:
    """Wraps plugins' ``after_fit`` to record how each call ended and the
    ``learner.error`` it was given, per plugin."""

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = {}
        self.errors: dict[str, list[BaseException | None]] = {}

    def wrap(self, name: str, plugin: object) -> None:
        """Put the recording ``after_fit`` on ``plugin`` (before it is attached)."""
        inner = getattr(plugin, "after_fit", None)
        if inner is None:
            return
        calls: list[str] = []
        errors: list[BaseException | None] = []
        self.calls[name] = calls
        self.errors[name] = errors

        def after_fit(learner: Any) -> None:
            errors.append(learner.error)
            try:
                inner(learner)
            except BaseException as exc:
                calls.append(f"raised {exc!r}")
                raise
            calls.append("returned")

        plugin.after_fit = after_fit  # type: ignore[attr-defined]

    def failures(self, skipped: Collection[str] = ()) -> dict[str, list[str]]:
        """Plugins whose after_fit did not run once and return (``skipped``: not at all)."""
        expected = {name: [] if name in skipped else ["returned"] for name in self.calls}
        return {name: calls for name, calls in self.calls.items() if calls != expected[name]}

    def given(self, error: BaseException | None) -> dict[str, list[BaseException | None]]:
        """Plugins whose after_fit calls were given something other than ``error``."""
        return {name: seen for name, seen in self.errors.items() if seen not in ([error], [])}

    def clear(self) -> None:
        for name in self.calls:
            self.calls[name].clear()
            self.errors[name].clear()


def make_learner(catalog: Catalog, out_dir: Path, log: AfterFitLog | None = None) -> Learner:
    """A seeded learner with the defaults and :func:`requests`; ``log`` spies on after_fit."""
    learner = Learner(
        make_model(),
        make_data(),
        lr=0.1,
        plugins=requests(),
        catalog=catalog,
        out_dir=out_dir,
        config=False,
    )
    if log is not None:
        names = list(learner.plugins)  # in run order: they go back in that order
        plugins = [learner.remove_plugin(name) for name in names]
        for name, plugin in zip(names, plugins):
            log.wrap(name, plugin)
            learner.add_plugin(plugin, name)
    return learner


def fit(learner: Learner) -> dict[str, torch.Tensor]:
    """Fit seeded; returns a copy of the weights and buffers."""
    torch.manual_seed(SEED)
    learner.fit(EPOCHS)
    return {key: value.detach().clone() for key, value in learner.model.state_dict().items()}


class Injector:
    """Raises ``fault`` the first time ``event`` is sent; with ``trigger``, raises
    the cancellation of :data:`TRIGGERS` first, so that a cancellation event is sent."""

    name = "injector"

    def __init__(self, event: str, fault: BaseException, order: int, trigger: bool = True) -> None:
        self.order = order
        self.fault = fault
        self.fired = False
        setattr(self, event, self._raise)
        if trigger and event in TRIGGERS:
            where, cancel = TRIGGERS[event]
            setattr(self, where, lambda learner: self._cancel(cancel))

    def _cancel(self, cancel: type[BaseException]) -> None:
        if not self.fired:
            raise cancel

    def _raise(self, learner: Any) -> None:
        if not self.fired:
            self.fired = True
            raise self.fault


def hooks_left(model: nn.Module) -> list[str]:
    """Every hook registry holding something: the model's modules', its parameters', torch's."""
    left = [
        f"{name or 'model'}.{attr}"
        for name, module in model.named_modules()
        for attr in HOOK_DICTS
        if getattr(module, attr, None)
    ]
    left += [
        f"{name}._backward_hooks"
        for name, param in model.named_parameters()
        if getattr(param, "_backward_hooks", None)
    ]
    registries = vars(torch.nn.modules.module)
    left += [
        f"torch.nn.modules.module.{attr}"
        for attr, value in registries.items()
        if attr.startswith("_global_") and attr.endswith("hooks") and value
    ]
    return left


def files_open_under(folder: Path) -> list[str] | None:
    """The files under ``folder`` this process holds open; ``None`` where /proc cannot tell."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return None
    root = str(folder.resolve())
    found = []
    for fd in os.listdir(fds):
        try:
            target = os.readlink(fds / fd)
        except OSError:
            continue  # the listing's own descriptor, closed since
        if target.startswith(root):
            found.append(target)
    return found


def assert_released(
    learner: Learner,
    folder: Path,
    threads: Collection[threading.Thread],
    log: AfterFitLog,
    skipped: Collection[str] = (),
) -> None:
    """Every plugin's after_fit ran once and returned, and nothing the fit held is left.

    The CSV file shows in :func:`files_open_under` between epochs; TensorBoard's
    writer in the threads (its event file's writer thread, joined by ``close``).
    """
    assert log.failures(skipped) == {}
    assert hooks_left(learner.model) == []
    assert files_open_under(folder) in ([], None)
    assert [t.name for t in threading.enumerate() if t not in threads and t.is_alive()] == []
    assert {name: list(events[name].receivers) for name in EVENTS if events[name].receivers} == {}
    assert [name for name, module in learner.model.named_modules() if not module.training] == []
    assert [name for name, p in learner.model.named_parameters() if p.grad is not None] == []
    assert learner.grad_scale is None
    assert learner.model_wrapper is None
    assert torch.is_grad_enabled()
    assert not torch.is_autocast_enabled("cpu")


def assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    assert [key for key in got if not torch.equal(got[key], expected[key])] == []


def run_faulted(
    learner: Learner, injector: Injector, fault: BaseException, run: Callable[[Learner], Any]
) -> None:
    """``run(learner)`` with ``injector`` attached: ``fault`` itself comes out."""
    with learner.added(injector), pytest.raises(type(fault)) as caught:
        run(learner)
    assert injector.fired
    assert caught.value is fault


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def clean(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights after a fit no fault ever touched."""
    return fit(make_learner(catalog, tmp_path_factory.mktemp("clean")))


@pytest.fixture(autouse=True)
def alone_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A single process, untraced, whose working folder is tmp_path (lr_find's
    TensorBoard writes there: see test_lr_find_writes_nothing_to_disk)."""
    monkeypatch.chdir(tmp_path)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOOKINSIDE_TRACE"):
        monkeypatch.delenv(key, raising=False)
    yield


def test_every_built_in_plugin_is_attached(catalog: Catalog, tmp_path: Path) -> None:
    """The matrix covers each built-in plugin: a new one joins requests() or NOT_ATTACHED."""
    learner = make_learner(catalog, tmp_path)
    built_in = {
        name
        for name, spec in catalog.plugins.items()
        if spec.origin.distribution == BUILTIN_DISTRIBUTION
    }
    assert set(learner.plugins) == built_in - NOT_ATTACHED


def test_clean_fits_are_bit_identical(
    catalog: Catalog, tmp_path: Path, clean: dict[str, torch.Tensor]
) -> None:
    """The oracle itself: two never-faulted fits agree bit for bit."""
    assert_same(fit(make_learner(catalog, tmp_path)), clean)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("event", EVENTS)
def test_fault_at_every_event(
    catalog: Catalog,
    tmp_path: Path,
    clean: dict[str, torch.Tensor],
    event: str,
    kind: type[BaseException],
    order: int,
) -> None:
    """Raised at the event's first sending: released, recorded, and the next fit is clean."""
    fault = kind(f"injected at {event}")
    log = AfterFitLog()
    learner = make_learner(catalog, tmp_path, log)
    threads = set(threading.enumerate())
    run_faulted(learner, Injector(event, fault, order), fault, fit)
    assert_released(learner, tmp_path, threads, log)
    # a fault in after_fit comes after the receivers were given learner.error
    assert log.given(None if event == "after_fit" else fault) == {}
    assert learner.error is fault  # also when after_fit raised it
    # the same learner and plugins from the same start, as a notebook's next cell
    log.clear()
    learner.model.load_state_dict(make_model().state_dict())
    learner.data = make_data()
    learner.opt = None
    assert_same(fit(learner), clean)
    assert log.failures() == {}
    # and fresh ones: nothing outside the learner was left changed
    assert_same(fit(make_learner(catalog, tmp_path / "fresh")), clean)


def test_a_fault_in_after_fit_is_noted_on_the_one_that_ended_the_fit(
    catalog: Catalog, tmp_path: Path
) -> None:
    """The body's exception propagates (it ended the fit); after_fit's comes as a note."""
    ended = RuntimeError("ended the fit")
    later = ValueError("raised in after_fit")
    learner = make_learner(catalog, tmp_path)
    learner.add_plugin(Injector("after_epoch", ended, 0), name="first")
    learner.add_plugin(Injector("after_fit", later, 0), name="second")
    with pytest.raises(RuntimeError) as info:
        fit(learner)
    assert info.value is ended and learner.error is ended
    assert "then in after_fit: ValueError: raised in after_fit" in getattr(ended, "__notes__", [])


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("event", LR_FIND_EVENTS)
def test_fault_inside_lr_find(
    catalog: Catalog,
    tmp_path: Path,
    clean: dict[str, torch.Tensor],
    event: str,
    kind: type[BaseException],
    order: int,
) -> None:
    """A fault during a sweep: released, the learner put back, the fit after it clean."""
    fault = kind(f"injected at {event} during lr_find")
    log = AfterFitLog()
    learner = make_learner(catalog, tmp_path, log)
    attached = list(learner.plugins)
    paused = [
        name for name in attached if getattr(learner.plugins[name], "pause_during_sweeps", False)
    ]
    threads = set(threading.enumerate())
    injector = Injector(event, fault, order, trigger=False)  # the finder cancels by itself
    run_faulted(learner, injector, fault, lambda learner: lr_find(learner, num_it=6))
    assert_released(learner, tmp_path, threads, log, skipped=paused)
    assert log.given(None if event == "after_fit" else fault) == {}
    assert learner.error is None  # put back, with what else the fit set (FIT_ATTRIBUTES)
    assert list(learner.plugins) == attached
    log.clear()
    assert_same(fit(learner), clean)
    assert log.failures() == {}


def test_lr_find_writes_nothing_to_disk(catalog: Catalog, tmp_path: Path) -> None:
    """Neither into the out_dir nor into the working folder (tmp_path here)."""
    learner = make_learner(catalog, tmp_path / "out")
    lr_find(learner, num_it=6)
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*")) == []
