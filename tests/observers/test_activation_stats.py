"""The activation_stats observer: what it records against torch, when, and what it leaves behind."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from engine import CancelBatchException
from engine import CancelTrainException
from engine import PluginError
from engine.cli import main as cli_main
from engine.data import DataBunch
from engine.learner import Learner
from engine.nn import cnn
from observers import activation_plots
from observers.activation_data import RELU_RANGE
from observers.activation_data import SIGNED_RANGE
from observers.activation_stats import ActivationStats
from observers.activation_stats import select_modules
from observers.hooks import Hooks
from tests.host_reads import SyncCounter
from tests.outcomes import GRADIENT_RANGE_IS_SMALL


def image_data(n: int = 48, bs: int = 16, valid: bool = False) -> DataBunch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n + 16, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (n + 16,), generator=gen)
    if valid:
        return DataBunch.from_tensors(x[:n], y[:n], x[n:], y[n:], bs=bs)
    return DataBunch.from_tensors(x[:n], y[:n], bs=bs)


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return cnn(n_out=3, channels=(4, 8))  # conv, conv, pool, flatten, linear


def learner(model: nn.Module, *plugins: object, **kwargs: Any) -> Learner:
    data = kwargs.pop("data", None) or image_data()
    return Learner(model, data, lr=0.3, plugins=list(plugins), defaults=False, **kwargs)


class Capture:
    """The reference: every child's output (a copy) at each training batch."""

    name = "capture"

    def __init__(self, model: nn.Module) -> None:
        self.outputs: list[list[torch.Tensor]] = []
        self.hooks = Hooks(model.children(), lambda m, i, o: o.detach().clone())

    def after_pred(self, learner: Learner) -> None:
        if learner.in_train:
            self.outputs.append(self.hooks.stored)

    def after_fit(self, learner: Learner) -> None:
        self.hooks.remove()


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_exact_statistics_of_every_child_at_every_batch() -> None:
    model = small_cnn()
    capture = Capture(model)
    every_child = ("0", "1", "2", "3", "4")
    stats = ActivationStats(every_child, sample=0, save=False, report=False)
    learner(model, stats, capture).fit(2)
    data = stats.data
    assert data is not None and len(data) == 6 and data.iterations == list(range(6))
    assert data.names == ["0", "1", "2", "3", "4"]
    assert data.ranges == [RELU_RANGE] * 4 + [SIGNED_RANGE]  # the linear layer's logits
    for row, outputs in enumerate(capture.outputs):
        for m, out in enumerate(outputs):
            assert data.means[row, m].item() == pytest.approx(out.double().mean().item(), abs=1e-6)
            assert data.stds[row, m].item() == pytest.approx(out.double().std().item(), rel=1e-5)
            hist = torch.histc(out, 40, *data.ranges[m])
            torch.testing.assert_close(data.hists[row, m], hist, rtol=0, atol=0)
            near = float(hist[data.zero_bins[m]].sum()) / out.numel()
            assert data.near_zero[row, m].item() == pytest.approx(near)


def test_every_and_validation_rows() -> None:
    every = ActivationStats(every=2, save=False, report=False)
    learner(small_cnn(), every).fit(2)  # 3 training batches per epoch
    assert every.data is not None and every.data.iterations == [0, 2, 4]
    assert every.data.epochs == [0, 0, 1]
    both = ActivationStats(valid=True, save=False, report=False)
    learner(small_cnn(), both, data=image_data(valid=True)).fit(2)  # + 1 validation batch
    assert both.data is not None
    assert both.data.train == [True, True, True, False] * 2
    assert both.data.iterations == [0, 1, 2, 2, 3, 4, 5, 5]  # validation: the last batch trained
    assert both.data.training().iterations == [0, 1, 2, 3, 4, 5]


