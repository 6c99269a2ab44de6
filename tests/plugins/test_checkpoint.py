"""The checkpoint plugin: what it saves, exact resume, Ctrl-C, damaged files, bad input."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from engine import CancelTrainException
from engine import Learner
from engine import PluginError
from engine.data import DataBunch
from observers.metrics import Metrics
from plugins import _state
from plugins.checkpoint import Checkpoint
from plugins.checkpoint import CheckpointError
from plugins.checkpoint import infer_mode
from plugins.checkpoint import load_checkpoint
from plugins.mixed_precision import MixedPrecision
from tests.helpers import Spy


class Raiser:
    """Raises ``exc`` at ``event`` when ``when(learner)`` is true."""

    name = "raiser"

    def __init__(self, event: str, exc: BaseException, when: Any = None, order: int = 30) -> None:
        self.order = order
        self.exc = exc
        self.when = when or (lambda learner: True)
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.when(learner):
            raise self.exc


class Stateful:
    """A plugin with the state protocol: counts training batches across fits."""

    name = "stateful"

    def __init__(self) -> None:
        self.batches = 0
        self.loaded: dict[str, Any] | None = None

    def after_batch(self, learner: Any) -> None:
        self.batches += learner.in_train

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "tag": ("a", 1.5, None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loaded = state
        self.batches = state["batches"]


def shuffled_data() -> DataBunch:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return DataBunch.from_tensors(x[:32], y[:32], x[32:], y[32:], bs=8, valid_bs=8, seed=3)


def dropout_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))


def sgd_momentum(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def learner(tmp: Path, *extra: object, seed: int = 0, **options: Any) -> Learner:
    options.setdefault("dir", str(tmp))
    return Learner(
        dropout_model(seed),
        shuffled_data(),
        opt_func=sgd_momentum,
        lr=0.1,
        plugins=[Metrics(), Checkpoint(**options), *extra],
        defaults=False,
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


# -- exact resume ---------------------------------------------------------------


def test_resume_equals_uninterrupted_training_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4 epochs == 2 epochs, a new learner and model, resume from last.pt, 2 more."""
    straight = learner(tmp_path / "a")
    straight.fit(4)
    first = learner(tmp_path / "b")
    first.fit(2)
    path = tmp_path / "b" / "last.pt"
    resumed = learner(tmp_path / "b", seed=7, resume=str(path))
    resumed.fit(4)
    assert capsys.readouterr().out.splitlines() == [
        f"checkpoint: resumed from {path} after epoch 1; the fit goes on from epoch 2 to 3",
        "checkpoint: note: it was saved during a fit of 2 epoch(s), this one has 4; schedules "
        "over the whole fit will differ",
    ]
    assert_same(weights(straight.model), weights(resumed.model))
    assert resumed.n_iter == straight.n_iter == 16
    history = [dict(h, time=0) for h in resumed.plugins["checkpoint"].history]  # type: ignore[attr-defined]
    expected = [dict(h, time=0) for h in straight.plugins["checkpoint"].history]  # type: ignore[attr-defined]
    assert history == expected


class Cyclic:
    """Sets lr and momentum every batch through param-group dicts it holds, as schedules do."""

    order = -20

    def begin_fit(self, learner: Any) -> None:
        self.groups = learner.opt.param_groups  # kept: the dicts themselves

    def begin_batch(self, learner: Any) -> None:
        p = learner.n_epochs / learner.epochs
        for group in self.groups:
            group["lr"] = 0.05 + 0.3 * p * (1 - p)
            group["momentum"] = 0.95 - 0.1 * p


def test_exact_resume_with_a_schedule_over_the_whole_fit(tmp_path: Path) -> None:
    """A schedule spans the fit: stop a 4-epoch fit after epoch 1, resume it for 4."""
    straight = learner(tmp_path / "a", Cyclic())
    straight.fit(4)
    stop = Raiser("after_epoch", CancelTrainException(), lambda lrn: lrn.epoch == 1, order=95)
    learner(tmp_path / "b", Cyclic(), stop).fit(4)
    resumed = learner(tmp_path / "b", Cyclic(), seed=7, resume=str(tmp_path / "b" / "last.pt"))
    resumed.fit(4)
    assert_same(weights(straight.model), weights(resumed.model))
    assert resumed.opt.param_groups[0]["lr"] == straight.opt.param_groups[0]["lr"]  # type: ignore[union-attr]


