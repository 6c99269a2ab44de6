"""No host read of a tensor during a batch: the default plugins' promise, counted on the CPU.

On a GPU, every read of a tensor's value on the host waits for the device (see
:mod:`tests.host_reads`); one per batch serialises the pipeline. Here the reads
are counted from the first ``begin_batch`` receiver of each batch to the last
``after_batch`` receiver: the :class:`Window` plugins, at the lowest and highest
orders. The default plugins, alone and with ``activation_stats``, read nothing
there; the loop itself reads once per fit, the first batch's labels against the
model's outputs (:mod:`engine.batch_checks`). The reads some plugins document are
counted exactly: the NaN guard's (one per checked batch), mixed precision's (one per step), ``activation_stats``'s
automatic ranges (one per module, first batch) and the progress bar's (at most
every half second).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from engine.nn import cnn
from tests.helpers import tiny_data
from tests.helpers import tiny_model
from tests.host_reads import SyncCounter

EPOCHS = 2
TRAIN_BATCHES = 3
"""Per epoch: 12 training samples in batches of 4 (:func:`data`)."""
VALID_BATCHES = 1
"""Per epoch: 8 validation samples in one batch."""
BATCHES = EPOCHS * (TRAIN_BATCHES + VALID_BATCHES)
STEPS = EPOCHS * TRAIN_BATCHES
FIRST = (0, "train", 0)
"""The tag of the fit's first batch: epoch, pass, batch."""


class Window:
    """Turns the counter on in the first ``begin_batch`` receiver, off in the last ``after_batch``.

    Two plugin objects, since one order cannot be both first and last: ``open``
    at the lowest order, ``close`` at the highest.
    """

    def __init__(self, counter: SyncCounter) -> None:
        self.open = _Open(counter)
        self.close = _Close(counter)


class _Open:
    name = "window_open"
    order = -(10**9)

    def __init__(self, counter: SyncCounter) -> None:
        self.counter = counter

    def begin_batch(self, learner: Learner) -> None:
        stage = "train" if learner.in_train else "valid"
        self.counter.tag = (learner.epoch, stage, learner.iter)
        self.counter.active = True


class _Close:
    name = "window_close"
    order = 10**9

    def __init__(self, counter: SyncCounter) -> None:
        self.counter = counter

    def after_batch(self, learner: Learner) -> None:
        self.counter.active = False

    def after_fit(self, learner: Learner) -> None:
        self.counter.active = False  # also when the fit failed mid-batch


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> SyncCounter:
    return SyncCounter(monkeypatch)


def data() -> DataBunch:
    return tiny_data(n_train=TRAIN_BATCHES * 4, n_valid=8, bs=4)


def image_data() -> DataBunch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (20,), generator=gen)
    return DataBunch.from_tensors(x[:12], y[:12], x[12:], y[12:], bs=4, valid_bs=8)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return cnn(n_out=3, channels=(4, 8))  # 5 children: conv, conv, pool, flatten, linear


def fit(
    counter: SyncCounter,
    *plugins: object,
    model: nn.Module | None = None,
    bunch: DataBunch | None = None,
    out_dir: Path | None = None,
) -> Learner:
    """Fit with the default plugins (the progress bar off) and ``plugins``, counting."""
    window = Window(counter)
    learner = Learner(
        model if model is not None else tiny_model(),
        bunch if bunch is not None else data(),
        lr=0.1,
        plugins=[window.open, window.close, "progress:bar=false", *plugins],
        out_dir=out_dir,
    )
    learner.fit(EPOCHS)
    assert not counter.active
    # the loop's own documented read: the first batch's labels against the model's
    # outputs (engine.batch_checks), once per fit, counted apart by the counter
    assert [(r.method, r.tag) for r in counter.loop_reads] == [("tolist", FIRST)]
    return learner


def where(counter: SyncCounter) -> Counter[tuple[str, str]]:
    """How many reads of each method come from each file."""
    return Counter((read.method, read.site.partition(":")[0]) for read in counter.reads)


def test_the_loop_reads_the_labels_once_per_fit(counter: SyncCounter) -> None:
    """fit() above checks it: one read, on the first training batch, in batch_checks."""
    fit(counter)
    assert len(counter.loop_reads) == 1 and counter.reads == []


def test_the_window_spans_every_receiver_of_a_batch(counter: SyncCounter) -> None:
    learner = fit(counter, "activation_stats:report=false", "terminate_on_nan")
    assert learner.plugins.receivers("begin_batch")[0] == "window_open"
    assert learner.plugins.receivers("after_batch")[-1] == "window_close"
    assert {"device", "metrics", "recorder"} <= set(learner.plugins)


