"""Gradient clipping, by the total norm or by value, between backward and the step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine import order
from engine._checks import number
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

    from engine.learner import Learner


class GradClip:
    """Clip the gradients before every optimizer step.

    With ``max_norm``, all gradients are scaled down together so that their total
    norm (``torch.nn.utils.clip_grad_norm_``) is at most ``max_norm``; with
    ``max_value``, each gradient element is clamped to ``[-max_value, max_value]``
    (``torch.nn.utils.clip_grad_value_``). Give exactly one. The parameters
    clipped are those of the optimizer's parameter groups.

    Runs in ``after_backward`` at order 60: after ``mixed_precision`` unscaled
    the gradients (50) and after ``grad_accumulation`` skipped the batches that do
    not step (45), so only the accumulated gradient is clipped, once per step.
    :attr:`total_norm` is the norm before clipping of the last step (a tensor:
    reading it synchronises with the device); by-value clipping leaves it None.

    :param max_norm: the largest total norm allowed.
    :param max_value: the largest absolute value allowed per gradient element.
    :param norm_type: the p of the p-norm for ``max_norm`` (``inf`` for the max).
    """

    name = "grad_clip"
    order = order.GRAD_CLIP

    def __init__(
        self,
        max_norm: float | None = None,
        max_value: float | None = None,
        norm_type: float = 2.0,
    ) -> None:
        if (max_norm is None) == (max_value is None):
            raise ValueError(
                "give exactly one of the options 'max_norm' and 'max_value', got "
                f"max_norm={max_norm!r} and max_value={max_value!r}"
            )
        self.norm_type = number("norm_type", norm_type, positive=True)
        self.max_norm = (
            None if max_norm is None else number("max_norm", max_norm, positive=True, finite=True)
        )
        self.max_value = (
            None
            if max_value is None
            else number("max_value", max_value, positive=True, finite=True)
        )
        self.total_norm: torch.Tensor | None = None
        """The gradients' total norm before the last clipping (``max_norm`` only)."""

    def begin_fit(self, learner: Learner) -> None:
        self.total_norm = None

    def after_backward(self, learner: Learner) -> None:
        import torch

        opt = learner.opt
        if opt is None:
            return
        params = [p for group in opt.param_groups for p in group["params"]]
        if self.max_norm is not None:
            self.total_norm = torch.nn.utils.clip_grad_norm_(
                params, self.max_norm, norm_type=self.norm_type
            )
        elif self.max_value is not None:
            torch.nn.utils.clip_grad_value_(params, self.max_value)


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`GradClip` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(GradClip)
