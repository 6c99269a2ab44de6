"""The schedule plugin: closed forms, the lesson's combine_scheds, the parser, per-group values."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
from torch import nn

from engine import Learner
from engine import PluginError
from engine.options import parse_plugin_arg
from plugins._schedules import ScheduleSyntaxError
from plugins.schedule import Schedule
from plugins.schedule import combine
from plugins.schedule import cos
from plugins.schedule import exp
from plugins.schedule import lin
from plugins.schedule import no
from plugins.schedule import one_cycle
from plugins.schedule import parse
from tests.helpers import tiny_data
from tests.helpers import tiny_model

PROGRESS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
LESSON_06 = "combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])"


class Raiser:
    """Raises ``exc`` at ``event`` while ``armed``."""

    name = "raiser"
    order = 50

    def __init__(self, event: str, exc: type[BaseException] = RuntimeError) -> None:
        self.exc = exc
        self.armed = True
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.armed:
            raise self.exc("boom")


def expected_progress(epochs: int, iters: int) -> list[float]:
    """``n_epochs / epochs`` at each training batch, computed as the loop does."""
    found = []
    for epoch in range(epochs):
        n_epochs = float(epoch)
        for _ in range(iters):
            found.append(n_epochs / epochs)
            n_epochs += 1.0 / iters
    return found


def recorded(learner: Learner, name: str = "lr") -> list[list[float]]:
    return learner.plugins["recorder"].hypers[name]  # type: ignore[attr-defined]


def fit(plugins: list[Any], epochs: int = 4, **kwargs: Any) -> Learner:
    learner = Learner(tiny_model(), tiny_data(), plugins=["no:progress", *plugins], **kwargs)
    learner.fit(epochs)
    return learner


@pytest.mark.parametrize("p", PROGRESS)
def test_schedules_match_their_closed_forms(p: float) -> None:
    assert lin(0.6, 2.0)(p) == pytest.approx(0.6 + p * (2.0 - 0.6), rel=1e-14)
    cosine = 0.2 + (1 + math.cos(math.pi * (1 - p))) * (1.0 - 0.2) / 2
    assert cos(0.2, 1.0)(p) == pytest.approx(cosine, rel=1e-14)
    assert exp(1e-4, 1e-1)(p) == pytest.approx(1e-4 * (1e-1 / 1e-4) ** p, rel=1e-13)
    assert no(0.3)(p) == 0.3


def test_schedules_are_exact_at_both_ends() -> None:
    for sched, start, end in ((lin(0.6, 2.0), 0.6, 2.0), (cos(1.0, 0.1), 1.0, 0.1)):
        assert (sched(0.0), sched(1.0)) == (start, end)
    assert (exp(1e-4, 0.3)(0.0), exp(1e-4, 0.3)(1.0)) == (1e-4, 0.3)


@pytest.mark.parametrize(
    ("p", "value"), [(0.0, 0.2), (0.25, 0.6), (0.5, 1.0), (0.75, 0.55), (1.0, 0.1)]
)
def test_lesson_06_combine_scheds(p: float, value: float) -> None:
    """combine_scheds([.5,.5], [sched_cos(.2,1.), sched_cos(1.,.1)]) of notebook 06."""
    assert combine([0.5, 0.5], [cos(0.2, 1.0), cos(1.0, 0.1)])(p) == pytest.approx(value, abs=1e-15)


@pytest.mark.parametrize(
    ("p", "value"),
    [
        (0.0, 0.6),
        (0.25, 0.6 + 1.4 * 0.25 / 0.3),
        (0.5, 2.0 - 1.9 * 0.2 / 0.7),
        (0.75, 2.0 - 1.9 * 0.45 / 0.7),
        (1.0, 0.1),
    ],
)
def test_lesson_07_combine_scheds(p: float, value: float) -> None:
    """combine_scheds([.3,.7], [sched_lin(.6,2.), sched_lin(2.,.1)]) of notebook 07."""
    assert combine([0.3, 0.7], [lin(0.6, 2.0), lin(2.0, 0.1)])(p) == pytest.approx(value, rel=1e-14)


def test_one_cycle_lr_and_momentum_at_the_corners() -> None:
    sched = one_cycle(0.4, div=25, final_div=1e4, pct_start=0.3)
    assert [sched(p) for p in (0.0, 0.3, 1.0)] == [0.4 / 25, 0.4, 0.4 / 1e4]
    assert sched(0.15) == pytest.approx(0.4 / 25 + (0.4 - 0.4 / 25) / 2, rel=1e-14)
    mom = sched.companions["mom"]
    assert [mom(p) for p in (0.0, 0.3, 1.0)] == [0.95, 0.85, 0.95]
    assert one_cycle(0.4, moms=None).companions == {}


@pytest.mark.parametrize(
    "sched",
    [lin(0.1, 0.2), cos(1.0, 0.0), exp(1e-3, 1.0), no(0.5), one_cycle(0.4), parse(LESSON_06)],
)
def test_parse_reads_what_repr_writes(sched: Any) -> None:
    assert parse(repr(sched)) == sched


def test_parse_numbers_lists_and_keywords() -> None:
    assert parse(" 1e-3 ") == 0.001
    assert parse("[cos(1, 2), -0.5]") == [cos(1.0, 2.0), -0.5]
    assert parse("one_cycle(0.4, pct_start=0.3, moms=None)") == one_cycle(
        0.4, pct_start=0.3, moms=None
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("combine([0.5,0.5],[cos(0.2,1.0)", "position 31"),
        ("cos(0.2 1.0)", "position 8"),
        ("cos(1,2) x", "position 9"),
        ("foo(1)", "position 0"),
        ("__import__('os')", "position 0"),
        ("", "position 0"),
    ],
)
def test_parse_says_where_it_failed(text: str, where: str) -> None:
    with pytest.raises(ScheduleSyntaxError, match=where) as info:
        parse(text)
    pointer = str(info.value).splitlines()[-1]
    assert pointer.index("^") - 4 == int(where.rsplit(maxsplit=1)[-1])


def test_bad_schedule_arguments() -> None:
    with pytest.raises(ValueError, match=r"pcts should sum to 1, got \[0.5, 0.6\]"):
        combine([0.5, 0.6], [no(1), no(2)])
    with pytest.raises(ValueError, match="one schedule per percentage"):
        combine([1.0], [no(1), no(2)])
    with pytest.raises(ValueError, match="positive start and end"):
        exp(0.0, 1.0)
    with pytest.raises(ValueError, match="pct_start should be in"):
        one_cycle(0.4, pct_start=1.0)
    with pytest.raises(ScheduleSyntaxError, match=r"combine\(\.\.\.\) at position 0: .*sum to 1"):
        parse("combine([0.5,0.6],[no(1),no(2)])")


def test_plugin_string_keeps_the_expression_whole() -> None:
    name, raw = parse_plugin_arg(f"schedule:lr={LESSON_06},weight_decay=lin(0,0.01)")
    assert (name, raw) == ("schedule", {"lr": LESSON_06, "weight_decay": "lin(0,0.01)"})


def test_scheduled_lr_is_recorded_per_batch() -> None:
    """From a plugin string to the recorder: every batch's lr is the schedule at n_epochs/epochs."""
    learner = fit([f"schedule:lr={LESSON_06}"], epochs=4)
    sched = parse(LESSON_06)
    assert recorded(learner) == [[sched(p) for p in expected_progress(4, 2)]]
    assert recorded(learner)[0][::2] == [0.2, pytest.approx(0.6), 1.0, pytest.approx(0.55)]


