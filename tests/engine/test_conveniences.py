"""The learner's conveniences: plugins as attributes, lr_find, fit_one_cycle, show_training_loop."""

from __future__ import annotations

import copy
import pickle
from functools import partial
from typing import Any

import pytest
import torch

from engine import Learner
from engine import PluginError
from engine.listing import training_loop
from engine.manager import Catalog
from engine.manager import load_catalog
from engine.selection import select
from engine.training_loop import TrainingLoop
from observers.recorder import Recorder
from plugins._schedules import one_cycle
from plugins.lr_finder import LRFindResult
from plugins.lr_finder import lr_find
from plugins.schedule import Schedule
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """The installed plugins, loaded once for the module (it imports every plugin module)."""
    return load_catalog()


class HyperLog:
    """Records the first param group's lr and momentum at every training batch."""

    name = "hyper_log"

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.moms: list[float] = []

    def begin_batch(self, learner: Any) -> None:
        if learner.in_train:
            group = learner.opt.param_groups[0]
            self.lrs.append(group["lr"])
            self.moms.append(group["momentum"])


class Boom:
    """Raises RuntimeError at the third training batch."""

    name = "boom"

    def after_batch(self, learner: Any) -> None:
        if learner.in_train and learner.n_iter == 3:
            raise RuntimeError("boom")


def sgd_learner(catalog: Catalog, *plugins: object, lr: float = 0.1) -> Learner:
    """A learner over 8 training samples in batches of 2 (4 per epoch), SGD with momentum."""
    return Learner(
        tiny_model(),
        tiny_data(n_train=8, bs=2),
        opt_func=partial(torch.optim.SGD, momentum=0.9),
        lr=lr,
        plugins=list(plugins),
        defaults=False,
        catalog=catalog,
    )


# plugins as attributes


def test_attribute_gives_the_attached_plugin() -> None:
    recorder = Recorder(save=False)
    learner = Learner(tiny_model(), tiny_data(), plugins=[Spy(), recorder], defaults=False)
    assert learner.recorder is recorder
    assert learner.recorder is learner.plugins["recorder"]
    assert learner.spy is learner.plugins["spy"]


def test_attribute_follows_add_and_remove() -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    assert not hasattr(learner, "spy")
    spy = learner.add_plugin(Spy())
    assert learner.spy is spy
    learner.remove_plugin("spy")
    assert not hasattr(learner, "spy")


def test_real_attributes_win_over_plugin_names() -> None:
    plugin = Spy()
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    learner.add_plugin(plugin, name="lr")
    learner.add_plugin(Spy(), name="model")
    assert learner.lr == 0.1
    assert isinstance(learner.model, torch.nn.Linear)
    assert learner.plugins["lr"] is plugin


def test_unknown_attribute_names_the_plugins_and_suggests_one() -> None:
    learner = Learner(
        tiny_model(), tiny_data(), plugins=[Spy(), Recorder(save=False)], defaults=False
    )
    with pytest.raises(AttributeError) as info:
        learner.recoder
    message = str(info.value)
    assert "no attribute 'recoder'" in message
    assert "no plugin named 'recoder' is attached" in message
    assert "(did you mean 'recorder'?)" in message
    assert message.endswith("attached plugins: spy, recorder")
    assert info.value.name == "recoder"


def test_unknown_attribute_suggests_a_real_attribute_and_says_none_attached() -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    with pytest.raises(AttributeError, match=r"did you mean 'model'\?\); attached plugins: none"):
        learner.modle


def test_private_names_are_never_plugins() -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    learner.add_plugin(Spy(), name="_hidden")
    assert getattr(learner, "_hidden", "missing") == "missing"
    with pytest.raises(AttributeError, match="no attribute '__setstate__'"):
        learner.__setstate__


def test_learner_without_plugins_yet_does_not_recurse() -> None:
    """As in __init__ before self.plugins is set, or on an instance unpickling makes."""
    bare = Learner.__new__(Learner)
    with pytest.raises(AttributeError, match="no attribute 'plugins'"):
        bare.plugins
    with pytest.raises(AttributeError, match="no attribute 'recorder'"):
        bare.recorder


def test_copy_deepcopy_and_pickle_keep_plugin_attributes() -> None:
    learner = Learner(tiny_model(), tiny_data(), plugins=[Spy()], defaults=False)
    assert copy.copy(learner).spy is learner.spy
    deep = copy.deepcopy(learner)
    assert isinstance(deep.spy, Spy)
    assert deep.spy is not learner.spy
    assert deep.spy is deep.plugins["spy"]
    loaded = pickle.loads(pickle.dumps(learner))
    assert isinstance(loaded.spy, Spy)
    assert loaded.plugins["spy"] is loaded.spy


# show_training_loop


def test_show_training_loop_is_the_cli_table_for_the_same_plugins(catalog: Catalog) -> None:
    requests = ["no:progress", "early_stopping"]
    learner = Learner(tiny_model(), tiny_data(), plugins=requests, catalog=catalog)
    enabled, _ = select(catalog, requests, True)
    shown = learner.show_training_loop()
    assert isinstance(shown, TrainingLoop)
    assert str(shown) == training_loop(enabled)
    assert repr(shown) == str(shown)


def test_show_training_loop_lists_this_learners_plugins_in_run_order() -> None:
    first = Spy()
    first.order = -5  # type: ignore[attr-defined]
    learner = Learner(
        tiny_model(), tiny_data(), plugins=[Spy(), Recorder(save=False)], defaults=False
    )
    learner.add_plugin(first, name="first")
    shown = learner.show_training_loop()
    assert shown.receivers["begin_fit"] == ("first", "spy", "recorder")
    assert shown.receivers["after_batch"] == ("first", "spy", "recorder")
    assert shown.receivers["begin_batch"] == ("first", "spy")
    lines = {line.split()[0]: line.split(None, 1)[1] for line in str(shown).splitlines()}
    assert lines["begin_fit"] == "first, spy, recorder"
    learner.remove_plugin("first")
    assert shown.receivers["begin_fit"] == ("first", "spy", "recorder")  # a snapshot
    assert learner.show_training_loop().receivers["begin_fit"] == ("spy", "recorder")