def test_the_counter_sees_a_read_and_where_it_is(counter: SyncCounter) -> None:
    class Reader:
        def after_loss(self, learner: Learner) -> None:
            learner.loss.item()
            f"{learner.loss:.3f}"  # __format__ reads through item: one read

    fit(counter, Reader())
    assert counter.calls == ["item", "__format__"] * BATCHES
    assert where(counter) == {
        ("item", "tests/engine/test_host_sync.py"): BATCHES,
        ("__format__", "tests/engine/test_host_sync.py"): BATCHES,
    }


def test_default_plugins_read_nothing_during_a_batch(counter: SyncCounter, tmp_path: Path) -> None:
    learner = fit(counter, out_dir=tmp_path)
    assert counter.reads == []
    assert len(learner.plugins["recorder"].losses) == STEPS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "modules_read"),
    [
        ({"range_min": -5.0, "range_max": 5.0}, 0),
        ({"range_min": -5.0, "range_max": 5.0, "grads": True, "grad_range": 1.0}, 0),
        # the default hooks of the small CNN: its two conv blocks
        ({}, 2),  # the activations' automatic range: one read per hooked module
        ({"grads": True}, 4),  # and the gradients'
        ({"valid": True}, 2),
    ],
)
def test_activation_stats_reads_only_to_choose_its_ranges(
    counter: SyncCounter, options: dict[str, Any], modules_read: int
) -> None:
    """Documented in observers/activation_stats.py: one read per module, first batch."""
    stats = ("activation_stats", {"report": False, "save": False, **options})
    learner = fit(counter, stats, model=small_cnn(), bunch=image_data())
    assert counter.calls == ["__float__"] * modules_read
    assert {read.tag for read in counter.reads} <= {FIRST}
    assert set(where(counter)) <= {("__float__", "observers/activation_data.py")}
    recorded = learner.plugins["activation_stats"].data  # type: ignore[attr-defined]
    assert len(recorded) == (BATCHES if options.get("valid") else STEPS)
    assert len(learner.plugins["activation_stats"].names) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(("every", "checked"), [(1, BATCHES), (3, BATCHES // 3)])
def test_the_nan_guard_reads_once_per_checked_batch(
    counter: SyncCounter, every: int, checked: int
) -> None:
    """Documented in plugins/terminate_on_nan.py: training and validation batches."""
    fit(counter, f"terminate_on_nan:every={every}")
    assert where(counter) == {("__bool__", "plugins/terminate_on_nan.py"): checked}


@pytest.mark.parametrize(
    ("options", "reads"),
    [
        ({}, STEPS),  # bfloat16 on the CPU
        ({"dtype": "float16"}, STEPS),  # with a gradient scaler
        ({"dtype": "bfloat16", "skip_nonfinite": False}, 0),
    ],
)
def test_mixed_precision_reads_once_per_step(
    counter: SyncCounter, options: dict[str, Any], reads: int
) -> None:
    """Documented in plugins/mixed_precision.py: the gradients' check, one per step."""
    fit(counter, ("mixed_precision", options))
    assert counter.calls == ["__bool__"] * reads
    assert {read.site.partition(" in ")[2] for read in counter.reads} <= {"grads_finite"}
    assert {read.tag[1] for read in counter.reads} <= {"train"}


def test_the_progress_bar_reads_once_per_pass_when_the_clock_allows(
    counter: SyncCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documented in observers/progress.py: at most every half second, while a bar shows."""
    monkeypatch.setattr("observers.progress.REFRESH_S", 1e9)  # no second read in a pass
    fit(counter, "progress:bar=true")
    assert where(counter) == {("item", "observers/progress.py"): 2 * EPOCHS}
    assert [read.tag[2] for read in counter.reads] == [0] * (2 * EPOCHS)


@pytest.mark.parametrize(
    "plugin",
    [
        "grad_clip:max_norm=1.0",
        "grad_clip:max_value=0.1",
        "grad_accumulation:steps=2",
        "schedule:lr=one_cycle(0.4)",
        "early_stopping:patience=5",
    ],
)
def test_other_plugins_read_nothing_during_a_batch(counter: SyncCounter, plugin: str) -> None:
    fit(counter, plugin)
    assert counter.reads == []


def test_together_only_the_documented_reads(counter: SyncCounter) -> None:
    """activation_stats divides the gradients by mixed precision's scale: still no read."""
    stats = {"range_min": -5.0, "range_max": 5.0, "grads": True, "grad_range": 1.0}
    fit(
        counter,
        ("activation_stats", {"report": False, "save": False, **stats}),
        ("mixed_precision", {"dtype": "float16"}),
        "terminate_on_nan:every=2",
        "grad_clip:max_norm=1.0",
        model=small_cnn(),
        bunch=image_data(),
    )
    assert where(counter) == {
        ("__bool__", "plugins/terminate_on_nan.py"): BATCHES // 2,
        ("__bool__", "plugins/mixed_precision.py"): STEPS,
    }
