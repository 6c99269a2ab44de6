"""Models of the lesson: a small convolutional network built from layer factories.

:func:`cnn` stacks a 5x5 convolution and stride-2 3x3 convolutions, then averages
each channel over the image and maps the channels to the classes with a linear
layer. The convolutions come from a ``layer`` factory (:func:`conv_layer` by
default) so that variants (with batch norm, other activations...) can be swapped
in without rewriting the network: :func:`conv_norm_layer` builds the factory for
any activation and normalization of :data:`NORMS`, and :func:`cnn_07` is notebook
07's network, ``cnn_07("batch")`` and so on. :func:`mlp` is the fully connected
network for flat features, with the same activations and the norms that need no
pixels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from collections.abc import Sequence

import torch
from torch import nn

from engine.nn.layers import BatchNorm
from engine.nn.layers import InstanceNorm
from engine.nn.layers import LayerNorm
from engine.nn.layers import RunningBatchNorm
from engine.nn.layers import group_norm


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


CHANNELS = (8, 16, 32, 32)
"""The convolutions' widths of the lesson's CNN (notebook 06), :func:`cnn`'s default."""


def cnn(
    n_out: int = 10,
    channels: Sequence[int] = CHANNELS,
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


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": BatchNorm,
    "torch_batch": nn.BatchNorm2d,
    "layer": lambda nf: LayerNorm(),
    "instance": InstanceNorm,
    "group": group_norm,
    "running_batch": RunningBatchNorm,
}
"""The normalizations :func:`conv_norm_layer` knows by name, each built as ``norm(nf)``.

``batch`` is :class:`~engine.nn.layers.BatchNorm`, ``torch_batch`` torch's
``nn.BatchNorm2d``, ``layer`` :class:`~engine.nn.layers.LayerNorm`, ``instance``
:class:`~engine.nn.layers.InstanceNorm` (eps 1e-5), ``group``
:func:`~engine.nn.layers.group_norm` (4 groups), ``running_batch``
:class:`~engine.nn.layers.RunningBatchNorm`.
"""

CHANNELS_07 = (8, 16, 32, 64, 64)
"""The convolutions' widths of notebook 07's network (:func:`cnn_07`)."""

NormSpec = str | Callable[[int], nn.Module] | None
"""A normalization: a name in :data:`NORMS`, a callable ``norm(nf)``, or None for none."""


def _norm_factory(
    norm: NormSpec, who: str = "conv_norm_layer", names: Sequence[str] = tuple(NORMS)
) -> Callable[[int], nn.Module] | None:
    """Resolve ``norm`` to a callable ``norm(nf)`` (or None), raising on unknown names.

    :param who: the function asking, for the messages.
    :param names: the names in :data:`NORMS` it accepts.
    """
    if norm is None or norm == "none":
        return None
    if isinstance(norm, str):
        if norm not in names:
            raise ValueError(
                f"{who}: unknown norm {norm!r}; expected one of "
                f"{', '.join(repr(n) for n in names)}, 'none', None or a callable norm(nf)"
            )
        return NORMS[norm]
    if not callable(norm):
        raise TypeError(
            f"{who}: norm should be a name in {sorted(names)}, None or a callable "
            f"norm(nf), got {norm!r}"
        )
    return norm


def _check_act(act: object, who: str) -> None:
    """Raise unless ``act`` builds a new activation module each time it is called."""
    if isinstance(act, nn.Module) or not callable(act):
        # One shared module would make every layer's hooks fire on one object.
        raise TypeError(
            f"{who}: act should build an activation module when called with no "
            f"argument (like nn.ReLU, not nn.ReLU()), so each layer gets its own; got {act!r}"
        )


