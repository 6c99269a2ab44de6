"""gradnorm: per-layer gradient norms, and a warning when a layer's gradients vanish or explode."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from engine import Register
from engine import hookimpl


class GradientWarning(UserWarning):
    """A layer's mean gradient norm over an epoch was outside [vanish, explode]."""


class GradNorm:
    """Measure each layer's gradient norm during training; warn when one vanishes or explodes.

    A layer is a module holding parameters directly; its norm is the 2-norm of all
    its parameters' gradients together. Norms are summed on the device and read
    once per epoch (one host sync), never per batch.

    :param vanish: warn when a layer's mean norm over the epoch is below this.
    :param explode: warn when a layer's mean norm over the epoch is above this.
    :param every: measure every N training batches.
    """

    name = "gradnorm"
    order = 25  # after metrics (10) writes the epoch's log, before progress (30) prints it

    def __init__(self, vanish: float = 1e-5, explode: float = 1e3, every: int = 1) -> None:
        if not 0 <= vanish < explode:
            raise ValueError(
                f"plugin 'gradnorm': expected 0 <= vanish < explode, got vanish={vanish}, "
                f"explode={explode}"
            )
        if every < 1:
            raise ValueError(f"plugin 'gradnorm': every should be at least 1, got {every}")
        self.vanish = vanish
        self.explode = explode
        self.every = every
        self.layers: list[str] = []
        """Names of the measured layers, in the model's order."""
        self.history: list[dict[str, float]] = []
        """Per epoch: each layer's mean gradient norm."""
        self._params: list[list[torch.nn.Parameter]] = []
        self._sums: torch.Tensor | None = None
        self._count = 0

    def begin_fit(self, learner: Any) -> None:
        self.layers, self._params, self.history = [], [], []
        for name, module in learner.model.named_modules():
            params = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if params:
                self.layers.append(name or type(module).__name__)
                self._params.append(params)

    def begin_epoch(self, learner: Any) -> None:
        self._sums = None
        self._count = 0

    def after_backward(self, learner: Any) -> None:
        if learner.iter % self.every:
            return
        squares = [
            torch.stack([p.grad.pow(2).sum() for p in params if p.grad is not None]).sum()
            if any(p.grad is not None for p in params)
            else torch.zeros((), device=params[0].device)
            for params in self._params
        ]
        norms = torch.stack(squares).sqrt().float()
        self._sums = norms if self._sums is None else self._sums + norms
        self._count += 1

    def after_epoch(self, learner: Any) -> None:
        if self._sums is None or not self._count:
            return
        means = (self._sums / self._count).tolist()  # the one host sync of the epoch
        by_layer = dict(zip(self.layers, means))
        self.history.append(by_layer)
        learner.log["grad_norm_min"] = min(means)
        learner.log["grad_norm_max"] = max(means)
        vanished = [name for name, norm in by_layer.items() if norm < self.vanish]
        exploded = [name for name, norm in by_layer.items() if norm > self.explode]
        if vanished:
            warnings.warn(
                f"epoch {learner.epoch}: gradients vanish (mean norm < {self.vanish:g}) in "
                f"{', '.join(vanished)}",
                GradientWarning,
                stacklevel=2,
            )
        if exploded:
            warnings.warn(
                f"epoch {learner.epoch}: gradients explode (mean norm > {self.explode:g}) in "
                f"{', '.join(exploded)}",
                GradientWarning,
                stacklevel=2,
            )

    def after_fit(self, learner: Any) -> None:
        self._sums = None  # let go of device memory
        self._params = []

    def plot(self, ax: Any = None) -> Any:
        """Each layer's mean gradient norm per epoch, on a log scale; returns the Axes.

        Drawn with lookinside's headless figures (``observers.plots``): in a notebook
        the plot shows itself when the cell ends.

        :param ax: a matplotlib Axes to draw on; a new figure's when ``None``.
        """
        from observers import plots

        ax = plots.axes_or_new(ax)
        epochs = list(range(len(self.history)))
        for layer in self.layers:
            ax.plot(epochs, [row[layer] for row in self.history], "o-", label=layer)
        if self.history:
            ax.set_yscale("log")
            ax.legend(title="layer", fontsize="small")
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean gradient norm")
        return ax


@hookimpl
def lookinside_register(register: Register) -> None:
    register(GradNorm)
