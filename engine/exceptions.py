"""Exceptions: the cancellations that steer the loop, and the errors users see."""

from __future__ import annotations

from typing import Any


class CancelException(Exception):
    """Base of the cancellations; raise one of its subclasses, not this."""


class CancelBatchException(CancelException):
    """Skip the rest of this batch: ``after_cancel_batch`` fires, then ``after_batch``.

    Raised from ``after_backward`` it skips the optimizer step.
    """


class CancelEpochException(CancelException):
    """End the current pass over one loader: ``after_cancel_epoch`` fires.

    Raised during training, validation still runs; raised during validation,
    ``after_epoch`` follows.
    """


class CancelTrainException(CancelException):
    """Stop the fit: ``after_cancel_train`` fires, then ``after_fit``.

    Say why in the message, ``CancelTrainException("ratio 3.2 > 0.5 for 5 steps")``:
    the learner keeps the exception in ``learner.cancelled``, and ``progress`` shows
    the reason after the epoch rows (``stopped after epoch N: REASON``). A plugin
    that already printed it passes ``printed=True``, and ``progress`` does not
    repeat it.

    :param reason: why the fit stops.
    :param printed: whether the raiser printed the reason itself.
    """

    def __init__(self, reason: str = "", *, printed: bool = False) -> None:
        super().__init__(*([reason] if reason else []))
        self.printed = printed
        """Whether the raiser printed the reason itself (``progress`` then does not)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while the ``lookinside`` command ran (a scheduler, ``docker stop``).

    A ``KeyboardInterrupt``, so that everything that handles Ctrl-C handles it
    too: the fit ends, every ``after_fit`` receiver runs, ``checkpoint`` writes
    ``interrupted.pt``. The command then prints one line and exits with 143.
    """


class LookinsideError(Exception):
    """Base of the errors caused by bad input; the CLI prints them on one line."""


class PluginError(LookinsideError):
    """A plugin could not be found, loaded, configured or attached."""


class PluginValidationError(PluginError):
    """A plugin breaks the plugin contract (event names, receiver signatures)."""


class PluginValueError(PluginError, ValueError):
    """A plugin created by name rejected an option's value; the message names the plugin.

    Both a :class:`PluginError` (the CLI prints it on one line) and the
    ``ValueError`` the plugin raised, which is its ``__cause__``.
    """


class PluginTypeError(PluginError, TypeError):
    """A plugin created by name rejected an option's type; the message names the plugin.

    Both a :class:`PluginError` and the ``TypeError`` the plugin raised, which is
    its ``__cause__``.
    """


class OptimizerError(LookinsideError, TypeError):
    """``opt_func`` cannot be called as ``opt_func(params, lr=lr)``, or built no optimizer.

    Also a ``TypeError``: the learner's ``opt_func`` has the wrong type of value.
    """


class DataError(LookinsideError):
    """A dataset could not be found or read."""


class BatchError(LookinsideError, ValueError):
    """The fit's first batch does not fit the model or the loss (:mod:`engine.batch_checks`):
    labels out of range, float labels for cross_entropy, fewer outputs than targets."""


class TrainingDiverged(LookinsideError):
    """The loss became NaN or infinite: the weights are lost, training cannot go on.

    Observers that write files skip them when a fit ended this way
    (:func:`diverged`): the pictures of an earlier, good run in the same folder
    are worth more than pictures of NaN.
    """


def diverged(learner: Any) -> bool:
    """Whether ``learner``'s fit ended with :class:`TrainingDiverged` (read in ``after_fit``).

    :param learner: the learner, in ``after_fit``.
    """
    return isinstance(getattr(learner, "error", None), TrainingDiverged)