@pytest.mark.parametrize("drop", ["torch_rng", "loader", "optimizer"])
def test_each_saved_part_matters_for_the_exact_resume(tmp_path: Path, drop: str) -> None:
    """Resuming without one part of the state gives other weights: the test above can fail."""
    straight = learner(tmp_path / "a")
    straight.fit(4)
    learner(tmp_path / "b").fit(2)
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    if drop == "torch_rng":
        state["rng"]["torch"] = torch.Generator().manual_seed(99).get_state()
    elif drop == "loader":
        state["loaders"]["train"] = None
    else:
        state["optimizer"] = None
    torch.save(state, tmp_path / "partial.pt")
    resumed = learner(tmp_path / "b", seed=7, resume=str(tmp_path / "partial.pt"))
    resumed.fit(4)
    differs = [
        k
        for k, v in weights(resumed.model).items()
        if not torch.equal(v, weights(straight.model)[k])
    ]
    assert differs


def test_resuming_a_finished_fit_only_restores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    learner(tmp_path).fit(2)
    saved = load_checkpoint(tmp_path / "last.pt")
    spy = Spy()
    resumed = learner(tmp_path, spy, seed=4, resume=str(tmp_path / "last.pt"))
    resumed.fit(2)
    assert spy.seen == ["begin_fit", "after_fit"]
    assert_same(saved["model"], weights(resumed.model))
    assert "after epoch 1; nothing is left of a fit of 2 epoch(s)" in capsys.readouterr().out


def test_python_and_numpy_generators_are_restored(tmp_path: Path) -> None:
    class Draw:
        order = 90  # after checkpoint: after it saved, after it restored

        def __init__(self) -> None:
            self.draws: list[tuple[float, float]] = []

        def after_epoch(self, learner: Any) -> None:
            self.draws.append((random.random(), float(np.random.rand())))

        def begin_fit(self, learner: Any) -> None:
            if learner.epoch:
                self.draws.append((random.random(), float(np.random.rand())))

    first, second = Draw(), Draw()
    learner(tmp_path, first).fit(1)
    random.seed(5)
    np.random.seed(5)
    learner(tmp_path, second, resume=str(tmp_path / "last.pt")).fit(2)
    assert second.draws[0] == first.draws[0]


def test_plugin_states_are_saved_and_given_back(tmp_path: Path) -> None:
    stateful = Stateful()
    learner(tmp_path, stateful).fit(2)
    saved = load_checkpoint(tmp_path / "last.pt")["plugins"]
    assert saved == {"stateful": {"batches": 8, "tag": ("a", 1.5, None)}}
    again = Stateful()
    learner(tmp_path, again, resume=str(tmp_path / "last.pt")).fit(3)
    assert again.loaded == {"batches": 8, "tag": ("a", 1.5, None)}
    assert again.batches == 12


def test_exact_resume_with_mixed_precision_and_its_gradient_scaler(tmp_path: Path) -> None:
    """float16 with a GradScaler (on the CPU): the scale is part of the state."""

    class Overflow:
        order = 40  # before mixed_precision checks the gradients

        def after_backward(self, learner: Any) -> None:
            if learner.n_iter in (1, 9):  # one skipped step before the stop, one after
                next(learner.model.parameters()).grad[0, 0] = float("inf")

    def run(folder: str, epochs: int, **options: Any) -> Learner:
        fitted = learner(tmp_path / folder, Overflow(), MixedPrecision(dtype="float16"), **options)
        fitted.fit(epochs)
        return fitted

    straight = run("a", 4)
    run("b", 2)
    resumed = run("b", 4, seed=7, resume=str(tmp_path / "b" / "last.pt"))
    assert load_checkpoint(tmp_path / "b" / "last.pt")["plugins"]["mixed_precision"]
    assert_same(weights(straight.model), weights(resumed.model))
    scales = [f.plugins["mixed_precision"].scaler.get_scale() for f in (straight, resumed)]  # type: ignore[attr-defined]
    assert scales == [16384.0, 16384.0]


def test_unsafe_plugin_state_is_refused_at_begin_fit(tmp_path: Path) -> None:
    class Bad(Stateful):
        def state_dict(self) -> dict[str, Any]:
            return {"seen": {1, 2}}

    with pytest.raises(PluginError) as info:
        learner(tmp_path, Bad()).fit(1)
    assert str(info.value).startswith(
        "plugin 'checkpoint': cannot save plugins['stateful']['seen']: a set; a checkpoint "
        "may hold only tensors"
    )


