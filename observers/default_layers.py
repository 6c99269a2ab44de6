"""Which layers to look inside by default, and how to name them.

Hooking every top-level child of a model looks in the wrong places: the
statistics of a pooling or a flatten repeat those of the layer before, and the
output layer's logits are no hidden activation (their scale is whatever the loss
makes of it). :func:`default_modules` picks instead the layers that *transform*:
each convolution or linear layer together with the activation and norm that
follow it, hooked where that group ends.

How the choice is made, walking ``model.named_children()`` from the top:

- a child holding exactly one weighted layer (a convolution, a linear layer...:
  a module with parameters of its own that is neither a norm nor an activation)
  is one block, hooked as a whole: the lesson CNN's ``conv -> ReLU`` sequentials;
- a child holding several weighted layers is a block too when it has a
  ``forward`` of its own (a ResNet basic block); a plain container
  (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) is walked into;
- in a flat run of layers, a weighted layer starts a group that the activations
  and norms right after it join (``Linear, ReLU`` or ``Conv2d, BatchNorm2d,
  ReLU``); the group is hooked at its last member, so that its output is the
  activation's. Pooling, reshapes (flatten, ``Lambda``), dropout and softmax end
  a group and are never hooked;
- the output layer is left out: the last weighted layer of the model when no
  activation follows it (the logits). A model that has nothing else (a single
  linear layer) is hooked whole, named ``model``.

This is a choice of structure, made without running the model: the order of
registration is taken for the order of execution, as it is in sequential
models. Name patterns or class names given to the observer replace it.

Every hooked layer is shown as :func:`label` names it: ``name (Type)``, the type
of a plain container being the types of the layers it holds, ``0
(Conv2d+ReLU)``.
"""

from __future__ import annotations

import re

from torch import nn

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
"""Modules with no forward of their own worth looking at: walked into."""

_ACTIVATION = re.compile(r"relu|elu|tanh|sigmoid|gelu|silu|swish|mish|softplus|hardswish", re.I)
"""Class names of activations (``ReLU``, ``GeneralRelu``, ``Tanh``, ``SiLU``...)."""

_NOT_ACTIVATIONS = {"Softmax", "LogSoftmax", "Softmin", "Softmax2d", "MultiheadAttention"}
"""Modules of ``torch.nn.modules.activation`` that are no hidden activation."""


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (a ``*Norm*`` class or base class).

    :param module: any module.
    """
    return any("Norm" in cls.__name__ for cls in type(module).__mro__)


def is_activation(module: nn.Module) -> bool:
    """Whether ``module`` is an activation function (ReLU, GeneralRelu, Tanh...), not softmax.

    :param module: any module.
    """
    cls = type(module)
    if cls.__name__ in _NOT_ACTIVATIONS:
        return False
    return cls.__module__ == "torch.nn.modules.activation" or bool(_ACTIVATION.search(cls.__name__))


def is_weighted(module: nn.Module) -> bool:
    """Whether ``module`` transforms with weights of its own (conv, linear), not a norm.

    :param module: any module.
    """
    has_own = any(True for _ in module.parameters(recurse=False))
    return has_own and not is_norm(module) and not is_activation(module)


def label(name: str, module: nn.Module) -> str:
    """``name (Type)``; a plain container's type is its layers' types, ``0 (Conv2d+ReLU)``.

    >>> label("0", nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    '0 (Conv2d+ReLU)'

    :param name: the module's name in ``model.named_modules()``.
    :param module: the module.
    """
    return f"{name} ({kind(module)})"


def kind(module: nn.Module) -> str:
    """The type shown in a label: the class name, or ``Conv2d+ReLU`` for a plain container.

    :param module: any module.
    """
    if isinstance(module, _CONTAINERS):
        leaves = [type(m).__name__ for m in module.modules() if not any(m.children())]
        if leaves:
            return "+".join(leaves)
    return type(module).__name__


def default_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs hooked by default: the blocks that transform.

    The rules are in this module's docstring. Never empty: a model with no
    weighted layer at all is hooked at its top-level children (or whole).

    :param model: the model.
    """
    groups = _groups(model, "")
    weighted = [m for m in model.modules() if is_weighted(m)]
    if not weighted:
        return list(model.named_children()) or [("model", model)]
    last = weighted[-1]
    # the logits: a group made of the last weighted layer and nothing that activates it
    kept = [g for g in groups if not (g.weights == [last] and not g.activated)]
    return [(g.name, g.module) for g in kept] or [("model", model)]


class _Group:
    """A weighted layer or block and what follows it; hooked at its last member."""

    def __init__(self, name: str, module: nn.Module, weights: list[nn.Module]) -> None:
        self.name = name
        self.module = module
        self.weights = weights
        self.activated = any(is_activation(m) for m in module.modules())

    def extend(self, name: str, module: nn.Module) -> None:
        self.name, self.module = name, module
        self.activated = self.activated or is_activation(module)


def _groups(container: nn.Module, prefix: str) -> list[_Group]:
    groups: list[_Group] = []
    current: _Group | None = None
    for child_name, child in container.named_children():
        name = f"{prefix}{child_name}"
        weights = [m for m in child.modules() if is_weighted(m)]
        if len(weights) > 1 and isinstance(child, _CONTAINERS):
            groups += _groups(child, f"{name}.")
            current = None
        elif weights:
            current = _Group(name, child, weights)
            groups.append(current)
        elif current is not None and (is_activation(child) or is_norm(child)):
            current.extend(name, child)
        else:
            current = None  # pooling, reshape, dropout: the group ends here
    return groups
