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
from collections.abc import Sequence
from contextlib import ExitStack
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import overload

import torch
import torch.nn.functional as F
from blinker import NamedSignal
from torch import nn

from engine import batch_checks
from engine import events as ev
from engine import inference
from engine import learner_state
from engine import notebook
from engine import recipes
from engine._checks import add_note
from engine._checks import did_you_mean
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
from engine.inference import Prediction
from engine.manager import Catalog
from engine.manager import load_catalog
from engine.manager import tracing
from engine.selection import PluginRequest
from engine.selection import select
from engine.summary import ModelSummary
from engine.summary import describe_model
from engine.summary import summarize
from engine.training_loop import TrainingLoop

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
    - ``resuming``: true when the fit goes on from a checkpoint: ``checkpoint``
      restored every state (weights, counters, ``epoch``, plugins' states) in its
      ``begin_fit``, which runs before every other plugin's (``order.RESUME``), so a
      plugin's ``begin_fit`` can tell a resumed fit (append to its files) from a new
      one; ``False`` otherwise
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

    Beyond :meth:`fit`, the conveniences of a notebook: :meth:`lr_find`,
    :meth:`fit_one_cycle`, :meth:`summary`, :meth:`show_training_loop`, and
    :meth:`validate`, :meth:`get_preds` and :meth:`predict` (passes without events,
    :mod:`engine.inference`). An attached plugin can be read as an attribute:
    ``learner.recorder`` is ``learner.plugins["recorder"]`` (real attributes win;
    type checkers see only ``learner.plugins``, e.g. ``learner.plugins.of(Recorder)``).

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
        self.resuming = False
        self.grad_scale: torch.Tensor | None = None
        self.dist: Distributed | None = None
        self.coordinator = Coordinator()
        self.model_wrapper: nn.Module | None = None
        self.plugins = PluginBus()
        self._fitting = False
        self._stepping = False
        self._checked = False
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
            self.plugins.add(
                item.create(), item.spec.name, options=item.options, source=item.source
            )
        for plugin in objects:
            self.plugins.add(plugin, self._name_for(plugin))

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
        """Attach a plugin object; returns it. Names must be unique.

        :param plugin: the plugin object.
        :param name: its name; by default the name its class is registered under by
            a plugin module (the name it gets when enabled by name), else its
            ``name`` attribute, else its class name in snake_case.
        """
        return self.plugins.add(plugin, self._name_for(plugin, name))

    def _name_for(self, plugin: object, name: str | None = None) -> str:
        """The name given; else the one its class is registered under (as by name);
        else its ``name`` attribute; else its class name in snake_case."""
        if name:
            return name
        own = getattr(plugin, "name", None)
        if self.catalog is None and not (isinstance(own, str) and own):
            self.catalog = load_catalog()  # only for an object without a name attribute
        registered = self.catalog.name_of(plugin) if self.catalog is not None else None
        return registered or plugin_name(plugin)

    def remove_plugin(self, name: str) -> object:
        """Detach the plugin called ``name``; returns it."""
        return self.plugins.remove(name)

    @contextmanager
    def added(self, plugin: object, name: str | None = None) -> Iterator[object]:
        """Attach ``plugin`` for the duration of a ``with`` block."""
        key = self._name_for(plugin, name)
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
        self._checked = False
        self.error = None
        self.cancelled = None
        self.resuming = False
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
            self._end_fit()

    def _end_fit(self) -> None:
        """Send ``after_fit`` to every receiver. What a receiver raises becomes
        :attr:`error` when the fit itself ended well, and propagates; when the fit
        ended with an exception, that one goes on propagating, with a note."""
        try:
            self._emit_to_all("after_fit")
        except BaseException as exc:  # raised, or noted on the fit's own
            if self.error is None:
                self.error = exc
                raise
            add_note(self.error, f"then in after_fit: {type(exc).__name__}: {exc}")

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
            self.xb, self.yb = inference.pair(batch)
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
        first = self.in_train and not self._checked
        self.pred = self._wrapped(self._run_model, model, first)
        self._emit("after_pred")
        if first:
            self._checked = True  # once per fit: it reads the labels' range from the device
            batch_checks.check_targets(self.pred, self.yb, self.loss_func)
        self.loss = self._wrapped(self._run_loss, first)
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

    def _run_model(self, model: nn.Module, first: bool) -> Any:
        """``model(xb)``; an error gets a note with the batch's shapes on the fit's first
        batch, or on a batch of one sample (:mod:`engine.batch_checks`)."""
        try:
            return model(self.xb)
        except CancelException:
            raise
        except Exception as exc:
            note = batch_checks.forward_note(exc, self.xb, self.yb, first)
            if note:
                add_note(exc, note)
            raise

    def _run_loss(self, first: bool) -> Any:
        """``loss_func(pred, yb)``; an error on the fit's first batch gets the shapes."""
        try:
            return self.loss_func(self.pred, self.yb)
        except CancelException:
            raise
        except Exception as exc:
            if first:
                add_note(exc, batch_checks.describe_batch(self.xb, self.yb, self.pred))
            raise

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

    def lr_find(self, **options: Any) -> Any:
        """Sweep the learning rate, then restore the learner exactly; returns the sweep.

        Runs the ``lr_find`` plugin's :func:`~plugins.lr_finder.lr_find` on this
        learner (see there for what is restored); ``result.suggestions`` holds
        learning rates to start from.

        :param options: ``min_lr``, ``max_lr``, ``num_it``, ``stop_div``,
            ``stop_factor``, ``beta``, as for :func:`~plugins.lr_finder.lr_find`.
        :returns: the sweep, a :class:`~plugins.lr_finder.LRFindResult`; in a
            notebook its plot is shown too.
        """
        result = recipes.lr_find(self, **options)
        if notebook.in_notebook() and hasattr(result, "plot"):
            result.plot()  # a new figure: shown when the cell ends (engine.notebook)
        return result

    def fit_one_cycle(
        self,
        epochs: int,
        lr_max: float | None = None,
        **one_cycle_options: float | Sequence[float] | None,
    ) -> None:
        """Train ``epochs`` epochs with the lr (and momentum) following the one-cycle policy.

        The ``schedule`` plugin sets ``one_cycle(lr_max, **one_cycle_options)`` for
        this fit only; the optimizer's lr and momentum are put back afterwards
        (:func:`engine.recipes.fit_one_cycle`).

        :param epochs: the number of epochs.
        :param lr_max: the peak learning rate; by default :attr:`lr`.
        :param one_cycle_options: ``div``, ``final_div``, ``pct_start``, ``moms``, as
            for :func:`plugins._schedules.one_cycle`.
        :raises engine.exceptions.PluginError: a schedule plugin is attached already.
        """
        recipes.fit_one_cycle(self, epochs, lr_max, **one_cycle_options)

    def show_training_loop(self) -> TrainingLoop:
        """Which attached plugins receive each event, in the order they run.

        The table ``lookinside plugins --events`` prints, for this learner's plugins;
        the result shows it as a notebook cell's value (``print()`` it in a script).
        """
        return TrainingLoop.of(self.plugins)

    def summary(self, containers: bool = False) -> ModelSummary:
        """Each layer's name, type, output shape and parameters, from one batch.

        The first batch of the training loader (else the validation one), prepared
        as in a fit (:func:`engine.inference.batch_preparer`), goes through the model
        in eval mode; see :mod:`engine.summary`.

        :param containers: also list the modules that have children.
        """
        xb = inference.sample_inputs(self.data, "summary")
        return summarize(self.model, inference.batch_preparer(self)(xb), containers)

    def validate(self, dl: Iterable[Any] | None = None) -> dict[str, float]:
        """One pass over ``dl`` without training: the loss and the metrics plugin's metrics.

        No event is sent and nothing changes (:mod:`engine.inference`); the values
        are averaged over the samples as the ``metrics`` plugin averages them.

        :param dl: the loader; by default the validation loader.
        :returns: ``{"valid_loss": ..., "valid_accuracy": ...}``: the loss, and each
            metric of the attached ``metrics`` plugin.
        """
        metrics = getattr(self.plugins.get("metrics"), "funcs", None)
        return inference.validate(
            self.model,
            inference.loader(self.data, dl, "validate"),
            inference.batch_preparer(self),
            self.loss_func,
            metrics if isinstance(metrics, Mapping) else None,
        )

    @overload
    def get_preds(
        self, dl: Iterable[Any] | None = None, with_loss: Literal[False] = False
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    @overload
    def get_preds(
        self, dl: Iterable[Any] | None = None, *, with_loss: Literal[True]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def get_preds(
        self, dl: Iterable[Any] | None = None, with_loss: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """The model's outputs and the targets over ``dl``, concatenated on the CPU.

        In eval mode, without gradients and without events (:mod:`engine.inference`).

        :param dl: the loader; by default the validation loader.
        :param with_loss: also return each sample's loss, third.
        :returns: ``(preds, targets)``, or ``(preds, targets, losses)``.
        """
        preds, targets, losses = inference.get_preds(
            self.model,
            inference.loader(self.data, dl, "get_preds"),
            inference.batch_preparer(self),
            self.loss_func if with_loss else None,
        )
        return (preds, targets) if losses is None else (preds, targets, losses)

    def predict(self, x: torch.Tensor, batched: bool | None = None) -> Prediction:
        """The predicted classes and their probabilities for one input or a batch.

        ``x`` is prepared as a batch is in a fit and goes through the model in eval
        mode; the results are on the CPU. Whether ``x`` is one sample or a batch is
        judged from the data (:func:`engine.inference.looks_batched`) unless given.

        :param x: one input (as one sample of the loaders, or of the data's
            ``input_shape``), or a batch of them.
        :param batched: whether ``x`` is a batch; ``None`` judges from its shape.
        :returns: ``(classes, probs)``, without a batch dimension for one sample.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"predict: x should be a tensor, got {type(x).__name__}")
        if batched is None:
            batched = inference.looks_batched(x, self.data)
        return inference.predict(self.model, x, inference.batch_preparer(self), batched)

    if not TYPE_CHECKING:  # typed code reads learner.plugins (plugins.of(Kind) for a type)

        def __getattr__(self, name: str) -> object:
            """The attached plugin called ``name``: ``learner.recorder``.

            Only called for names that are no real attribute, which always win.
            Private and special names are never plugins, so copying and pickling
            (which look up ``__setstate__`` on an empty learner) and the setters
            in ``__init__`` (before :attr:`plugins` exists) see a plain
            ``AttributeError``.
            """
            plugins = self.__dict__.get("plugins")
            if name.startswith("_") or plugins is None:
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
                )
            if name in plugins:
                return plugins[name]
            public = [a for a in (*dir(type(self)), *self.__dict__) if not a.startswith("_")]
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r} and no plugin "
                f"named {name!r} is attached{did_you_mean(name, [*plugins, *public])}; "
                f"attached plugins: {', '.join(plugins) or 'none'}",
                name=name,
                obj=self,
            )

    def _facts(self) -> dict[str, str]:
        """What the learner is made of, for its text and HTML representations."""
        facts = {
            "model": describe_model(self.model),
            "data": _describe_data(self.data),
            "loss": _callable_name(self.loss_func),
            "optimizer": f"{_callable_name(self.opt or self.opt_func)}, lr {self.lr:g}",
        }
        if self.n_iter:
            facts["trained"] = f"last fit {self.epochs} epochs, {self.n_iter} training batches"
        if self.out_dir is not None:
            facts["out_dir"] = str(self.out_dir)
        return facts

    def __repr__(self) -> str:
        lines = [
            f"Learner: {key} {value}" if i == 0 else f"  {key}: {value}"
            for i, (key, value) in enumerate(self._facts().items())
        ]
        lines[0] = lines[0].replace("Learner: model ", "Learner of ")
        return "\n".join([*lines, f"  {self.plugins!r}".replace("\n", "\n  ")])

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(key)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for key, value in self._facts().items()
        )
        return (
            f"<b>Learner</b><table>{rows}</table>"
            f"<p>{len(self.plugins)} plugins, in run order:</p>{self.plugins._repr_html_()}"
        )


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


def _callable_name(thing: Any) -> str:
    """``SGD``, ``cross_entropy``, ``AdamW`` for ``partial(AdamW, ...)``: what a reader knows it by."""
    if isinstance(thing, partial):
        return _callable_name(thing.func)
    name = getattr(thing, "__name__", None)  # classes and functions; not their instances
    return name if isinstance(name, str) else type(thing).__name__


def _describe_data(data: DataBunch) -> str:
    """``digits: 1437 train / 360 valid samples, bs 16, 10 classes, input (1, 8, 8)``."""
    counts = []
    for part, dl in (("train", data.train_dl), ("valid", data.valid_dl)):
        if dl is None:
            continue
        dataset = getattr(dl, "dataset", getattr(dl, "x", None))
        try:
            counts.append(f"{len(dataset)} {part}")  # type: ignore[arg-type]
        except TypeError:
            counts.append(f"{part} (size unknown)")
    text = " / ".join(counts) + " samples" if counts else "no loaders"
    bs = getattr(data.train_dl, "bs", getattr(data.train_dl, "batch_size", None))
    if bs is not None:
        text += f", bs {bs}"
    if data.c is not None:
        text += f", {data.c} classes"
    if data.input_shape:
        text += f", input {tuple(data.input_shape)}"
    name = getattr(data, "name", "")
    return f"{name}: {text}" if name and name != "data" else text


def _as_config(config: Config | str | Path | bool | None) -> Config:
    if isinstance(config, Config):
        return config
    if config is None or config is False:
        return Config()
    if config is True:
        return load_config()
    return load_config(config)
