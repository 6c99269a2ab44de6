"""Tests of observers.recorder: per-batch records, plots and the files after a fit."""

from __future__ import annotations

import functools
import math
import os

import pytest
import torch
from matplotlib.axes import Axes
from torch import nn

from engine.exceptions import CancelBatchException
from observers.metrics import Metrics
from observers.recorder import PLOT_FILES
from observers.recorder import Recorder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _LRChanger:
    """Sets a new learning rate before every training batch and remembers it."""

    name = "lr_changer"
    order = 0

    def __init__(self):
        self.set: list[float] = []

    def begin_batch(self, learner):
        if learner.in_train:
            lr = 0.01 * (len(self.set) + 1)
            for group in learner.opt.param_groups:
                group["lr"] = lr
            self.set.append(lr)


class _LossSpy:
    """Reads the loss of every training batch (after the recorder has)."""

    name = "loss_spy"
    order = 25

    def __init__(self):
        self.losses: list[float] = []

    def after_batch(self, learner):
        if learner.in_train and learner.loss is not None:
            self.losses.append(learner.loss.item())


def test_lr_and_loss_recorded_per_training_batch(make_learner):
    recorder, changer, spy = Recorder(), _LRChanger(), _LossSpy()
    learner = make_learner(
        [recorder, changer, spy], opt_func=functools.partial(torch.optim.SGD, momentum=0.9)
    )
    learner.fit(2)
    n_batches = 2 * len(learner.data.train_dl)  # 7 batches per epoch
    assert len(recorder) == n_batches == 14
    assert recorder.iterations == list(range(14))
    assert recorder.lrs == [changer.set]
    assert recorder.hypers["momentum"] == [[0.9] * 14]
    assert recorder.hypers["weight_decay"] == [[0.0] * 14]
    assert recorder.losses == spy.losses
    assert all(isinstance(loss, float) for loss in recorder.losses)


def test_valid_loss_taken_from_the_metrics_log(make_learner):
    metrics, recorder = Metrics(), Recorder()
    make_learner([recorder, metrics]).fit(2)
    assert recorder.valid_losses == [h["valid_loss"] for h in metrics.history]
    assert recorder.valid_iterations == [6, 13]


def test_no_valid_loss_without_metrics(make_learner):
    recorder = Recorder()
    make_learner([recorder]).fit(1)
    assert recorder.valid_losses == []
    assert len(recorder.losses) == 7


def test_param_groups_and_betas(make_learner):
    model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))

    def opt_func(params, lr):
        return torch.optim.Adam(
            [
                {"params": model[0].parameters(), "lr": lr / 10},
                {"params": model[1].parameters()},
            ],
            lr=lr,
            betas=(0.8, 0.95),
        )

    recorder = Recorder()
    make_learner([recorder], model=model, lr=0.01, opt_func=opt_func).fit(1)
    assert recorder.lrs == [[pytest.approx(0.001)] * 7, [0.01] * 7]
    assert recorder.hypers["beta1"] == [[0.8] * 7, [0.8] * 7]
    assert recorder.hypers["beta2"] == [[0.95] * 7, [0.95] * 7]
    assert "betas" not in recorder.hypers
    assert "amsgrad" not in recorder.hypers  # a bool, not a hyper-parameter


def test_group_added_during_fit_is_padded_with_nan(make_learner):
    extra = nn.Parameter(torch.zeros(2))

    class AddGroup:
        name = "add_group"
        order = 0

        def begin_epoch(self, learner):
            if learner.epoch == 1:
                learner.opt.add_param_group({"params": [extra], "lr": 0.5})

    recorder = Recorder()
    make_learner([recorder, AddGroup()]).fit(2)
    first, second = recorder.lrs
    assert first == [0.1] * 14
    assert all(math.isnan(v) for v in second[:7])
    assert second[7:] == [0.5] * 7


def test_cancelled_batches_are_not_recorded(make_learner):
    class SkipSecond:
        name = "skip_second"
        order = 0

        def begin_batch(self, learner):
            if learner.in_train and learner.iter == 1:
                raise CancelBatchException

    recorder = Recorder()
    make_learner([recorder, SkipSecond()]).fit(1)
    assert recorder.iterations == [0, 2, 3, 4, 5, 6]
    assert len(recorder.losses) == len(recorder.lrs[0]) == 6


@pytest.mark.parametrize("chunk", [32, 3])
def test_losses_are_read_back_once_per_epoch(make_learner, sync_counter, monkeypatch, chunk):
    monkeypatch.setattr("observers.recorder.CHUNK", chunk)
    recorder, spy = Recorder(), _LossSpy()
    learner = make_learner([recorder, spy])
    sync_counter.active = True
    learner.fit(3)
    sync_counter.active = False
    assert sync_counter.calls == [*["item"] * 7, "tolist"] * 3  # the spy reads every batch
    assert recorder.losses == spy.losses