def test_resume_onto_another_model_changes_nothing(tmp_path: Path) -> None:
    learner(tmp_path).fit(1)
    other = Learner(
        nn.Linear(5, 2),
        shuffled_data(),
        plugins=[Checkpoint(dir=str(tmp_path), resume=str(tmp_path / "last.pt"))],
        defaults=False,
    )
    before = weights(other.model)
    with pytest.raises(CheckpointError, match="does not fit this model: missing keys"):
        other.fit(2)
    assert_same(before, weights(other.model))


def test_resume_with_another_optimizer_is_refused(tmp_path: Path) -> None:
    learner(tmp_path).fit(1)
    other = Learner(
        dropout_model(0),
        shuffled_data(),
        opt_func=torch.optim.Adam,
        plugins=[Checkpoint(dir=str(tmp_path), resume=str(tmp_path / "last.pt"))],
        defaults=False,
    )
    with pytest.raises(CheckpointError, match="holds the state of a SGD optimizer but this "):
        other.fit(2)


# -- what is written, and when ---------------------------------------------------


def test_last_and_best_hold_the_right_epochs(tmp_path: Path) -> None:
    fitted = learner(tmp_path)
    fitted.fit(3)
    history = fitted.plugins["checkpoint"].history  # type: ignore[attr-defined]
    losses = [h["valid_loss"] for h in history]
    best_epoch = min(range(3), key=losses.__getitem__)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert (last["epoch"], last["complete"], last["n_iter"]) == (2, True, 12)
    assert_same(last["model"], weights(fitted.model))
    assert (best["epoch"], best["best"], best["best_epoch"]) == (
        best_epoch,
        min(losses),
        best_epoch,
    )
    assert last["log"]["valid_loss"] == losses[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_every_n_epochs_and_always_the_last(tmp_path: Path) -> None:
    class Peek:
        order = 90

        def __init__(self) -> None:
            self.seen: list[int | None] = []

        def after_epoch(self, learner: Any) -> None:
            path = tmp_path / "last.pt"
            self.seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)

    peek = Peek()
    learner(tmp_path, peek, every=2, monitor=None).fit(5)
    assert peek.seen == [None, 1, 1, 3, 4]
    assert not (tmp_path / "best.pt").exists()


def test_accuracy_is_maximised(tmp_path: Path) -> None:
    values = iter([0.5, 0.75, 0.625])

    class Scripted:
        order = 50

        def after_epoch(self, learner: Any) -> None:
            learner.log["score"] = next(values)

    learner(tmp_path, Scripted(), monitor="score").fit(3)
    assert infer_mode("valid_accuracy") == "max"
    best = load_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["best"], best["mode"]) == (1, 0.75, "max")


def test_unknown_monitor_stops_the_fit_before_anything_is_written(tmp_path: Path) -> None:
    """Every plugin declares its log_keys: a monitor none writes fails at begin_fit."""
    with pytest.raises(PluginError) as info:
        learner(tmp_path, monitor="valid_acc").fit(2)
    assert str(info.value) == (
        "plugin 'checkpoint': monitor 'valid_acc' is not written into learner.log by any "
        "plugin (did you mean 'valid_accuracy'?); the plugins write: epoch, train_loss, "
        "train_accuracy, valid_loss, valid_accuracy, time. Set -p checkpoint:monitor= to one "
        "of them, or monitor=none to write only last.pt (a plugin of your own that writes "
        "other keys declares them in its log_keys attribute)"
    )
    assert list(tmp_path.iterdir()) == []


def test_unknown_monitor_lists_the_log_after_writing_last(tmp_path: Path) -> None:
    """A plugin without log_keys may write the monitor: the check waits for the epoch's log."""

    class Undeclared:
        def after_epoch(self, learner: Any) -> None:
            pass

    with pytest.raises(ValueError) as info:
        learner(tmp_path, Undeclared(), monitor="valid_acc").fit(2)
    assert str(info.value) == (
        "plugin 'checkpoint': monitor 'valid_acc' is not in learner.log; available: epoch, "
        "time, train_accuracy, train_loss, valid_accuracy, valid_loss. Set monitor= to one "
        "of them (the metrics plugin writes valid_loss), or monitor=none to write only last.pt"
    )
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_a_stop_in_after_epoch_before_checkpoint_still_saves_the_epoch(tmp_path: Path) -> None:
    stop = Raiser("after_epoch", CancelTrainException(), lambda lrn: lrn.epoch == 1, order=30)
    learner(tmp_path, stop).fit(4)
    last = load_checkpoint(tmp_path / "last.pt")
    assert (last["epoch"], last["complete"]) == (1, True)


