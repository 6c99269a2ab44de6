"""Transform each batch's inputs before the forward pass (e.g. flat rows to images)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import order
from engine._checks import is_int
from engine.hookspecs import Register
from engine.hookspecs import hookimpl


class BatchTransform:
    """Reshape (or otherwise transform) ``xb`` at the start of every batch.

    With no option it views flat rows as the dataset's ``input_shape`` (e.g. rows
    of 64 as N×1×8×8 for digits) and leaves inputs that already have that shape
    or whose data declares no shape alone. Runs after ``device``, so the
    transform happens on the device.

    :param shape: view inputs as ``(N, *shape)``, e.g. ``1,28,28`` or ``1x28x28``;
        default: the data's ``input_shape``.
    :param fn: a Python callable ``fn(xb) -> xb`` applied instead (not from the CLI).
    """

    name = "batch_transform"
    order = order.BATCH_TRANSFORM

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        fn: Callable[[Any], Any] | None = None,
    ) -> None:
        if shape is not None:
            shape = tuple(shape)
            if not shape or not all(is_int(d) and d >= 1 for d in shape):
                raise ValueError(
                    f"shape should be positive integers such as 1,28,28, got {shape!r}"
                )
        if fn is not None and not callable(fn):
            raise ValueError(
                f"fn must be a Python callable, got {fn!r}; from the command line use shape="
            )
        if fn is not None and shape is not None:
            raise ValueError("give shape or fn, not both")
        self.shape = shape
        self.fn = fn
        self._target: tuple[int, ...] | None = None

    def begin_fit(self, learner: Any) -> None:
        self._target = self.shape or getattr(learner.data, "input_shape", None)

    def begin_batch(self, learner: Any) -> None:
        import torch

        if self.fn is not None:
            learner.xb = self.fn(learner.xb)
            return
        target = self._target
        xb = learner.xb
        if target is None or not isinstance(xb, torch.Tensor) or xb.shape[1:] == target:
            return
        try:
            learner.xb = xb.view(xb.shape[0], *target)
        except RuntimeError as exc:
            raise ValueError(
                f"batch_transform cannot view inputs of shape {tuple(xb.shape)} as "
                f"(N, {', '.join(map(str, target))}); set -p batch_transform:shape=..."
            ) from exc


@hookimpl
def lookinside_register(register: Register) -> None:
    register(BatchTransform, default=True)