def test_beyond_max_batches_every_other_row_is_dropped() -> None:
    model = small_cnn()
    capture = Capture(model)
    stats = ActivationStats(max_batches=4, save=False, report=False)
    learner(model, stats, capture, data=image_data(n=160)).fit(1)  # 10 batches
    assert stats.data is not None and stats.data.iterations == [0, 4, 8]
    for row, batch in enumerate([0, 4, 8]):
        expected = capture.outputs[batch][1].double().std().item()
        assert stats.data.stds[row, 1].item() == pytest.approx(expected, rel=1e-5)


def test_only_the_rows_the_fit_needs_are_allocated() -> None:
    sizes: list[tuple[int, ...]] = []

    class Probe:
        order = 30

        def after_batch(self, learner: Learner) -> None:
            sizes.append(tuple(stats._acts.data.shape))  # type: ignore[union-attr]

    stats = ActivationStats(bins=10, save=False, report=False)
    learner(small_cnn(), stats, Probe()).fit(2)
    assert set(sizes) == {(6, 2, 12)}  # 2 epochs x 3 batches, 2 conv blocks, 10 bins + 2 sums


def test_no_host_sync_while_training(sync_counter: SyncCounter) -> None:
    class Watch:
        order = 0

        def begin_batch(self, learner: Learner) -> None:
            sync_counter.active = True

        def after_batch(self, learner: Learner) -> None:
            sync_counter.active = False

    fixed = ActivationStats(range_min=-5, range_max=5, grads=True, grad_range=1.0, report=False)
    learner(small_cnn(), fixed, Watch()).fit(2)
    assert sync_counter.calls == []
    auto = ActivationStats(save=False, report=False)
    learner(small_cnn(), auto, Watch()).fit(2)
    assert sync_counter.calls == ["__float__"] * 2  # choosing each module's range, once


def test_a_batch_cancelled_before_the_forward_pass_leaves_no_row() -> None:
    class SkipSecond:
        order = 30

        def begin_batch(self, learner: Learner) -> None:
            if learner.in_train and learner.iter == 1:
                raise CancelBatchException

    stats = ActivationStats(save=False, report=False)
    learner(small_cnn(), stats, SkipSecond()).fit(1)
    assert stats.data is not None and stats.data.iterations == [0, 2]
    assert not stats.data.means.isnan().any()


def test_gradient_statistics_match_autograd() -> None:
    model = small_cnn()
    grads: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        output.register_hook(lambda g: grads.append(g.clone()))

    stats = ActivationStats(grads=True, sample=0, save=False, report=False)
    with Hooks([model[1]], keep):
        learner(model, stats).fit(1)
    data = stats.grad_data
    assert data is not None and data.kind == "gradients" and len(data) == 3
    for row, grad in enumerate(grads):
        assert data.means[row, 1].item() == pytest.approx(grad.double().mean().item(), abs=1e-9)
        assert data.stds[row, 1].item() == pytest.approx(grad.double().std().item(), rel=1e-4)
        low, high = data.ranges[1]
        assert low == -high
        hist = torch.histc(grad, 40, low, high)
        torch.testing.assert_close(data.hists[row, 1], hist, rtol=0, atol=0)


@pytest.mark.parametrize("how", ["normal", "cancelled", "failing", "interrupted", "bad_selection"])
def test_no_hook_and_no_model_reference_left_after_any_fit(how: str) -> None:
    class Stop:
        order = 30

        def after_pred(self, learner: Learner) -> None:
            if learner.iter == 1:
                raise {
                    "cancelled": CancelTrainException,
                    "failing": RuntimeError("boom"),
                    "interrupted": KeyboardInterrupt,
                }[how]

    model = small_cnn()
    stats = ActivationStats(grads=True, modules=("nothing",) if how == "bad_selection" else ())
    extra = [Stop()] if how in ("cancelled", "failing", "interrupted") else []
    fit = learner(model, stats, *extra)
    if how in ("normal", "cancelled"):
        fit.fit(1)
    else:
        with pytest.raises((RuntimeError, KeyboardInterrupt, ValueError)):
            fit.fit(1)
    assert no_hooks(model)
    if how != "bad_selection":
        assert stats.data is not None and len(stats.data) >= 1
    ref = weakref.ref(model)
    del fit, model
    gc.collect()
    assert ref() is None