def test_a_stop_mid_epoch_keeps_the_last_finished_epoch(tmp_path: Path) -> None:
    stop = Raiser("after_step", CancelTrainException(), lambda lrn: lrn.epoch == 1)
    learner(tmp_path, stop).fit(4)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0


def test_default_folder_is_under_out_dir(tmp_path: Path) -> None:
    fitted = Learner(
        dropout_model(0),
        shuffled_data(),
        plugins=["metrics", "checkpoint"],
        defaults=False,
        out_dir=tmp_path,
    )
    fitted.fit(1)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


# -- Ctrl-C, failures and cleanup -------------------------------------------------


def test_ctrl_c_writes_interrupted_and_resume_goes_on_with_the_next_epoch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = (1, 2)  # epoch 1, third training batch, after its step
    ctrl_c = Raiser("after_step", KeyboardInterrupt(), lambda lrn: (lrn.epoch, lrn.iter) == at)
    fitted = learner(tmp_path, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fitted.fit(4)
    saved = load_checkpoint(tmp_path / "interrupted.pt")
    assert (saved["epoch"], saved["complete"], saved["iter"], saved["n_iter"]) == (1, False, 2, 6)
    assert_same(saved["model"], weights(fitted.model))
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 0
    path = tmp_path / "interrupted.pt"
    assert f"checkpoint: interrupted in epoch 1; state written to {path}" in capsys.readouterr().out

    spy = Spy()
    resumed = learner(tmp_path, spy, seed=3, resume=str(path))
    resumed.fit(4)
    assert spy.seen.count("begin_epoch") == 2  # epochs 2 and 3
    assert resumed.n_iter == 6 + 8
    assert (
        f"checkpoint: resumed from {path} after epoch 1 (interrupted: its remaining batches "
        "are skipped); the fit goes on from epoch 2 to 3" in capsys.readouterr().out
    )


def test_a_failed_write_never_replaces_the_good_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted = learner(tmp_path)
    fitted.fit(1)
    good = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj: Any, file: Any) -> None:
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        fitted.fit(1)
    assert (tmp_path / "last.pt").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize(
    ("event", "order", "expected"),
    [
        ("begin_fit", 70, None),  # None: the file of the first fit, byte for byte
        ("begin_fit", 90, None),
        ("begin_epoch", 70, 0),
        ("begin_epoch", 90, 0),
        ("begin_validate", 70, 0),
        ("begin_validate", 90, 0),
        ("after_epoch", 70, 0),  # raised before checkpoint saved epoch 1
        ("after_epoch", 90, 1),  # raised after
        ("after_cancel_train", 70, 0),
        ("after_cancel_train", 90, 0),
        ("after_fit", 70, 2),
        ("after_fit", 90, 2),
    ],
)
def test_an_error_in_any_of_its_events_leaves_good_files(
    tmp_path: Path, event: str, order: int, expected: int | None
) -> None:
    """An error raised at each event checkpoint receives, before or after it runs."""
    fitted = learner(tmp_path)
    fitted.fit(1)
    good = (tmp_path / "last.pt").read_bytes()
    when = None if event in ("begin_fit", "after_fit") else (lambda lrn: lrn.epoch == 1)
    fitted.add_plugin(Raiser(event, RuntimeError("boom"), when, order=order))
    if event == "after_cancel_train":
        fitted.add_plugin(Raiser("after_step", CancelTrainException(), when), name="stop")
    with pytest.raises(RuntimeError, match="boom"):
        fitted.fit(3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # no temp file
    if expected is None:
        assert (tmp_path / "last.pt").read_bytes() == good
    else:
        assert load_checkpoint(tmp_path / "last.pt")["epoch"] == expected
    fitted.remove_plugin("raiser")
    if "stop" in fitted.plugins:
        fitted.remove_plugin("stop")
    fitted.fit(2)  # the plugin works again
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


# -- damaged and foreign files, bad options -----------------------------------------


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    learner(tmp_path / "ok").fit(1)
    return tmp_path / "ok" / "last.pt"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("half", "cannot be loaded; the file is truncated, damaged or not a checkpoint"),
        (
            "empty",
            "not a checkpoint (torch.save writes a zip archive, which starts with 50 4b 03 04; "
            "this file starts with nothing: it is empty)",
        ),
        (
            "text",
            "not a checkpoint (torch.save writes a zip archive, which starts with 50 4b 03 04; "
            "this file starts with 65 70 6f 63)",
        ),
        ("random", "not a checkpoint (torch.save writes a zip archive, which starts with"),
        (
            "state_dict",
            "not a lookinside checkpoint (no 'format'); it looks like a bare state_dict",
        ),
        ("list", "not a lookinside checkpoint (it holds a list)"),
        ("foreign", "not a lookinside checkpoint (format 'other')"),
        (
            "newer",
            f"written by a newer lookinside (layout version {_state.VERSION + 1}; this one "
            f"reads up to {_state.VERSION})",
        ),
        ("no_model", "damaged ('model' is missing)"),
        ("bad_epoch", "damaged ('epoch' should be int, got str)"),
    ],
)
def test_damaged_or_foreign_files_are_clear_errors(
    tmp_path: Path, good_file: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.pt"
    state = load_checkpoint(good_file)
    if content == "half":
        path.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "text":
        path.write_text("epoch,loss\n0,1.5\n")
    elif content == "random":
        path.write_bytes(bytes(random.Random(0).randrange(1, 128) for _ in range(4096)))
    elif content == "state_dict":
        torch.save(state["model"], path)
    elif content == "list":
        torch.save([1, 2], path)
    else:
        changes: dict[str, Any] = {
            "foreign": {"format": "other"},
            "newer": {"version": _state.VERSION + 1},
            "bad_epoch": {"epoch": "3"},
        }
        state.update(changes.get(content, {}))
        if content == "no_model":
            del state["model"]
        torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"checkpoint {path}: {message}")
    with pytest.raises(CheckpointError):
        Checkpoint(dir=str(tmp_path), resume=str(path))  # refused when created, not mid-fit


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint .*nope\.pt: no such file"):
        Checkpoint(resume=str(tmp_path / "nope.pt"))
    with pytest.raises(CheckpointError, match=": not a file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": 0}, "plugin 'checkpoint': option 'every' should be a positive integer, got 0"),
        ({"mode": "up"}, "plugin 'checkpoint': option 'mode' should be auto, min or max, got 'up'"),
        (
            {"monitor": ""},
            "plugin 'checkpoint': option 'monitor' should be a learner.log key such as "
            "valid_loss, or none, got ''",
        ),
        (
            {"monitor": "speed"},
            "plugin 'checkpoint': cannot tell whether 'speed' should go down or up; give "
            "mode='min' or mode='max' (-p checkpoint:monitor=speed,mode=min)",
        ),
    ],
)
def test_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Checkpoint(**options)
    assert str(info.value) == message


