"""The LR finder: its lr sequence and smoothing, early stop, suggestions, and exact restore."""

from __future__ import annotations

import copy
import functools
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from engine import Learner
from engine import PluginError
from engine.cli import main
from engine.learner_state import FIT_ATTRIBUTES
from plugins._lr_find_result import fall
from plugins._lr_find_result import valley
from plugins.lr_finder import LRFinder
from plugins.lr_finder import LRFindResult
from plugins.lr_finder import lr_find
from plugins.lr_finder import suggest
from tests.helpers import tiny_data
from tests.helpers import tiny_model

FINDER_EVENTS = ["begin_fit", "begin_batch", "after_loss", "begin_validate", "after_fit"]
LEARNER_ATTRIBUTES = ("lr", "epoch", "n_epochs", "n_iter", "out_dir", *FIT_ATTRIBUTES)
"""The learner's attributes lr_find puts back: the state's counters and what a fit sets."""


def closed_form(min_lr: float, max_lr: float, num_it: int) -> list[float]:
    return [min_lr * (max_lr / min_lr) ** (i / (num_it - 1)) for i in range(num_it)]


def bn_dropout_model(seed: int = 0) -> nn.Module:
    """Buffers (batch norm) and randomness (dropout): what a restore must get right."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)
    )


def make_learner(seed: int = 0, **kwargs: Any) -> Learner:
    sgd = functools.partial(torch.optim.SGD, momentum=0.9, weight_decay=1e-4)
    return Learner(
        bn_dropout_model(seed), tiny_data(), opt_func=sgd, plugins=["no:progress"], **kwargs
    )


class LrSpy:
    """Reads the optimizer's lr in after_loss of each training batch (after the finder set it)."""

    order = 0

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_loss(self, learner: Any) -> None:
        if learner.in_train:
            self.lrs.append(learner.opt.param_groups[0]["lr"])


class Raiser:
    """Raises ``exc`` at ``event`` once the sweep has run 3 batches (at once for fit events)."""

    name = "raiser"
    order = -30  # before the finder: it must see begin_validate before the finder cancels it

    def __init__(self, event: str, exc: type[BaseException] = RuntimeError) -> None:
        self.event = event
        self.exc = exc
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.event in ("begin_fit", "after_fit") or learner.n_iter >= 3:
            raise self.exc("boom")


def everything(learner: Learner) -> dict[str, Any]:
    """What the finder must restore, copied."""
    model = learner.model
    return {
        "state": copy.deepcopy(model.state_dict()),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "opt": learner.opt,
        "opt_state": None if learner.opt is None else copy.deepcopy(learner.opt.state_dict()),
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].copy(),  # type: ignore[index]
        "loader": learner.data.train_dl.generator.get_state(),  # type: ignore[attr-defined]
        "attributes": {name: getattr(learner, name) for name in LEARNER_ATTRIBUTES},
        "log": dict(learner.log),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for old, new in zip(before["grads"], after["grads"]):
        assert (old is None and new is None) or torch.equal(old, new)
    assert before["modes"] == after["modes"]
    assert before["opt"] is after["opt"]
    if before["opt_state"] is not None:
        assert before["opt_state"]["param_groups"] == after["opt_state"]["param_groups"]
        old_state, new_state = before["opt_state"]["state"], after["opt_state"]["state"]
        assert old_state.keys() == new_state.keys()
        for key in old_state:
            for name, value in old_state[key].items():
                assert torch.equal(value, new_state[key][name])
    assert torch.equal(before["torch_rng"], after["torch_rng"])
    assert before["python_rng"] == after["python_rng"]
    assert np.array_equal(before["numpy_rng"], after["numpy_rng"])
    assert torch.equal(before["loader"], after["loader"])
    for name, old in before["attributes"].items():
        new = after["attributes"][name]
        assert new is old or (not isinstance(old, (torch.Tensor, dict)) and new == old), name
    assert before["log"] == after["log"]


def test_lr_sequence_is_the_closed_form() -> None:
    """lr_i = min_lr * (max_lr/min_lr) ** (i/(num_it-1)): min_lr first, max_lr last."""
    learner = make_learner()
    spy = LrSpy()
    with learner.added(spy):
        result = lr_find(learner, min_lr=1e-3, max_lr=1.0, num_it=7, stop_div=False)
    assert spy.lrs == result.lrs == closed_form(1e-3, 1.0, 7)
    assert result.lrs[0] == 1e-3 and result.lrs[-1] == pytest.approx(1.0, rel=1e-15)
    assert result.stop_reason == "completed num_it=7"


