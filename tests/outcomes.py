"""Claims about trained outcomes, each a measurement of one seed and the bound it must meet.

A test that asserts what training reaches (an accuracy, a loss that falls, "A beats
B") is only as good as its bound: too tight and it fails on another seed, thread
count or torch release (the resolver has picked 2.14 and 2.15); too loose and it
cannot fail. So each such claim lives here once, as a :class:`Claim`: the tests
check it at seed 0, and ``python -m tests.spread`` measures it over many seeds at
1 and 2 threads and prints the spread next to the bound. Each bound's comment says
what was measured when it was set, and how much margin it leaves.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Claim:
    """``measure(seed)`` must stay above (or below) ``bound`` on every seed.

    :param name: how the spread script and failure messages call it.
    :param measure: trains (or fits) with ``seed`` and returns the measured value.
    :param bound: the limit, set from the measured spread with a margin.
    :param above: the claim is ``value > bound``; otherwise ``value < bound``.
    """

    name: str
    measure: Callable[[int], float]
    bound: float
    above: bool = True

    def holds(self, value: float) -> bool:
        return value > self.bound if self.above else value < self.bound

    def describe(self, value: float) -> str:
        sign = ">" if self.above else "<"
        return f"{self.name}: measured {value:.4g}, claim {sign} {self.bound:g}"

    def check(self, seed: int = 0) -> float:
        """Measure at ``seed`` and fail with the value and the bound if the claim breaks."""
        value = self.measure(seed)
        if not self.holds(value):
            raise AssertionError(
                f"{self.describe(value)} (seed {seed}, {torch.get_num_threads()} thread(s), "
                f"torch {torch.__version__}); `python -m tests.spread` shows the spread"
            )
        return value


# RunningBatchNorm vs BatchNorm at batch size 2 (the lesson's small-batch failure)


@functools.lru_cache(maxsize=64)
def _digits_accuracy_at_bs2(norm: str, seed: int, threads: int) -> float:
    """A small CNN with ``norm`` trained on 400 digits at bs 2 for one epoch; valid accuracy.

    ``threads`` is part of the cache key only: results differ by thread count.
    """
    from engine.datasets import digits
    from engine.nn import cnn
    from engine.nn import conv_norm_layer
    from engine.nn import init_cnn

    data = digits(bs=2)
    x_train = data.train_dl.x.view(-1, 1, 8, 8)[:400]  # type: ignore[attr-defined]
    y_train = data.train_dl.y[:400]  # type: ignore[attr-defined]
    x_valid = data.valid_dl.x.view(-1, 1, 8, 8)  # type: ignore[union-attr]
    y_valid = data.valid_dl.y  # type: ignore[union-attr]
    torch.manual_seed(seed)
    model = init_cnn(cnn(channels=(8, 16, 32), layer=conv_norm_layer(norm)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    order = torch.randperm(400, generator=torch.Generator().manual_seed(seed))
    for start in range(0, 400, 2):
        idx = order[start : start + 2]
        F.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        return float((model(x_valid).argmax(1) == y_valid).float().mean())


def running_batchnorm_at_bs2(seed: int) -> float:
    return _digits_accuracy_at_bs2("running_batch", seed, torch.get_num_threads())


def running_minus_batchnorm_at_bs2(seed: int) -> float:
    threads = torch.get_num_threads()
    running = _digits_accuracy_at_bs2("running_batch", seed, threads)
    return running - _digits_accuracy_at_bs2("batch", seed, threads)


RUNNING_BATCHNORM_TRAINS_AT_BS2 = Claim(
    "RunningBatchNorm valid accuracy at bs 2",
    running_batchnorm_at_bs2,
    # measured 0.600-0.889, median 0.83 (seeds 0-19 x 1, 2 threads x torch 2.14.1,
    # 2.15.0, identical on both); chance is 0.1
    bound=0.5,
)
RUNNING_BATCHNORM_BEATS_BATCHNORM_AT_BS2 = Claim(
    "RunningBatchNorm minus BatchNorm valid accuracy at bs 2",
    running_minus_batchnorm_at_bs2,
    # BatchNorm alone spreads 0.09-0.42 by seed and thread count (0.411 vs 0.319 at
    # seed 0, 1 vs 2 threads), too wide for an absolute bound: the lesson's point is
    # the gap, measured 0.256-0.750, median 0.54 (same runs as above)
    bound=0.15,
)


# the command line's default fit on digits (the README's promise)


def cli_fit_on_digits(seed: int) -> float:
    """``lookinside fit --seed SEED``'s last valid accuracy, run in this process."""
    from engine.cli import main

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(["fit", "--seed", str(seed), "--out", str(out), "-p", "no:progress"])
        if status != 0:
            raise RuntimeError(f"lookinside fit --seed {seed} exited {status}")
        with open(out / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    return float(rows[-1]["valid_accuracy"])


CLI_FIT_ON_DIGITS = Claim(
    "lookinside fit (defaults) last valid accuracy on digits",
    cli_fit_on_digits,
    # measured 0.914-0.969 at 1 thread, 0.864-0.978 at 2 (one seed in 20 dips on its
    # last epoch at lr 0.2), median 0.955, identical on torch 2.14.1 and 2.15.0
    bound=0.80,
)


# a linear model on the observer tests' small problem: the loss falls


def linear_loss_drop(seed: int) -> float:
    """First epoch's train loss minus the third's, for a linear model at lr 0.1."""
    from engine.data import DataBunch
    from engine.learner import Learner
    from observers.metrics import Metrics

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(80, 4, generator=gen)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    data = DataBunch.from_tensors(x[:50], y[:50], x[50:], y[50:], bs=8, seed=seed)
    torch.manual_seed(seed)
    metrics = Metrics()
    Learner(nn.Linear(4, 3), data, lr=0.1, plugins=[metrics], defaults=False).fit(3)
    return float(metrics.history[0]["train_loss"] - metrics.history[-1]["train_loss"])


LINEAR_LOSS_FALLS = Claim(
    "linear model train loss, epoch 0 minus epoch 2",
    linear_loss_drop,
    # measured 0.177-0.515 (1 and 2 threads, torch 2.14.1 and 2.15.0): any fall is the claim
    bound=0.0,
)


# the automatic gradient histogram range is gradient-sized


def automatic_gradient_range(seed: int) -> float:
    """The top of the first layer's automatic gradient range after one epoch of a small CNN."""
    from engine.data import DataBunch
    from engine.learner import Learner
    from engine.nn import cnn
    from observers.activation_stats import ActivationStats

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 1, 8, 8, generator=gen)
    y = torch.randint(0, 3, (64,), generator=gen)
    torch.manual_seed(seed)
    model = cnn(n_out=3, channels=(4, 8))
    stats = ActivationStats(grads=True, range_min=-7.0, range_max=7.0, report=False, save=False)
    data = DataBunch.from_tensors(x[:48], y[:48], bs=16)
    Learner(model, data, lr=0.3, plugins=[stats], defaults=False).fit(1)
    assert stats.grad_data is not None
    return float(stats.grad_data.ranges[0][1])


