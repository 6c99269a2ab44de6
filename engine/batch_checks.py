"""Check the fit's first batch against the model and the loss, and say what is wrong.

torch reports a mismatch between the model, the targets and the loss function in
its own terms, if at all: ``Target 12 is out of bounds``, ``expected scalar type
Long but found Float``, a size mismatch deep in a kernel, or, on a GPU, a
device-side assert that ends the process. The loop checks the first training batch
of each fit once (:func:`check_targets`, one read of the labels' range from the
device) and, when the model or the loss raises on it, adds a note with the batch's
shapes (:func:`describe_batch`). What is checked, for ``cross_entropy`` or
``nll_loss`` (function or module) on an output ``(N, C)`` and targets ``(N,)``:

- as many outputs as targets;
- integer labels between 0 and ``C - 1`` (the loss's ``ignore_index``, -100 by
  default, left out): a negative label, or one the model has no output for (fewer
  outputs than classes);
- float labels, where the loss needs class indices.

Anything else (regression, segmentation, sequence losses, a loss of your own) is
left to the loss.
The errors are :class:`~engine.exceptions.BatchError`: one line on the command line,
exit status 2, before anything was trained or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from engine.exceptions import BatchError

if TYPE_CHECKING:
    from collections.abc import Callable


def describe(value: Any) -> str:
    """``(16, 10) float32``: a tensor's shape and dtype; else its type's name.

    :param value: a tensor or anything else.
    """
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is None or dtype is None:
        return type(value).__name__
    return f"{tuple(shape)} {str(dtype).removeprefix('torch.')}"


def describe_batch(xb: Any, yb: Any, pred: Any = None) -> str:
    """A note for an error on the first batch: what went in (and came out).

    :param xb: the inputs.
    :param yb: the targets.
    :param pred: the model's output, when the loss failed.
    """
    text = f"on the fit's first batch: inputs {describe(xb)}, targets {describe(yb)}"
    if pred is not None:
        text += f", model output {describe(pred)}"
    return text


SINGLE_SAMPLE = (
    "a training batch of one sample ({inputs}): batch norm cannot normalize a single "
    "value per channel; drop the last batch (drop_last=True) or pick a batch size that "
    "leaves no single sample over"
)
"""The note on an error raised by the model on a training batch of one sample."""


def forward_note(exc: BaseException, xb: Any, yb: Any, first: bool) -> str | None:
    """The note for an error the model raised on a training batch, if any helps.

    On the fit's first batch, the batch's shapes (the model's input is the usual
    suspect: flat rows into a convolution...); when batch norm refused a batch of
    one sample, why (the last batch of an epoch can be that small).

    :param exc: what the model raised.
    :param xb: the inputs.
    :param yb: the targets.
    :param first: whether this is the fit's first training batch.
    """
    if "Expected more than 1 value per channel" in str(exc):
        return SINGLE_SAMPLE.format(inputs=describe(xb))
    return describe_batch(xb, yb) if first else None


def is_cross_entropy(loss_func: Callable[..., Any]) -> bool:
    """Whether ``loss_func`` takes class indices: ``cross_entropy`` or ``nll_loss``,
    as functions or modules."""
    import torch.nn.functional as F
    from torch import nn

    return loss_func in (F.cross_entropy, F.nll_loss) or isinstance(
        loss_func, (nn.CrossEntropyLoss, nn.NLLLoss)
    )


def check_targets(pred: Any, yb: Any, loss_func: Callable[..., Any]) -> None:
    """Before the first loss of a fit: the targets fit the model's output.

    :param pred: the model's output for the batch.
    :param yb: the batch's targets.
    :param loss_func: the learner's loss function.
    :raises BatchError: a mismatch, saying which and how to fix it.
    """
    import torch

    if not (isinstance(pred, torch.Tensor) and isinstance(yb, torch.Tensor)):
        return
    if not (pred.dim() == 2 and yb.dim() == 1 and is_cross_entropy(loss_func)):
        return  # not classification with cross_entropy: the loss knows what it needs
    shapes = f"model output {describe(pred)}, targets {describe(yb)}"
    if pred.shape[0] != yb.shape[0]:
        raise BatchError(
            f"the model gave {pred.shape[0]} outputs for {yb.shape[0]} targets ({shapes}): "
            "the model must keep the batch dimension first"
        )
    classes = pred.shape[1]
    if yb.is_floating_point():
        raise BatchError(
            f"the labels are {str(yb.dtype).removeprefix('torch.')} but cross_entropy "
            f"takes class indices ({shapes}): give integer labels (yb.long()), or a "
            "loss for float targets (loss_func=F.mse_loss...)"
        )
    ignored = getattr(loss_func, "ignore_index", -100)  # cross_entropy's default
    kept = yb[yb != ignored]
    if yb.dtype == torch.bool or kept.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(kept)).tolist()  # the one read from the device
    if low < 0:
        raise BatchError(
            f"the first batch has a negative label, {low} ({shapes}): labels should be "
            f"class indices 0..{classes - 1}"
        )
    if high >= classes:
        raise BatchError(
            f"the first batch has label {high} but the model has {classes} outputs "
            f"({shapes}): give the model at least {high + 1} outputs (the data's number of "
            "classes, data.c), or check the labels"
        )
