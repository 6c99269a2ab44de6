"""Exceptions: the cancellations that steer the loop, and the errors users see."""

from __future__ import annotations


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
    """Stop the fit: ``after_cancel_train`` fires, then ``after_fit``."""


class LookinsideError(Exception):
    """Base of the errors caused by bad input; the CLI prints them on one line."""


class PluginError(LookinsideError):
    """A plugin could not be found, loaded, configured or attached."""


class PluginValidationError(PluginError):
    """A plugin breaks the plugin contract (event names, receiver signatures)."""


class DataError(LookinsideError):
    """A dataset could not be found or read."""
