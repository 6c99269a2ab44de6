"""The training loop's events: one blinker signal per event, in our own namespace.

Every event is sent with the :class:`~engine.learner.Learner` as the sender and no
other argument, so a receiver looks like ``def after_loss(self, learner) -> None``.
Signals are connected per learner, so two learners in one process never see each
other's events.

Firing order of one ``learner.fit(epochs)``::

    begin_fit
    for each epoch:
        begin_epoch                      # training pass starts
        for each training batch:
            begin_batch
            after_pred
            after_loss
            after_backward               # training only
            after_step                   # training only; zero_grad follows
            [after_cancel_batch]         # only if CancelBatchException was raised
            after_batch
        [after_cancel_epoch]             # only if CancelEpochException was raised
        begin_validate                   # validation pass, no_grad + eval mode
        for each validation batch:
            begin_batch, after_pred, after_loss, [after_cancel_batch], after_batch
        [after_cancel_epoch]
        after_epoch
    [after_cancel_train]                 # only if CancelTrainException was raised
    after_fit                            # always: also on errors and Ctrl-C

Which events still fire after a cancellation:

=========================  ===============================  ==================================
raised                     skips                            then fires
=========================  ===============================  ==================================
CancelBatchException       the rest of this batch           after_cancel_batch, after_batch,
                                                            then the next batch
CancelEpochException       the rest of this pass (training  after_cancel_epoch, then
                           or validation)                   begin_validate (if raised while
                                                            training) or after_epoch
CancelTrainException       everything left of the fit       after_cancel_train, after_fit
any other exception,       everything left of the fit       after_fit, then the exception
KeyboardInterrupt                                           propagates unchanged
=========================  ===============================  ==================================

In a distributed fit (``ddp``), the ranks agree on cancellations at sync points
(:mod:`engine.distributed`): one rank's cancellation happens on every rank. When
another rank runs out of training batches first, the batch this rank began ends with
``after_cancel_batch`` and ``after_batch``, and its pass ends without
``after_cancel_epoch``.

A cancellation raised from an event where it has nothing to cancel (for example
``CancelBatchException`` from ``after_epoch``) is not caught by the loop: it
propagates like any other exception. ``CancelTrainException`` is caught from every
event but ``after_cancel_train`` and ``after_fit``.

The order in which receivers of one event run is set by each plugin's ``order``
(lower first), then by the order the plugins were added. Receivers connected
by hand to a signal (``after_loss.connect(f)``, any sender, or ``sender=learner``
for one learner) run before the learner's plugins, in connection order; with
``sender=ANY`` they see every learner's events. Plugins are not connected to the
signals: each learner's :class:`~engine.bus.PluginBus` keeps their receivers.
"""

from __future__ import annotations

from typing import cast

from blinker import NamedSignal
from blinker import Namespace

from engine._ordered_set import OrderedSet


class OrderedSignal(NamedSignal):
    """A blinker signal that calls its receivers in the order they were connected.

    Only receivers connected by hand live on the signals: a learner's plugins are
    kept, in their own order, by the learner's :class:`~engine.bus.PluginBus`.
    """

    set_class = OrderedSet  # type: ignore[assignment]  # a set in all but its order


class _EventNamespace(Namespace):
    """The namespace of our events; its signals keep their receivers in order."""

    def signal(self, name: str, doc: str | None = None) -> OrderedSignal:
        if name not in self:
            self[name] = OrderedSignal(name, doc)
        return cast(OrderedSignal, self[name])


events = _EventNamespace()
"""The namespace holding every event of the training loop, and nothing else."""

begin_fit = events.signal(
    "begin_fit",
    doc="The fit starts. Set: model, data, opt, epochs, loss_func, out_dir, epoch=0, "
    "resuming=False; checkpoint's receiver runs first (order.RESUME) and, resuming, "
    "restores every state, moves epoch and sets resuming. May raise CancelTrainException.",
)
begin_epoch = events.signal(
    "begin_epoch",
    doc="A training pass starts. Set: epoch, dl (the training loader), log (empty "
    "but for 'epoch'). May raise CancelEpochException or CancelTrainException.",
)
begin_batch = events.signal(
    "begin_batch",
    doc="A batch starts. Set: xb, yb, in_train, iter (index in this pass). Receivers "
    "may replace xb and yb. May raise CancelBatchException, CancelEpochException "
    "or CancelTrainException.",
)
after_pred = events.signal(
    "after_pred",
    doc="The forward pass is done. Set: pred. Receivers may replace pred. May raise "
    "any cancellation.",
)
after_loss = events.signal(
    "after_loss",
    doc="The loss is computed. Set: loss. Receivers may replace loss (before "
    "backward). May raise any cancellation.",
)
after_backward = events.signal(
    "after_backward",
    doc="Training only: gradients are computed, the step has not happened. May "
    "raise CancelBatchException to skip the step, or any other cancellation.",
)
after_step = events.signal(
    "after_step",
    doc="Training only: the optimizer stepped; zero_grad comes next. May raise any cancellation.",
)
after_cancel_batch = events.signal(
    "after_cancel_batch",
    doc="CancelBatchException was raised during this batch; after_batch follows. "
    "May raise CancelEpochException or CancelTrainException.",
)
after_batch = events.signal(
    "after_batch",
    doc="The batch is over (also when it was cancelled). Set: xb, yb, and pred and "
    "loss unless the batch was cancelled before them. May raise "
    "CancelEpochException or CancelTrainException.",
)
after_cancel_epoch = events.signal(
    "after_cancel_epoch",
    doc="CancelEpochException ended the current pass (training or validation). "
    "Validation still follows a cancelled training pass. May raise "
    "CancelTrainException.",
)
begin_validate = events.signal(
    "begin_validate",
    doc="The validation pass starts, under torch.no_grad(). Set: dl (the validation "
    "loader), in_train=False. May raise CancelEpochException to skip validation, "
    "or CancelTrainException.",
)
after_epoch = events.signal(
    "after_epoch",
    doc="The epoch is over; both passes are done. Observers write per-epoch values "
    "into learner.log here. May raise CancelTrainException.",
)
after_cancel_train = events.signal(
    "after_cancel_train",
    doc="CancelTrainException stopped the fit; after_fit follows. Raises nothing the loop catches.",
)
after_fit = events.signal(
    "after_fit",
    doc="The fit is over: always sent, also after an error or KeyboardInterrupt, "
    "so plugins release what they hold here. Set: error (the exception ending the "
    "fit, or None). Raises nothing the loop catches.",
)

EVENTS: tuple[str, ...] = (
    "begin_fit",
    "begin_epoch",
    "begin_batch",
    "after_pred",
    "after_loss",
    "after_backward",
    "after_step",
    "after_cancel_batch",
    "after_batch",
    "after_cancel_epoch",
    "begin_validate",
    "after_epoch",
    "after_cancel_train",
    "after_fit",
)
"""Every event name, in the order the loop first sends them."""
