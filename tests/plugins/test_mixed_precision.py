"""The mixed_precision plugin: autocast where it belongs, true losses, skipped inf/NaN steps."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import Learner
from observers.metrics import Metrics
from plugins.mixed_precision import MixedPrecision
from tests.helpers import tiny_data
from tests.helpers import tiny_model

EVENTS = [
    "begin_fit",
    "begin_batch",
    "after_pred",
    "after_loss",
    "after_backward",
    "after_step",
    "after_cancel_batch",
    "after_batch",
    "after_cancel_epoch",
    "after_cancel_train",
    "after_fit",
]


class Probe(nn.Module):
    """A linear layer that records whether autocast is on and what dtype it produces."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 2)
        self.seen: list[tuple[bool, torch.dtype, torch.dtype]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        self.seen.append(
            (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.dtype)
        )
        return out


class Losses:
    """Records learner.loss (and its dtype) where observers read it: after_loss and after_batch."""

    order = 90

    def __init__(self) -> None:
        self.at_loss: list[torch.Tensor] = []
        self.at_batch: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.autocast_in_backward: list[bool] = []

    def after_loss(self, learner: Any) -> None:
        if learner.in_train:
            self.at_loss.append(learner.loss.detach().clone())

    def after_backward(self, learner: Any) -> None:
        self.grads.append(learner.model.lin.weight.grad.clone())
        self.autocast_in_backward.append(torch.is_autocast_enabled("cpu"))

    def after_batch(self, learner: Any) -> None:
        if learner.in_train:
            self.at_batch.append(learner.loss.detach().clone())


class Poison:
    """Makes one gradient NaN at a given training batch (before mixed_precision checks)."""

    order = 40

    def __init__(self, at: int, value: float = math.nan) -> None:
        self.at = at
        self.value = value

    def after_backward(self, learner: Any) -> None:
        if learner.n_iter == self.at:
            learner.model.lin.bias.grad[0] = self.value


def fit(*plugins: object, epochs: int = 1, model: nn.Module | None = None) -> Learner:
    learner = Learner(
        model or Probe(),
        tiny_data(),
        lr=0.1,
        plugins=[*plugins],
        defaults=False,
    )
    learner.fit(epochs)
    return learner


def test_autocast_runs_in_bfloat16_on_the_cpu_and_only_in_the_forward() -> None:
    losses = Losses()
    learner = fit(MixedPrecision(), losses)
    model = learner.model
    assert isinstance(model, Probe)
    # 2 training batches and 1 validation batch, all under bfloat16 autocast
    assert model.seen == [(True, torch.bfloat16, torch.bfloat16)] * 3
    assert losses.autocast_in_backward == [False, False]
    assert not torch.is_autocast_enabled("cpu")
    plugin = learner.plugins["mixed_precision"]
    assert plugin.scaler is None and plugin.amp_dtype == torch.bfloat16  # type: ignore[attr-defined]


def test_observers_see_the_true_float32_loss_with_a_scaler() -> None:
    """float16 on the CPU uses a GradScaler: gradients scaled, learner.loss not."""
    losses = Losses()
    before = Probe()
    reference = {k: v.clone() for k, v in before.state_dict().items()}
    learner = fit(MixedPrecision(dtype="float16"), losses, model=before)
    assert learner.plugins["mixed_precision"].scaler is not None  # type: ignore[attr-defined]
    # the first batch, recomputed by hand under the same autocast, unscaled
    model = Probe()
    model.load_state_dict(reference)
    xb, yb = next(iter(tiny_data().train_dl))
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(model(xb), yb)
    loss.backward()
    assert losses.at_loss[0].dtype == torch.float32
    assert torch.equal(losses.at_loss[0], loss.detach())
    assert [torch.equal(a, b) for a, b in zip(losses.at_loss, losses.at_batch)] == [True, True]
    # the gradient seen after unscaling is the plain one (the scale is a power of 2)
    assert torch.allclose(losses.grads[0], model.lin.weight.grad, rtol=1e-3, atol=1e-6)


def test_metrics_average_the_true_losses() -> None:
    losses = Losses()
    learner = fit(MixedPrecision(dtype="float16"), Metrics(), losses)
    expected = sum(loss.item() * 4 for loss in losses.at_batch) / 8
    assert learner.log["train_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_step_with_a_nan_gradient_is_skipped_and_training_goes_on(dtype: str) -> None:
    model = Probe()
    start = {k: v.clone() for k, v in model.state_dict().items()}

    class Watch:
        order = 95

        def __init__(self) -> None:
            self.after: list[dict[str, torch.Tensor]] = []

        def after_batch(self, learner: Any) -> None:
            if learner.in_train:
                self.after.append({k: v.clone() for k, v in learner.model.state_dict().items()})

    watch = Watch()
    learner = fit(MixedPrecision(dtype=dtype), Poison(at=0), watch, model=model, epochs=2)
    plugin = learner.plugins["mixed_precision"]
    first = watch.after[0]
    assert all(torch.equal(first[k], start[k]) for k in start)  # batch 0: no step
    assert all(not torch.equal(watch.after[1][k], first[k]) for k in start)  # batch 1 stepped
    assert plugin.skipped == 1  # type: ignore[attr-defined]
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    if dtype == "float16":
        # one skipped step halves the scale; the 3 good steps leave it alone
        assert plugin.scaler.get_scale() == 65536.0 / 2  # type: ignore[attr-defined]


def test_an_infinite_gradient_is_skipped_too() -> None:
    learner = fit(MixedPrecision(), Poison(at=1, value=math.inf))
    assert learner.plugins["mixed_precision"].skipped == 1  # type: ignore[attr-defined]


def test_skip_nonfinite_off_applies_the_nan() -> None:
    model = Probe()
    fit(MixedPrecision(skip_nonfinite=False), Poison(at=0), model=model)
    assert torch.isnan(model.lin.bias).any()


def test_scaler_state_goes_through_the_state_protocol() -> None:
    first = fit(MixedPrecision(dtype="float16"), Poison(at=0))
    state = first.plugins["mixed_precision"].state_dict()  # type: ignore[attr-defined]
    assert state["scaler"]["scale"] == 32768.0
    again = MixedPrecision(dtype="float16")
    again.load_state_dict(state)  # before begin_fit: kept until the scaler exists
    learner = Learner(Probe(), tiny_data(), plugins=[again], defaults=False)
    learner.fit(0)
    assert again.scaler is not None and again.scaler.get_scale() == 32768.0


class Raiser:
    name = "raiser"

    def __init__(self, event: str, order: int, exc: BaseException) -> None:
        self.order = order
        self.exc = exc
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if learner.n_iter >= 1 or learner.epoch >= 1 or not learner.in_train:
            raise self.exc


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("order", [45, 55])
def test_an_error_at_any_of_its_events_leaves_autocast_off(event: str, order: int) -> None:
    """Raised before or after the plugin runs, at every event it receives."""
    plugin = MixedPrecision(dtype="float16")
    learner = Learner(Probe(), tiny_data(), plugins=[plugin], defaults=False)
    if event in ("after_cancel_batch", "after_cancel_epoch", "after_cancel_train"):
        from engine import CancelBatchException
        from engine import CancelEpochException
        from engine import CancelTrainException

        cancel = {
            "after_cancel_batch": CancelBatchException,
            "after_cancel_epoch": CancelEpochException,
            "after_cancel_train": CancelTrainException,
        }[event]
        learner.add_plugin(Raiser("begin_batch", 60, cancel()), name="cancel")
    with learner.added(Raiser(event, order, RuntimeError("boom"))):
        with pytest.raises(RuntimeError, match="boom"):
            learner.fit(2)
    assert not torch.is_autocast_enabled("cpu")
    assert not plugin._unscaled
    if "cancel" in learner.plugins:
        learner.remove_plugin("cancel")
    learner.fit(1)  # the scaler is usable again: no "unscale_() has already been called"
    assert not torch.is_autocast_enabled("cpu")


def test_ctrl_c_inside_the_forward_leaves_autocast_off() -> None:
    class Interrupting(Probe):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(MixedPrecision(), model=Interrupting())
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"dtype": "fp8"},
            ValueError,
            "dtype should be 'auto', 'bfloat16' or 'float16', got 'fp8'",
        ),
        (
            {"skip_nonfinite": "yes"},
            TypeError,
            "skip_nonfinite should be a bool, got 'yes'",
        ),
    ],
)
def test_bad_options(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        MixedPrecision(**options)
    assert str(info.value) == message


def test_options_from_the_command_line_syntax() -> None:
    learner = Learner(
        tiny_model(), tiny_data(), plugins=["mixed_precision:dtype=float16,skip_nonfinite=false"]
    )
    plugin = learner.plugins["mixed_precision"]
    assert (plugin.dtype, plugin.skip_nonfinite) == ("float16", False)  # type: ignore[attr-defined]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_float16_with_a_gradient_scaler() -> None:
    from plugins.device import Device

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 2))
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    learner = Learner(
        model,
        tiny_data(),
        plugins=[Device("cuda"), MixedPrecision(), Metrics()],
        defaults=False,
    )
    learner.fit(3)
    plugin = learner.plugins["mixed_precision"]
    assert plugin.scaler is not None and plugin.amp_dtype == torch.float16  # type: ignore[attr-defined]
    assert set(seen) == {torch.float16}
    assert math.isfinite(learner.log["train_loss"])
    assert not torch.is_autocast_enabled("cuda")