def test_smoothed_loss_is_the_debiased_average() -> None:
    result = lr_find(make_learner(), num_it=6, beta=0.9, stop_div=False)
    avg = 0.0
    for i, (loss, smoothed) in enumerate(zip(result.losses, result.smoothed)):
        avg = 0.9 * avg + (1 - 0.9) * loss
        assert smoothed == avg / (1 - 0.9 ** (i + 1))
    assert result.smoothed[0] == result.losses[0]


def test_cycles_the_training_data_and_skips_validation() -> None:
    """2 batches per epoch, 5 iterations: 3 epochs, no validation batch."""
    learner = make_learner()
    passes = []

    class Passes:
        def begin_batch(self, learner: Any) -> None:
            passes.append((learner.epoch, learner.in_train))

    with learner.added(Passes()):
        result = lr_find(learner, num_it=5, stop_div=False)
    assert len(result.lrs) == 5
    assert passes == [(0, True), (0, True), (1, True), (1, True), (2, True)]


def test_stops_when_smoothed_loss_exceeds_stop_factor_times_best() -> None:
    script = iter([3.0, 2.0, 1.0, 1.5, 9.0, 10.5, 11.0, 12.0])

    def scripted_loss(pred: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pred.sum() * 0 + next(script)

    learner = Learner(tiny_model(), tiny_data(), loss_func=scripted_loss, plugins=["no:progress"])
    result = lr_find(learner, num_it=8, beta=0.0, stop_factor=10.0)
    assert result.losses == [3.0, 2.0, 1.0, 1.5, 9.0, 10.5]  # 10.5 > 10 x 1.0: stop
    assert result.smoothed == result.losses  # beta=0: no smoothing
    assert "smoothed loss 10.5 > 10 x best 1" in result.stop_reason


def test_stops_at_a_non_finite_loss() -> None:
    script = iter([1.0, float("nan"), 1.0])

    def scripted_loss(pred: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return pred.sum() * 0 + next(script)

    learner = Learner(tiny_model(), tiny_data(), loss_func=scripted_loss, plugins=["no:progress"])
    result = lr_find(learner, num_it=3)
    assert len(result.lrs) == 2 and "the loss is nan" in result.stop_reason


def test_restores_everything_bit_for_bit() -> None:
    learner = make_learner()
    learner.fit(1)  # an optimizer with momentum buffers, a used loader generator
    learner.model.eval()
    before = everything(learner)
    result = lr_find(learner, num_it=10, stop_div=False)
    assert len(result.lrs) == 10
    assert_same(before, everything(learner))


def test_restores_a_learner_that_never_fitted() -> None:
    learner = make_learner()
    before = everything(learner)
    lr_find(learner, num_it=4)
    assert_same(before, everything(learner))
    assert learner.opt is None and "lr_find" not in learner.plugins


def test_fit_after_the_finder_equals_fit_without_it() -> None:
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    with_finder = make_learner(seed=3)
    with_finder.fit(1)
    lr_find(with_finder, num_it=9)
    with_finder.fit(2)

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    plain = make_learner(seed=3)
    plain.fit(1)
    plain.fit(2)

    for key, value in plain.model.state_dict().items():
        assert torch.equal(value, with_finder.model.state_dict()[key]), key

    def untimed(learner: Learner) -> list[dict[str, Any]]:
        history = learner.plugins["metrics"].history  # type: ignore[attr-defined]
        return [{k: v for k, v in row.items() if k != "time"} for row in history]

    assert untimed(with_finder) == untimed(plain)
    assert len(untimed(plain)) == 2 and untimed(plain)[1]["valid_loss"] is not None


@pytest.mark.parametrize("event", FINDER_EVENTS)
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_restores_when_an_event_it_uses_raises(event: str, exc: type[BaseException]) -> None:
    learner = make_learner()
    learner.fit(1)
    before = everything(learner)
    with learner.added(Raiser(event, exc)), pytest.raises(exc, match="boom"):
        lr_find(learner, num_it=6)
    assert "lr_find" not in learner.plugins
    assert_same(before, everything(learner))


def test_suggestions_on_a_known_curve() -> None:
    lrs = [10.0 ** (-5 + 0.5 * i) for i in range(11)]
    losses = [5.0, 5.0, 4.9, 4.5, 3.0, 1.0, 0.8, 0.7, 0.75, 2.0, float("nan")]
    # central differences over log10(lr), step 0.5: the most negative is at i=4, (1.0-4.5)/1.0
    # the descent begins at i=2, the last point within 10% of the fall (5.0 - 0.43) of the
    # top; its longest valley: 4.9 (i=2), 4.5, 3.0, 1.0, 0.8, 0.7 (i=7); halfway: i=4
    found = suggest(lrs, losses)
    assert found == {"valley": lrs[4], "steepest": lrs[4], "min/10": lrs[7] / 10}
    # from i=5 on: one-sided at the start, (0.8-1.0)/0.5 = -0.4, the most negative
    assert suggest(lrs, losses, skip_start=5) == {
        "valley": lrs[6],
        "steepest": lrs[5],
        "min/10": lrs[7] / 10,
    }
    assert suggest(lrs[:1], losses[:1]) == {}


def test_the_longest_valley_and_not_the_deepest_drop() -> None:
    """The points need not be adjacent: a bump does not end the valley, but the two
    points it skipped shorten it (7 falling points: the 7 points up to the end)."""
    losses = [3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.6, 2.7, 0.5, 5.0]
    assert valley(losses) == (2, 8)
    assert valley([1.0, 2.0, 3.0]) == (0, 0)
    assert valley([]) == (0, 0)


def test_the_valley_is_on_the_descent_not_in_a_drifting_flat_start() -> None:
    """Digits with BatchNorm: 5 decades flat near 3.1 (drifting down a little, so a
    falling run could go through all of it), then the descent from 1e-3 to 1."""
    lrs = [10.0 ** (-7 + 0.08 * i) for i in range(100)]
    flat = [3.1 - 0.0005 * i for i in range(50)]  # 1e-7 .. 1e-3
    descent = [flat[-1] - 0.9 * (i + 1) / 38 for i in range(38)]  # 1e-3 .. 1
    rise = [descent[-1] + 0.5 * (i + 1) for i in range(12)]
    found = suggest(lrs, flat + descent + rise, skip_start=10)
    assert 1e-3 < found["valley"] < 1.0
    # halfway down: the descent begins at i=51 (the last point within 10% of the fall
    # from the top) and ends at i=87, the minimum
    assert found["valley"] == lrs[51 + (87 - 51) // 2]
    # a dip in the flat part is steeper than the descent, and still not where it trains
    flat[20] -= 0.06
    steepest = suggest(lrs, flat + descent + rise, skip_start=10)["steepest"]
    assert lrs[51] <= steepest <= lrs[87]
    assert valley(flat + descent)[0] < 50  # what the whole curve's valley would have used


def test_a_flat_sweep_suggests_nothing_and_says_so() -> None:
    """The issue's digits sweep: the smoothed loss stays at chance level, 2.304-2.318."""
    lrs = [10.0 ** (-7 + 0.08 * i) for i in range(100)]
    smoothed = [2.31 + 0.007 * math.sin(i) for i in range(100)]
    assert suggest(lrs, smoothed, skip_start=10) == {}
    result = LRFindResult(lrs, smoothed, smoothed, "completed num_it=100", skip_start=10)
    assert result.suggestions == {}
    text = str(result)
    assert "no suggestion: the smoothed loss never fell by 10% over the sweep" in text
    assert "suggested lr" not in text
    falls = [2.3 - 0.3 * i / 99 for i in range(100)]  # 13% down: enough
    assert set(suggest(lrs, falls, skip_start=10)) == {"valley", "steepest", "min/10"}


def test_the_sweep_prints_no_epoch_row(capsys: pytest.CaptureFixture[str]) -> None:
    learner = Learner(tiny_model(), tiny_data(), plugins=["progress:bar=false"])
    lr_find(learner, num_it=12)
    assert capsys.readouterr().out == ""
    assert "progress" in learner.plugins


def test_result_plot_marks_the_suggestions() -> None:
    lrs = [10.0 ** (-5 + 0.5 * i) for i in range(11)]
    losses = [5.0, 5.0, 4.9, 4.5, 3.0, 1.0, 0.8, 0.7, 0.75, 2.0, 9.0]
    result = LRFindResult(lrs, losses, losses, "completed num_it=11")
    ax = result.plot()
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["loss", "smoothed loss"]
    assert [str(label).split(":")[0] for label in labels[2:]] == ["valley", "steepest", "min/10"]
    assert str(result).splitlines()[1].startswith("suggested lr (valley): ")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_lr": 1.0, "max_lr": 1.0}, "min_lr should be below max_lr, got min_lr=1.0 and max_"),
        ({"min_lr": 0.0}, "min_lr should be a positive number, got 0.0"),
        ({"max_lr": -1.0}, "max_lr should be a positive number, got -1.0"),
        ({"num_it": 1}, "num_it should be an integer >= 2 .* got 1"),
        ({"stop_factor": 1.0}, "stop_factor should be a number > 1, got 1.0"),
        ({"beta": 1.0}, r"beta should be in \[0, 1\), got 1.0"),
    ],
)  # fmt: skip
def test_bad_input_names_the_plugin_and_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="plugin 'lr_find': " + message):
        LRFinder(**kwargs)
    learner = make_learner()
    with pytest.raises(ValueError, match=message):
        lr_find(learner, **kwargs)
    assert "lr_find" not in learner.plugins


