"""Tests of the gradnorm plugin: norms against torch's, the warnings, registration."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lookinside_gradnorm import GradientWarning
from lookinside_gradnorm import GradNorm
from torch import nn

from engine import DataBunch
from engine import Learner
from engine.manager import load_catalog


def tiny_data() -> DataBunch:
    x = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    return DataBunch.from_tensors(x[:8], y[:8], x[8:], y[8:], bs=4)


class Reference:
    """Records each layer's gradient norm, computed the plain way, at every step."""

    order = 30

    def __init__(self) -> None:
        self.norms: list[list[float]] = []

    def after_backward(self, learner: Any) -> None:
        layers = [m for m in learner.model.modules() if list(m.parameters(recurse=False))]
        self.norms.append(
            [
                float(torch.cat([p.grad.flatten() for p in m.parameters(recurse=False)]).norm())
                for m in layers
            ]
        )


def test_mean_norms_match_torch() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    plugin, reference = GradNorm(), Reference()
    learner = Learner(model, tiny_data(), plugins=[plugin, reference], defaults=False)
    learner.fit(1)
    assert plugin.layers == ["0", "2"]
    expected = torch.tensor(reference.norms).mean(0).tolist()
    assert list(plugin.history[0].values()) == pytest.approx(expected, rel=1e-5)
    assert learner.log["grad_norm_max"] == pytest.approx(max(expected), rel=1e-5)


def test_vanishing_gradients_warn_naming_the_layer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2))
    with torch.no_grad():
        model[1].weight.zero_()  # nothing flows back to layer 0 (lr 0 keeps it so)
    learner = Learner(model, tiny_data(), lr=0.0, plugins=[GradNorm()], defaults=False)
    with pytest.warns(GradientWarning, match=r"epoch 0: gradients vanish .* in 0$"):
        learner.fit(1)


def test_exploding_gradients_warn() -> None:
    torch.manual_seed(0)

    def huge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(pred, target) * 1e6

    learner = Learner(
        nn.Linear(4, 2), tiny_data(), huge_loss, lr=0.0, plugins=[GradNorm()], defaults=False
    )
    with pytest.warns(GradientWarning, match="gradients explode"):
        learner.fit(1)


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="expected 0 <= vanish < explode"):
        GradNorm(vanish=1.0, explode=0.5)
    with pytest.raises(ValueError, match="every should be at least 1, got 0"):
        GradNorm(every=0)


def test_registered_through_the_entry_point() -> None:
    spec = load_catalog().plugins["gradnorm"]
    assert spec.origin.distribution == "lookinside-gradnorm"
    assert [o.name for o in spec.options] == ["vanish", "explode", "every"]
    assert spec.events == ["begin_fit", "begin_epoch", "after_backward", "after_epoch", "after_fit"]


def test_plot_draws_each_layers_norms_per_epoch() -> None:
    plugin = GradNorm()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    Learner(model, DataBunch.from_tensors(x, y, bs=4), plugins=[plugin], defaults=False).fit(2)
    ax = plugin.plot()
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["0", "2"]
    for line, layer in zip(lines, plugin.layers):
        assert list(line.get_ydata()) == [row[layer] for row in plugin.history]
    assert ax.get_yscale() == "log"
