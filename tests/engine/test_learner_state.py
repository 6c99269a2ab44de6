"""The learner's state: a saved state resumes bit for bit; a state that does not fit is refused."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler
from torch.utils.data import DataLoader
from torch.utils.data import RandomSampler
from torch.utils.data import TensorDataset

from engine import Learner
from engine.data import DataBunch
from engine.learner_state import FIT_ATTRIBUTES
from engine.learner_state import OPTIONAL
from engine.learner_state import REQUIRED
from engine.learner_state import StateError
from engine.learner_state import load_state_dict
from engine.learner_state import loader_generators
from engine.learner_state import state_dict
from plugins._state import find_unsafe


class Counter:
    """A plugin with the state protocol: counts training batches across fits."""

    name = "counter"

    def __init__(self) -> None:
        self.batches = 0
        self.loads = 0

    def after_batch(self, learner: Any) -> None:
        self.batches += learner.in_train

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "tag": ("a", 1.5, None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loads += 1
        self.batches = state["batches"]


def samples() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=gen)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def tensor_data() -> DataBunch:
    """TensorLoaders: one generator each."""
    x, y = samples()
    return DataBunch.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=8, valid_bs=8, seed=3)


def loader_data() -> DataBunch:
    """DataLoaders: the sampler shuffles with one generator, the loader draws seeds from another."""
    x, y = samples()
    train = TensorDataset(x[:32], y[:32])
    sampler = RandomSampler(train, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(
        train, batch_size=8, sampler=sampler, generator=torch.Generator().manual_seed(2)
    )
    return DataBunch(loader, DataLoader(TensorDataset(x[32:], y[32:]), batch_size=8))


def dropout_model(seed: int, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, 2))


def sgd_momentum(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def make(
    seed: int = 0,
    data: Callable[[], DataBunch] = tensor_data,
    *plugins: object,
    model: nn.Module | None = None,
    opt_func: Callable[..., torch.optim.Optimizer] = sgd_momentum,
) -> Learner:
    return Learner(
        model if model is not None else dropout_model(seed),
        data(),
        opt_func=opt_func,
        lr=0.1,
        plugins=plugins,
        defaults=False,
    )


def through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


def weights(learner: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# -- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [tensor_data, loader_data])
def test_a_reloaded_state_trains_on_bit_for_bit(data: Callable[[], DataBunch]) -> None:
    """Fit 1 epoch, save, fit 1 more; a fresh learner loading the save and fitting 1 epoch
    ends with the same weights (dropout, momentum and shuffling all resumed)."""
    counter = Counter()
    straight = make(0, data, counter)
    straight.fit(1)
    saved = through_a_file(state_dict(straight))
    straight.fit(1)
    again = Counter()
    resumed = make(7, data, again)  # other weights, no optimizer yet, fresh generators
    assert load_state_dict(resumed, saved) == []
    resumed.fit(1)
    assert_same(weights(straight), weights(resumed))
    assert (again.batches, again.loads) == (counter.batches, 1) == (8, 1)


@pytest.mark.parametrize("part", ["rng", "loaders", "optimizer"])
def test_each_part_matters_for_the_round_trip(part: str) -> None:
    """Leaving one part out gives other weights: the test above can fail."""
    straight = make(0, loader_data)
    straight.fit(1)
    saved = through_a_file(state_dict(straight))
    straight.fit(1)
    if part == "rng":
        saved["rng"]["torch"] = torch.Generator().manual_seed(99).get_state()
    elif part == "loaders":
        saved["loaders"] = {"train": [], "valid": []}
    else:
        saved["optimizer"] = None
    resumed = make(7, loader_data)
    load_state_dict(resumed, saved, strict=False)
    resumed.fit(1)
    first, second = weights(straight), weights(resumed)
    assert any(not torch.equal(value, second[key]) for key, value in first.items())


def test_the_state_holds_its_keys_and_only_safe_values() -> None:
    learner = make(0, tensor_data, Counter())
    learner.fit(1)
    state = state_dict(learner)
    assert list(state) == [*REQUIRED, *OPTIONAL]
    assert find_unsafe(state) is None
    assert (state["epoch"], state["n_iter"], state["n_epochs"], state["lr"]) == (0, 4, 1.0, 0.1)
    assert state["optimizer_class"] == "SGD"
    assert [len(s) for s in state["loaders"].values()] == [1, 1]
    assert state["plugins"] == {"counter": {"batches": 4, "tag": ("a", 1.5, None)}}


def test_a_learner_without_an_optimizer_saves_none_and_gets_one_on_load() -> None:
    fresh = make(0)
    assert state_dict(fresh)["optimizer"] is None
    trained = make(0)
    trained.fit(1)
    load_state_dict(fresh, state_dict(trained))
    assert fresh.opt is not None
    assert fresh.opt.state_dict()["state"].keys() == trained.opt.state_dict()["state"].keys()  # type: ignore[union-attr]


def test_model_and_plugins_can_be_left_out_and_are_then_left_alone() -> None:
    counter = Counter()
    learner = make(0, tensor_data, counter)
    state = state_dict(learner, model=False, plugins=False)
    assert "model" not in state and "plugins" not in state
    learner.fit(1)
    trained = weights(learner)
    load_state_dict(learner, state)
    assert_same(trained, weights(learner))
    assert (counter.loads, counter.batches) == (0, 4)
    assert learner.n_iter == 0  # the counters did come back


def test_the_optimizers_param_group_dicts_stay_the_same_objects() -> None:
    """A schedule holds the group dicts: loading gives them the saved values in place."""
    learner = make(0)
    learner.fit(1)
    saved = through_a_file(state_dict(learner))
    group = learner.opt.param_groups[0]  # type: ignore[union-attr]
    group["lr"] = 5.0
    load_state_dict(learner, saved)
    assert learner.opt.param_groups[0] is group  # type: ignore[union-attr]
    assert group["lr"] == 0.1


def test_fit_attributes_are_not_part_of_the_state() -> None:
    state = state_dict(make(0))
    assert not set(FIT_ATTRIBUTES) & set(state)


def test_loader_generators_are_found_once_each_in_a_fixed_order() -> None:
    x, y = samples()
    data = TensorDataset(x, y)
    g1, g2, g3 = (torch.Generator() for _ in range(3))
    shuffled = DataLoader(data, shuffle=True, generator=g1)  # its sampler holds g1 too
    both = DataLoader(data, sampler=RandomSampler(data, generator=g2), generator=g1)
    batched = DataLoader(
        data, batch_sampler=BatchSampler(RandomSampler(data, generator=g3), 4, False)
    )
    assert loader_generators(shuffled) == [g1]
    assert loader_generators(both) == [g1, g2]
    assert loader_generators(batched) == [g3]
    assert loader_generators(DataLoader(data)) == []
    assert loader_generators(None) == []
    loader = tensor_data().train_dl
    assert loader_generators(loader) == [loader.generator]  # type: ignore[attr-defined]


# -- states that do not fit ---------------------------------------------------------------


def test_missing_keys_name_what_is_expected_and_what_came() -> None:
    with pytest.raises(StateError) as info:
        load_state_dict(make(0), {"epoch": 0, "lr": 0.1})
    assert str(info.value) == (
        "cannot load the learner state: 'n_iter', 'n_epochs', 'optimizer', 'optimizer_class', "
        "'rng', 'loaders' missing; expected the keys 'epoch', 'n_iter', 'n_epochs', 'lr', "
        "'optimizer', 'optimizer_class', 'rng', 'loaders' (and optionally 'model', "
        "'plugins'), got 'epoch', 'lr'"
    )
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epoch": "3"}, "cannot load the learner state: 'epoch' should be int, got str"),
        ({"n_iter": True}, "cannot load the learner state: 'n_iter' should be int, got bool"),
        (
            {"optimizer": []},
            "cannot load the learner state: 'optimizer' should be dict or None, got list",
        ),
        (
            {"loaders": {"train": None}},
            "cannot load the learner state: loaders['train'] should be a list of generator "
            "states (tensors), got None",
        ),
    ],
)
def test_values_of_the_wrong_type_are_named(change: dict[str, Any], message: str) -> None:
    state = {**state_dict(make(0)), **change}
    with pytest.raises(StateError) as info:
        load_state_dict(make(0), state)
    assert str(info.value) == message
    with pytest.raises(StateError, match="expected a dict from engine.learner_state.state_dict, "):
        load_state_dict(make(0), [1, 2])  # type: ignore[arg-type]


def test_another_model_is_refused_and_nothing_changes() -> None:
    trained = make(0)
    trained.fit(1)
    saved = state_dict(trained)
    other = make(0, model=nn.Linear(5, 2))
    before = weights(other)
    with pytest.raises(StateError) as info:
        load_state_dict(other, saved)
    assert str(info.value) == (
        "the learner state does not fit this model: missing keys ['weight', 'bias'], "
        "unexpected keys ['0.weight', '0.bias', '3.weight', '3.bias']; build the model the "
        "state was saved from"
    )
    assert_same(before, weights(other))
    assert other.opt is None and other.n_iter == 0
    wider = make(0, model=dropout_model(0, hidden=16))
    with pytest.raises(StateError) as info:
        load_state_dict(wider, saved)
    assert str(info.value) == (
        "the learner state does not fit this model: '0.weight' has shape (16, 5) in the "
        "model, (8, 5) in the state"
    )


def test_another_optimizer_is_refused_and_none_is_left_behind() -> None:
    trained = make(0)
    trained.fit(1)
    adam = make(0, opt_func=torch.optim.Adam)
    with pytest.raises(StateError) as info:
        load_state_dict(adam, state_dict(trained))
    assert str(info.value) == (
        "the learner state holds the state of a SGD optimizer but this learner uses Adam; "
        "use the same opt_func"
    )
    assert adam.opt is None  # created for the check, dropped again


def test_other_parameter_groups_are_refused() -> None:
    def two_groups(params: Any, lr: float) -> torch.optim.Optimizer:
        first, *rest = list(params)
        return torch.optim.SGD([{"params": [first]}, {"params": rest}], lr=lr, momentum=0.9)

    trained = make(0)
    trained.fit(1)
    with pytest.raises(StateError) as info:
        load_state_dict(make(0, opt_func=two_groups), state_dict(trained))
    assert str(info.value) == (
        "the learner state does not fit this optimizer: expected parameter groups of sizes "
        "[1, 3] (this learner's), got [4]; use the same model and parameter groups"
    )


def test_other_plugins_are_refused_unless_not_strict() -> None:
    saved = state_dict(make(0, tensor_data, Counter()))
    plain = make(0)
    with pytest.raises(StateError) as info:
        load_state_dict(plain, saved)
    assert str(info.value) == (
        "the learner state does not fit this learner: the state of plugin 'counter' (no "
        "such plugin is attached). Attach the same plugins and build the loaders as when it "
        "was saved, or load it with strict=False to skip these parts"
    )
    assert load_state_dict(plain, saved, strict=False) == [
        "the state of plugin 'counter' (no such plugin is attached)"
    ]
    counter = Counter()
    unsaved = make(0, tensor_data, counter)
    assert load_state_dict(unsaved, state_dict(make(0)), strict=False) == [
        "the state of plugin 'counter' (none was saved)"
    ]
    assert counter.loads == 0


def test_other_loader_generators_are_refused_unless_not_strict() -> None:
    saved = state_dict(make(0, tensor_data))
    other = make(0, loader_data)
    with pytest.raises(StateError, match=r"the train loader's shuffling \(1 generator state"):
        load_state_dict(other, saved)
    assert load_state_dict(other, saved, strict=False) == [
        "the train loader's shuffling (1 generator state(s) saved, 2 generator(s) here)",
        "the valid loader's shuffling (1 generator state(s) saved, 0 generator(s) here)",
    ]
