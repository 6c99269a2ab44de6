"""Gradient accumulation: one optimizer step every N training batches.

The gradients of N batches add up between steps (the loop keeps the gradients of
a batch cancelled after backward). Each batch's gradient is divided by the size
of its group, so the accumulated gradient is the gradient of the *mean* loss over
the group: with equal batches, accumulating N batches of size b gives the step
one batch of size N·b would (up to float rounding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine import order
from engine._checks import positive_int
from engine.exceptions import CancelBatchException
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from engine.learner import Learner


class GradAccumulation:
    """Step the optimizer every ``steps`` training batches, and at the last batch of a pass.

    The batches of a training pass are grouped by their index: batches
    ``0..N-1``, ``N..2N-1``... The optimizer steps at the last batch of each
    group; the other batches end with ``CancelBatchException`` raised in
    ``after_backward``, which skips the step and keeps the gradients. The last
    group of a pass may be shorter; its gradients are averaged over its own size.
    With a loader that has no length, the last, incomplete group of a pass is
    discarded (its gradients are zeroed when the pass ends).

    The loss's gradient is divided through a hook on the loss tensor: ``learner.loss``
    itself is left alone, so every observer sees the true loss. The learner's
    counters (``n_iter``, and schedules reading them) still count batches, not
    steps. Gradients left over by a pass that ended early (a cancellation, an
    error, Ctrl-C) are zeroed, so they never leak into the next pass or fit.

    Order 45: before ``mixed_precision`` (50) and ``grad_clip`` (60) in
    ``after_backward``, so they act only on the batches that step.

    :param steps: the number of batches whose gradients make up one step.
    """

    name = "grad_accumulation"
    order = order.GRAD_ACCUMULATION

    def __init__(self, steps: int = 2) -> None:
        self.steps = positive_int("steps", steps)
        self.optimizer_steps = 0
        """How many optimizer steps this fit made (batches that were not held back)."""
        self._pending = False

    def begin_fit(self, learner: Learner) -> None:
        self.optimizer_steps = 0
        self._pending = False
        self._zero(learner)  # the first group starts from zero, whatever came before

    def begin_epoch(self, learner: Learner) -> None:
        self._discard(learner)

    def after_loss(self, learner: Learner) -> None:
        loss = learner.loss
        if not learner.in_train or self.steps == 1 or not loss.requires_grad:
            return
        size = self._group_size(learner.iter, learner.iters)
        if size > 1:
            # divide the gradient leaving the loss: learner.loss stays the true value
            loss.register_hook(lambda grad: grad / size)

    def after_backward(self, learner: Learner) -> None:
        if not self._steps_now(learner.iter, learner.iters):
            self._pending = True
            raise CancelBatchException

    def after_step(self, learner: Learner) -> None:
        self._pending = False
        self.optimizer_steps += 1

    def after_cancel_batch(self, learner: Learner) -> None:
        if learner.in_train and self._steps_now(learner.iter, learner.iters):
            # the step of a group was cancelled (e.g. mixed_precision skipped it):
            # the group is over either way
            self._discard(learner)

    def after_cancel_epoch(self, learner: Learner) -> None:
        self._discard(learner)

    def begin_validate(self, learner: Learner) -> None:
        self._discard(learner)

    def after_fit(self, learner: Learner) -> None:
        # whatever ended the fit, no gradient of a group that never stepped (nor of
        # a batch that failed) is left to leak into the next fit
        self._pending = False
        self._zero(learner)

    def _steps_now(self, index: int, iters: int) -> bool:
        return (index + 1) % self.steps == 0 or index + 1 == iters

    def _group_size(self, index: int, iters: int) -> int:
        if not iters:
            return self.steps  # no length: every group is taken to be full
        start = index - index % self.steps
        return min(self.steps, iters - start)

    def _discard(self, learner: Learner) -> None:
        """Zero the gradients of a group that will never step."""
        if self._pending:
            self._zero(learner)
        self._pending = False

    def _zero(self, learner: Learner) -> None:
        if learner.opt is not None:
            learner.opt.zero_grad()
        else:
            learner.model.zero_grad()


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`GradAccumulation` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(GradAccumulation)
