"""Checkpoints: save the whole training state every epoch, and resume from it.

:class:`Checkpoint` writes ``last.pt`` after every epoch and ``best.pt`` whenever
the monitored metric improves, each atomically (a temporary file in the same
folder, then a rename: a failed write never replaces a good file). A Ctrl-C
during a fit writes ``interrupted.pt`` before the program exits.

What a checkpoint holds, all readable with ``torch.load(path, weights_only=True)``:
the learner's state (:mod:`engine.learner_state`: the model's and the optimizer's
state dicts, so the hyper-parameters a schedule set too, the epoch and the
learner's counters, ``n_iter`` and ``n_epochs`` being a schedule's position, the
random-number states of torch CPU and CUDA, Python ``random`` and numpy, the
shuffling generators of the loaders), the per-epoch log values, the best value so
far, and the state of every attached plugin that implements the state protocol::

    def state_dict(self) -> dict: ...          # tensors, dicts, lists, tuples, str,
    def load_state_dict(self, state: dict) -> None: ...   # int, float, bool, None

Plugin states are stored under the plugin's name and given back to the plugin of
that name when resuming.

Resuming (``resume=PATH``; ``lookinside fit --resume PATH``) happens in
``begin_fit``, which this plugin runs before every other plugin's
(``event_order``, :data:`engine.order.RESUME`): after the loop reset the counters,
before ``device`` moves the model and before any other plugin's ``begin_fit``, which
then sees its own state back and ``learner.resuming`` true (a plugin that resets its
state in ``begin_fit`` must keep a restored one, as ``early_stopping`` and
``mixed_precision`` do). The file is read onto the CPU and copied into the model
wherever it lives; the optimizer's state follows its parameters (``device`` moves
both). The fit continues with the
epoch after the saved one, so training 4 epochs and training 2, stopping and
resuming for the rest give the same weights, bit for bit on the CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar
from typing import Literal

from engine import order
from engine.distributed import say
from engine.exceptions import PluginError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from engine.learner_state import StateError
from engine.learner_state import load_state_dict
from engine.learner_state import plugin_states
from engine.learner_state import state_dict
from plugins._monitor import check_monitor
from plugins._monitor import infer_mode
from plugins._state import FORMAT
from plugins._state import SAFE_HINT
from plugins._state import VERSION
from plugins._state import CheckpointError
from plugins._state import find_unsafe
from plugins._state import learner_part
from plugins._state import load_checkpoint
from plugins._state import plain
from plugins._state import save_checkpoint

if TYPE_CHECKING:
    import os

    from engine.learner import Learner

__all__ = [
    "BEST",
    "INTERRUPTED",
    "LAST",
    "Checkpoint",
    "CheckpointError",
    "infer_mode",
    "load_checkpoint",
]

LAST = "last.pt"
"""Written after every ``every``-th epoch and the last one: the state to resume from."""
BEST = "best.pt"
"""Written whenever the monitored value improves."""
INTERRUPTED = "interrupted.pt"
"""Written when Ctrl-C ends a fit: the state at the interruption."""


class Checkpoint:
    """Save the training state after every epoch (``last.pt``, ``best.pt``); resume from one.

    ``last.pt`` is written every ``every`` epochs and after the fit's last epoch;
    ``best.pt`` whenever the monitored value of ``learner.log`` improves
    (strictly; NaN never does) on the best of the current fit: each fit starts
    from no best, so a later fit into the same folder replaces ``best.pt`` with its
    own best (use a folder per fit to keep both). When another plugin stops the fit in
    ``after_epoch`` before this one saved (early stopping, say), the epoch is
    saved in ``after_cancel_train``. :attr:`history` keeps every epoch's log.

    Ctrl-C: ``interrupted.pt`` holds the state at the interruption, weights
    trained on part of an epoch included, with ``complete`` False when that
    epoch's training pass had not finished. Like any checkpoint, resuming from it
    continues with the *next* epoch: the batches of the interrupted epoch that
    had not run are skipped. For an exact continuation, resume from ``last.pt``.

    Resuming applies to the first fit after the plugin is created; the file is
    read and checked when the plugin is created. Give the resumed fit the same
    number of epochs as the one that was stopped: schedules depend on it.

    :param dir: the folder to write into; default ``<out_dir>/checkpoints``, or,
        when the learner has no out_dir, the folder of the ``resume`` file; with
        neither, the fit stops at once with an error asking for one.
    :param monitor: the ``learner.log`` value deciding ``best.pt`` (e.g.
        ``valid_loss``, ``valid_accuracy``); ``none`` writes no ``best.pt``. A
        monitor no attached plugin declares in its ``log_keys`` stops the fit at
        ``begin_fit``, before anything is written (see :mod:`plugins._monitor`).
    :param mode: ``min`` or ``max``: which way is better; ``auto`` reads it from
        the monitor's name (``loss``/``error``: min; ``acc``/``f1``/``score``: max).
    :param resume: a checkpoint to resume from (``lookinside fit --resume PATH``).
    :param every: write ``last.pt`` every this many epochs (and after the last).
    """

    name = "checkpoint"
    event_order: ClassVar[dict[str, int]] = {"begin_fit": order.RESUME, "after_fit": order.SAVE}
    """Its ``begin_fit`` runs first of all: a resumed fit's state (weights, counters,
    every plugin's state) is back, and ``learner.resuming`` is true, before any other
    plugin's ``begin_fit`` opens a file or reads the start epoch. Its ``after_fit``
    runs first too: after Ctrl-C, ``interrupted.pt`` holds the state as the fit left
    it, written before other plugins tidy up or draw their plots."""
    order = order.CHECKPOINT
    pause_during_sweeps = True
    """Detached while :func:`plugins.lr_finder.lr_find` sweeps: a sweep is not saved."""

    def __init__(
        self,
        dir: str | None = None,
        monitor: str | None = "valid_loss",
        mode: Literal["auto", "min", "max"] = "auto",
        resume: str | None = None,
        every: int = 1,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"plugin 'checkpoint': option 'every' should be a positive integer, got {every!r}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                f"plugin 'checkpoint': option 'mode' should be auto, min or max, got {mode!r}"
            )
        if monitor is not None and (not isinstance(monitor, str) or not monitor):
            raise ValueError(
                "plugin 'checkpoint': option 'monitor' should be a learner.log key such as "
                f"valid_loss, or none, got {monitor!r}"
            )
        self.dir = Path(dir) if dir is not None else None
        self.monitor = monitor
        self.mode: Literal["min", "max"] = (
            (infer_mode(monitor, "checkpoint") if monitor else "min") if mode == "auto" else mode
        )
        self.every = every
        self.resume_path = Path(resume) if resume is not None else None
        self._pending = load_checkpoint(self.resume_path) if self.resume_path else None
        self.directory: Path | None = None
        """The folder this fit writes into (set in ``begin_fit``)."""
        self.best: float | None = None
        """The best monitored value so far, and the epoch it came from."""
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []
        """Every finished epoch's ``learner.log`` (restored when resuming)."""
        self._active = False
        self._saved_epoch = -1
        self._validating = -1
        self._end_iter: int | None = None
        self._end_iter_epoch = -1
        self._last_written = -1

    # -- events --------------------------------------------------------------

    def begin_fit(self, learner: Learner) -> None:
        self._folder(learner)  # no folder to write into is an error now, not after an epoch
        self.directory = None  # made at the first begin_epoch, once ddp knows the rank
        self.best, self.best_epoch, self.history = None, None, []
        self._saved_epoch, self._validating, self._end_iter = -1, -1, None
        self._last_written, self._end_iter_epoch = -1, -1
        unsafe = find_unsafe(plugin_states(learner), "plugins")
        if unsafe:
            raise PluginError(f"plugin 'checkpoint': cannot save {unsafe}; {SAFE_HINT}")
        if self._pending is not None:
            self._restore(learner, self._pending)
            self._pending = None  # kept until it worked: a refused resume can be retried
            learner.resuming = True
        if self.monitor is not None:
            fix = ", or monitor=none to write only last.pt"
            check_monitor(learner, self.monitor, "checkpoint", fix)
        self._active = True

    def begin_epoch(self, learner: Learner) -> None:
        if self.directory is None and learner.is_main:
            # in a distributed fit, rank 0 alone writes; begin_fit ran before ddp's
            # (order.RESUME), when the rank was not known yet
            self.directory = self._folder(learner)
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise PluginError(
                    f"plugin 'checkpoint': cannot create the folder {self.directory}: {exc}"
                ) from exc
        self._end_iter = learner.n_iter + learner.iters if learner.iters else None
        self._end_iter_epoch = learner.epoch

    def begin_validate(self, learner: Learner) -> None:
        self._validating = learner.epoch

    def after_epoch(self, learner: Learner) -> None:
        self._end_epoch(learner, strict=True)

    def after_cancel_train(self, learner: Learner) -> None:
        if not (self._active and learner.is_main):
            return
        epoch = learner.epoch
        if self._saved_epoch == epoch:
            # after_epoch ran (e.g. early stopping cancelled after it) but, with
            # every > 1, may not have written last.pt: the fit's last epoch is saved
            if self._last_written != epoch:
                save_checkpoint(self._capture(learner, complete=True), self._folder(learner) / LAST)
                self._last_written = epoch
        elif self._trained(learner):
            self._end_epoch(learner, strict=False, force_last=True)

    def after_fit(self, learner: Learner) -> None:
        active, self._active = self._active, False
        if not (active and learner.is_main and isinstance(learner.error, KeyboardInterrupt)):
            return
        path = self._folder(learner) / INTERRUPTED
        try:
            save_checkpoint(self._capture(learner, complete=self._trained(learner)), path)
        except (OSError, RuntimeError, PluginError) as exc:
            # never hide the KeyboardInterrupt behind an error of ours
            print(f"checkpoint: could not write {path}: {exc}")
            return
        from engine.cli import resume_command

        print(
            f"checkpoint: interrupted in epoch {learner.epoch}; state written to "
            f"{path} (resume with: {resume_command(path)})"
        )

    # -- saving --------------------------------------------------------------

    def save(self, learner: Learner, path: str | os.PathLike[str]) -> Path:
        """Write the learner's current state to ``path`` now, atomically.

        :param learner: the learner whose state to save.
        :param path: the file to write; its folder must exist.
        :returns: the path written.
        """
        target = Path(path)
        save_checkpoint(self._capture(learner, complete=True), target)
        return target

    def _end_epoch(self, learner: Learner, strict: bool, force_last: bool = False) -> None:
        epoch = learner.epoch
        log = learner.log
        self.history.append(plain(dict(log)))
        missing = self.monitor is not None and self.monitor not in log
        value = log.get(self.monitor) if self.monitor is not None else None
        improved = False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            improved = self._better(float(value))
            if improved:
                self.best, self.best_epoch = float(value), epoch
        targets = []
        if force_last or (epoch + 1) % self.every == 0 or epoch == learner.epochs - 1:
            targets.append(LAST)
            self._last_written = epoch
        if improved:
            targets.append(BEST)
        if targets and learner.is_main:
            folder = self._folder(learner)
            paths = [folder / target for target in targets]
            save_checkpoint(self._capture(learner, complete=True), *paths)
        self._saved_epoch = epoch
        if missing and strict:
            raise ValueError(
                f"plugin 'checkpoint': monitor {self.monitor!r} is not in learner.log; "
                f"available: {', '.join(sorted(log))}. Set monitor= to one of them (the "
                "metrics plugin writes valid_loss), or monitor=none to write only last.pt"
            )

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _trained(self, learner: Learner) -> bool:
        """Whether this epoch's training pass is over (validation started or all batches ran)."""
        if self._validating == learner.epoch:
            return True
        if self._end_iter_epoch != learner.epoch:
            return False  # this epoch's begin_epoch never reached us: nothing trained
        return self._end_iter is not None and learner.n_iter >= self._end_iter

    def _capture(self, learner: Learner, complete: bool) -> dict[str, Any]:
        state = {
            "format": FORMAT,
            "version": VERSION,
            **state_dict(learner),
            "complete": complete,
            "epochs": learner.epochs,
            "iter": learner.iter,
            "in_train": learner.in_train,
            "log": plain(dict(learner.log)),
            "history": list(self.history),
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }
        unsafe = find_unsafe(state, "the checkpoint")
        if unsafe:
            raise PluginError(f"plugin 'checkpoint': cannot save {unsafe}; {SAFE_HINT}")
        return state

    # -- resuming ------------------------------------------------------------

    def _folder(self, learner: Learner) -> Path:
        if self.dir is not None:
            return self.dir
        if learner.out_dir is not None:
            return learner.out_dir / "checkpoints"
        if self.resume_path is not None:
            return self.resume_path.parent
        raise PluginError(
            "plugin 'checkpoint': no folder to write into; set dir=PATH "
            "(-p checkpoint:dir=PATH) or give the learner an out_dir (--out)"
        )

    def _restore(self, learner: Learner, state: dict[str, Any]) -> None:
        path = self.resume_path
        try:
            skipped = load_state_dict(learner, learner_part(state, learner), strict=False)
        except StateError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
        learner.epoch = state["epoch"] + 1  # the loop starts here
        self.history = list(state.get("history") or [])
        if state.get("monitor") == self.monitor and state.get("mode") == self.mode:
            self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        epoch = state["epoch"]
        what = f"after epoch {epoch}" + (
            "" if state["complete"] else " (interrupted: its remaining batches are skipped)"
        )
        left = (
            f"the fit goes on from epoch {epoch + 1} to {learner.epochs - 1}"
            if epoch + 1 < learner.epochs
            else f"nothing is left of a fit of {learner.epochs} epoch(s)"
        )
        say(f"checkpoint: resumed from {path} {what}; {left}")
        saved_epochs = state.get("epochs")
        if isinstance(saved_epochs, int) and saved_epochs != learner.epochs:
            say(
                f"checkpoint: note: it was saved during a fit of {saved_epochs} epoch(s), this "
                f"one has {learner.epochs}; schedules over the whole fit will differ"
            )
        for item in skipped:
            say(f"checkpoint: not restored: {item}")


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`Checkpoint` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(Checkpoint)
