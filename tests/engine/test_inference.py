"""Passes without events: get_preds, validate and predict against computations by hand."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import DataBunch
from engine import DataError
from engine import Learner
from engine import TensorLoader
from engine.inference import Prediction
from engine.inference import evaluating
from engine.inference import first_batch
from engine.inference import looks_batched
from observers.metrics import Metrics
from plugins.batch_transform import BatchTransform
from tests.helpers import Spy

N_CLASSES = 3


def make_data(n_train: int = 12, n_valid: int = 10, bs: int = 4, **kwargs: Any) -> DataBunch:
    """Random 5-feature inputs, 3 classes; validation in batches of 4, 4 and 2."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_valid, 5, generator=gen)
    y = torch.randint(0, N_CLASSES, (n_train + n_valid,), generator=gen)
    return DataBunch.from_tensors(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], bs=bs, valid_bs=4, **kwargs
    )


def make_model() -> nn.Module:
    """Dropout and batch norm, so train and eval mode give different outputs."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, N_CLASSES)
    )


def make_learner(*plugins: object, **kwargs: Any) -> Learner:
    learner = Learner(make_model(), make_data(**kwargs), plugins=list(plugins), defaults=False)
    learner.fit(1)  # running statistics that differ from a fresh batch norm's
    return learner


def by_hand(model: nn.Module, data: DataBunch) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's eval-mode outputs over the whole validation set at once, and its targets."""
    x, y = data.valid_dl.x, data.valid_dl.y  # type: ignore[union-attr]
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        return twin(x), y


# get_preds


def test_get_preds_equals_the_model_over_the_loader() -> None:
    learner = make_learner()
    preds, targets = learner.get_preds()
    expected, y = by_hand(learner.model, learner.data)
    torch.testing.assert_close(preds, expected)
    assert torch.equal(targets, y)
    assert preds.device.type == "cpu"
    assert not preds.requires_grad


def test_get_preds_over_another_loader_in_order() -> None:
    learner = make_learner()
    x, y = torch.randn(12, 5), torch.randint(0, N_CLASSES, (12,))
    preds, targets = learner.get_preds(TensorLoader(x, y, bs=5))  # batches of 5, 5 and 2
    twin = copy.deepcopy(learner.model).eval()
    with torch.no_grad():
        torch.testing.assert_close(preds, twin(x))
    assert torch.equal(targets, y)


def test_get_preds_with_loss_gives_each_samples_loss() -> None:
    learner = make_learner()
    preds, targets, losses = learner.get_preds(with_loss=True)
    torch.testing.assert_close(losses, F.cross_entropy(preds, targets, reduction="none"))


def test_get_preds_with_a_loss_that_only_averages_calls_it_per_sample() -> None:
    def mean_loss(pred: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, yb)  # takes no reduction=

    learner = make_learner()
    learner.loss_func = mean_loss
    preds, targets, losses = learner.get_preds(with_loss=True)
    torch.testing.assert_close(losses, F.cross_entropy(preds, targets, reduction="none"))


def test_get_preds_restores_every_modules_mode() -> None:
    learner = make_learner()
    learner.model.train()
    learner.model[1].eval()  # a frozen batch norm stays frozen
    learner.get_preds()
    assert learner.model.training
    assert [m.training for m in learner.model] == [True, False, True, True, True]


def test_get_preds_sends_no_events_and_changes_nothing() -> None:
    spy = Spy()
    learner = make_learner(spy)
    spy.seen.clear()
    before = copy.deepcopy(learner.model.state_dict())
    log = dict(learner.log)
    learner.get_preds()
    learner.validate()
    learner.predict(torch.randn(5))
    assert spy.seen == []
    assert learner.log == log
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_get_preds_without_a_validation_loader_says_so() -> None:
    x, y = torch.randn(4, 5), torch.zeros(4, dtype=torch.long)
    learner = Learner(make_model(), DataBunch.from_tensors(x, y), defaults=False)
    with pytest.raises(DataError, match=r"no validation loader; pass one"):
        learner.get_preds()
    with pytest.raises(DataError, match="no batch"):
        learner.get_preds([])


# validate