def test_no_folder_at_all_is_an_error_at_begin_fit() -> None:
    fitted = Learner(dropout_model(0), shuffled_data(), plugins=[Checkpoint()], defaults=False)
    with pytest.raises(PluginError, match="plugin 'checkpoint': no folder to write into; set dir="):
        fitted.fit(1)


def test_options_from_the_command_line_syntax(tmp_path: Path) -> None:
    fitted = Learner(
        dropout_model(0),
        shuffled_data(),
        plugins=["metrics", f"checkpoint:dir={tmp_path},monitor=none,every=2"],
        defaults=False,
    )
    plugin = fitted.plugins["checkpoint"]
    assert (plugin.dir, plugin.monitor, plugin.every) == (tmp_path, None, 2)  # type: ignore[attr-defined]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_a_cpu_checkpoint_on_cuda(tmp_path: Path) -> None:
    from plugins.device import Device

    learner(tmp_path).fit(1)
    saved = load_checkpoint(tmp_path / "last.pt")
    resumed = learner(tmp_path, Device("cuda"), resume=str(tmp_path / "last.pt"))
    resumed.fit(1)  # nothing left to train: only restores
    assert next(resumed.model.parameters()).is_cuda
    assert_same(saved["model"], {k: v.cpu() for k, v in resumed.model.state_dict().items()})
    buffers = [s["momentum_buffer"] for s in resumed.opt.state.values()]  # type: ignore[union-attr]
    assert buffers and all(b.is_cuda for b in buffers)


def _fit_with(tmp_path: Path, epochs: int, *extra: object, **options: Any) -> Learner:
    learner = Learner(
        dropout_model(0),
        shuffled_data(),
        plugins=[Metrics(), Checkpoint(**options), *extra],
        defaults=False,
        out_dir=tmp_path,
    )
    learner.fit(epochs)
    return learner


