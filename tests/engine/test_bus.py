"""Attaching plugins: order, isolation, references, and the contract's error messages."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

import pytest
import torch

from engine import Learner
from engine import PluginValidationError
from engine.events import after_loss
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model


def make(*plugins: object) -> Learner:
    return Learner(tiny_model(), tiny_data(), plugins=list(plugins), defaults=False)


class Tagged:
    """Appends its tag to a shared list on every after_loss."""

    def __init__(self, tag: str, calls: list[str], order: int = 0) -> None:
        self.name = tag
        self.order = order
        self.calls = calls

    def after_loss(self, learner: Any) -> None:
        self.calls.append(self.name)


def test_order_attribute_then_registration_order() -> None:
    calls: list[str] = []
    learner = make(
        Tagged("late", calls, order=5),
        Tagged("first_tie", calls),
        Tagged("early", calls, order=-1),
        Tagged("second_tie", calls),
    )
    learner.fit(1)
    assert calls[:4] == ["early", "first_tie", "second_tie", "late"]
    assert list(learner.plugins) == ["early", "first_tie", "second_tie", "late"]
    assert learner.plugins.receivers("after_loss") == ["early", "first_tie", "second_tie", "late"]


def test_plugin_added_later_with_lower_order_runs_first() -> None:
    calls: list[str] = []
    learner = make(Tagged("a", calls), Tagged("b", calls))
    learner.add_plugin(Tagged("z", calls, order=-10))
    learner.fit(1)
    assert calls[:3] == ["z", "a", "b"]


def test_two_learners_never_see_each_others_events() -> None:
    first, second = Spy(), Spy()
    one = make(first)
    make(second)
    one.fit(1)
    assert first.seen and second.seen == []


def test_plugin_defined_inside_a_function_keeps_receiving() -> None:
    """blinker's default weak references would drop it; the bus holds it strongly."""

    def build() -> tuple[Learner, list[str]]:
        calls: list[str] = []

        class Local:
            def after_loss(self, learner: Any) -> None:
                calls.append("local")

        return make(Local()), calls

    learner, calls = build()
    gc.collect()
    learner.fit(1)
    assert calls == ["local"] * 3


def test_detached_plugin_is_released() -> None:
    plugin = Spy()
    learner = make(plugin)
    ref = weakref.ref(plugin)
    assert learner.remove_plugin("spy") is plugin
    del plugin
    gc.collect()
    assert ref() is None
    learner.fit(1)  # still runs with nothing attached


def test_plugins_are_released_with_their_learner() -> None:
    plugin = Spy()
    learner = make(plugin)
    learner.fit(1)
    ref = weakref.ref(plugin)
    del plugin, learner
    gc.collect()
    assert ref() is None
    assert not any(after_loss.receivers_for(object()))


def test_added_context_manager_detaches_on_error() -> None:
    learner = make()
    with pytest.raises(ZeroDivisionError), learner.added(Spy()):
        assert "spy" in learner.plugins
        _ = 1 / 0
    assert "spy" not in learner.plugins


def test_typo_in_event_name_suggests_the_right_one() -> None:
    class Typo:
        def after_los(self, learner: Any) -> None:
            pass

    with pytest.raises(PluginValidationError) as info:
        make(Typo())
    message = str(info.value)
    assert "plugin 'typo': method 'after_los' looks like an event" in message
    assert "did you mean 'after_loss'?" in message


def test_wrong_receiver_signature_names_plugin_event_expected_and_got() -> None:
    class EarlyStop:
        def after_epoch(self, learner: Any, metric: float) -> None:
            pass

    with pytest.raises(PluginValidationError) as info:
        make(EarlyStop())
    assert str(info.value).startswith(
        "plugin 'early_stop': receiver for 'after_epoch' takes (self, learner: 'Any', "
        "metric: 'float') -> 'None' but the event sends (learner)."
    )


def test_receiver_taking_no_learner_is_rejected() -> None:
    class NoArg:
        def begin_fit(self) -> None:
            pass

    with pytest.raises(PluginValidationError, match="receiver for 'begin_fit' takes \\(self\\)"):
        make(NoArg())


def test_receiver_with_extra_keyword_arguments_is_accepted() -> None:
    class Flexible:
        def begin_fit(self, learner: Any, **kwargs: Any) -> None:
            self.called = True

    plugin = Flexible()
    make(plugin).fit(0)
    assert plugin.called


def test_order_must_be_an_int_and_names_unique() -> None:
    class Bad:
        order = "first"

        def begin_fit(self, learner: Any) -> None:
            pass

    with pytest.raises(PluginValidationError, match="plugin 'bad': 'order' must be an int"):
        make(Bad())
    with pytest.raises(PluginValidationError, match="a plugin named 'spy' is already attached"):
        make(Spy(), Spy())


