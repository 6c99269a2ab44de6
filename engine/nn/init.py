"""Initialization of the lesson: kaiming init for every convolution and linear layer.

A network whose weights are drawn with the wrong scale makes its activations grow
or shrink from layer to layer, which the activation statistics show as means and
stds that explode and crash. Kaiming (He) initialization draws each weight with the
variance that keeps the activations' scale through a (leaky) ReLU:
``std = gain / sqrt(fan_in)`` with ``gain = sqrt(2 / (1 + a**2))``, ``a`` being the
leak of the activation (0 for a plain ReLU).
"""

from __future__ import annotations

import math

from torch import nn

_INIT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""The layers whose weights :func:`init_cnn` draws again (and whose biases it zeroes)."""


def init_cnn(model: nn.Module, uniform: bool = False, a: float = 0.0) -> nn.Module:
    """Kaiming-initialize every convolution and linear layer of ``model``, in place.

    Walks ``model`` and all its descendants (nested ``nn.Sequential`` and any other
    container). Each ``Conv1d``/``Conv2d``/``Conv3d``/``Linear`` weight is drawn with
    ``nn.init.kaiming_normal_`` (or ``kaiming_uniform_`` when ``uniform``) using the
    leak ``a`` and ``fan_in`` mode; its bias, if any, is set to exactly zero. Other
    modules (norm layers, activations) are left as they are. The model is returned
    so the call can wrap a constructor: ``init_cnn(cnn(), a=0.1)``.

    :param model: the network to initialize; changed in place.
    :param uniform: draw from a uniform distribution with the same variance
        instead of a normal one.
    :param a: the negative slope of the leaky ReLU that follows the layers
        (``GeneralRelu``'s ``leak``; 0 for a plain ReLU).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_cnn needs an nn.Module, got {type(model).__name__}: {model!r}")
    if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
        raise TypeError(f"init_cnn: a (the leak) should be a finite number like 0.1, got {a!r}")
    init = nn.init.kaiming_uniform_ if uniform else nn.init.kaiming_normal_
    for module in model.modules():
        if isinstance(module, _INIT_TYPES):
            init(module.weight, a=float(a), mode="fan_in", nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
