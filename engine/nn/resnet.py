"""torchvision's ResNet18 made for small images, and swapping the layers of a built network.

:func:`small_resnet18` adapts ``torchvision.models.resnet18`` to the lesson's small
one-channel images; :func:`replace_modules` swaps every layer of one kind (each
``BatchNorm2d`` for a ``GroupNorm``, each ``ReLU`` for a ``GeneralRelu``...) in a
network that is already built, which is how a norm or an activation is chosen for a
model whose code is not ours. torchvision is imported only when a ResNet is built.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

RESNET_STEM_CHANNELS = 64
"""The channels of ResNet18's first convolution (and of its first stage)."""


def small_resnet18(n_out: int = 10, n_in: int = 1) -> nn.Module:
    """torchvision's ResNet18 for small images: 3x3 stride-1 stem, no max-pooling.

    ``torchvision.models.resnet18(weights=None, num_classes=n_out)`` with its first
    convolution replaced by a 3x3, stride-1 one taking ``n_in`` channels (kaiming
    normal, ``fan_out``, as torchvision initializes its own) and its max-pooling by
    ``nn.Identity``: 8x8 digits still reach the last stage as 1x1 maps, 28x28 MNIST
    as 4x4. Inputs are ``(N, n_in, H, W)``, outputs ``(N, n_out)``.

    :param n_out: the number of outputs (classes).
    :param n_in: the channels of the input images.
    """
    from torchvision.models import resnet18

    for name, value in (("n_out", n_out), ("n_in", n_in)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"small_resnet18: {name} should be a positive integer, got {value!r}")
    model: nn.Module = resnet18(weights=None, num_classes=n_out)
    stem = nn.Conv2d(n_in, RESNET_STEM_CHANNELS, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
    model.conv1 = stem
    model.maxpool = nn.Identity()
    return model


def replace_modules(
    model: nn.Module,
    kind: type[nn.Module] | tuple[type[nn.Module], ...],
    make: Callable[[nn.Module], nn.Module],
) -> int:
    """Replace, in place, every submodule of type ``kind`` by ``make(old)``; return how many.

    The model is walked through its submodule attributes, depth first. A module that
    ``forward`` calls twice is still one attribute (torchvision's blocks call their
    one ``relu`` twice): it is replaced once and its replacement is called twice. A
    module registered under two names gets one replacement per name. A module that
    replaces another is not walked into. ``model`` itself is never replaced: wrap it
    if it is of type ``kind``.

    ``replace_modules(model, nn.BatchNorm2d, lambda bn: nn.GroupNorm(4, bn.num_features))``
    swaps every batch norm for a group norm.

    :param model: the network, changed in place.
    :param kind: the module type (or tuple of types) to replace.
    :param make: builds the replacement from the module it replaces.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"replace_modules needs an nn.Module, got {type(model).__name__}")
    if not callable(make):
        raise TypeError(
            f"replace_modules: make should build a module from the old one, got {make!r}"
        )
    replaced = 0
    # _modules, not named_children(): that one skips a module already met under another name
    for name, child in list(model._modules.items()):
        if child is None:
            continue
        if isinstance(child, kind):
            new = make(child)
            if not isinstance(new, nn.Module):
                raise TypeError(
                    f"replace_modules: make should return an nn.Module, got {type(new).__name__} "
                    f"for {name!r}"
                )
            setattr(model, name, new)
            replaced += 1
        else:
            replaced += replace_modules(child, kind, make)
    return replaced
