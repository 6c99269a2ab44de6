"""The Learner: model, data, loss and optimizer, and the bare training loop.

The loop itself sets the model's mode (``train()`` for the training pass, ``eval()``
for validation, ``train()`` again before ``after_fit``) and counts progress
(``n_iter``, ``n_epochs``); everything beyond (moving to a device, metrics,
progress, recording, schedules...) is a plugin listening to the events of
:mod:`engine.events`. The loop's firing order and the cancellation table are
documented there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import ExitStack
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import torch
import torch.nn.functional as F
from blinker import NamedSignal
from torch import nn

from engine import events as ev
from engine import learner_state
from engine._checks import add_note
from engine._checks import optimizer
from engine.bus import AroundForward
from engine.bus import PluginBus
from engine.bus import Receiver
from engine.bus import plugin_name
from engine.bus import trace_log
from engine.config import Config
from engine.config import load_config
from engine.coordinator import Coordinator
from engine.data import DataBunch
from engine.data import as_databunch
from engine.data import batch_count
from engine.exceptions import CancelBatchException
from engine.exceptions import CancelEpochException
from engine.exceptions import CancelException
from engine.exceptions import CancelTrainException
from engine.exceptions import DataError
from engine.manager import Catalog
from engine.manager import load_catalog
from engine.manager import tracing
from engine.selection import PluginRequest
from engine.selection import select

if TYPE_CHECKING:
    from engine.distributed import Distributed

OptFunc = Callable[..., torch.optim.Optimizer]


class Learner:
    """Trains ``model`` on ``data``; plugins do everything beyond the loop.

    What plugins read (and may replace where noted) during a fit:

    - ``model``, ``data``, ``loss_func``, ``opt`` (the optimizer), ``lr``
    - ``epoch`` (0-based), ``epochs``, ``n_epochs`` (fractional epochs of training
      done: 1.5 halfway through the second epoch; updated before each
      ``after_batch``), ``n_iter`` (training batches done since the fit began,
      cancelled ones included), ``iters`` (batches in the current pass),
      ``iter`` (index of the batch in the pass), ``in_train``, ``dl``
    - ``xb``, ``yb``, ``pred``, ``loss``: replaceable by receivers of the event
      that sets them and of the following ones
    - ``log``: per-epoch values observers write (``train_loss``...), new each epoch
    - ``out_dir``: where observers write files, or ``None`` (always on the
      ranks but 0 of a distributed fit, so that files are written once)
    - ``error``: in ``after_fit``, the exception (or KeyboardInterrupt) ending the
      fit, else ``None``
    - ``cancelled``: from ``after_cancel_train`` on, the ``CancelTrainException``
      that stopped the fit (its message says why: ``str(learner.cancelled)``),
      else ``None``; kept after the fit
    - ``grad_scale``: the factor a loss scaler multiplies this batch's gradients
      by (a 0-d tensor, set by ``mixed_precision``), else ``None``
    - ``plugins``: the attached plugins by name, in the order they run
    - ``dist``: in a distributed fit (set by ``ddp``), the
      :class:`~engine.distributed.Distributed` of this process, else ``None``;
      ``rank``, ``world_size`` and ``is_main`` (rank 0: the one that prints and
      writes files) read it
    - ``model_wrapper``: a module wrapping ``model`` that the loop calls in its
      place (``DistributedDataParallel``, set by ``ddp``), else ``None``
    - ``coordinator``: what the loop calls at its sync points
      (:mod:`engine.coordinator`): a :class:`~engine.coordinator.Coordinator` that
      does nothing, or during a distributed fit the one ``ddp`` installs

    :param model: the network.
    :param data: a :class:`~engine.data.DataBunch`, or a ``(train, valid)`` pair of
        loaders (any iterable of ``(xb, yb)`` batches; ``valid`` may be ``None``).
    :param loss_func: ``loss_func(pred, yb)`` returning a scalar tensor.
    :param opt_func: ``opt_func(params, lr=lr)`` returning an optimizer.
    :param lr: the learning rate the optimizer starts with.
    :param plugins: names (``"device"``, ``"device:device=cpu"``, ``"no:progress"``),
        ``(name, options)`` pairs, plugin objects or plugin classes.
    :param defaults: enable the catalogue's default plugins.
    :param out_dir: the folder observers write plots and CSV files into.
    :param catalog: the plugin catalogue to resolve names in; by default the
        installed plugins (:func:`engine.manager.load_catalog`).
    :param config: a config file (path or :class:`~engine.config.Config`) whose
        ``plugins`` and option tables apply before ``plugins``; ``True`` finds
        ``lookinside.toml`` / ``[tool.lookinside]`` from the current folder up, as
        the command line does; ``None`` or ``False`` (the default) reads none, so a
        file lying in the working folder never changes a script's learner.
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataBunch | tuple[Iterable[Any], Iterable[Any] | None],
        loss_func: Callable[[Any, Any], torch.Tensor] = F.cross_entropy,
        opt_func: OptFunc = torch.optim.SGD,
        lr: float = 0.1,
        plugins: Iterable[PluginRequest] = (),
        *,
        defaults: bool = True,
        out_dir: str | Path | None = None,
        catalog: Catalog | None = None,
        config: Config | str | Path | bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model should be a torch.nn.Module, got {type(model).__name__}")
        if not (isinstance(lr, (int, float)) and 0 <= lr < math.inf):
            raise ValueError(f"lr should be a non-negative finite number, got {lr!r}")
        self.opt: torch.optim.Optimizer | None = None
        self.model = model
        self.data = as_databunch(data)
        self.loss_func = loss_func
        self.opt_func = opt_func
        self.lr = float(lr)
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self.epoch = 0
        self.epochs = 0
        self.n_epochs = 0.0
        self.n_iter = 0
        self.iters = 0
        self.iter = 0
        self.in_train = False
        self.dl: Iterable[Any] | None = None
        self.xb: Any = None
        self.yb: Any = None
        self.pred: Any = None
        self.loss: Any = None
        self.log: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.cancelled: CancelTrainException | None = None
        self.grad_scale: torch.Tensor | None = None
        self.dist: Distributed | None = None
        self.coordinator = Coordinator()
        self.model_wrapper: nn.Module | None = None
        self.plugins = PluginBus()
        self._fitting = False
        self._stepping = False
        requests = list(plugins)
        self.config = _as_config(config)
        named = any(isinstance(r, (str, tuple)) for r in requests) or self.config.path is not None
        if catalog is None and (defaults or named):
            catalog = load_catalog()
        self.catalog = catalog
        enabled, objects = (
            select(catalog, requests, defaults, self.config) if catalog else ([], requests)
        )
        for item in enabled:
            self.plugins.add(item.create(), item.spec.name)
        for plugin in objects:
            self.plugins.add(plugin)

    @property
    def model(self) -> nn.Module:
        """The network. Replacing it replaces the optimizer too (the old one holds the
        old model's parameters): a new one is made over the new model's, at once
        during a fit, else when the next fit starts."""
        return self._model

    @model.setter
    def model(self, value: nn.Module) -> None:
        if not isinstance(value, nn.Module):
            raise TypeError(f"model should be a torch.nn.Module, got {type(value).__name__}")
        replaced = getattr(self, "_model", value) is not value
        self._model = value
        if replaced and self.opt is not None:
            self.opt = None
            if self._fitting:
                self.create_opt()

    @property
    def out_dir(self) -> Path | None:
        return self._out_dir if self.is_main else None

    @out_dir.setter
    def out_dir(self, value: str | Path | None) -> None:
        self._out_dir = Path(value) if value is not None else None

    @property
    def rank(self) -> int:
        """This process's rank in a distributed fit; 0 otherwise."""
        return self.dist.rank if self.dist is not None else 0

    @property
    def world_size(self) -> int:
        """The number of processes training together; 1 unless distributed."""
        return self.dist.world_size if self.dist is not None else 1

    @property
    def is_main(self) -> bool:
        """Whether this process prints and writes files: rank 0, or the only one."""
        return self.dist is None or self.dist.rank == 0

    def add_plugin(self, plugin: object, name: str | None = None) -> object:
        """Attach a plugin object; returns it. Names must be unique."""
        return self.plugins.add(plugin, name)

    def remove_plugin(self, name: str) -> object:
        """Detach the plugin called ``name``; returns it."""
        return self.plugins.remove(name)

    @contextmanager
    def added(self, plugin: object, name: str | None = None) -> Iterator[object]:
        """Attach ``plugin`` for the duration of a ``with`` block."""
        key = name or plugin_name(plugin)
        attached = self.plugins.add(plugin, key)
        try:
            yield attached
        finally:
            self.plugins.remove(key)

    def state_dict(self, model: bool = True, plugins: bool = True) -> dict[str, Any]:
        """Everything a run needs to go on exactly: counters, lr, optimizer, random
        states, loaders' generators, the model's weights and each plugin's state.

        The layout is :mod:`engine.learner_state`'s; tensors are the live ones, as
        in torch (save the dict, or deep-copy it, to keep a snapshot).

        :param model: include the model's ``state_dict()``.
        :param plugins: include the state of each plugin that has one.
        """
        return learner_state.state_dict(self, model=model, plugins=plugins)

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> list[str]:
        """Put back a :meth:`state_dict`; returns what could not be restored.

        Everything is checked before anything changes.

        :param strict: refuse a state whose plugins or loaders differ from this
            learner's (``False``: skip those parts and list them).
        :raises engine.learner_state.StateError: the state does not fit this learner.
        """
        return learner_state.load_state_dict(self, state, strict=strict)

    def create_opt(self) -> torch.optim.Optimizer:
        """Create the optimizer over the model's parameters at ``self.lr``.

        :raises engine.exceptions.OptimizerError: ``opt_func`` does not accept
            ``(params, lr=lr)`` or returned something other than a
            ``torch.optim.Optimizer`` (also a ``TypeError``).
        """
        self.opt = optimizer(self.opt_func, self.model.parameters(), self.lr)
        return self.opt

    def fit(self, epochs: int, lr: float | None = None) -> None:
        """Train for ``epochs`` epochs, validating after each.

        :param epochs: the number of epochs; 0 sends only begin_fit and after_fit.
        :param lr: a learning rate for every parameter group, replacing the current.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs should be a non-negative integer, got {epochs!r}")
        if self._fitting:
            raise RuntimeError("fit() was called while this learner is already fitting")
        if epochs and batch_count(self.data.train_dl) == 0:
            raise DataError(
                "the training loader has no batches (an empty dataset, or drop_last with "
                "fewer samples than the batch size): there is nothing to train on"
            )
        opt = self.opt if self.opt is not None else self.create_opt()
        opt.zero_grad()  # a fit that ended mid-batch may have left gradients behind
        if lr is not None:
            self.lr = float(lr)
            for group in opt.param_groups:
                group["lr"] = self.lr
        self.epochs = epochs
        self.epoch = 0
        self.n_epochs = 0.0
        self.n_iter = 0
        self.plugins.trace(tracing())
        self._fitting = True
        self._stepping = False
        self.error = None
        self.cancelled = None
        self.dist = None  # ddp sets both again in begin_fit
        self.coordinator = Coordinator()
        try:
            self._with_events(
                self._all_epochs, "begin_fit", CancelTrainException, "after_cancel_train"
            )
        except BaseException as exc:
            self.error = exc  # after_fit receivers see why the fit ended
            raise
        finally:
            self._fitting = False
            self.model.train()
            self.coordinator = Coordinator()  # no sync point in after_fit
            self._emit_to_all("after_fit")

    def _with_events(
        self,
        body: Callable[[], None],
        begin: str,
        cancel: type[CancelException],
        cancelled: str,
        after: str | None = None,
    ) -> None:
        """The protocol of every stage: ``begin``, the body, ``cancelled`` if ``cancel``
        was raised, then ``after`` (if any). Anything else propagates unchanged."""
        try:
            self._emit(begin)
            body()
        except cancel as exc:
            self.coordinator.cancelled(exc, after_backward=self._stepping)
            if isinstance(exc, CancelTrainException):
                self.cancelled = exc
            self._emit_to_all(cancelled)
        if after is not None:
            self._emit(after)

    def _all_epochs(self) -> None:
        # a begin_fit receiver may move the start (resuming from a checkpoint)
        for epoch in range(self.epoch, self.epochs):
            self.epoch = epoch
            self.log = {"epoch": epoch}
            self.n_epochs = float(epoch)
            self._one_pass(self.data.train_dl, True, "begin_epoch")
            if self.data.valid_dl is not None:
                with torch.no_grad():
                    self._one_pass(self.data.valid_dl, False, "begin_validate")
            self.coordinator.before_epoch_ends()
            self._emit("after_epoch")
            self.coordinator.end_of_epoch()

    def _one_pass(self, dl: Iterable[Any], in_train: bool, begin: str) -> None:
        self.dl = dl
        self.in_train = in_train
        self.iters = batch_count(dl) or 0  # 0: it cannot tell
        self.model.train(in_train)
        self.coordinator.begin_pass(in_train)
        self._with_events(
            partial(self._batches, dl), begin, CancelEpochException, "after_cancel_epoch"
        )

    def _batches(self, dl: Iterable[Any]) -> None:
        for self.iter, batch in enumerate(dl):
            self.xb, self.yb = _pair(batch)
            self.pred = None
            self.loss = None
            self._with_events(
                self._one_batch, "begin_batch", CancelBatchException, "after_cancel_batch"
            )
            self._end_batch()
            if self.coordinator.pass_over:
                return  # another process had no batch left: neither has this one
        self.coordinator.end_of_pass()

    def _one_batch(self) -> None:
        if self.in_train:
            self.coordinator.before_forward()
        # validation needs no gradient sync: the plain model (ddp syncs its buffers)
        model = self.model_wrapper if self.in_train and self.model_wrapper else self.model
        self.pred = self._wrapped(model, self.xb)
        self._emit("after_pred")
        self.loss = self._wrapped(self.loss_func, self.pred, self.yb)
        self._emit("after_loss")
        if not self.in_train:
            return
        self.coordinator.before_backward()
        self._stepping = True  # a batch cancelled from here on keeps its gradients
        self.loss.backward()
        self._emit("after_backward")
        self.opt.step()  # type: ignore[union-attr]
        self._emit("after_step")
        self.opt.zero_grad()  # type: ignore[union-attr]

    def _wrapped(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` inside the contexts plugins wrap the forward and the loss in."""
        if not self.plugins.around:
            return func(*args)
        with self._entered(self.plugins.around):
            return func(*args)

    @contextmanager
    def _entered(self, around: tuple[AroundForward, ...]) -> Iterator[None]:
        with ExitStack() as stack:
            for wrap in around:
                try:
                    stack.enter_context(wrap(self))
                except CancelException:
                    raise
                except BaseException as exc:
                    _add_note(exc, self.plugins.owner(wrap), "around_forward")
                    raise
            yield

    def _end_batch(self) -> None:
        """Count a training batch (also a cancelled one), then ``after_batch``."""
        if self.in_train:
            self.n_iter += 1
            if self.iters:
                self.n_epochs += 1.0 / self.iters
        self._stepping = False
        self._emit("after_batch")

    def _emit(self, event: str) -> None:
        """Send ``event``: receivers connected to the signal by hand, then the plugins."""
        if self.plugins.tracing:
            trace_log.debug("send %s", event)
        signal = ev.events[event]
        if signal.receivers:
            _send(signal, self)
        receiver: Receiver | None = None
        try:
            for receiver in self.plugins.dispatch[event]:
                receiver(self)
        except CancelException:
            raise
        except BaseException as exc:
            _add_note(exc, self.plugins.owner(receiver) if receiver else None, event)
            raise

    def _emit_to_all(self, event: str) -> None:
        """Send ``event`` to every receiver even when one raises (or Ctrl-C lands),
        so each plugin gets to release what it holds; then raise the first exception,
        with a note for each later one.

        For ``after_fit`` and the ``after_cancel_*`` events, where what one plugin
        does wrong must not cost another its clean-up.
        """
        if self.plugins.tracing:
            trace_log.debug("send %s", event)
        signal = ev.events[event]
        receivers: list[Callable[[Any], None]] = list(self.plugins.dispatch[event])
        if signal.receivers:
            receivers.insert(0, partial(_send, signal))
        first: BaseException | None = None
        for receiver in receivers:
            try:
                receiver(self)
            except BaseException as exc:  # noqa: BLE001 (re-raised below, after the others ran)
                owner = self.plugins.owner(receiver)
                if owner is not None and not isinstance(exc, CancelException):
                    _add_note(exc, owner, event)  # _send notes its own receivers
                if first is None:
                    first = exc
                else:
                    where = f"plugin {owner[0]!r}" if owner else "a receiver"
                    add_note(first, f"then {where} raised {type(exc).__name__}: {exc}")
        if first is not None:
            raise first

    def __repr__(self) -> str:
        names = ", ".join(self.plugins) or "none"
        return f"<Learner {type(self.model).__name__} lr={self.lr} plugins: {names}>"


def _add_note(exc: BaseException, owner: tuple[str, str] | None, event: str) -> None:
    """Say which plugin raised, on the exception itself."""
    where = (
        f"while plugin {owner[0]!r} handled {owner[1]!r}" if owner else f"while sending {event!r}"
    )
    if where not in getattr(exc, "__notes__", ()):
        add_note(exc, where)


def _send(signal: NamedSignal, learner: Learner) -> None:
    """Send through blinker, to receivers connected to the signal by hand."""
    try:
        signal.send(learner)
    except CancelException:
        raise
    except BaseException as exc:
        _add_note(exc, None, f"{signal.name}' (to a receiver connected by hand to the signal")
        raise


def _pair(batch: Any) -> tuple[Any, Any]:
    try:
        xb, yb = batch
    except (TypeError, ValueError):
        raise TypeError(
            f"a batch should be a pair (inputs, targets), got {type(batch).__name__}; "
            "wrap the loader so it yields (xb, yb)"
        ) from None
    return xb, yb


def _as_config(config: Config | str | Path | bool | None) -> Config:
    if isinstance(config, Config):
        return config
    if config is None or config is False:
        return Config()
    if config is True:
        return load_config()
    return load_config(config)
