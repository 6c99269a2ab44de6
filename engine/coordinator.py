"""The loop's partner at its sync points: nobody in one process, the other ranks in several.

The loop calls ``learner.coordinator`` at named points of a fit and knows nothing
of ranks. In a single process the :class:`Coordinator` does nothing at any of
them. The ``ddp`` plugin installs a
:class:`~engine.distributed.DistributedCoordinator` for the length of a fit: at
each point every rank casts a :class:`Vote` for what it is doing, and all of them
act on the strongest (see :mod:`engine.distributed`).

The points, in the order a fit meets them::

    begin_fit
    for each epoch:
        begin_pass(training=True)        # then begin_epoch
        for each training batch:
            before_forward()             # after begin_batch
            before_backward()            # after after_loss
        end_of_pass()                    # this process has no batch left
        begin_pass(training=False)       # then begin_validate
        ... validation batches: no point ...
        end_of_pass()
        before_epoch_ends()              # then after_epoch
        end_of_epoch()                   # after after_epoch
    cancelled(exc)                       # whenever the loop catches a cancellation
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from engine.exceptions import CancelBatchException
from engine.exceptions import CancelEpochException
from engine.exceptions import CancelException
from engine.exceptions import CancelTrainException


class Vote(IntEnum):
    """What a process says at a sync point, weakest first: the strongest vote cast
    by any process is what every process does."""

    GOING_ON = 0
    CANCEL_BATCH = 1
    PASS_OVER = 2
    """This process has no batch left in the pass: the others end theirs too."""
    CANCEL_EPOCH = 3
    CANCEL_TRAIN = 4

    @property
    def words(self) -> str:
        """The vote in words, for messages: ``cancel the pass``."""
        return _WORDS[self]

    @classmethod
    def of(cls, exc: CancelException) -> Vote:
        """The vote a process casts after raising ``exc`` itself."""
        for kind, vote in _VOTES:
            if isinstance(exc, kind):
                return vote
        raise TypeError(f"no vote stands for {type(exc).__name__}")

    def exception(self, message: str) -> CancelException:
        """The cancellation every process raises when this vote wins.

        ``PASS_OVER`` cancels the batch under way; the coordinator then reports
        :attr:`Coordinator.pass_over` so the loop ends the pass after it.
        """
        if self is Vote.GOING_ON:
            raise ValueError("going on is not a cancellation")
        kinds: dict[Vote, type[CancelException]] = {
            Vote.CANCEL_BATCH: CancelBatchException,
            Vote.PASS_OVER: CancelBatchException,
            Vote.CANCEL_EPOCH: CancelEpochException,
            Vote.CANCEL_TRAIN: CancelTrainException,
        }
        return kinds[self](message)


_WORDS = {
    Vote.GOING_ON: "going on",
    Vote.CANCEL_BATCH: "cancel the batch",
    Vote.PASS_OVER: "out of batches",
    Vote.CANCEL_EPOCH: "cancel the pass",
    Vote.CANCEL_TRAIN: "cancel the fit",
}

_VOTES: tuple[tuple[type[CancelException], Vote], ...] = (
    (CancelTrainException, Vote.CANCEL_TRAIN),
    (CancelEpochException, Vote.CANCEL_EPOCH),
    (CancelBatchException, Vote.CANCEL_BATCH),
)


class Coordinator:
    """The single-process coordinator: every point is a no-op.

    A subclass overrides the points it needs; the loop calls them all. Points may
    raise a cancellation, which the loop handles as if a plugin had raised it there.
    """

    pass_over = False
    """Whether another process ran out of batches: the loop ends the pass after the
    (cancelled) batch under way."""

    def begin_pass(self, training: bool) -> None:
        """A pass over the training (or validation) loader is about to begin."""

    def before_forward(self) -> None:
        """A training batch is about to go through the model."""

    def before_backward(self) -> None:
        """A training batch's loss is about to be back-propagated."""

    def end_of_pass(self) -> None:
        """This process went through every batch of its loader."""

    def before_epoch_ends(self) -> None:
        """Both passes are over; ``after_epoch`` comes next."""

    def end_of_epoch(self) -> None:
        """Every ``after_epoch`` receiver ran."""

    def cancelled(self, exc: CancelException, after_backward: bool = False) -> None:
        """The loop caught ``exc`` (raised by a plugin, or by this coordinator).

        :param after_backward: ``exc`` cancels a training batch after its backward.
        """

    def add_reduction(self, reduce: Callable[[], None]) -> None:
        """Run ``reduce`` in :meth:`before_epoch_ends`, where every process does.

        For a plugin whose after_epoch needs the other processes' numbers: its
        own ``after_epoch`` might not run on a process where an earlier receiver
        cancelled, and a collective operation there would wait for ever. In a
        single process it is never called: the plugin reads its own numbers.
        """
