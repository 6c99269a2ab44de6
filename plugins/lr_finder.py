"""The learning-rate finder: an exponential sweep that leaves the learner as it found it.

:func:`lr_find` trains for ``num_it`` batches with the learning rate of batch
``i`` (counting from 0) set to the closed form

    ``lr_i = min_lr * (max_lr / min_lr) ** (i / (num_it - 1))``

so the first batch uses ``min_lr`` and the last ``max_lr``; the training data is
cycled if it has fewer batches, and validation is skipped. The loss is smoothed
with an exponentially weighted average, debiased as in Adam
(``avg_i = beta*avg_{i-1} + (1-beta)*loss_i``, ``smoothed_i = avg_i / (1 - beta**(i+1))``),
and the sweep stops early once the smoothed loss exceeds ``stop_factor`` times
the best one seen.

Afterwards everything the sweep touched is put back, whether it ended well,
with an error or with Ctrl-C: the learner's state (:mod:`engine.learner_state`:
the model's weights and buffers, the optimizer's state and hyper-parameters, the
counters, the torch, Python, NumPy and CUDA random states, the loaders' shuffling
generators), the model's gradients and train/eval modes, the optimizer itself
(or its absence), and what the fit set on the learner
(:data:`~engine.learner_state.FIT_ATTRIBUTES`). A fit after the finder gives
exactly what it would have given without it.

Plugins whose ``pause_during_sweeps`` attribute is true (checkpoint, early
stopping, the progress rows: a sweep prints no epoch row) are detached during the sweep and attached again after it: a sweep must
not be saved, resumed into, or stopped early. The others are not rolled back
(their states are not loaded back: to a plugin, a loaded state means "resume from
it" in the next fit); they see the sweep as a fit (the recorder holds it
afterwards), with the learner's ``out_dir`` set to ``None`` so that nothing is
written to disk.

The :class:`LRFinder` plugin alone (``-p lr_find`` in a fit) is the lesson's
``LR_Find`` callback: it sweeps and cancels the fit, but restores nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine.exceptions import CancelEpochException
from engine.exceptions import CancelTrainException
from engine.exceptions import LookinsideError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from engine.learner_state import FIT_ATTRIBUTES
from engine.learner_state import load_state_dict
from engine.learner_state import state_dict
from plugins._lr_find_result import LRFindResult
from plugins._lr_find_result import suggest

if TYPE_CHECKING:
    from engine.learner import Learner

__all__ = ["PLOT_FILE", "LRFindResult", "LRFinder", "lr_find", "suggest"]

PLOT_FILE = "lr_find.png"
"""The file ``lookinside lr-find`` writes into ``--out``."""

PAUSE = "pause_during_sweeps"
"""The plugin attribute that, when true, detaches the plugin during a sweep."""


class LRFinder:
    """Sweep the learning rate exponentially during training, recording the loss.

    Sets every parameter group's lr at each training batch (see the module's
    closed form), skips validation, and stops the fit with
    ``CancelTrainException`` after ``num_it`` batches or when the smoothed loss
    diverges. After the fit, :attr:`result` holds the sweep. Use :func:`lr_find`
    (or ``lookinside lr-find``) to have the learner restored afterwards.

    :param min_lr: the learning rate of the first batch (> 0).
    :param max_lr: the learning rate of batch num_it (> min_lr).
    :param num_it: the number of batches of the sweep (>= 2).
    :param stop_div: stop once the smoothed loss exceeds stop_factor times the best.
    :param stop_factor: how many times the best smoothed loss counts as divergence (> 1).
    :param beta: the smoothing factor of the loss average, in [0, 1); 0 smooths nothing.
    """

    name = "lr_find"
    order = order.LR_FIND

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_it: int = 100,
        stop_div: bool = True,
        stop_factor: float = 10.0,
        beta: float = 0.98,
    ) -> None:
        for label, value in (("min_lr", min_lr), ("max_lr", max_lr)):
            _check(
                _real(value) and 0 < value < math.inf,
                f"{label} should be a positive number, got {value!r}",
            )
        _check(
            min_lr < max_lr,
            f"min_lr should be below max_lr, got min_lr={min_lr!r} and max_lr={max_lr!r}; "
            "e.g. min_lr=1e-7, max_lr=10",
        )
        _check(
            isinstance(num_it, int) and not isinstance(num_it, bool) and num_it >= 2,
            f"num_it should be an integer >= 2 (a sweep needs two points), got {num_it!r}",
        )
        _check(
            _real(stop_factor) and stop_factor > 1,
            f"stop_factor should be a number > 1, got {stop_factor!r}",
        )
        _check(_real(beta) and 0 <= beta < 1, f"beta should be in [0, 1), got {beta!r}")
        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.num_it = num_it
        self.stop_div = bool(stop_div)
        self.stop_factor = float(stop_factor)
        self.beta = float(beta)
        self.result: LRFindResult = LRFindResult()
        """The sweep of the current (or last) fit."""
        self._lr = self.min_lr
        self._avg = 0.0
        self._best = math.inf

    def lr_at(self, i: int) -> float:
        """The learning rate of batch ``i`` (from 0) of the sweep.

        :param i: the batch's index.
        """
        return self.min_lr * float((self.max_lr / self.min_lr) ** (i / (self.num_it - 1)))

    def begin_fit(self, learner: Learner) -> None:
        self.result = LRFindResult(skip_start=self.num_it // 10)
        self._avg = 0.0
        self._best = math.inf

    def begin_batch(self, learner: Learner) -> None:
        import torch

        if not learner.in_train:
            return
        done = len(self.result.lrs)
        if done >= self.num_it:
            raise CancelTrainException
        self._lr = lr = self.lr_at(done)
        for group in learner.opt.param_groups:  # type: ignore[union-attr]
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def after_loss(self, learner: Learner) -> None:
        if not learner.in_train:
            return
        result = self.result
        loss = float(learner.loss.detach())  # the sweep needs the value: a device sync
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        smoothed = self._avg / (1.0 - self.beta ** (len(result.lrs) + 1))
        result.lrs.append(self._lr)
        result.losses.append(loss)
        result.smoothed.append(smoothed)
        self._best = min(self._best, smoothed)
        if self.stop_div and not math.isfinite(smoothed):
            result.stop_reason = f"stopped: the loss is {loss} at lr {self._lr:.3g}"
            raise CancelTrainException
        if self.stop_div and smoothed > self.stop_factor * self._best:
            result.stop_reason = (
                f"stopped: smoothed loss {smoothed:.4g} > {self.stop_factor:g} x best "
                f"{self._best:.4g} at lr {self._lr:.3g}"
            )
            raise CancelTrainException

    def begin_validate(self, learner: Learner) -> None:
        raise CancelEpochException  # the sweep only trains

    def after_cancel_train(self, learner: Learner) -> None:
        result = self.result
        if not result.stop_reason and len(result.lrs) < self.num_it:
            result.stop_reason = (
                f"stopped by another plugin (CancelTrainException) after {len(result.lrs)} "
                f"of {self.num_it} batches"
            )

    def after_fit(self, learner: Learner) -> None:
        result = self.result
        if not result.stop_reason:
            done = len(result.lrs)
            if done >= self.num_it:
                result.stop_reason = f"completed num_it={self.num_it}"
            elif learner.error is not None:
                result.stop_reason = f"interrupted by {type(learner.error).__name__}"
            else:
                result.stop_reason = f"the data ran out after {done} of {self.num_it} batches"


def lr_find(
    learner: Learner,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    stop_factor: float = 10.0,
    beta: float = 0.98,
) -> LRFindResult:
    """Sweep the learning rate on ``learner``, then restore it exactly; returns the sweep.

    Runs ``learner.fit`` with enough epochs to reach ``num_it`` training batches
    (the lr finder attached only for the sweep). Everything listed in the
    module's docstring is restored in a ``finally``, so an error or Ctrl-C
    during the sweep propagates with the learner restored. Saving the model and
    optimizer state costs one copy of each on their device while it runs.

    >>> from tests.helpers import tiny_data, tiny_model
    >>> from engine import Learner
    >>> learner = Learner(tiny_model(), tiny_data(), plugins=["no:progress"])
    >>> result = lr_find(learner, num_it=10)
    >>> len(result.lrs) <= 10, sorted(result.suggestions)
    (True, ['min/10', 'steepest', 'valley'])

    :param learner: the learner to sweep.
    :param min_lr: the learning rate of the first batch.
    :param max_lr: the learning rate of the last batch.
    :param num_it: the number of batches.
    :param stop_div: stop once the smoothed loss exceeds ``stop_factor`` times the best.
    :param stop_factor: the divergence threshold, relative to the best smoothed loss.
    :param beta: the smoothing factor of the loss average.
    """
    from engine.data import batch_count

    finder = LRFinder(min_lr, max_lr, num_it, stop_div, stop_factor, beta)
    n_batches = batch_count(learner.data.train_dl) or 0
    epochs = math.ceil(num_it / n_batches) if n_batches else num_it
    paused = [(name, plugin) for name, plugin in learner.plugins.items() if _pauses(plugin)]
    snapshot = _Snapshot(learner)
    out_dir = learner.out_dir
    try:
        for name, _ in paused:
            learner.remove_plugin(name)
        if out_dir is not None:
            learner.out_dir = None  # observers write nothing about the sweep
        with learner.added(finder):
            learner.fit(epochs)
    finally:
        for name, plugin in paused:
            if name not in learner.plugins:
                learner.add_plugin(plugin, name)
        if out_dir is not None:
            learner.out_dir = out_dir
        snapshot.restore(learner)
    return finder.result


class _Snapshot:
    """Copies of what a sweep changes, taken from a learner and put back into it.

    The learner's state without the plugins' (see the module's docstring), plus
    what a state leaves out: the optimizer object, the gradients, the modules'
    train/eval modes and the attributes a fit sets.
    """

    def __init__(self, learner: Learner) -> None:
        # the state's tensors are the live ones: copied, as the sweep changes them
        self.state = copy.deepcopy(state_dict(learner, plugins=False))
        self.opt = learner.opt
        model = learner.model
        self.grads = [
            None if p.grad is None else p.grad.detach().clone() for p in model.parameters()
        ]
        self.modes = [module.training for module in model.modules()]
        self.attributes = {name: getattr(learner, name) for name in FIT_ATTRIBUTES}
        self.log_items = dict(learner.log)  # the same dict comes back, with these items

    def restore(self, learner: Learner) -> None:
        learner.opt = self.opt  # the sweep may have created one
        load_state_dict(learner, self.state)
        model = learner.model
        for param, grad in zip(model.parameters(), self.grads):
            param.grad = None if grad is None else grad.to(param.device)
        for module, mode in zip(model.modules(), self.modes):
            module.training = mode
        for name, value in self.attributes.items():
            setattr(learner, name, value)
        learner.log.clear()
        learner.log.update(self.log_items)


def _pauses(plugin: object) -> bool:
    """Whether ``plugin`` sits out sweeps (its ``pause_during_sweeps`` is true)."""
    return bool(getattr(plugin, PAUSE, False))


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"plugin 'lr_find': {message}")


def _run(args: argparse.Namespace) -> int:
    """``lookinside lr-find``: sweep the model ``fit`` would train, print suggestions,
    write the plot."""
    import torch

    from engine.cli import config_from_args
    from engine.cli import data_from_args
    from engine.cli import model_spec_from_args
    from engine.learner import Learner

    spec = model_spec_from_args(args)  # a bad option fails before the data loads
    catalog = args.catalog
    data = data_from_args(args, catalog)
    torch.manual_seed(args.seed)
    model = spec.build(data)
    learner = Learner(
        model, data, plugins=args.plugins, catalog=catalog, config=config_from_args(args)
    )
    try:
        result = lr_find(
            learner, args.min_lr, args.max_lr, args.num_it, not args.no_stop_div, args.stop_factor
        )
    except ValueError as exc:
        raise LookinsideError(str(exc)) from exc
    if not learner.is_main:
        return 0  # every rank swept; rank 0 reports
    print(result)
    try:
        path = result.save_plot(Path(args.out) / PLOT_FILE)
    except OSError as exc:
        raise LookinsideError(f"cannot write {PLOT_FILE} into --out {args.out}: {exc}") from exc
    print(f"wrote {path}")
    return 0


@hookimpl
def lookinside_commands(commands: Any) -> None:
    """Add ``lookinside lr-find``.

    :param commands: the sub-parsers of the ``lookinside`` parser.
    """
    from engine.cli import add_data_arguments
    from engine.cli import add_model_arguments
    from engine.cli import add_plugin_arguments

    parser = commands.add_parser(
        "lr-find",
        help="sweep the learning rate of the model fit trains (same --model, --act, --init, "
        "--norm); print suggestions, plot lr_find.png",
    )
    add_data_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--out", default="lookinside-out/lr_find", help="folder for lr_find.png")
    parser.add_argument("--min-lr", type=float, default=1e-7, help="first lr (default 1e-7)")
    parser.add_argument("--max-lr", type=float, default=10.0, help="last lr (default 10)")
    parser.add_argument("--num-it", type=int, default=100, help="batches (default 100)")
    parser.add_argument(
        "--stop-factor", type=float, default=10.0, help="divergence: smoothed > this x best"
    )
    parser.add_argument("--no-stop-div", action="store_true", help="never stop early")
    add_plugin_arguments(parser)
    parser.set_defaults(run=_run)


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`LRFinder` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(LRFinder)
