"""Input checks and small tensor helpers shared by the layers of :mod:`engine.nn.layers`."""

from __future__ import annotations

import math

import torch


def check_number(value: object, layer: str, name: str, low: float, example: str) -> float:
    """Return ``value`` as a float if it is a finite number above ``low``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{layer}: {name} should be a number like {example}, got {value!r}")
    if not (math.isfinite(value) and value > low):
        raise ValueError(
            f"{layer}: {name} should be a finite number above {low:g} like {example}, got {value!r}"
        )
    return float(value)


def check_channels(nf: object, layer: str) -> int:
    """Return ``nf`` if it is a positive int, else raise naming ``layer``."""
    if isinstance(nf, bool) or not isinstance(nf, int):
        raise TypeError(f"{layer}: nf (channels) should be a positive integer, got {nf!r}")
    if nf < 1:
        raise ValueError(f"{layer}: nf (channels) should be a positive integer, got {nf!r}")
    return nf


def check_input(x: torch.Tensor, nf: int, layer: str, min_dim: int = 2) -> None:
    """Raise ValueError unless ``x`` is ``(N, nf, *)`` with at least ``min_dim`` dims."""
    if x.dim() < min_dim or x.shape[1] != nf:
        raise ValueError(
            f"{layer} expects a batch (N, {nf}, ...) with {nf} channels and at least "
            f"{min_dim} dimensions, got shape {tuple(x.shape)}"
        )


def as_dtype_of(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``x`` in ``reference``'s dtype: half-precision inputs (autocast) get float32 statistics."""
    return x if x.dtype == reference.dtype else x.to(reference.dtype)


def channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    """The shape ``(1, C, 1, ...)`` that broadcasts per-channel values over ``x``."""
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


def check_momentum(mom: object, layer: str) -> float:
    """Return ``mom`` if it is a number in (0, 1] (the weight of the new value), else raise."""
    value = check_number(mom, layer, "mom", 0.0, "0.1")
    if value > 1:
        raise ValueError(f"{layer}: mom should be in (0, 1] like 0.1, got {mom!r}")
    return value