def conv_norm_layer(
    norm: NormSpec = "batch",
    act: Callable[[], nn.Module] = nn.ReLU,
    bias: bool | None = None,
) -> Callable[..., nn.Sequential]:
    """A layer factory for :func:`cnn`: convolution, activation, then normalization.

    The factory returned is called as ``layer(ni, nf, ks=3, stride=2)`` like
    :func:`conv_layer` and builds ``nn.Sequential(conv, act(), norm(nf))``, in the
    order of notebook 07: the norm comes after the activation. As in the lesson,
    the convolution has no bias when a norm follows (by default): the norm adds
    its own learned shift. With the norm after the activation that bias is not
    strictly redundant (it acts before the ReLU): pass ``bias=True`` to keep it.
    Without a norm the layer is :func:`conv_layer`'s.

    ``cnn(layer=conv_norm_layer("running_batch", partial(GeneralRelu, 0.1, 0.4, 6)))``
    builds the lesson's network with any normalization and activation.

    :param norm: a name in :data:`NORMS` (``"batch"``, ``"torch_batch"``,
        ``"layer"``, ``"instance"``, ``"group"``, ``"running_batch"``), a callable
        ``norm(nf)`` returning a module, or None (or ``"none"``) for no norm.
    :param act: builds the activation module, called with no argument
        (``nn.ReLU``, ``partial(GeneralRelu, leak=0.1)``...).
    :param bias: whether the convolution has a bias; None means "only without a norm".
    """
    make_norm = _norm_factory(norm)
    _check_act(act, "conv_norm_layer")
    with_bias = make_norm is None if bias is None else bool(bias)

    def layer(ni: int, nf: int, ks: int = 3, stride: int = 2) -> nn.Sequential:
        """Convolution ``ni -> nf`` (``ks``, ``stride``, padding ``ks // 2``), act, norm."""
        conv = nn.Conv2d(ni, nf, ks, padding=ks // 2, stride=stride, bias=with_bias)
        modules = [conv, act()]
        if make_norm is not None:
            modules.append(make_norm(nf))
        return nn.Sequential(*modules)

    return layer


def cnn_07(
    norm: NormSpec = "batch",
    n_out: int = 10,
    n_in: int = 1,
    act: Callable[[], nn.Module] = nn.ReLU,
    channels: Sequence[int] = CHANNELS_07,
) -> nn.Sequential:
    """Notebook 07's network: :func:`cnn` of widths ``[8, 16, 32, 64, 64]`` and a norm.

    The same network is built with any normalization (``norm=None`` for none),
    so their results can be compared; initialize it with
    :func:`engine.nn.init.init_cnn` as the lesson does.

    :param norm: the normalization, as for :func:`conv_norm_layer`.
    :param n_out: the number of outputs (classes).
    :param n_in: the channels of the input images.
    :param act: builds the activation module, as for :func:`conv_norm_layer`.
    :param channels: the output channels of each convolutional layer.
    """
    return cnn(n_out=n_out, channels=channels, n_in=n_in, layer=conv_norm_layer(norm, act))


MLP_WIDTHS = (50,)
"""The widths of :func:`mlp`'s hidden layers by default: the lessons' ``nh = 50``."""

FLAT_NORMS = ("batch", "layer", "group", "running_batch")
"""The names in :data:`NORMS` that :func:`mlp` takes: those that need no pixels.

``instance`` normalizes each channel over its pixels, which a feature vector does
not have, and ``torch_batch`` is ``nn.BatchNorm2d``, which takes only images.
"""


def mlp(
    n_in: int,
    n_out: int = 10,
    widths: Sequence[int] = MLP_WIDTHS,
    act: Callable[[], nn.Module] = nn.ReLU,
    norm: NormSpec = None,
) -> nn.Sequential:
    """A fully connected network for flat features: linear layers, activation, norm.

    The input is flattened first (so ``(N, 1, 8, 8)`` images work as well as
    ``(N, 64)`` rows), then each hidden layer is ``nn.Sequential(linear, act(),
    norm(nf))``, in :func:`conv_norm_layer`'s order, the linear layer without a
    bias when a norm follows; a last ``nn.Linear(widths[-1], n_out)`` gives the
    outputs ``(N, n_out)``. ``widths=()`` is a linear model.

    :param n_in: the number of input features (the product of the input's shape).
    :param n_out: the number of outputs (classes).
    :param widths: the width of each hidden layer.
    :param act: builds the activation module, as for :func:`conv_norm_layer`.
    :param norm: a name in :data:`FLAT_NORMS`, a callable ``norm(nf)``, or None (or
        ``"none"``) for no norm.
    """
    _positive_int(n_in, "n_in")
    _positive_int(n_out, "n_out")
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TypeError(
            f"mlp: widths should be a sequence of positive integers like (50,), got {widths!r}"
        )
    sizes = [_positive_int(w, f"widths[{i}]") for i, w in enumerate(widths)]
    make_norm = _norm_factory(norm, "mlp", FLAT_NORMS)
    _check_act(act, "mlp")
    layers: list[nn.Module] = [Lambda(flatten)]
    for ni, nf in itertools.pairwise([n_in, *sizes]):
        hidden = [nn.Linear(ni, nf, bias=make_norm is None), act()]
        if make_norm is not None:
            hidden.append(make_norm(nf))
        layers.append(nn.Sequential(*hidden))
    layers.append(nn.Linear(sizes[-1] if sizes else n_in, n_out))
    return nn.Sequential(*layers)