def test_validate_equals_cross_entropy_and_accuracy_over_the_set() -> None:
    learner = make_learner(Metrics(("accuracy", "error_rate")))
    values = learner.validate()
    expected, y = by_hand(learner.model, learner.data)
    assert set(values) == {"valid_loss", "valid_accuracy", "valid_error_rate"}
    # batches of 4, 4 and 2: weighted by size, the mean over all 10 samples
    assert values["valid_loss"] == pytest.approx(F.cross_entropy(expected, y).item(), rel=1e-6)
    accuracy = (expected.argmax(-1) == y).float().mean().item()
    assert values["valid_accuracy"] == pytest.approx(accuracy)
    assert values["valid_error_rate"] == pytest.approx(1 - accuracy)


def test_validate_matches_what_the_fit_logged() -> None:
    learner = make_learner(Metrics())
    values = learner.validate()
    assert values["valid_loss"] == pytest.approx(learner.log["valid_loss"], rel=1e-6)
    assert values["valid_accuracy"] == pytest.approx(learner.log["valid_accuracy"])


def test_validate_without_metrics_plugin_gives_the_loss() -> None:
    learner = make_learner()
    assert list(learner.validate()) == ["valid_loss"]


def test_validate_on_another_loader_changes_no_weight_nor_optimizer() -> None:
    learner = make_learner()
    learner.model.train()
    opt_state = copy.deepcopy(learner.opt.state_dict())  # type: ignore[union-attr]
    weights = copy.deepcopy(learner.model.state_dict())
    values = learner.validate(learner.data.train_dl)
    x, y = learner.data.train_dl.x, learner.data.train_dl.y  # type: ignore[attr-defined]
    twin = copy.deepcopy(learner.model).eval()
    with torch.no_grad():
        expected = F.cross_entropy(twin(x), y).item()
    assert values["valid_loss"] == pytest.approx(expected, rel=1e-6)
    assert learner.model.training
    assert learner.opt.state_dict() == opt_state  # type: ignore[union-attr]
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_validate_refuses_a_loss_that_is_not_a_batch_mean() -> None:
    learner = make_learner()
    learner.loss_func = lambda pred, yb: F.cross_entropy(pred, yb, reduction="none")
    with pytest.raises(ValueError, match="0-d tensor"):
        learner.validate()


# predict