def test_schedule_runs_before_plugins_reading_lr_in_begin_batch() -> None:
    seen = []

    class Reader:
        order = -19

        def begin_batch(self, learner: Any) -> None:
            if learner.in_train:
                seen.append(learner.opt.param_groups[0]["lr"])

    fit([Schedule(lr=lin(0.1, 0.5)), Reader()], epochs=2)
    assert seen == [lin(0.1, 0.5)(p) for p in expected_progress(2, 2)]


def test_one_group_schedule_per_parameter_group() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))

    def two_groups(params: Any, lr: float) -> torch.optim.Optimizer:
        groups = [{"params": model[0].parameters()}, {"params": model[1].parameters()}]
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)

    learner = Learner(
        model,
        tiny_data(),
        opt_func=two_groups,
        plugins=["no:progress", Schedule(lr=[lin(0.1, 0.2), "cos(1.0,0.5)"], mom=0.8)],
    )
    learner.fit(2)
    progress = expected_progress(2, 2)
    assert recorded(learner) == [
        [lin(0.1, 0.2)(p) for p in progress],
        [cos(1.0, 0.5)(p) for p in progress],
    ]
    assert recorded(learner, "momentum") == [[0.8] * 4, [0.8] * 4]


def test_mom_and_beta2_go_into_adam_betas() -> None:
    learner = fit([Schedule(mom=lin(0.9, 0.8), beta2=0.95)], epochs=2, opt_func=torch.optim.Adam)
    assert recorded(learner, "beta1") == [[lin(0.9, 0.8)(p) for p in expected_progress(2, 2)]]
    assert recorded(learner, "beta2") == [[0.95] * 4]


