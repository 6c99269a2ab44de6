"""Stop the fit at the first loss that is NaN or infinite, and say where."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine import order
from engine._checks import positive_int
from engine.exceptions import CancelTrainException
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from engine.learner import Learner


class TerminateOnNan:
    """Raise ``CancelTrainException`` when a batch's loss is not finite.

    Checks training and validation batches in ``after_loss``, at order 5: before
    the ``metrics`` observer (10) averages the loss and before backward, so a NaN
    never reaches the weights. It prints one line and keeps it in :attr:`reason`,
    e.g. ``terminate_on_nan: the loss is nan at epoch 2, training batch 16 (iteration
    56); training stopped``: indices from 0, as ``learner.epoch``, ``learner.iter``
    and ``learner.n_iter`` (and the ``epoch`` column of the log) count them.

    Reading the loss back costs one host-device synchronisation per checked
    batch; ``every=N`` checks only every N-th batch (a NaN then is caught up to
    N-1 batches late, if the loss stays non-finite, which it usually does).

    :param every: check the loss of every this many batches (training and
        validation together).
    """

    name = "terminate_on_nan"
    order = order.TERMINATE_ON_NAN

    def __init__(self, every: int = 1) -> None:
        self.every = positive_int("every", every)
        self.reason: str | None = None
        """Why the last fit was stopped, or None if it was not."""
        self._count = 0

    def begin_fit(self, learner: Learner) -> None:
        self.reason = None
        self._count = 0

    def after_loss(self, learner: Learner) -> None:
        import torch

        self._count += 1
        if self._count % self.every:
            return
        loss = learner.loss
        if not isinstance(loss, torch.Tensor):
            return
        if bool(torch.isfinite(loss).all()):  # the host-device synchronisation
            return
        value = loss.detach().reshape(-1)[0].item() if loss.numel() == 1 else "not finite"
        where = "training" if learner.in_train else "validation"
        iteration = f" (iteration {learner.n_iter})" if learner.in_train else ""
        self.reason = (
            f"terminate_on_nan: the loss is {value} at epoch {learner.epoch}, {where} "
            f"batch {learner.iter}{iteration}; training stopped"
        )
        # only the rank that saw it knows: in a distributed fit, it says which it is
        print(self.reason if learner.world_size == 1 else f"rank {learner.rank}: {self.reason}")
        raise CancelTrainException(self.reason, printed=True)


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`TerminateOnNan` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(TerminateOnNan)