def test_predict_a_batch_gives_argmax_and_softmax() -> None:
    learner = make_learner()
    x = torch.randn(6, 5)
    classes, probs = learner.predict(x)
    twin = copy.deepcopy(learner.model).eval()
    with torch.no_grad():
        out = twin(x)
    torch.testing.assert_close(probs, F.softmax(out, dim=-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(6))
    assert torch.equal(classes, out.argmax(-1))
    assert classes.shape == (6,)


def test_predict_one_sample_drops_the_batch_dimension() -> None:
    learner = make_learner()
    x = torch.randn(4, 5)
    single = learner.predict(x[2])
    batch = learner.predict(x)
    assert isinstance(single, Prediction)
    assert single.classes.shape == ()
    assert single.probs.shape == (N_CLASSES,)
    assert single.classes == batch.classes[2]
    torch.testing.assert_close(single.probs, batch.probs[2])
    assert single.probs.sum().item() == pytest.approx(1.0)


def test_predict_batched_overrides_the_guess() -> None:
    learner = make_learner()
    x = torch.randn(5)
    as_batch = learner.predict(x.view(1, 5), batched=True)
    assert as_batch.classes.shape == (1,)
    as_sample = learner.predict(x, batched=False)
    assert as_sample.classes.shape == ()
    assert as_sample.classes == as_batch.classes[0]


def test_predict_cannot_tell_and_says_what_to_pass() -> None:
    learner = make_learner()
    with pytest.raises(ValueError, match=r"shape \(2, 3, 5\).*\(4, 5\); .*pass batched=True"):
        learner.predict(torch.randn(2, 3, 5))


def test_predict_needs_a_class_dimension() -> None:
    learner = Learner(nn.Sequential(nn.Linear(5, 1), nn.Flatten(0)), make_data(), defaults=False)
    with pytest.raises(ValueError, match="no class dimension"):
        learner.predict(torch.randn(3, 5))
    with pytest.raises(TypeError, match="x should be a tensor"):
        learner.predict([1.0, 2.0])  # type: ignore[arg-type]


# inputs prepared as batch_transform would, judged by input_shape


def image_learner(transform: BatchTransform | None = None) -> Learner:
    """Flat rows of 16 that the model takes as 1x4x4 images."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 16, generator=gen), torch.randint(0, 2, (12,), generator=gen)
    data = DataBunch.from_tensors(x[:8], y[:8], x[8:], y[8:], bs=4, input_shape=(1, 4, 4))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    plugins = [transform or BatchTransform()]
    return Learner(model, data, plugins=plugins, defaults=False)


def test_inputs_are_viewed_as_the_batch_transform_plugin_views_them() -> None:
    learner = image_learner()
    rows = learner.data.valid_dl.x  # type: ignore[union-attr]
    images = rows.view(-1, 1, 4, 4)
    with torch.no_grad():
        expected = learner.model.eval()(images)
    learner.model.train()
    preds, _ = learner.get_preds()
    torch.testing.assert_close(preds, expected)
    summary = learner.summary()
    assert summary.input_shape == (4, 1, 4, 4)
    single_row, single_image = learner.predict(rows[0]), learner.predict(images[0])
    batch_rows, batch_images = learner.predict(rows), learner.predict(images)
    for result in (single_image, batch_rows, batch_images):
        torch.testing.assert_close(result.probs.reshape(-1, 2)[0], single_row.probs)


def test_inputs_go_through_the_batch_transform_plugins_function() -> None:
    calls: list[tuple[int, ...]] = []

    def fn(xb: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(xb.shape))
        return xb.view(-1, 1, 4, 4)

    learner = image_learner(BatchTransform(fn=fn))
    learner.get_preds()
    assert calls == [(4, 16)]


def test_looks_batched_by_input_shape_then_by_the_loaders_dimensions() -> None:
    data = make_data(input_shape=(5,))
    assert looks_batched(torch.randn(5), data) is False
    assert looks_batched(torch.randn(3, 5), data) is True
    rows = make_data()
    assert looks_batched(torch.randn(7), rows) is False  # one dimension fewer than (4, 5)
    assert looks_batched(torch.randn(7, 2), rows) is True


# helpers


def test_first_batch_leaves_the_random_states_alone() -> None:
    data = make_data()
    generator = data.train_dl.generator  # type: ignore[attr-defined]
    dataset = torch.utils.data.TensorDataset(torch.randn(6, 2), torch.zeros(6))
    dl = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=True)
    loader_state, global_state = generator.get_state(), torch.get_rng_state()
    assert first_batch(data.train_dl) is not None
    assert len(first_batch(dl) or ()) == 2  # type: ignore[arg-type]
    assert torch.equal(generator.get_state(), loader_state)
    assert torch.equal(torch.get_rng_state(), global_state)
    assert first_batch([]) is None


class NoisyDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """A dataset whose items draw from Python's generator, as random augmentations do."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full((2,), random.random()), i


def test_first_batch_puts_pythons_generator_back() -> None:
    state = random.getstate()
    batch = first_batch(torch.utils.data.DataLoader(NoisyDataset(), batch_size=2))
    assert batch is not None
    assert batch[0].shape == (2, 2)
    assert batch[1].tolist() == [0, 1]
    assert random.getstate() == state


def test_evaluating_restores_modes_after_an_error() -> None:
    model = make_model()
    model[3].eval()
    with pytest.raises(RuntimeError, match="inside"), evaluating(model) as same:
        assert same is model
        assert not any(m.training for m in model.modules())
        assert not torch.is_grad_enabled()
        raise RuntimeError("inside")
    assert [m.training for m in model] == [True, True, True, False, True]
    assert torch.is_grad_enabled()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_passes_move_inputs_to_the_models_device_and_return_cpu_tensors() -> None:
    learner = make_learner()
    expected, y = by_hand(learner.model, learner.data)
    learner.model.cuda()
    preds, targets = learner.get_preds()
    assert (preds.device.type, targets.device.type) == ("cpu", "cpu")
    torch.testing.assert_close(preds, expected, rtol=1e-4, atol=1e-5)
    assert learner.validate()["valid_loss"] == pytest.approx(
        F.cross_entropy(expected, y).item(), rel=1e-4
    )
    assert learner.predict(learner.data.valid_dl.x[0]).probs.device.type == "cpu"  # type: ignore[union-attr]
    assert learner.summary().input_shape == (4, 5)