def test_begin_fit_resets_the_records(make_learner):
    recorder = Recorder()
    learner = make_learner([recorder, Metrics()])
    learner.fit(2)
    learner.fit(1)
    assert recorder.iterations == list(range(7))
    assert len(recorder.losses) == len(recorder.lrs[0]) == 7
    assert len(recorder.valid_losses) == 1


def test_plots_return_axes(make_learner):
    recorder = Recorder()
    make_learner(
        [recorder, Metrics()], opt_func=functools.partial(torch.optim.SGD, momentum=0.9)
    ).fit(2)
    ax = recorder.plot_loss()
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2  # training per batch, validation per epoch
    assert list(ax.lines[1].get_xdata()) == [6, 13]
    assert len(recorder.plot_loss(skip_start=10).lines[0].get_xdata()) == 4
    assert list(recorder.plot_lr().lines[0].get_ydata()) == [0.1] * 14
    assert isinstance(recorder.plot_hyper("momentum"), Axes)
    ax = recorder.plot_loss_vs_lr(skip_last=3)
    assert ax.get_xscale() == "log"
    assert len(ax.lines[0].get_xdata()) == 11
    # drawing on given axes returns those axes
    given = recorder.plot_lr()
    assert recorder.plot_loss(ax=given) is given


def test_plot_errors():
    recorder = Recorder()
    with pytest.raises(ValueError, match="no hyper-parameter 'momentum'.*none yet"):
        recorder.plot_hyper("momentum")
    with pytest.raises(ValueError, match="skip_start"):
        recorder.plot_loss(skip_start=-1)
    # nothing recorded: empty but valid plots
    assert isinstance(recorder.plot_loss(), Axes)
    assert isinstance(recorder.plot_loss_vs_lr(), Axes)


class _LrRamp:
    """Changes the learning rate every batch, as a schedule does."""

    name = "ramp"
    order = 10

    def begin_batch(self, learner):
        if learner.in_train:
            for group in learner.opt.param_groups:
                group["lr"] = 0.01 * (learner.n_iter + 1)


def test_save_plots_writes_pngs_atomically(make_learner, tmp_path):
    recorder = Recorder()
    make_learner([recorder, _LrRamp()]).fit(1)
    paths = recorder.save_plots(tmp_path / "plots")
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 1000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(PLOT_FILES)
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in paths)


class _Boom:
    name = "boom"
    order = 50

    def after_batch(self, learner):
        if learner.in_train and learner.iter == 3:
            raise RuntimeError("boom")


def test_after_fit_saves_into_out_dir_even_when_the_fit_fails(make_learner, tmp_path):
    recorder = Recorder()
    out = tmp_path / "run"
    learner = make_learner([recorder, _Boom(), _LrRamp()], out_dir=out)
    with pytest.raises(RuntimeError, match="boom"):
        learner.fit(2)
    assert len(recorder.losses) == 4
    for name in PLOT_FILES:
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_lr_pictures_only_when_the_lr_changed(make_learner, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in PLOT_FILES:  # an earlier run's pictures
        (out / name).write_bytes(b"old")
    recorder = Recorder()
    assert recorder.lr_changed() is False
    make_learner([recorder], out_dir=out).fit(1)
    assert recorder.lr_changed() is False
    assert sorted(p.name for p in out.iterdir()) == ["loss.png"]  # stale lr pictures gone
    assert (out / "loss.png").read_bytes().startswith(PNG_MAGIC)
    make_learner([recorder, _LrRamp()], out_dir=out).fit(1)
    assert recorder.lr_changed() is True
    assert sorted(p.name for p in out.iterdir()) == sorted(PLOT_FILES)


def test_saved_pictures_say_which_run_they_are_of(make_learner, tmp_path, monkeypatch):
    from observers import plots

    titles = []
    real = plots.save_figure
    monkeypatch.setattr(
        plots, "save_figure", lambda f, p: titles.append(f.get_suptitle()) or real(f, p)
    )
    learner = make_learner([Recorder(), _LrRamp()], out_dir=tmp_path / "run")
    learner.fit(1)
    expected = f"{type(learner.model).__name__}, lr {learner.lr:.3g}, 1 epoch, {tmp_path / 'run'}"
    assert titles == [expected] * 3


def test_after_fit_writes_nothing_without_out_dir_or_when_disabled(make_learner, tmp_path):
    recorder = Recorder(save=False)
    make_learner([recorder], out_dir=tmp_path / "off").fit(1)
    assert not (tmp_path / "off").exists()
    with pytest.raises(TypeError, match="^save should be a bool, got 'yes'"):
        Recorder(save="yes")