def test_writes_pictures_and_diagnosis_and_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Path, str]] = []

    def fake_save(data: Any, directory: Path, prefix: str = "", title: str = "") -> list[Path]:
        calls.append((data.kind, directory, prefix))  # the real PNGs: test_activation_plots
        assert title.startswith("Sequential, lr ")
        return [directory / f"{prefix}x.png"]

    monkeypatch.setattr(activation_plots, "save_activation_plots", fake_save)
    stats = ActivationStats(grads=True)
    learner(small_cnn(), stats, out_dir=tmp_path).fit(1)
    folder = tmp_path / "activations"
    assert calls == [("activations", folder, ""), ("gradients", folder, "grad_")]
    assert stats.written == [folder / "x.png", folder / "grad_x.png", folder / "diagnosis.md"]
    out = capsys.readouterr().out
    assert out.startswith("Diagnosis of the activations (last 25% of 3 rows)")
    report = (folder / "diagnosis.md").read_text()
    assert "| layer | mean |" in report
    assert "model Sequential (" in report and "## The columns" in report
    assert "![x](x.png)" in report and "![grad_x](grad_x.png)" in report


def test_save_and_report_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    learner(small_cnn(), ActivationStats(save=False, report=False), out_dir=tmp_path).fit(1)
    assert not (tmp_path / "activations").exists() and capsys.readouterr().out == ""


def test_select_modules_by_pattern_type_or_both() -> None:
    model = small_cnn()
    assert [n for n, _ in select_modules(model)] == ["0", "1"]  # the conv blocks
    assert [n for n, _ in select_modules(model, ("0.*",))] == ["0.0", "0.1"]
    assert [n for n, _ in select_modules(model, types=("Conv2d",))] == ["0.0", "1.0"]
    assert [n for n, _ in select_modules(model, ("1*",), ("ReLU", "Linear"))] == ["1.1"]
    assert select_modules(nn.Linear(2, 2))[0][0] == "model"
    with pytest.raises(ValueError, match=r"no module matches .* modules are: 0, 0.0, 0.1, 1"):
        select_modules(model, ("conv*",))


def test_options_from_the_command_line_syntax() -> None:
    model = small_cnn()
    fit = Learner(
        model,
        image_data(),
        plugins=["activation_stats:types=Conv2d,bins=20,save=false,report=false"],
        defaults=False,
    )
    fit.fit(1)
    stats = fit.plugins["activation_stats"]
    assert isinstance(stats, ActivationStats)
    assert stats.data is not None and stats.data.names == ["0.0", "1.0"]
    assert stats.data.hists.shape == (3, 2, 20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every should be a positive integer, got 0"),
        ({"bins": 4, "zero_bins": 5}, "zero_bins \\(5\\) should be at most bins \\(4\\)"),
        ({"range_min": 1.0}, "give both range_min and range_max"),
        ({"range_min": 2.0, "range_max": 1.0}, "range_min should be below range_max"),
        ({"sample": -1}, "sample should be a non-negative integer, got -1"),
        ({"max_batches": 1}, "max_batches should be an integer >= 2, got 1"),
        ({"grad_range": 0.0}, "grad_range should be a positive number"),
        ({"modules": [3]}, "modules should be a sequence of strings"),
    ],
)
def test_bad_options_say_what_to_give(kwargs: dict[str, Any], message: str) -> None:
    """Made in Python the message is the rule alone; by name it gets the plugin's name."""
    with pytest.raises((ValueError, TypeError), match=f"^{message}"):
        ActivationStats(**kwargs)
    with pytest.raises(PluginError, match=f"^plugin 'activation_stats': {message}"):
        Learner(small_cnn(), image_data(), plugins=[("activation_stats", kwargs)], defaults=False)