def test_events_run_outside_autocast_the_forward_and_loss_inside() -> None:
    class Watch:
        order = 1000  # after mixed_precision (the order does not matter any more)

        def __init__(self) -> None:
            self.seen: list[tuple[str, bool]] = []

        def after_pred(self, learner: Any) -> None:
            self.seen.append(("after_pred", torch.is_autocast_enabled("cpu")))

        def after_loss(self, learner: Any) -> None:
            self.seen.append(("after_loss", torch.is_autocast_enabled("cpu")))

    early, late = Watch(), Watch()
    early.order, early.name, late.name = -1000, "early", "late"  # type: ignore[attr-defined]
    learner = fit(MixedPrecision(), early, late)
    assert early.seen == late.seen == [("after_pred", False), ("after_loss", False)] * 3
    assert [enabled for enabled, _, _ in learner.model.seen] == [True] * 3  # type: ignore[attr-defined]


def test_a_second_fit_resumed_from_a_checkpoint_keeps_the_saved_scale(tmp_path) -> None:
    """checkpoint restores before mixed_precision's begin_fit makes a new scaler."""
    from engine.testing import make_learner
    from engine.testing import tiny_data

    learner = make_learner(["mixed_precision:dtype=float16"], data=tiny_data())
    learner.fit(1)
    plugin = learner.plugins["mixed_precision"]
    plugin.scaler.update(1234.0)  # type: ignore[attr-defined]
    state = learner.state_dict()
    learner.fit(1)  # a new scaler, at the default scale
    learner.load_state_dict(state)
    seen: list[float] = []

    class ScaleSpy:
        name = "scale_spy"
        order = 100  # after mixed_precision's begin_fit made its scaler

        def begin_fit(self, learner: object) -> None:
            seen.append(plugin.scaler.get_scale())  # type: ignore[attr-defined]

    learner.add_plugin(ScaleSpy())
    learner.fit(1)
    assert seen == [1234.0]