def test_numpy_numbers_in_the_log_are_saved_as_python_numbers(tmp_path: Path) -> None:
    class NumpyValue:
        order = 15

        def after_epoch(self, learner: Any) -> None:
            learner.log["valid_np"] = np.float64(0.5) - learner.epoch

    _fit_with(tmp_path, 2, NumpyValue(), monitor="valid_np", mode="max")
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert [row["valid_np"] for row in state["history"]] == [0.5, -0.5]
    assert type(state["history"][0]["valid_np"]) is float
    assert _state.find_unsafe({"a": np.float64(1.0)}) == "['a']: a float64"


def test_a_subclass_value_is_named_not_blamed_on_the_file() -> None:
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    assert _state.find_unsafe({"p": Pair(1, 2)}) == "['p']: a Pair"


def test_an_epoch_cancelled_at_its_start_is_not_saved_as_trained(tmp_path: Path) -> None:
    stop = Raiser(
        "begin_epoch", CancelTrainException(), lambda learner: learner.epoch == 2, order=0
    )
    _fit_with(tmp_path, 4, stop)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert [row["epoch"] for row in state["history"]] == [0, 1]


def test_early_stop_with_every_2_still_writes_the_last_epoch(tmp_path: Path) -> None:
    stop = Raiser(
        "after_epoch", CancelTrainException(), lambda learner: learner.epoch == 2, order=100
    )
    _fit_with(tmp_path, 6, stop, every=2)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 2


def test_a_version_1_file_still_resumes_bit_for_bit(tmp_path: Path) -> None:
    """Version 1: one generator state (or None) per loader and no lr; version 2 keeps lists."""
    straight = learner(tmp_path / "a")
    straight.fit(4)
    learner(tmp_path / "b").fit(2)
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (state["version"], state["lr"]) == (2, 0.1)
    assert [len(saved) for saved in state["loaders"].values()] == [1, 1]
    state["version"] = 1
    del state["lr"]
    state["loaders"] = {"train": state["loaders"]["train"][0], "valid": None}
    torch.save(state, tmp_path / "v1.pt")
    resumed = learner(tmp_path / "b", seed=7, resume=str(tmp_path / "v1.pt"))
    resumed.fit(4)
    assert_same(weights(straight.model), weights(resumed.model))


def test_a_checkpoint_without_a_plugins_state_says_what_was_not_restored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    learner(tmp_path, Stateful()).fit(1)
    learner(tmp_path, resume=str(tmp_path / "last.pt")).fit(1)
    assert (
        "checkpoint: not restored: the state of plugin 'stateful' (no such plugin is attached)"
        in capsys.readouterr().out.splitlines()
    )


class _OpensAFileInBeginFit:
    """A third-party plugin at the default order that opens its log in begin_fit, the
    way the issue's weightwatch package did: it must see the resumed state there."""

    name = "opener"

    def __init__(self) -> None:
        self.seen: list[tuple[bool, int, bool]] = []

    def begin_fit(self, learner: Any) -> None:
        restored = learner.plugins["checkpoint"]._pending is None
        self.seen.append((learner.resuming, learner.epoch, restored))


def test_state_is_back_before_any_other_plugins_begin_fit(tmp_path: Path) -> None:
    from engine.testing import make_learner
    from engine.testing import tiny_data

    first = make_learner(["metrics", "checkpoint"], data=tiny_data(), out_dir=tmp_path)
    first.fit(2)
    opener = _OpensAFileInBeginFit()
    resumed = make_learner(
        ["metrics", f"checkpoint:resume={tmp_path / 'checkpoints' / 'last.pt'}", opener],
        data=tiny_data(),
        out_dir=tmp_path,
    )
    assert resumed.plugins.receivers("begin_fit")[0] == "checkpoint"
    resumed.fit(4)
    assert opener.seen == [(True, 2, True)]  # resuming, at epoch 2, state restored
    assert resumed.resuming is True
    opener.seen.clear()
    resumed.fit(1)  # a new fit: nothing to resume
    assert opener.seen == [(False, 0, True)] and resumed.resuming is False


def test_interrupted_state_is_saved_before_the_slow_after_fit_work() -> None:
    from engine.testing import make_learner

    learner = make_learner(["metrics", "recorder", "activation_stats", "checkpoint:dir=/tmp"])
    assert learner.plugins.receivers("after_fit")[0] == "checkpoint"
    assert learner.plugins.receivers("after_epoch")[-1] == "checkpoint"  # order 80 elsewhere