def test_cli_fit_prints_the_diagnosis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--epochs", "1", "--bs", "128", "--out", str(tmp_path), "-p", "no:progress"]
    assert cli_main([*argv, "-p", "activation_stats"]) == 0
    out = capsys.readouterr().out
    assert "Diagnosis of the activations" in out and "std last/first layer" in out
    assert (tmp_path / "activations" / "diagnosis.md").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_device_sync_during_cuda_batches() -> None:
    from plugins.device import Device

    class NoSync:
        order = 0

        def begin_batch(self, learner: Learner) -> None:
            torch.cuda.set_sync_debug_mode("error")

        def after_batch(self, learner: Learner) -> None:
            torch.cuda.set_sync_debug_mode("default")

    stats = ActivationStats(range_min=-7, range_max=7, grads=True, grad_range=1.0, report=False)
    try:
        learner(small_cnn(), Device("cuda"), stats, NoSync()).fit(2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert stats.data is not None and len(stats.data) == 6
    assert stats.data.means.isfinite().all()


def test_gradient_range_is_not_the_activations_fixed_range() -> None:
    stats = ActivationStats(grads=True, range_min=-7.0, range_max=7.0, report=False, save=False)
    learner(small_cnn(), stats).fit(1)
    assert stats.data is not None and stats.data.ranges[0] == (-7.0, 7.0)
    assert stats.grad_data is not None
    low, high = stats.grad_data.ranges[0]
    # gradient-sized, far below 7 (this fit is GRADIENT_RANGE_IS_SMALL at seed 0)
    assert low == -high and GRADIENT_RANGE_IS_SMALL.holds(high), GRADIENT_RANGE_IS_SMALL.describe(
        high
    )
    with_range = ActivationStats(
        grads=True, grad_range=0.01, range_min=0.0, range_max=10.0, report=False, save=False
    )
    learner(small_cnn(), with_range).fit(1)
    assert with_range.grad_data is not None and with_range.grad_data.ranges[0] == (-0.01, 0.01)


def test_gradients_under_a_loss_scaler_are_unscaled() -> None:
    """float16 with a GradScaler multiplies gradients by 65536; the stats divide it out."""
    from plugins.mixed_precision import MixedPrecision

    def grad_stds(*extra: object) -> torch.Tensor:
        stats = ActivationStats(grads=True, report=False, save=False)
        model = small_cnn()
        Learner(model, image_data(), lr=0.0, plugins=[stats, *extra], defaults=False).fit(1)
        assert stats.grad_data is not None
        return stats.grad_data.stds[:, 0]

    plain = grad_stds()
    scaled = grad_stds(MixedPrecision(dtype="float16"))
    torch.testing.assert_close(scaled, plain, rtol=0.05, atol=0.0)


def test_odd_capacity_keeps_rows_evenly_spaced() -> None:
    stats = ActivationStats(max_batches=5, report=False, save=False)
    data = image_data(n=96, bs=4)  # 24 training batches
    learner(small_cnn(), stats, data=data).fit(1)
    gaps = {b - a for a, b in zip(stats.iterations, stats.iterations[1:])}
    assert len(gaps) == 1, stats.iterations


def test_a_fit_cancelled_before_it_began_reports_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class CancelAtStart:
        order = -200
        active = False

        def begin_fit(self, learner: Learner) -> None:
            if self.active:
                raise CancelTrainException

    stop = CancelAtStart()
    stats = ActivationStats(save=False)
    fitting = learner(small_cnn(), stop, stats)
    fitting.fit(1)
    first = capsys.readouterr().out
    assert "Diagnosis" in first
    stop.active = True
    fitting.fit(1)
    assert "Diagnosis" not in capsys.readouterr().out