def test_unknown_plugin_lookup_lists_attached() -> None:
    learner = make(Spy())
    with pytest.raises(KeyError, match="no plugin named 'metrics' is attached \\(attached: spy\\)"):
        learner.plugins["metrics"]


def test_trace_logs_every_send_and_receiver_in_order(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOOKINSIDE_TRACE", "1")
    calls: list[str] = []
    learner = make(Tagged("a", calls), Tagged("b", calls, order=1))
    with caplog.at_level(logging.DEBUG, logger="lookinside.trace"):
        learner.fit(1)
    messages = [
        record.getMessage() for record in caplog.records if record.name == "lookinside.trace"
    ]
    first_loss = messages.index("send after_loss")
    assert messages[first_loss : first_loss + 4] == [
        "send after_loss",
        "  a.after_loss",
        "  b.after_loss",
        "send after_backward",
    ]
    assert messages[0] == "send begin_fit" and messages[-1] == "send after_fit"


def test_receivers_connected_by_hand_still_run_in_order() -> None:
    """A receiver connected directly to a signal (any sender) runs before the plugins."""
    calls: list[str] = []

    def by_hand(sender: Any) -> None:
        calls.append("by_hand")

    learner = make(Tagged("plugin", calls))
    with after_loss.connected_to(by_hand):
        learner.fit(1)
    assert calls[:2] == ["by_hand", "plugin"] and len(calls) == 6
    calls.clear()
    learner.fit(1)  # disconnected: only the plugin again
    assert calls == ["plugin"] * 3


def test_plugin_added_between_fits_is_dispatched() -> None:
    calls: list[str] = []
    learner = make()
    learner.fit(1)
    learner.add_plugin(Tagged("late", calls))
    learner.fit(1)
    assert calls == ["late"] * 3


def test_error_note_names_the_plugin_also_when_sent_through_blinker() -> None:
    class Fails:
        def after_loss(self, learner: Any) -> None:
            raise ValueError("bad")

    learner = make(Fails())
    with after_loss.connected_to(lambda sender: None), pytest.raises(ValueError) as info:
        learner.fit(1)
    assert info.value.__notes__ == ["while plugin 'fails' handled 'after_loss'"]


class Counter:
    """Counts the training batches it sees, over every learner it serves."""

    def __init__(self) -> None:
        self.batches = 0

    def after_batch(self, learner: Any) -> None:
        if learner.in_train:
            self.batches += 1


def test_one_plugin_object_serves_learner_after_learner() -> None:
    """A notebook cell run again with the same plugin: the previous learner is
    collected after the new one attached the plugin, and the plugin still hears."""
    counter = Counter()
    seen = []
    for lr in (0.1, 0.2, 0.3):
        learner = make(counter)
        learner.lr = lr
        learner.fit(1)
        gc.collect()  # collects the learner of the previous round
        seen.append(counter.batches)
    assert seen == [2, 4, 6]
    del learner
    gc.collect()
    learner = make(counter)
    learner.fit(1)
    assert counter.batches == 8


def test_one_plugin_object_on_two_learners_at_once() -> None:
    counter = Counter()
    first, second = make(counter), make(counter)
    first.fit(1)
    second.fit(1)
    assert counter.batches == 4
    first.remove_plugin("counter")  # detaching from one leaves the other alone
    first.fit(1)
    second.fit(1)
    assert counter.batches == 6
    del first
    gc.collect()
    second.fit(1)
    assert counter.batches == 8


def test_learners_are_collected_when_plugins_keep_them() -> None:
    """The fastai idiom ``self.learner = learner`` makes a cycle, not a leak."""

    class Keeper:
        def begin_fit(self, learner: Any) -> None:
            self.learner = learner

    refs = []
    for _ in range(20):
        learner = make(Keeper(), Spy())
        learner.fit(1)
        refs.append(weakref.ref(learner))
    del learner
    gc.collect()
    assert [r() for r in refs] == [None] * 20
    assert not any(after_loss.receivers.values())  # nothing left on the signals


def test_dispatch_is_the_only_registry_and_follows_add_and_remove() -> None:
    calls: list[str] = []
    learner = make(Tagged("b", calls, order=1), Tagged("a", calls))
    assert [r.__self__.name for r in learner.plugins.dispatch["after_loss"]] == ["a", "b"]  # type: ignore[attr-defined]
    learner.remove_plugin("a")
    assert [r.__self__.name for r in learner.plugins.dispatch["after_loss"]] == ["b"]  # type: ignore[attr-defined]
    assert learner.plugins.dispatch["begin_fit"] == ()
    assert not after_loss.receivers  # plugins are never connected to the signal
    assert repr(learner.plugins).splitlines() == [
        "1 plugin, in run order:",
        "plugin  order  enabled by  options  events",
        "b       1      python      -        after_loss",
    ]


def test_receiver_connected_by_hand_for_one_learner_hears_only_it() -> None:
    calls: list[str] = []

    def by_hand(sender: Any) -> None:
        calls.append(sender.tag)

    one, other = make(), make()
    one.tag, other.tag = "one", "other"  # type: ignore[attr-defined]
    with after_loss.connected_to(by_hand, sender=one):
        one.fit(1)
        other.fit(1)
    assert calls == ["one"] * 3


class Wrap:
    """Wraps the forward and the loss in a context that logs entries and exits."""

    def __init__(self, tag: str, log: list[str], order: int = 0) -> None:
        self.name = tag
        self.order = order
        self.log = log

    def around_forward(self, learner: Any) -> Any:
        import contextlib

        @contextlib.contextmanager
        def context() -> Any:
            self.log.append(f"enter {self.name}")
            try:
                yield
            finally:
                self.log.append(f"exit {self.name}")

        return context()

    def after_pred(self, learner: Any) -> None:
        self.log.append(f"after_pred {self.name}")


def test_around_forward_contexts_nest_in_run_order_around_model_and_loss() -> None:
    log: list[str] = []
    learner = make(Wrap("inner", log, order=5), Wrap("outer", log, order=-5))
    learner.data.valid_dl = None
    learner.fit(1)
    one = ["enter outer", "enter inner", "exit inner", "exit outer"]
    batch = [*one, "after_pred outer", "after_pred inner", *one]  # forward, then loss
    assert log == batch * 2
    assert learner.plugins.around == (
        learner.plugins["outer"].around_forward,  # type: ignore[attr-defined]
        learner.plugins["inner"].around_forward,  # type: ignore[attr-defined]
    )


def test_around_forward_is_left_when_the_forward_fails() -> None:
    log: list[str] = []

    class Broken(torch.nn.Linear):
        def forward(self, x: Any) -> Any:
            raise KeyboardInterrupt

    learner = Learner(Broken(3, 2), tiny_data(), plugins=[Wrap("w", log)], defaults=False)
    with pytest.raises(KeyboardInterrupt):
        learner.fit(1)
    assert log == ["enter w", "exit w"]


def test_around_forward_is_checked_when_attached() -> None:
    class NoLearner:
        def around_forward(self) -> Any:
            return None

    class NotCallable:
        around_forward = 3

    with pytest.raises(
        PluginValidationError, match=r"receiver for 'around_forward' takes \(self\)"
    ):
        make(NoLearner())
    with pytest.raises(PluginValidationError, match="'around_forward' should be a method"):
        make(NotCallable())


def test_an_error_entering_a_context_names_the_plugin() -> None:
    class Fails:
        def around_forward(self, learner: Any) -> Any:
            raise ValueError("no context")

    with pytest.raises(ValueError, match="no context") as info:
        make(Fails()).fit(1)
    assert info.value.__notes__ == ["while plugin 'fails' handled 'around_forward'"]


def test_of_returns_the_plugin_of_a_type_typed() -> None:
    spy = Spy()
    learner = make(spy, Tagged("a", []), Tagged("b", []))
    assert learner.plugins.of(Spy) is spy
    with pytest.raises(
        LookupError, match=r"expected one attached plugin of type Tagged, found 2 \(a, b\)"
    ):
        learner.plugins.of(Tagged)
    with pytest.raises(LookupError, match=r"of type Counter, found 0 \(none\)"):
        learner.plugins.of(Counter)


class _Early:
    """Late in every event but begin_fit, where it runs first."""

    name = "early"
    order = 100
    event_order = {"begin_fit": -100}

    def begin_fit(self, learner: Any) -> None:
        pass

    def after_loss(self, learner: Any) -> None:
        pass


def test_event_order_places_one_event_apart() -> None:
    calls: list[str] = []
    learner = make(Tagged("plain", calls), _Early())
    learner.plugins.add(
        type("Starter", (), {"name": "starter", "begin_fit": lambda self, learner: None})()
    )
    assert learner.plugins.receivers("begin_fit") == ["early", "starter"]
    assert learner.plugins.receivers("after_loss") == ["plain", "early"]
    assert list(learner.plugins) == ["plain", "starter", "early"]  # by order
    assert learner.plugins.rows()[2]["order"] == "100, begin_fit -100"


@pytest.mark.parametrize(
    ("event_order", "message"),
    [
        (
            {"begin_fitt": 1},
            "'event_order' names 'begin_fitt', which is no event it receives "
            "\\(did you mean 'begin_fit'\\?\\)",
        ),
        ({"after_epoch": 1}, "'event_order' names 'after_epoch', which is no event it receives"),
        ({"begin_fit": "first"}, "'event_order' for 'begin_fit' must be an int, got 'first'"),
        ([("begin_fit", 1)], "'event_order' should be a dict of event -> order"),
    ],
)
def test_bad_event_order_says_what_is_wrong(event_order: Any, message: str) -> None:
    plugin = _Early()
    plugin.event_order = event_order  # type: ignore[assignment]
    with pytest.raises(PluginValidationError, match=f"^plugin 'early': {message}"):
        make(plugin)
