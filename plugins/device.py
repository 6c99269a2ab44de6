"""Move the model and every batch to a device: CUDA, MPS or the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; other names are checked."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ValueError(
            f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} was asked for but CUDA is not available here")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"device {requested!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
        )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' was asked for but MPS is not available here")
    return device


def move(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move a tensor, or the tensors inside tuples, lists and dicts, to ``device``."""
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.device == device:
            return obj
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move(item, device, non_blocking) for item in obj)
    if isinstance(obj, dict):
        return {key: move(value, device, non_blocking) for key, value in obj.items()}
    return obj


class Device:
    """Put the model on a device at the start of the fit, and each batch as it comes.

    In-memory data (:class:`~engine.data.TensorLoader`) is moved once, at the
    start of the fit, rather than batch by batch. Batches from other loaders are
    copied in ``begin_batch``; the copy overlaps with computation when the loader
    pins memory (``DataLoader(..., pin_memory=True)``) and ``non_blocking`` is on.
    The model stays on the device after the fit.

    :param device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``,
        ``cuda:N`` or ``mps``.
    :param non_blocking: asynchronous host-to-device copies.
    :param move_data: move in-memory datasets to the device once, at begin_fit.
    """

    name = "device"
    order = order.DEVICE

    def __init__(
        self, device: str = "auto", non_blocking: bool = True, move_data: bool = True
    ) -> None:
        self.device = pick_device(device)
        self.non_blocking = non_blocking
        self.move_data = move_data

    def begin_fit(self, learner: Any) -> None:
        import torch

        from engine.data import TensorLoader

        device = self.device
        if device.type == "cuda" and device.index is None:
            # plain "cuda" is the current device: under torchrun, ddp made it the
            # GPU of this process's LOCAL_RANK; name it, so batches compare equal
            device = self.device = torch.device("cuda", torch.cuda.current_device())
        learner.model.to(device)
        if learner.opt is not None:
            for state in learner.opt.state.values():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        state[key] = value.to(device)
        if self.move_data:
            for dl in (learner.data.train_dl, learner.data.valid_dl):
                if isinstance(dl, TensorLoader):
                    dl.to(device)

    def begin_batch(self, learner: Any) -> None:
        import torch

        device = self.device
        xb = learner.xb
        # the common case costs two comparisons: already there, nothing to do
        if not (isinstance(xb, torch.Tensor) and xb.device == device):
            learner.xb = move(xb, device, self.non_blocking)
        yb = learner.yb
        if not (isinstance(yb, torch.Tensor) and yb.device == device):
            learner.yb = move(yb, device, self.non_blocking)


@hookimpl
def lookinside_register(register: Register) -> None:
    register(Device, default=True)
