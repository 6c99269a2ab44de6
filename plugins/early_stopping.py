"""Stop a fit when a monitored metric stops improving, and say why.

:class:`EarlyStopping` reads one key of ``learner.log`` after each epoch (the
``metrics`` observer writes ``train_loss``, ``valid_loss``, ``valid_accuracy``...
there), counts the epochs without improvement, and stops the fit with
``CancelTrainException`` once there are ``patience`` of them in a row. It runs
last in ``after_epoch`` (order 100), after every observer that logs or records
the epoch, so the epoch it stops at is logged like the others.
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from engine import order
from engine._checks import integer
from engine._checks import is_number
from engine._checks import number
from engine._checks import one_of
from engine.distributed import say
from engine.exceptions import CancelTrainException
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from plugins._monitor import check_monitor
from plugins._monitor import infer_mode

if TYPE_CHECKING:
    from engine.learner import Learner


class EarlyStopping:
    """Stop training once ``monitor`` has not improved for ``patience`` epochs.

    An epoch improves on the best value so far when its value is below
    ``best - min_delta`` (mode ``min``) or above ``best + min_delta`` (``max``);
    the first epoch always sets the best. ``patience`` is the number of epochs
    in a row without improvement that stops the fit: 1 stops at the first one.
    An epoch whose value is ``None`` (a pass that saw no batch, e.g. no
    validation data) neither improves nor counts. With ``check_finite`` a NaN or
    infinite value stops at once, and so does a value worse than
    ``divergence_threshold``. The reason is printed on one line and kept in
    :attr:`stopped_reason`; epochs are numbered from 0, like ``learner.epoch``.

    ``restore_best`` keeps a copy of the model's ``state_dict`` (weights and
    buffers) at the best epoch, on the model's device: one more model's worth of
    memory there. It is loaded back when the fit ends, however it ends (stopped
    here, by another plugin, by an error or Ctrl-C), and then released.

    The ``checkpoint`` plugin saves and restores this plugin's state
    (:meth:`state_dict`, :meth:`load_state_dict`), so a resumed fit stops where
    the uninterrupted one would have.

    :param monitor: the key of learner.log to watch, e.g. valid_loss, valid_accuracy;
        one no attached plugin declares in its ``log_keys`` stops the fit at begin_fit.
    :param mode: min (lower is better), max, or auto: from the name (loss, error: min;
        accuracy, f1: max).
    :param patience: epochs in a row without improvement that stop the fit (>= 1).
    :param min_delta: the smallest change that counts as an improvement (>= 0).
    :param restore_best: load the weights of the best epoch when the fit ends.
    :param check_finite: stop at once when the value is NaN or infinite.
    :param divergence_threshold: stop at once when the value is worse than this.
    :param verbose: print the reason when it stops the fit.
    """

    name = "early_stopping"
    order = order.EARLY_STOPPING
    pause_during_sweeps = True
    """Detached while :func:`plugins.lr_finder.lr_find` sweeps: a sweep is never stopped early."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        mode: Literal["min", "max", "auto"] = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = False,
        check_finite: bool = True,
        divergence_threshold: float | None = None,
        verbose: bool = True,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(
                f"monitor should be a key of learner.log such as valid_loss, got {monitor!r}"
            )
        one_of("mode", mode, ("min", "max", "auto"))
        self.patience = integer("patience", patience, at_least=1)
        self.min_delta = number("min_delta", min_delta, non_negative=True, finite=True)
        if divergence_threshold is not None:
            number("divergence_threshold", divergence_threshold, finite=True)
        self.monitor = monitor
        self.mode: Literal["min", "max"] = (
            infer_mode(monitor, "early_stopping") if mode == "auto" else mode
        )
        """``min`` or ``max``, resolved from ``auto``."""
        self.restore_best = bool(restore_best)
        self.check_finite = bool(check_finite)
        self.divergence_threshold = divergence_threshold
        self.verbose = bool(verbose)
        self.best: float | None = None
        """The best value of the current (or last) fit."""
        self.best_epoch: int | None = None
        """The epoch of :attr:`best`."""
        self.wait = 0
        """Epochs in a row without improvement."""
        self.stopped_epoch: int | None = None
        """The epoch after which this plugin stopped the fit, else ``None``."""
        self.stopped_reason: str | None = None
        """Why this plugin stopped the fit (the line it printed), else ``None``."""
        self._best_state: dict[str, Any] | None = None
        self._last_epoch: int | None = None
        self._learner: weakref.ref[Learner] | None = None
        self._loaded = False

    def begin_fit(self, learner: Learner) -> None:
        check_monitor(learner, self.monitor, "early_stopping", "")
        self._learner = weakref.ref(learner)
        if self._loaded:  # resumed: checkpoint's begin_fit (order.RESUME) just loaded our state
            self._loaded = False
            if self.stopped_reason is not None:
                printed = self._announce(" (restored from the checkpoint)")
                raise CancelTrainException(self.stopped_reason, printed=printed)
            return
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.stopped_epoch = None
        self.stopped_reason = None
        self._best_state = None
        self._last_epoch = None

    def after_epoch(self, learner: Learner) -> None:
        self._evaluate(learner)
        if self.stopped_epoch == learner.epoch:
            printed = self._announce()
            raise CancelTrainException(self.stopped_reason or "", printed=printed)

    def after_fit(self, learner: Learner) -> None:
        state, self._best_state = self._best_state, None
        if state is not None:
            learner.model.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint saves: the best value, its epoch and weights, the count.

        The checkpoint plugin (order 80) asks during ``after_epoch``, before this
        plugin (order 100) has run: the epoch being saved is evaluated first, so
        a fit resumed from that checkpoint decides exactly as the uninterrupted
        one (and stops at once if this epoch stops it).
        """
        learner = self._learner() if self._learner is not None else None
        log = learner.log if learner is not None else {}
        if learner is not None and log.get("epoch") == learner.epoch and self.monitor in log:
            self._evaluate(learner)
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "last_epoch": self._last_epoch,
            "stopped_epoch": self.stopped_epoch,
            "stopped_reason": self.stopped_reason,
            "best_state": self._best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave; the next ``begin_fit`` keeps it.

        :param state: a dict from :meth:`state_dict` (a checkpoint's copy).
        """
        if (state.get("monitor"), state.get("mode")) != (self.monitor, self.mode):
            say(
                f"early_stopping: the checkpoint monitored {state.get('monitor')!r} "
                f"({state.get('mode')}), this fit {self.monitor!r} ({self.mode}): starting afresh"
            )
            return
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.wait = state["wait"]
        self._last_epoch = state["last_epoch"]
        self.stopped_epoch = state["stopped_epoch"]
        self.stopped_reason = state["stopped_reason"]
        # the best weights only matter when this fit restores them
        self._best_state = state["best_state"] if self.restore_best else None
        if self.restore_best and self._best_state is None and self.best is not None:
            say(
                "early_stopping: the checkpoint holds no best weights (it was saved with "
                "restore_best=false); the best weights before the resume cannot be restored"
            )
        self._loaded = True

    def _evaluate(self, learner: Learner) -> None:
        """Count this epoch (once); on a stop, set the stopped_* attributes."""
        import torch

        epoch = learner.epoch
        if self._last_epoch == epoch:
            return
        log = learner.log
        if self.monitor not in log:
            raise ValueError(
                f"plugin 'early_stopping': learner.log has no {self.monitor!r} at epoch "
                f"{epoch}; available: {', '.join(log) or 'none'} (set monitor=...)"
            )
        value = log[self.monitor]
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if value is not None and not is_number(value):
            raise TypeError(
                f"plugin 'early_stopping': learner.log[{self.monitor!r}] should be a number, "
                f"got {type(value).__name__} {value!r}"
            )
        self._last_epoch = epoch
        if value is None:
            return
        value = float(value)
        finite = math.isfinite(value)
        if not finite and self.check_finite:
            self._stop(epoch, f"{self.monitor} is {value}")
        elif finite and self._diverged(value):
            sign = ">" if self.mode == "min" else "<"
            self._stop(epoch, f"{self.monitor} = {value:.6g} {sign} {self.divergence_threshold:g}")
        elif finite and self._improves(value):
            self.best = value
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best:
                self._best_state = {
                    key: tensor.detach().clone()
                    for key, tensor in learner.model.state_dict().items()
                }
        else:
            self.wait += 1
            if self.wait >= self.patience:
                delta = f" by more than {self.min_delta:g}" if self.min_delta else ""
                why = f"{self.monitor} did not improve{delta} for {self.wait} epoch(s)"
                self._stop(epoch, why)

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _diverged(self, value: float) -> bool:
        limit = self.divergence_threshold
        if limit is None:
            return False
        return value > limit if self.mode == "min" else value < limit

    def _stop(self, epoch: int, why: str) -> None:
        best = "no best yet"
        if self.best is not None:
            best = f"best {self.monitor} {self.best:.6g} at epoch {self.best_epoch}"
            if self.restore_best:
                best += " (restored when the fit ends)"
        self.stopped_epoch = epoch
        self.stopped_reason = f"early_stopping: stopped after epoch {epoch}: {why}; {best}"

    def _announce(self, suffix: str = "") -> bool:
        """Print why the fit stops (when verbose, on rank 0); returns whether it did."""
        learner = self._learner() if self._learner is not None else None
        if learner is not None and not learner.is_main:
            return True  # every rank stops; rank 0 says so
        if self.verbose and self.stopped_reason is not None:
            print(self.stopped_reason + suffix, flush=True)
            return True
        return False

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, mode={self.mode!r}, "
            f"patience={self.patience}, min_delta={self.min_delta:g})"
        )


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`EarlyStopping` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(EarlyStopping)