GRADIENT_RANGE_IS_SMALL = Claim(
    "automatic gradient range (first layer)",
    automatic_gradient_range,
    # measured 0.0016-0.0034 (1 and 2 threads, torch 2.14.1 and 2.15.0); the
    # activations' fixed range is 7
    bound=0.1,
    above=False,
)


# the lesson notebooks' results (demos/notebooks, run by tests/demos/test_notebooks.py);
# each measure repeats the notebook's training code on the digits, which the notebook
# runs on one thread


def look_inside_notebook_accuracy(seed: int) -> float:
    """look_inside.ipynb's last step: GeneralRelu + init_cnn, bs 64, lr 0.6, 4 epochs."""
    from demos.look_inside import general_relu
    from engine.datasets import digits
    from engine.learner import Learner

    data = digits(bs=64, seed=seed)
    torch.manual_seed(seed)
    learner = Learner(general_relu(10, 1), data, lr=0.6, plugins=["no:progress", "no:csv_logger"])
    learner.fit(4)
    return float(learner.log["valid_accuracy"])


@functools.lru_cache(maxsize=64)
def _normalization_notebook_at_bs2(key: str, seed: int, threads: int) -> float:
    """normalization.ipynb at bs 2: norm ``key`` on the first 400 digits, lr 0.05, 1 epoch.

    ``threads`` is part of the cache key only: results differ by thread count.
    """
    from demos.batchnorm import VARIANTS
    from demos.batchnorm import fit_one
    from engine.data import DataBunch
    from engine.data import TensorLoader
    from engine.datasets import digits

    data = digits(bs=2, seed=seed)
    x, y = data.train_dl.x[:400], data.train_dl.y[:400]  # type: ignore[attr-defined]
    train = TensorLoader(x, y, 2, shuffle=True, seed=seed, drop_last=True)
    small = DataBunch(train, data.valid_dl, data.c, data.input_shape, data.name)
    return fit_one(VARIANTS[key], small, 0.05, 1, seed, []).accuracy


