"""The lesson's RunningBatchNorm: normalization that still works at batch size 2."""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.nn._checks import as_dtype_of
from engine.nn._checks import channel_shape
from engine.nn._checks import check_channels
from engine.nn._checks import check_input
from engine.nn._checks import check_momentum
from engine.nn._checks import check_number


class RunningBatchNorm(nn.Module):
    """The lesson's RunningBatchNorm: running statistics in training too, debiased.

    Batch norm normalizes each training batch with that batch's own statistics,
    which are noise at batch size 2 and differ from the running ones used in eval.
    This layer keeps per channel a running sum, sum of squares and count (buffers
    ``sums``, ``sqrs``, ``count``) and normalizes with the mean and variance they
    give, in training and in eval alike. For a training batch of ``bs`` samples:

    - momentum adjusted to the batch size: ``mom1 = 1 - (1 - mom) / sqrt(bs - 1)``
      (``mom`` at ``bs = 2``; closer to 1 for larger batches, whose statistics are
      worth more). Batch size 1 (``sqrt(0)`` in the lesson) is defined here as
      batch size 2: ``mom1 = mom``. Its statistics still come from the pixels of
      that one sample.
    - ``sums``, ``sqrs`` and ``count`` move towards the batch's with weight
      ``mom1``; ``dbias = dbias * (1 - mom1) + mom1`` tracks how much weight the
      real batches have so far (as Adam's debiasing does) and divides the three
      during the first 100 steps;
    - ``mean = sums / count``, ``var = sqrs / count - mean**2``, clamped to at least
      0.01 while fewer than 20 samples have been seen;
    - ``(x - mean) / sqrt(var + eps) * mult + add``.

    Because ``count`` starts at 0 like the sums, dividing all three by ``dbias``
    cancels in ``mean`` and ``var``: the debiasing changes nothing but rounding (the
    lesson's simplified version drops it). It is kept to follow the lesson.

    Gradients flow through the current batch's share of the statistics, as in the
    lesson; the stored buffers are detached. Eval mode uses the stored statistics
    without updating them; before any training step it uses mean 0 and variance 1.
    All the bookkeeping stays on the device (no host sync per batch).

    :param nf: the number of channels.
    :param mom: the momentum at batch size 2, as the weight of the new value
        (``nn.BatchNorm2d``'s convention).
    :param eps: added to the variance before the square root.
    """

    debias_steps = 100
    """The debias factor divides the running sums during this many first steps."""
    min_samples = 20
    """The variance is clamped to at least :attr:`min_var` until this many samples."""
    min_var = 0.01
    """The floor for the variance while few samples have been seen."""

    def __init__(self, nf: int, mom: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.nf = check_channels(nf, "RunningBatchNorm")
        self.mom = check_momentum(mom, "RunningBatchNorm")
        self.eps = check_number(eps, "RunningBatchNorm", "eps", 0.0, "1e-5")
        self.mult = nn.Parameter(torch.ones(nf))
        self.add = nn.Parameter(torch.zeros(nf))
        self.sums: torch.Tensor
        self.sqrs: torch.Tensor
        self.count: torch.Tensor
        self.dbias: torch.Tensor
        self.step: torch.Tensor
        self.samples: torch.Tensor
        self.register_buffer("sums", torch.zeros(nf))
        self.register_buffer("sqrs", torch.zeros(nf))
        self.register_buffer("count", torch.tensor(0.0))
        self.register_buffer("dbias", torch.tensor(0.0))
        self.register_buffer("step", torch.tensor(0))
        self.register_buffer("samples", torch.tensor(0))

    def batch_momentum(self, bs: int) -> float:
        """The momentum ``mom1`` used for a training batch of ``bs`` samples.

        :param bs: the batch size; 1 is treated as 2 (``mom1 = mom``).
        """
        return 1 - (1 - self.mom) / math.sqrt(max(bs, 2) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` with the running statistics, updating them in training.

        :param x: a batch ``(N, nf, *)``.
        """
        check_input(x, self.nf, "RunningBatchNorm")
        dtype = x.dtype
        x = as_dtype_of(x, self.sums)
        shape = channel_shape(x)
        if self.training:
            sums, sqrs, count, dbias = self._update(x)
        else:
            sums, sqrs, count, dbias = self.sums, self.sqrs, self.count, self.dbias
        # Divide by dbias only during the first steps (and never by 0, before any step);
        # torch.where keeps the decision on the device.
        debiasing = (self.step < self.debias_steps) & (dbias > 0)
        dbias = torch.where(debiasing, dbias, torch.ones_like(dbias))
        count = count / dbias
        started = count > 0
        safe_count = torch.where(started, count, torch.ones_like(count))
        mean = torch.where(started, sums / dbias / safe_count, torch.zeros_like(sums))
        var = torch.where(started, sqrs / dbias / safe_count - mean * mean, torch.ones_like(sqrs))
        var = torch.where(self.samples < self.min_samples, var.clamp_min(self.min_var), var)
        x = (x - mean.view(shape)) / (var + self.eps).sqrt().view(shape)
        return (x * self.mult.view(shape) + self.add.view(shape)).to(dtype)

    def _update(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fold the batch ``x`` into the running statistics; return the new ones."""
        bs = x.shape[0]
        dims = [0, *range(2, x.dim())]
        mom1 = self.batch_momentum(bs)
        # The batch's share keeps its gradient (as in the lesson); the history does not.
        sums = torch.lerp(self.sums, x.sum(dims), mom1)
        sqrs = torch.lerp(self.sqrs, (x * x).sum(dims), mom1)
        count = self.count * (1 - mom1) + x.numel() / self.nf * mom1  # no host-to-device copy
        dbias = self.dbias * (1 - mom1) + mom1
        with torch.no_grad():
            self.sums.copy_(sums)
            self.sqrs.copy_(sqrs)
            self.count.copy_(count)
            self.dbias.copy_(dbias)
            self.step.add_(1)
            self.samples.add_(bs)
        return sums, sqrs, count, dbias

    def extra_repr(self) -> str:
        """Show the settings: ``RunningBatchNorm(16, mom=0.1, eps=1e-05)``."""
        return f"{self.nf}, mom={self.mom}, eps={self.eps}"
