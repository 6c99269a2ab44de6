"""Train with the lesson's cosine schedule and plot the learning rate and momentum.

Run it with::

    lookinside demo schedules [--data digits] [--epochs 8] [--bs 32] [--sched EXPR] [--out DIR]
    python -m demos.schedules --data mnist_pkl --data-path mnist.pkl.gz --bs 512

Lesson 06 trains for 8 epochs with the learning rate following
``combine_scheds([.5,.5], [sched_cos(.2,1.), sched_cos(1.,.1)])``: a cosine warm-up
from 0.2 to 1.0 over the first half, a cosine annealing down to 0.1 over the
second. Here that is the ``schedule`` plugin with the same shape scaled to a peak
``P``: ``lr=combine([0.5,0.5],[cos(0.2P,P),cos(P,0.1P)])``. ``--peak`` sets
``P``: by default the lesson's 1.0 on MNIST (``--bs 512``), and 0.3 on the
embedded digits, whose small batches (default 32, 45 per epoch) do not survive a
rate of 1.0 (valid accuracy falls to chance, 0.11, by epoch 3). ``--sched`` takes
any other schedule expression instead (``one_cycle(0.4)`` also cycles the
momentum), ``--mom`` a momentum schedule. The schedule replaces ``--lr``.

The network is the lesson's: the CNN ``[8,16,32,32]`` with ``GeneralRelu(.1,.4,6)``
and kaiming init (``init_cnn``), which reached 0.9826 valid accuracy on MNIST with
this schedule. The demo prints each epoch's learning-rate range and valid
accuracy, and writes ``schedule.png`` (the learning rate and momentum per batch,
from the recorder) into ``--out`` beside the recorder's and CSV logger's files.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from engine.cli import add_training_arguments
from engine.cli import data_from_args
from engine.cli import learner_from_args
from engine.exceptions import LookinsideError
from engine.manager import load_catalog
from engine.nn import GeneralRelu
from engine.nn import cnn
from engine.nn import conv_norm_layer
from engine.nn import init_cnn
from engine.notebook import not_shown
from observers import plots
from observers.recorder import Recorder

LESSON_PEAK = 1.0
"""The peak of lesson 06's ``combine_scheds([.5,.5], [sched_cos(.2,1.), sched_cos(1.,.1)])``."""

DIGITS_PEAK = 0.3
"""The peak used on the embedded digits (0.9833 valid accuracy after 8 epochs at bs 32)."""


def lesson_schedule(peak: float = LESSON_PEAK) -> str:
    """Lesson 06's schedule with its peak at ``peak``, as an expression for the plugin.

    >>> lesson_schedule()
    'combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])'

    :param peak: the highest learning rate, reached halfway.
    """
    low, high, end = (round(v, 12) for v in (0.2 * peak, peak, 0.1 * peak))
    return f"combine([0.5,0.5],[cos({low},{high}),cos({high},{end})])"


PLOT_FILE = "schedule.png"
"""The learning rate and momentum per batch, side by side."""


def lesson_cnn(n_out: int = 10, n_in: int = 1, seed: int = 0) -> nn.Module:
    """Lesson 06's network: the CNN with ``GeneralRelu(0.1, 0.4, 6)``, kaiming init at ``a=0.1``.

    :param n_out: the number of classes.
    :param n_in: the channels of the input images.
    :param seed: seeds torch's generator before the weights are drawn.
    """
    torch.manual_seed(seed)
    act = functools.partial(GeneralRelu, leak=0.1, sub=0.4, maxv=6.0)
    return init_cnn(cnn(n_out=n_out, n_in=n_in, layer=conv_norm_layer(None, act)), a=0.1)


def save_schedule_plot(recorder: Recorder, path: Path) -> Path:
    """Write the recorded learning rate and momentum per batch next to each other.

    :param recorder: the recorder of the fit.
    :param path: where the PNG goes.
    """
    names = [name for name in ("lr", "momentum", "beta1") if name in recorder.hypers]
    with not_shown():  # drawn for the file only, not for a notebook's output
        figure = plots.new_figure((4.0 * max(len(names), 1), 3.5))
        for i, name in enumerate(names):
            recorder.plot_hyper(name, ax=figure.add_subplot(1, len(names), i + 1))
    return plots.save_figure(figure, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo schedules", description=__doc__.split("\n")[0]
    )
    add_training_arguments(parser, out="lookinside-out/schedules", epochs=8, lr=0.2, bs=32)
    parser.add_argument(
        "--peak",
        type=float,
        default=None,
        help="the lesson schedule's peak lr (1.0 MNIST, 0.3 digits)",
    )
    parser.add_argument("--sched", default=None, help="an lr schedule expression instead")
    parser.add_argument("--mom", default=None, help="a momentum schedule expression")
    args = parser.parse_args(argv)

    catalog = load_catalog()
    data = data_from_args(args, catalog)
    n_in = data.input_shape[0] if data.input_shape else 1
    model = lesson_cnn(data.c or 10, n_in, args.seed)
    peak = args.peak
    if peak is None:
        peak = DIGITS_PEAK if data.name == "digits" else LESSON_PEAK
    sched = args.sched or lesson_schedule(peak)
    options = {"lr": sched} if args.mom is None else {"lr": sched, "mom": args.mom}
    args.catalog = catalog
    learner = learner_from_args(
        args, model, data, plugins=[*args.plugins, ("schedule", options), "recorder", "metrics"]
    )
    print(f"schedule: {learner.plugins['schedule']!r} over {args.epochs} epochs")
    learner.fit(args.epochs)

    recorder = learner.plugins["recorder"]
    metrics = learner.plugins["metrics"]
    if not isinstance(recorder, Recorder):
        raise LookinsideError("demo schedules needs the recorder plugin")
    lrs = recorder.lrs[0] if recorder.lrs else []
    per_epoch = len(lrs) // max(args.epochs, 1)
    for row in getattr(metrics, "history", []):
        epoch = row["epoch"]
        seen = lrs[epoch * per_epoch : (epoch + 1) * per_epoch] or [float("nan")]
        accuracy = row.get("valid_accuracy")
        shown = "-" if accuracy is None else f"{accuracy:.4f}"
        print(f"epoch {epoch}: lr {seen[0]:.3f} -> {seen[-1]:.3f}, valid accuracy {shown}")
    if lrs:
        path = save_schedule_plot(recorder, Path(args.out) / PLOT_FILE)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
