"""Layers of the lesson: a general ReLU and normalization layers written out.

:class:`GeneralRelu` is the lesson's fix for dead ReLUs. The normalization layers
compute their statistics the way the lesson derives them, each one tested against
torch's own: :class:`BatchNorm` (statistics over the batch, running averages for
evaluation), :class:`LayerNorm` (over each sample), :class:`InstanceNorm` (over each
sample and channel), :func:`group_norm` (torch's ``nn.GroupNorm``) and
:class:`~engine.nn.running_batchnorm.RunningBatchNorm` (its own module), which
normalizes with running statistics in training too so that it still works at batch
size 2, where batch norm fails.

All layers take image batches ``(N, C, H, W)``; the batch and running norms accept
any ``(N, C, *)``. Momentum here follows ``nn.BatchNorm2d``: ``mom`` is the weight
of the NEW value in ``running = running * (1 - mom) + new * mom`` — the opposite of
an optimizer's momentum, which is the weight of the old value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.nn._checks import as_dtype_of
from engine.nn._checks import channel_shape
from engine.nn._checks import check_channels
from engine.nn._checks import check_input
from engine.nn._checks import check_momentum
from engine.nn._checks import check_number
from engine.nn.running_batchnorm import RunningBatchNorm

__all__ = [
    "BatchNorm",
    "GeneralRelu",
    "InstanceNorm",
    "LayerNorm",
    "RunningBatchNorm",
    "group_norm",
]


class GeneralRelu(nn.Module):
    """A ReLU that can leak, be shifted down and be capped: the lesson's GeneralRelu.

    Computes ``leaky_relu(x, leak)`` (a plain ReLU when ``leak`` is None or 0), then
    subtracts ``sub``, then clamps to at most ``maxv``. The lesson uses
    ``GeneralRelu(leak=0.1, sub=0.4, maxv=6)`` with :func:`engine.nn.init.init_cnn`
    at ``a=0.1``: the leak keeps gradients flowing for negative inputs (no dead
    units), the shift brings the mean of the outputs back near zero.

    :param leak: the slope for negative inputs; None or 0 for a plain ReLU.
    :param sub: subtracted from every output; None or 0 to leave them.
    :param maxv: the largest output; None for no cap.
    """

    def __init__(
        self, leak: float | None = None, sub: float | None = None, maxv: float | None = None
    ) -> None:
        super().__init__()
        for name, value in (("leak", leak), ("sub", sub), ("maxv", maxv)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise TypeError(f"GeneralRelu: {name} should be a number or None, got {value!r}")
        self.leak = leak
        self.sub = sub
        self.maxv = maxv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the (leaky) ReLU, the shift and the cap.

        :param x: any tensor.
        """
        x = F.leaky_relu(x, self.leak) if self.leak else F.relu(x)
        if self.sub:
            x = x - self.sub
        if self.maxv is not None:
            x = x.clamp_max(self.maxv)
        return x

    def extra_repr(self) -> str:
        """Show the settings: ``GeneralRelu(leak=0.1, sub=0.4, maxv=6)``."""
        return f"leak={self.leak}, sub={self.sub}, maxv={self.maxv}"