def test_plugin_from_a_string_is_the_lessons_callback() -> None:
    """-p lr_find in a fit: sweeps, stops the fit, restores nothing; the recorder has the sweep."""
    learner = Learner(
        tiny_model(), tiny_data(), plugins=["no:progress", "lr_find:num_it=3,max_lr=1"]
    )
    learner.fit(5)
    recorder: Any = learner.plugins["recorder"]
    finder: Any = learner.plugins["lr_find"]
    assert recorder.lrs == [closed_form(1e-7, 1.0, 3)]
    assert finder.result.stop_reason == "completed num_it=3"
    with pytest.raises(PluginError, match="num_it should be an integer >= 2"):
        Learner(tiny_model(), tiny_data(), plugins=["lr_find:num_it=1"])


def test_cli_prints_suggestions_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lr-find", "--num-it", "12", "--bs", "128", "--out", str(tmp_path), "-p", "no:progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "lr_find: 12 iterations" in out
    assert "suggested lr (min/10): " in out or "no suggestion: the smoothed loss never" in out
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert main(["lr-find", "--min-lr", "1", "--max-lr", "0.1", "--out", str(tmp_path)]) == 2
    assert (
        "lookinside: error: plugin 'lr_find': min_lr should be below max_lr"
        in capsys.readouterr().err
    )


