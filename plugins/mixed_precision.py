"""Mixed precision: the forward pass and the loss under autocast, steps with inf/NaN skipped.

On the CPU, autocast runs in bfloat16, whose range is float32's: no loss scaling
is needed. On CUDA it runs in float16 with a ``torch.amp.GradScaler``: the loss's
gradient is multiplied by a large scale so that small gradients survive float16,
the gradients are unscaled before the step, and a step whose gradients hold an
inf or a NaN is skipped (the scale then shrinks).

The loop calls ``loss.backward()`` and ``opt.step()`` itself, so the plugin works
through the loop's door around the forward and through events:

- ``around_forward``: the loop enters ``torch.autocast`` around the model's forward
  and around the loss, in training and validation, and always leaves it: the events,
  the backward pass and the other plugins run outside it;
- ``begin_batch``: publish the scaler's factor as ``learner.grad_scale``;
- ``after_loss``: in training, with a scaler, put a hook on the loss that scales the
  gradient flowing out of it. ``learner.loss`` itself is never replaced: every
  observer sees the true, unscaled float32 loss;
- ``after_backward``: unscale the gradients, then check them; if one is not
  finite, zero them, update the scaler and raise ``CancelBatchException`` (the
  step does not happen);
- ``after_step``: update the scaler.

Plugins that read gradients in ``after_backward`` (``grad_clip``) should run after
this one, and ``grad_accumulation`` before it (:mod:`engine.order`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal

from engine import order
from engine._checks import boolean
from engine._checks import one_of
from engine.exceptions import CancelBatchException
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

    from engine.learner import Learner

_DTYPES = ("bfloat16", "float16")
"""The dtypes autocast can run in, by their names in torch."""


def grads_finite(opt: torch.optim.Optimizer) -> bool:
    """Whether every gradient of the optimizer's parameters is finite.

    Computes the largest absolute value over all gradients (an inf-norm cannot
    overflow, and NaN propagates through it) and reads it back: one host-device
    synchronisation.

    :param opt: the optimizer whose parameters' gradients to check.
    """
    import torch

    grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return True
    largest = torch.nn.utils.get_total_norm(grads, norm_type=math.inf)
    return bool(torch.isfinite(largest))


class MixedPrecision:
    """Run the forward pass and the loss under autocast; skip steps with inf/NaN gradients.

    With ``float16`` a gradient scaler is used (its state is saved in checkpoints
    through :meth:`state_dict`); with ``bfloat16`` none is needed. Training and
    validation batches both run under autocast. :attr:`skipped` counts the steps
    skipped in the current fit. While a scaler multiplies the gradients, the
    factor is published as ``learner.grad_scale`` (a 0-d device tensor, else
    ``None``) so that observers of gradients can divide it out.

    Checking the gradients costs one host-device synchronisation per step; with
    ``float16`` the scaler needs it, with ``bfloat16`` it can be turned off with
    ``skip_nonfinite=false`` (then inf/NaN gradients are applied).

    :param dtype: ``auto`` (float16 on CUDA, bfloat16 elsewhere), ``bfloat16``
        or ``float16`` (with a gradient scaler, on any device).
    :param skip_nonfinite: skip a step whose gradients hold an inf or a NaN
        (always on with float16).
    """

    name = "mixed_precision"
    order = order.MIXED_PRECISION

    def __init__(
        self,
        dtype: Literal["auto", "bfloat16", "float16"] = "auto",
        skip_nonfinite: bool = True,
    ) -> None:
        import torch

        one_of("dtype", dtype, ("auto", *_DTYPES))
        self.dtype = dtype
        self.skip_nonfinite = boolean("skip_nonfinite", skip_nonfinite)
        self.device_type = "cpu"
        """The device type autocast runs for, read from the model in ``begin_fit``."""
        self.amp_dtype: torch.dtype = torch.bfloat16
        """The dtype autocast runs in during this fit."""
        self.scaler: torch.amp.GradScaler | None = None
        """The gradient scaler (float16 only), created in ``begin_fit``."""
        self.skipped = 0
        """Steps skipped because of inf/NaN gradients in the current fit."""
        self._unscaled = False
        self._pending_state: dict[str, Any] | None = None

    # -- the protocol checkpoints use ------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The gradient scaler's state (empty without a scaler)."""
        return {"scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scaler's state now, and again into the scaler the next
        ``begin_fit`` creates (a resumed fit loads its checkpoint before that)."""
        scaler_state = state.get("scaler") or {}
        if not scaler_state:
            return
        if self.scaler is not None:
            self.scaler.load_state_dict(scaler_state)
        self._pending_state = scaler_state

    # -- events ------------------------------------------------------------------

    def begin_fit(self, learner: Learner) -> None:
        import torch

        param = next(iter(learner.model.parameters()), None)
        self.device_type = param.device.type if param is not None else "cpu"
        name = self.dtype
        if name == "auto":
            name = "float16" if self.device_type == "cuda" else "bfloat16"
        self.amp_dtype = getattr(torch, name)
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device_type)
            if self._pending_state:
                self.scaler.load_state_dict(self._pending_state)
        self._pending_state = None
        self._unscaled = False
        self.skipped = 0

    def around_forward(self, learner: Learner) -> torch.autocast:
        import torch

        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def begin_batch(self, learner: Learner) -> None:
        import torch

        # observers of gradients (activation_stats) divide by this; a device
        # tensor, so reading it costs no sync
        scaler = self.scaler
        if scaler is not None and learner.in_train:
            param = next(iter(learner.model.parameters()))
            learner.grad_scale = scaler.scale(torch.ones((), device=param.device))
        else:
            learner.grad_scale = None

    def after_loss(self, learner: Learner) -> None:
        scaler = self.scaler
        loss = learner.loss
        if scaler is not None and learner.in_train and loss.requires_grad:
            # scale the gradient leaving the loss rather than the loss itself, so
            # learner.loss stays the true value for every observer
            loss.register_hook(scaler.scale)

    def after_backward(self, learner: Learner) -> None:
        opt = learner.opt
        if opt is None:
            return
        if self.scaler is not None:
            self.scaler.unscale_(opt)
            self._unscaled = True
        elif not self.skip_nonfinite:
            return
        if not grads_finite(opt):  # one host-device synchronisation
            opt.zero_grad()
            self.skipped += 1
            self._update()
            raise CancelBatchException

    def after_step(self, learner: Learner) -> None:
        self._update()

    def after_cancel_batch(self, learner: Learner) -> None:
        self._update()  # a later plugin cancelled the step after we unscaled

    def after_fit(self, learner: Learner) -> None:
        self._update()
        learner.grad_scale = None

    # -- helpers -------------------------------------------------------------------

    def _update(self) -> None:
        """Update the scaler once per unscale (the scaler refuses a second unscale)."""
        if self.scaler is not None and self._unscaled:
            self._unscaled = False
            self.scaler.update()


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`MixedPrecision` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(MixedPrecision)
