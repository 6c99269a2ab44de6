"""Models of the lesson: a small convolutional network built from layer factories.

:func:`cnn` stacks a 5x5 convolution and stride-2 3x3 convolutions, then averages
each channel over the image and maps the channels to the classes with a linear
layer. The convolutions come from a ``layer`` factory (:func:`conv_layer` by
default) so that variants (with batch norm, other activations...) can be swapped
in without rewriting the network.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Sequence

import torch
from torch import nn


class Lambda(nn.Module):
    """A module that applies a plain function, to put it in an ``nn.Sequential``.

    :param func: called as ``func(x)`` on the input; its result is the output.
    """

    def __init__(self, func: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not callable(func):
            raise TypeError(f"Lambda needs a callable, got {type(func).__name__}: {func!r}")
        super().__init__()
        self.func = func

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``func(x)``.

        :param x: the input batch.
        """
        return self.func(x)

    def extra_repr(self) -> str:
        """Name the wrapped function, so the module prints as ``Lambda(flatten)``."""
        name = getattr(self.func, "__name__", None)
        return str(name) if name else repr(self.func)


def flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten all dimensions but the first (the batch): ``(N, ...)`` to ``(N, -1)``.

    :param x: a batch of at least one dimension.
    """
    return x.view(x.shape[0], -1)


def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 2) -> nn.Sequential:
    """A convolution followed by a ReLU; ``padding=ks//2`` keeps odd kernels centred.

    With the default stride of 2 each layer halves the height and width (rounding up).

    :param ni: input channels.
    :param nf: output channels (filters).
    :param ks: the kernel size.
    :param stride: the convolution's stride.
    """
    return nn.Sequential(nn.Conv2d(ni, nf, ks, padding=ks // 2, stride=stride), nn.ReLU())


def _positive_int(value: object, what: str) -> int:
    """Return ``value`` if it is an int of at least 1; TypeError or ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{what} should be a positive integer, got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(f"{what} should be a positive integer, got {value!r}")
    return value


def cnn(
    n_out: int = 10,
    channels: Sequence[int] = (8, 16, 32, 32),
    n_in: int = 1,
    layer: Callable[..., nn.Module] = conv_layer,
) -> nn.Sequential:
    """The lesson's CNN: convolutions, global average pooling, a linear classifier.

    The first layer is ``layer(n_in, channels[0], ks=5, stride=2)``; each following
    one is ``layer(channels[i], channels[i + 1], ks=3, stride=2)``. Then
    ``nn.AdaptiveAvgPool2d(1)``, a flatten and ``nn.Linear(channels[-1], n_out)``.
    Inputs are image batches ``(N, n_in, H, W)`` of any size; outputs ``(N, n_out)``.

    :param n_out: the number of outputs (classes).
    :param channels: the output channels of each convolutional layer.
    :param n_in: the channels of the input images.
    :param layer: builds one convolutional layer, called as
        ``layer(ni, nf, ks=..., stride=...)``.
    """
    _positive_int(n_out, "n_out")
    _positive_int(n_in, "n_in")
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise TypeError(
            f"channels should be a sequence of positive integers like (8, 16, 32, 32), "
            f"got {channels!r}"
        )
    if not channels:
        raise ValueError("channels should hold at least one layer's width, got an empty sequence")
    widths = [_positive_int(c, f"channels[{i}]") for i, c in enumerate(channels)]
    if not callable(layer):
        raise TypeError(f"layer should be a callable building a layer, got {layer!r}")
    layers = [layer(n_in, widths[0], ks=5, stride=2)]
    layers += [layer(ni, nf, ks=3, stride=2) for ni, nf in itertools.pairwise(widths)]
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        Lambda(flatten),
        nn.Linear(widths[-1], n_out),
    )