def normalization_notebook_running_at_bs2(seed: int) -> float:
    return _normalization_notebook_at_bs2("running_batch", seed, torch.get_num_threads())


def normalization_notebook_running_minus_batch_at_bs2(seed: int) -> float:
    threads = torch.get_num_threads()
    running = _normalization_notebook_at_bs2("running_batch", seed, threads)
    return running - _normalization_notebook_at_bs2("batch", seed, threads)


LOOK_INSIDE_NOTEBOOK = Claim(
    "look_inside.ipynb GeneralRelu valid accuracy",
    look_inside_notebook_accuracy,
    # measured 0.808-0.972, median 0.939 (seeds 0-19 x 1, 2 threads, torch 2.14.1; the
    # thread counts differ on 3 seeds, by at most 5 of the 360 images); chance is 0.1
    bound=0.70,
)
NORMALIZATION_NOTEBOOK_FIX = Claim(
    "normalization.ipynb RunningBatchNorm valid accuracy at bs 2",
    normalization_notebook_running_at_bs2,
    # measured 0.378-0.783, median 0.650 at 1 thread, 0.614-0.794, median 0.704 at 2
    # (seeds 0-19, torch 2.14.1): 200 steps of 2 images are noisy; chance is 0.1
    bound=0.25,
)
NORMALIZATION_NOTEBOOK_FAILURE = Claim(
    "normalization.ipynb RunningBatchNorm minus BatchNorm at bs 2",
    normalization_notebook_running_minus_batch_at_bs2,
    # BatchNorm alone measured 0.069-0.292; the gap 0.164-0.714, median 0.476 at 1 thread,
    # 0.375-0.650, median 0.565 at 2 (seeds 0-19, torch 2.14.1)
    bound=0.05,
)


# the LR finder's valley on digits is a rate the model trains at (the issue: check by training)


def lr_find_valley_trains(seed: int) -> float:
    """Sweep kaiming + GeneralRelu + BatchNorm's CNN on digits (as ``lookinside lr-find
    --init kaiming --act general_relu --norm batch``), then train one epoch at the
    suggested valley; the valid accuracy (0 when there is no suggestion)."""
    from engine.datasets import digits
    from engine.learner import Learner
    from engine.nn.build import build_model

    data = digits(bs=16, seed=seed)
    torch.manual_seed(seed)
    model = build_model("cnn", data, act="general_relu", init="kaiming", norm="batch")
    learner = Learner(model, data, plugins=["no:progress", "no:recorder", "no:csv_logger"])
    valley = learner.lr_find().suggestions.get("valley")
    if valley is None:
        return 0.0
    learner.fit(1, lr=valley)
    return float(learner.log["valid_accuracy"])


LR_FIND_VALLEY_TRAINS = Claim(
    "one epoch at lr_find's valley on digits (kaiming, GeneralRelu, BatchNorm)",
    lr_find_valley_trains,
    # measured 0.853-0.944 at 1 thread, 0.814-0.944 at 2 (seeds 0-7, valleys 0.015-0.095;
    # identical on torch 2.14.1 and 2.15.0);
    # the sweep's suggestion is fragile only where the loss barely falls; chance is 0.1
    bound=0.70,
)


CLAIMS: tuple[Claim, ...] = (
    RUNNING_BATCHNORM_TRAINS_AT_BS2,
    RUNNING_BATCHNORM_BEATS_BATCHNORM_AT_BS2,
    CLI_FIT_ON_DIGITS,
    LINEAR_LOSS_FALLS,
    GRADIENT_RANGE_IS_SMALL,
    LOOK_INSIDE_NOTEBOOK,
    NORMALIZATION_NOTEBOOK_FIX,
    NORMALIZATION_NOTEBOOK_FAILURE,
    LR_FIND_VALLEY_TRAINS,
)
"""Every trained-outcome claim of the suite, in the order the spread script prints them."""