def test_one_cycle_also_cycles_sgd_momentum() -> None:
    momentum_sgd = functools.partial(torch.optim.SGD, momentum=0.9)
    learner = fit(["schedule:lr=one_cycle(0.4)"], epochs=2, opt_func=momentum_sgd)
    sched = one_cycle(0.4)
    progress = expected_progress(2, 2)
    assert recorded(learner) == [[sched(p) for p in progress]]
    assert recorded(learner, "momentum") == [[sched.companions["mom"](p) for p in progress]]


def test_one_cycle_leaves_momentum_off_for_plain_sgd() -> None:
    learner = fit(["schedule:lr=one_cycle(0.4)"], epochs=1)
    assert set(recorded(learner, "momentum")[0]) == {0.0}


def test_one_cycle_skips_momentum_an_optimizer_lacks() -> None:
    learner = fit(["schedule:lr=one_cycle(0.4)"], epochs=1, opt_func=torch.optim.Adagrad)
    assert recorded(learner)[0][0] == 0.4 / 25


def test_any_param_group_key_from_python() -> None:
    learner = fit([Schedule(eps=exp(1e-6, 1e-8))], epochs=2, opt_func=torch.optim.Adam)
    assert recorded(learner, "eps") == [[exp(1e-6, 1e-8)(p) for p in expected_progress(2, 2)]]


def test_unknown_hyper_parameter_lists_what_the_optimizer_has() -> None:
    learner = Learner(tiny_model(), tiny_data(), plugins=["no:progress", "schedule:beta2=0.9"])
    message = r"SGD has no hyper-parameter 'beta2'; its param_groups have: lr, momentum, .*mom"
    with pytest.raises(ValueError, match=message):
        learner.fit(1)


def test_bad_plugin_options_are_errors_naming_the_plugin() -> None:
    with pytest.raises(PluginError, match="schedule.*position 5"):
        Learner(tiny_model(), tiny_data(), plugins=["schedule:lr=cos(1"])
    with pytest.raises(ValueError, match="no schedule given"):
        Schedule()
    with pytest.raises(TypeError, match="should be a schedule"):
        Schedule(lr=[object()])
    learner = Learner(tiny_model(), tiny_data(), plugins=[Schedule(lr=[no(0.1), no(0.2)])])
    with pytest.raises(ValueError, match="lr has 2 schedules but the optimizer has 1 parameter"):
        learner.fit(1)
    learner = Learner(tiny_model(), tiny_data(), plugins=[Schedule(lr=lambda p: "fast")])
    with pytest.raises(TypeError, match="should return a finite number, returned 'fast'"):
        learner.fit(1)


@pytest.mark.parametrize("event", ["begin_fit", "begin_batch"])
def test_a_failed_fit_leaves_nothing_stale(event: str) -> None:
    """An error at an event the plugin uses; the next fit (new optimizer) is scheduled afresh."""
    schedule = Schedule(lr=lin(0.1, 0.5))
    raiser = Raiser(event)
    learner = Learner(tiny_model(), tiny_data(), plugins=[schedule, raiser], defaults=False)
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit(2)
    raiser.armed = False
    learner.opt = None
    seen = []

    class Reader:
        def after_loss(self, learner: Any) -> None:
            if learner.in_train:
                seen.append(learner.opt.param_groups[0]["lr"])

    with learner.added(Reader()):
        learner.fit(2)
    assert seen == [lin(0.1, 0.5)(p) for p in expected_progress(2, 2)]


def test_follows_param_groups_replaced_by_load_state_dict() -> None:
    """Loading optimizer state makes new param-group dicts; the schedule sets those."""

    class Reload:
        def begin_epoch(self, learner: Any) -> None:
            learner.opt.load_state_dict(learner.opt.state_dict())

    learner = fit([Schedule(lr=lin(0.1, 0.5)), Reload()], epochs=2)
    assert recorded(learner) == [[lin(0.1, 0.5)(p) for p in expected_progress(2, 2)]]