class BatchNorm(nn.Module):
    """Batch normalization written out; matches ``nn.BatchNorm2d`` in train and eval.

    In training each channel is normalized with the mean and (biased) variance of
    the batch over ``(N, H, W)``: ``(x - mean) / sqrt(var + eps) * mult + add``, and
    the running statistics move towards the batch's with ``lerp``:
    ``running = running + mom * (batch - running)``. As in torch, the running
    variance is updated with the UNBIASED batch variance (``n / (n - 1)`` times the
    one used to normalize, ``n`` the values per channel), so that the buffers match
    ``nn.BatchNorm2d``'s. In eval mode the running statistics are used instead.

    Training needs more than one value per channel (torch raises too).

    :param nf: the number of channels.
    :param mom: the weight of the new batch in the running averages
        (``nn.BatchNorm2d``'s ``momentum``; the opposite of an optimizer's).
    :param eps: added to the variance before the square root.
    """

    def __init__(self, nf: int, mom: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.nf = check_channels(nf, "BatchNorm")
        self.mom = check_momentum(mom, "BatchNorm")
        self.eps = check_number(eps, "BatchNorm", "eps", 0.0, "1e-5")
        self.mult = nn.Parameter(torch.ones(nf))
        self.add = nn.Parameter(torch.zeros(nf))
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` per channel with the batch's (training) or running statistics.

        :param x: a batch ``(N, nf, *)``.
        """
        check_input(x, self.nf, "BatchNorm")
        dtype = x.dtype
        x = as_dtype_of(x, self.running_mean)
        shape = channel_shape(x)
        if self.training:
            dims = [0, *range(2, x.dim())]
            n = x.numel() // self.nf
            if n < 2:
                raise ValueError(
                    f"BatchNorm needs more than 1 value per channel in training, got input "
                    f"of shape {tuple(x.shape)}; use a larger batch, eval mode, or "
                    f"RunningBatchNorm"
                )
            mean = x.mean(dims, keepdim=True)
            var = x.var(dims, keepdim=True, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.view(-1), self.mom)
                self.running_var.lerp_(var.view(-1) * (n / (n - 1)), self.mom)
        else:
            mean = self.running_mean.view(shape)
            var = self.running_var.view(shape)
        x = (x - mean) / (var + self.eps).sqrt()
        return (x * self.mult.view(shape) + self.add.view(shape)).to(dtype)

    def extra_repr(self) -> str:
        """Show the settings: ``BatchNorm(16, mom=0.1, eps=1e-05)``."""
        return f"{self.nf}, mom={self.mom}, eps={self.eps}"


class LayerNorm(nn.Module):
    """Layer normalization as in the lesson: statistics over each whole sample.

    Each sample is normalized with the mean and variance over all its channels and
    pixels, then scaled and shifted by one learned scalar each (``mult``, ``add``).
    No running statistics: train and eval compute the same. It divides by
    ``sqrt(var + eps)`` — the variance, not the std (the lesson's erratum). Equal
    to ``F.layer_norm(x, x.shape[1:], eps=eps)`` scaled by ``mult`` plus ``add``,
    and to a freshly built ``nn.GroupNorm(1, C, eps)``.

    :param eps: added to the variance before the square root.
    """

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = check_number(eps, "LayerNorm", "eps", 0.0, "1e-5")
        self.mult = nn.Parameter(torch.tensor(1.0))
        self.add = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize each sample of ``x`` over all its other dimensions.

        :param x: a batch ``(N, ...)`` of at least two dimensions.
        """
        if x.dim() < 2:
            raise ValueError(f"LayerNorm expects a batch (N, ...), got shape {tuple(x.shape)}")
        dtype = x.dtype
        x = as_dtype_of(x, self.mult)
        dims = list(range(1, x.dim()))
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, unbiased=False)
        x = (x - mean) / (var + self.eps).sqrt()
        return (x * self.mult + self.add).to(dtype)

    def extra_repr(self) -> str:
        """Show the settings: ``LayerNorm(eps=1e-05)``."""
        return f"eps={self.eps}"


class InstanceNorm(nn.Module):
    """Instance normalization: statistics over the pixels of each sample and channel.

    Each channel of each sample is normalized with its own mean and variance over
    ``(H, W)``, then scaled and shifted per channel (``mult``, ``add``). No running
    statistics. Equal to ``F.instance_norm(x, eps=eps)`` (and to a freshly built
    ``nn.GroupNorm(C, C, eps)``) with the same ``eps``.

    The default ``eps`` is torch's 1e-5, so that the layer normalizes the way its
    name says and matches torch's layers. The lesson's default is 1.0, which
    leaves channels of small variance barely scaled: pass ``eps=1.0`` for that
    (the ``batchnorm`` demo does, to follow the lesson).

    :param nf: the number of channels.
    :param eps: added to the variance before the square root.
    """

    def __init__(self, nf: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.nf = check_channels(nf, "InstanceNorm")
        self.eps = check_number(eps, "InstanceNorm", "eps", 0.0, "1e-5")
        self.mult = nn.Parameter(torch.ones(nf))
        self.add = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize each channel of each sample of ``x`` over its pixels.

        :param x: a batch ``(N, nf, H, ...)`` of at least three dimensions.
        """
        check_input(x, self.nf, "InstanceNorm", min_dim=3)
        dtype = x.dtype
        x = as_dtype_of(x, self.mult)
        dims = list(range(2, x.dim()))
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, keepdim=True, unbiased=False)
        x = (x - mean) / (var + self.eps).sqrt()
        shape = channel_shape(x)
        return (x * self.mult.view(shape) + self.add.view(shape)).to(dtype)

    def extra_repr(self) -> str:
        """Show the settings: ``InstanceNorm(16, eps=1e-05)``."""
        return f"{self.nf}, eps={self.eps}"


def group_norm(nf: int, groups: int | None = None, eps: float = 1e-5) -> nn.GroupNorm:
    """Torch's group normalization for ``nf`` channels: statistics over channel groups.

    ``nn.GroupNorm(groups, nf)`` normalizes each sample over the pixels of each group
    of ``nf // groups`` channels. One group is :class:`LayerNorm` (with per-channel
    ``mult``/``add``), ``nf`` groups is :class:`InstanceNorm`. By default 4 groups,
    or fewer when 4 does not divide ``nf`` (``gcd(nf, 4)``).

    :param nf: the number of channels.
    :param groups: the number of groups; must divide ``nf``.
    :param eps: added to the variance before the square root.
    """
    check_channels(nf, "group_norm")
    if groups is None:
        groups = math.gcd(nf, 4)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or nf % groups:
        raise ValueError(
            f"group_norm: groups should be a positive integer dividing nf={nf}, got {groups!r}"
        )
    return nn.GroupNorm(groups, nf, eps=check_number(eps, "group_norm", "eps", 0.0, "1e-5"))