def test_show_training_loop_without_plugins_shows_dashes() -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    lines = str(learner.show_training_loop()).splitlines()
    assert lines[0].split() == ["begin_fit", "-"]
    assert all(line.endswith("  -") for line in lines)


# lr_find


def test_lr_find_is_the_plugin_function(catalog: Catalog) -> None:
    options = {"min_lr": 1e-4, "max_lr": 1.0, "num_it": 6, "beta": 0.5}
    learner = Learner(tiny_model(), tiny_data(), defaults=False, catalog=catalog)
    twin = Learner(tiny_model(), tiny_data(), defaults=False, catalog=catalog)
    before = copy.deepcopy(learner.model.state_dict())
    result = learner.lr_find(**options)
    assert isinstance(result, LRFindResult)
    expected = lr_find(twin, **options)
    assert result.lrs == expected.lrs
    assert result.losses == pytest.approx(expected.losses, rel=1e-6)
    assert result.lrs[0] == pytest.approx(1e-4)
    assert isinstance(result.suggestions, dict)
    assert "lr_find" not in learner.plugins
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_lr_find_loads_the_catalogue_when_the_learner_has_none() -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False)
    assert learner.catalog is None
    result = learner.lr_find(num_it=3)
    assert len(result.lrs) <= 3
    assert learner.catalog is not None


def test_lr_find_rejects_bad_options_as_the_function_does(catalog: Catalog) -> None:
    learner = Learner(tiny_model(), tiny_data(), defaults=False, catalog=catalog)
    with pytest.raises(ValueError, match="num_it should be an integer >= 2"):
        learner.lr_find(num_it=1)
    with pytest.raises(TypeError, match="bogus"):
        learner.lr_find(bogus=1)


# fit_one_cycle


@pytest.mark.parametrize(
    "options",
    [{}, {"div": 10.0, "final_div": 100.0, "pct_start": 0.5, "moms": (0.9, 0.8, 0.7)}],
)
def test_fit_one_cycle_follows_the_closed_form(catalog: Catalog, options: dict[str, Any]) -> None:
    log = HyperLog()
    learner = sgd_learner(catalog, log)
    learner.fit_one_cycle(2, 0.4, **options)
    sched = one_cycle(0.4, **options)
    n = 8  # 2 epochs x 4 batches
    assert len(log.lrs) == n
    assert log.lrs == pytest.approx([sched(i / n) for i in range(n)], rel=1e-9)
    mom = sched.companions["mom"]
    assert log.moms == pytest.approx([mom(i / n) for i in range(n)], rel=1e-9)
    assert max(log.lrs) == pytest.approx(0.4)
    assert log.lrs[0] == pytest.approx(0.4 / options.get("div", 25.0))


def test_fit_one_cycle_detaches_the_schedule_and_puts_the_lr_back(catalog: Catalog) -> None:
    learner = sgd_learner(catalog, lr=0.05)
    learner.fit_one_cycle(1, 0.4)
    assert "schedule" not in learner.plugins
    group = learner.opt.param_groups[0]  # type: ignore[union-attr]
    assert (group["lr"], group["momentum"]) == (0.05, 0.9)
    assert learner.epochs == 1
    assert learner.n_iter == 4


def test_fit_one_cycle_uses_the_learners_lr_by_default(catalog: Catalog) -> None:
    log = HyperLog()
    learner = sgd_learner(catalog, log, lr=0.3)
    learner.fit_one_cycle(1, moms=None)
    assert max(log.lrs) == pytest.approx(0.3)
    assert log.moms == [0.9] * 4  # moms=None leaves momentum alone


def test_fit_one_cycle_detaches_the_schedule_after_an_error(catalog: Catalog) -> None:
    learner = sgd_learner(catalog, Boom(), lr=0.05)
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit_one_cycle(2, 0.4)
    assert "schedule" not in learner.plugins
    assert learner.opt.param_groups[0]["lr"] == 0.05  # type: ignore[union-attr]
    learner.remove_plugin("boom")
    learner.fit_one_cycle(1, 0.4)  # and it can run again
    assert "schedule" not in learner.plugins


@pytest.mark.parametrize("name", ["schedule", "my_schedule"])
def test_fit_one_cycle_refuses_an_attached_schedule(catalog: Catalog, name: str) -> None:
    learner = sgd_learner(catalog)
    learner.add_plugin(Schedule(lr=0.1), name=name)
    with pytest.raises(PluginError, match=f"plugin '{name}' schedules the hyper-parameters"):
        learner.fit_one_cycle(1, 0.4)
    assert list(learner.plugins) == [name]
    assert learner.n_iter == 0


def test_fit_one_cycle_bad_options_name_the_problem(catalog: Catalog) -> None:
    learner = sgd_learner(catalog)
    with pytest.raises(ValueError, match=r"pct_start should be in \(0, 1\), got 1.5"):
        learner.fit_one_cycle(1, 0.4, pct_start=1.5)
    with pytest.raises(ValueError, match="bogus"):
        learner.fit_one_cycle(1, 0.4, bogus=2.0)
    with pytest.raises(TypeError, match="lr_max should be a number"):
        learner.fit_one_cycle(1, "big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs should be a non-negative integer"):
        learner.fit_one_cycle(-1, 0.4)
    assert "schedule" not in learner.plugins
    assert learner.n_iter == 0