def test_result_defaults_are_empty() -> None:
    result = LRFindResult()
    assert result.suggestions == {} and "no suggestion" in str(result)


def test_checkpoint_and_early_stopping_sit_out_the_sweep(tmp_path: Path) -> None:
    plugins = ["no:progress", "checkpoint", "early_stopping:monitor=train_loss,patience=1"]
    learner = Learner(tiny_model(), tiny_data(), plugins=plugins, out_dir=tmp_path)
    order = list(learner.plugins)
    result = lr_find(learner, num_it=6, stop_div=False)
    assert len(result.lrs) == 6  # early stopping did not cut the sweep
    assert list(learner.plugins) == order
    assert not (tmp_path / "checkpoints").exists() and not list(tmp_path.iterdir())
    learner.fit(1)
    assert (tmp_path / "checkpoints" / "last.pt").exists()


def test_stop_reason_names_another_plugin_that_cancelled() -> None:
    from engine import CancelTrainException

    class StopAtFive:
        order = 50
        batches = 0

        def after_batch(self, learner: Any) -> None:
            self.batches += 1
            if self.batches == 5:
                raise CancelTrainException

    learner = Learner(tiny_model(), tiny_data(), plugins=[StopAtFive()], defaults=False)
    result = lr_find(learner, num_it=20, stop_div=False)
    assert (
        result.stop_reason
        == "stopped by another plugin (CancelTrainException) after 5 of 20 batches"
    )


def test_any_plugin_can_sit_out_the_sweep_and_no_state_is_loaded_back(tmp_path: Path) -> None:
    """pause_during_sweeps, not a list of names, decides; a plugin's state is not loaded
    back after the sweep (to a plugin, a loaded state means: resume from it)."""

    class Paused:
        name = "paused"
        pause_during_sweeps = True
        batches = 0

        def after_batch(self, learner: Any) -> None:
            self.batches += 1

    class Stateful:
        name = "stateful"
        loads = 0

        def state_dict(self) -> dict[str, Any]:
            return {}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.loads += 1

    paused, stateful = Paused(), Stateful()
    learner = make_learner(out_dir=tmp_path)
    learner.add_plugin(paused)
    learner.add_plugin(stateful)
    before = everything(learner)
    lr_find(learner, num_it=4)
    assert_same(before, everything(learner))
    assert (paused.batches, stateful.loads) == (0, 0)
    assert learner.plugins["paused"] is paused and learner.out_dir == tmp_path
    assert not list(tmp_path.iterdir())  # the recorder wrote no plot of the sweep


def test_the_valley_on_digits_is_a_rate_the_model_trains_at() -> None:
    """The issue's check: train at the suggestion (tests/outcomes.py has the spread)."""
    from tests.outcomes import LR_FIND_VALLEY_TRAINS

    LR_FIND_VALLEY_TRAINS.check(0)


def test_a_negative_loss_that_falls_gets_suggestions() -> None:
    """A Gaussian NLL can be negative: it falls from -0.5 to -2.5 as well as 3 falls to 1."""
    lrs = [10.0 ** (-5 + 0.5 * i) for i in range(11)]
    shape = [2.5, 2.5, 2.4, 2.0, 0.5, -1.5, -1.7, -1.8, -1.75, -0.5, 3.0]
    negative = [v - 3.0 for v in shape]  # -0.5 down to -4.8
    positive = [v + 3.0 for v in shape]  # 5.5 down to 1.2
    assert suggest(lrs, negative) == suggest(lrs, positive) != {}
    assert fall([0.0, -1.0, -2.0]) == 1.0 and fall([1.0, 1.0]) == 0.0
