"""The loop: exact event sequences, cancellation, cleanup, and what plugins may change."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import CancelBatchException
from engine import CancelEpochException
from engine import CancelTrainException
from engine import Learner
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model

TRAIN = ["begin_batch", "after_pred", "after_loss", "after_backward", "after_step", "after_batch"]
VALID = ["begin_batch", "after_pred", "after_loss", "after_batch"]


def epoch(train: list[str] | None = None, valid: list[str] | None = None) -> list[str]:
    """One epoch of 2 training batches and 1 validation batch."""
    train = TRAIN * 2 if train is None else train
    valid = VALID if valid is None else valid
    return ["begin_epoch", *train, "begin_validate", *valid, "after_epoch"]


class Raiser:
    """Raises ``exc`` at ``event`` when ``when(learner)`` is true."""

    name = "raiser"
    order = 10

    def __init__(
        self, event: str, exc: BaseException | type[BaseException], when: Any = None
    ) -> None:
        self.event = event
        self.exc = exc
        self.when = when or (lambda learner: True)
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.when(learner):
            raise self.exc


def run(spy: Spy, *extra: object, epochs: int = 2) -> Learner:
    learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=[spy, *extra], defaults=False)
    learner.fit(epochs)
    return learner


def test_event_sequence_two_epochs(spy: Spy) -> None:
    """2 epochs x 2 training batches x 1 validation batch, in the documented order."""
    run(spy)
    assert spy.seen == ["begin_fit", *epoch(), *epoch(), "after_fit"]


def test_zero_epochs_sends_only_fit_events(spy: Spy) -> None:
    run(spy, epochs=0)
    assert spy.seen == ["begin_fit", "after_fit"]


def test_cancel_batch_after_pred_skips_rest_of_batch(spy: Spy) -> None:
    run(spy, Raiser("after_pred", CancelBatchException, lambda learner: learner.in_train), epochs=1)
    cancelled = ["begin_batch", "after_pred", "after_cancel_batch", "after_batch"]
    assert spy.seen == ["begin_fit", *epoch(train=cancelled * 2), "after_fit"]


def test_cancel_batch_after_backward_skips_the_step(spy: Spy) -> None:
    learner = Learner(tiny_model(), tiny_data(), plugins=[spy], defaults=False)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    with learner.added(Raiser("after_backward", CancelBatchException)):
        learner.fit(1)
    cancelled = [
        "begin_batch",
        "after_pred",
        "after_loss",
        "after_backward",
        "after_cancel_batch",
        "after_batch",
    ]
    assert spy.seen == ["begin_fit", *epoch(train=cancelled * 2), "after_fit"]
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cancel_epoch_in_training_still_validates(spy: Spy) -> None:
    run(
        spy, Raiser("begin_batch", CancelEpochException, lambda learner: learner.in_train), epochs=1
    )
    train = ["begin_batch", "after_cancel_epoch"]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        *train,
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_cancel_epoch_from_begin_epoch(spy: Spy) -> None:
    run(spy, Raiser("begin_epoch", CancelEpochException), epochs=1)
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "after_cancel_epoch",
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_cancel_epoch_from_begin_validate_skips_validation(spy: Spy) -> None:
    run(spy, Raiser("begin_validate", CancelEpochException), epochs=1)
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        *TRAIN * 2,
        "begin_validate",
        "after_cancel_epoch",
        "after_epoch",
        "after_fit",
    ]


def test_cancel_epoch_during_validation(spy: Spy) -> None:
    run(
        spy,
        Raiser("after_loss", CancelEpochException, lambda learner: not learner.in_train),
        epochs=1,
    )
    valid = ["begin_batch", "after_pred", "after_loss", "after_cancel_epoch"]
    assert spy.seen == ["begin_fit", *epoch(valid=valid), "after_fit"]


def test_cancel_train_mid_epoch(spy: Spy) -> None:
    def second_epoch_first_batch(learner: Any) -> bool:
        return learner.epoch == 1 and learner.in_train and learner.iter == 0

    run(spy, Raiser("after_step", CancelTrainException, second_epoch_first_batch))
    partial = ["begin_epoch", *TRAIN[:-1]]
    assert spy.seen == ["begin_fit", *epoch(), *partial, "after_cancel_train", "after_fit"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("begin_fit", ["begin_fit"]),
        ("begin_validate", ["begin_fit", "begin_epoch", *TRAIN * 2, "begin_validate"]),
        ("after_epoch", ["begin_fit", *epoch()]),
        ("after_cancel_batch", ["begin_fit", "begin_epoch", "begin_batch", "after_cancel_batch"]),
    ],
)
def test_cancel_train_from_other_events(spy: Spy, event: str, expected: list[str]) -> None:
    extra = [Raiser(event, CancelTrainException)]
    if event == "after_cancel_batch":
        batch_raiser = Raiser("begin_batch", CancelBatchException)
        batch_raiser.name = "batch_raiser"
        extra.append(batch_raiser)
    run(spy, *extra)
    assert spy.seen == [*expected, "after_cancel_train", "after_fit"]


def test_error_propagates_unchanged_with_a_note_and_after_fit_runs(spy: Spy) -> None:
    error = RuntimeError("boom")
    with pytest.raises(RuntimeError) as info:
        run(spy, Raiser("after_loss", error))
    assert info.value is error
    assert "while plugin 'raiser' handled 'after_loss'" in info.value.__notes__
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_pred",
        "after_loss",
        "after_fit",
    ]


def test_keyboard_interrupt_still_sends_after_fit(spy: Spy) -> None:
    with pytest.raises(KeyboardInterrupt):
        run(spy, Raiser("begin_batch", KeyboardInterrupt))
    assert spy.seen == ["begin_fit", "begin_epoch", "begin_batch", "after_fit"]


def test_error_in_model_forward_still_sends_after_fit(spy: Spy) -> None:
    learner = Learner(torch.nn.Linear(5, 2), tiny_data(), plugins=[spy], defaults=False)
    with pytest.raises(RuntimeError):
        learner.fit(1)
    assert spy.seen[-1] == "after_fit"


def test_validation_runs_without_grad_in_eval_mode() -> None:
    seen: list[tuple[bool, bool, bool]] = []

    class Watch:
        def after_pred(self, learner: Any) -> None:
            seen.append((learner.in_train, learner.model.training, torch.is_grad_enabled()))

    run(Spy(), Watch(), epochs=1)
    assert seen == [(True, True, True), (True, True, True), (False, False, False)]


def test_progress_counters() -> None:
    seen: list[tuple[float, int]] = []

    class Watch:
        order = 50

        def after_batch(self, learner: Any) -> None:
            seen.append((round(learner.n_epochs, 6), learner.n_iter))

    run(Spy(), Watch())
    assert seen == [(0.5, 1), (1.0, 2), (1.0, 2), (1.5, 3), (2.0, 4), (2.0, 4)]


def test_plugins_may_replace_loss() -> None:
    """Doubling the loss in after_loss doubles the gradient the step uses."""

    def weights_after(*extra: object) -> torch.Tensor:
        learner = Learner(tiny_model(), tiny_data(), lr=0.1, plugins=[*extra], defaults=False)
        start = learner.model.weight.detach().clone()
        learner.fit(1)
        return learner.model.weight.detach() - start

    class Double:
        def after_loss(self, learner: Any) -> None:
            learner.loss = learner.loss * 2

    class HalfLr:
        def begin_fit(self, learner: Any) -> None:
            for group in learner.opt.param_groups:
                group["lr"] = 0.05

    # one step of SGD: 2x the loss at half the lr moves the weights the same way,
    # for the first batch exactly; check the first step only.
    class StopAfterFirstStep:
        order = 100

        def after_step(self, learner: Any) -> None:
            raise CancelTrainException

    doubled = weights_after(Double(), HalfLr(), StopAfterFirstStep())
    plain = weights_after(StopAfterFirstStep())
    torch.testing.assert_close(doubled, plain)


def test_plugins_may_replace_inputs_and_predictions() -> None:
    class Replace:
        def begin_batch(self, learner: Any) -> None:
            learner.xb = torch.zeros_like(learner.xb)

        def after_pred(self, learner: Any) -> None:
            assert torch.equal(learner.pred, learner.model.bias.expand_as(learner.pred))
            learner.pred = learner.pred * 0

    class Check:
        order = 5

        def after_loss(self, learner: Any) -> None:
            torch.testing.assert_close(learner.loss, torch.log(torch.tensor(2.0)))

    run(Spy(), Replace(), Check(), epochs=1)


def test_bad_epochs_and_batches_are_clear_errors(model: torch.nn.Module) -> None:
    learner = Learner(model, tiny_data(), defaults=False)
    with pytest.raises(ValueError, match="epochs should be a non-negative integer, got -1"):
        learner.fit(-1)
    odd = Learner(
        model, ([(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2))], None), defaults=False
    )
    with pytest.raises(TypeError, match=r"a batch should be a pair \(inputs, targets\)"):
        odd.fit(1)


def test_fit_is_not_reentrant(spy: Spy) -> None:
    class Nested:
        def begin_fit(self, learner: Any) -> None:
            learner.fit(1)

    with pytest.raises(RuntimeError, match="already fitting"):
        run(spy, Nested())
    assert spy.seen[-1] == "after_fit"


def test_after_fit_sees_the_error_that_ended_the_fit() -> None:
    seen: list[object] = []

    class Watch:
        def after_fit(self, learner: Any) -> None:
            seen.append(learner.error)

    error = KeyError("x")
    with pytest.raises(KeyError):
        run(Spy(), Watch(), Raiser("after_step", error))
    run(Spy(), Watch(), Raiser("after_step", CancelTrainException))
    run(Spy(), Watch())
    assert seen == [error, None, None]


def test_begin_fit_may_move_the_start_epoch(spy: Spy) -> None:
    class Resume:
        order = -200

        def begin_fit(self, learner: Any) -> None:
            learner.epoch = 2

    learner = run(spy, Resume(), epochs=3)
    assert spy.seen == ["begin_fit", *epoch(), "after_fit"]
    assert learner.epoch == 2


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    """Learner.state_dict after one epoch, loaded into a fresh learner: the second epoch
    gives the same weights as an uninterrupted two-epoch fit."""
    import copy

    whole = Learner(tiny_model(), tiny_data(), lr=0.1, defaults=False)
    whole.fit(2)
    first = Learner(tiny_model(), tiny_data(), lr=0.1, defaults=False)
    first.fit(1)
    saved = copy.deepcopy(first.state_dict())
    assert (saved["epoch"], saved["n_iter"]) == (0, 2)
    fresh = Learner(tiny_model(seed=7), tiny_data(seed=0), lr=0.1, defaults=False)
    assert fresh.load_state_dict(saved) == []
    fresh.fit(1)
    # a fit starts at epoch 0; what it continues is the weights, optimizer and shuffles
    second = Learner(tiny_model(), tiny_data(), lr=0.1, defaults=False)
    second.fit(1)
    second.fit(1)
    for a, b in zip(second.model.parameters(), fresh.model.parameters()):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b) for a, b in zip(whole.model.parameters(), first.model.parameters())
    )


class Releases:
    """Fails (or not) in after_fit, and records that its after_fit ran."""

    def __init__(self, name: str, ran: list[str], exc: BaseException | None = None) -> None:
        self.name = name
        self.ran = ran
        self.exc = exc

    def after_fit(self, learner: Any) -> None:
        self.ran.append(self.name)
        if self.exc is not None:
            raise self.exc


def test_every_after_fit_receiver_runs_when_earlier_ones_raise() -> None:
    """The first exception propagates after all ran; later ones are notes on it."""
    ran: list[str] = []
    plugins = [
        Releases("a", ran, ValueError("first")),
        Releases("b", ran, KeyboardInterrupt()),
        Releases("c", ran),
    ]
    learner = Learner(tiny_model(), tiny_data(), plugins=plugins, defaults=False)
    with pytest.raises(ValueError, match="first") as info:
        learner.fit(1)
    assert ran == ["a", "b", "c"]
    assert info.value.__notes__ == [
        "while plugin 'a' handled 'after_fit'",
        "then plugin 'b' raised KeyboardInterrupt: ",
    ]
    assert learner.model.training  # the loop set train mode before after_fit


def test_every_after_cancel_receiver_runs_when_one_raises(spy: Spy) -> None:
    class Stop:
        order = -10

        def after_loss(self, learner: Any) -> None:
            raise CancelTrainException

        def after_cancel_train(self, learner: Any) -> None:
            raise RuntimeError("in after_cancel_train")

    with pytest.raises(RuntimeError, match="in after_cancel_train"):
        run(spy, Stop())
    assert spy.seen[-2:] == ["after_cancel_train", "after_fit"]


def test_replacing_the_model_replaces_the_optimizer() -> None:
    """The optimizer follows the model: the new weights train, the old ones do not."""
    learner = Learner(tiny_model(), tiny_data(), lr=0.5, defaults=False)
    learner.fit(1)
    old = learner.model
    old_weights = [p.detach().clone() for p in old.parameters()]
    new = tiny_model(seed=1)
    start = [p.detach().clone() for p in new.parameters()]
    learner.model = new
    assert learner.opt is None
    learner.fit(1)
    opt_params = [p for group in learner.opt.param_groups for p in group["params"]]  # type: ignore[union-attr]
    assert all(any(p is q for q in new.parameters()) for p in opt_params)
    assert any(not torch.equal(a, b) for a, b in zip(start, new.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(old_weights, old.parameters()))


def test_a_model_replaced_during_a_fit_gets_its_optimizer_at_once() -> None:
    class Swap:
        def begin_fit(self, learner: Any) -> None:
            learner.model = tiny_model(seed=2)

    learner = Learner(tiny_model(), tiny_data(), lr=0.5, plugins=[Swap()], defaults=False)
    learner.fit(1)
    opt_params = [p for group in learner.opt.param_groups for p in group["params"]]  # type: ignore[union-attr]
    assert all(any(p is q for q in learner.model.parameters()) for p in opt_params)
    with pytest.raises(TypeError, match="model should be a torch.nn.Module, got str"):
        learner.model = "not a model"  # type: ignore[assignment]


@pytest.mark.parametrize("lr", [math.inf, math.nan, -1.0])
def test_a_learning_rate_that_cannot_train_is_refused(lr: float) -> None:
    with pytest.raises(ValueError, match="lr should be a non-negative finite number"):
        Learner(tiny_model(), tiny_data(), lr=lr, defaults=False)


def test_an_empty_training_set_is_a_clear_error() -> None:
    from engine import DataError
    from engine.data import DataBunch

    empty = DataBunch.from_tensors(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), bs=4)
    learner = Learner(tiny_model(), empty, defaults=False)
    with pytest.raises(DataError, match="the training loader has no batches"):
        learner.fit(1)
    learner.fit(0)  # nothing to train: no complaint


def test_a_diverging_fit_stops_with_a_clear_error_by_default() -> None:
    """A NaN among the inputs makes the loss NaN; metrics stops the fit after the epoch,
    reading nothing more from the device than its one sync per epoch."""
    from engine import TrainingDiverged

    data = tiny_data()
    data.train_dl.x[3, 0] = math.nan  # type: ignore[attr-defined]
    learner = Learner(tiny_model(), data, lr=0.1, plugins=["no:progress"], config=False)
    with pytest.raises(TrainingDiverged, match=r"the training loss is (nan|inf) after epoch 0"):
        learner.fit(3)
    assert learner.epoch == 0 and learner.plugins["metrics"].history == []  # type: ignore[attr-defined]
    goes_on = Learner(
        tiny_model(),
        data,
        lr=0.1,
        plugins=["no:progress", "metrics:stop_on_nonfinite=false"],
        config=False,
    )
    goes_on.fit(2)
    assert len(goes_on.plugins["metrics"].history) == 2  # type: ignore[attr-defined]


def test_an_opt_func_returning_no_optimizer_is_refused_before_begin_fit(spy: Spy) -> None:
    from engine import OptimizerError

    learner = Learner(
        tiny_model(),
        tiny_data(),
        opt_func=lambda params, lr: params,  # type: ignore[arg-type,return-value]
        plugins=[spy],
        defaults=False,
    )
    with pytest.raises(
        OptimizerError, match=r"should return a torch.optim.Optimizer .*got generator"
    ):
        learner.fit(1)
    assert spy.seen == []


def test_the_cancellation_that_stopped_the_fit_is_kept_with_its_reason() -> None:
    class Stop:
        def after_epoch(self, learner: Any) -> None:
            if learner.epoch == 1:
                raise CancelTrainException("ratio 3.2 > 0.5 for 5 steps")

        def after_cancel_train(self, learner: Any) -> None:
            self.seen = str(learner.cancelled)

    stop = Stop()
    learner = Learner(tiny_model(), tiny_data(), plugins=[stop], defaults=False)
    learner.fit(3)
    assert isinstance(learner.cancelled, CancelTrainException)
    assert str(learner.cancelled) == stop.seen == "ratio 3.2 > 0.5 for 5 steps"
    learner.remove_plugin("stop")
    learner.fit(1)
    assert learner.cancelled is None


def test_a_diverged_fit_keeps_the_earlier_runs_pictures(tmp_path: Path) -> None:
    from engine import TrainingDiverged
    from engine.nn import cnn

    def learner(data: Any) -> Learner:
        return Learner(
            cnn(channels=(4, 4)),
            data,
            lr=0.1,
            plugins=["no:progress", "activation_stats:report=false"],
            out_dir=tmp_path,
            config=False,
        )

    def image_data() -> Any:
        from engine.data import DataBunch

        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
        return DataBunch.from_tensors(x, y, x[:8], y[:8], bs=8)

    learner(image_data()).fit(1)
    pictures = sorted(tmp_path.rglob("*.png")) + sorted(tmp_path.rglob("*.md"))
    assert {p.name for p in pictures} >= {"loss.png", "color_dim.png", "diagnosis.md"}
    before = {p: p.read_bytes() for p in pictures}
    bad = image_data()
    bad.train_dl.x[3, 0, 0, 0] = math.nan  # type: ignore[attr-defined]
    with pytest.raises(TrainingDiverged):
        learner(bad).fit(1)
    assert {p: p.read_bytes() for p in pictures} == before
