"""Train with the lesson's cosine schedule and plot the learning rate and momentum.

Run it with::

    lookinside demo schedules [--data digits] [--epochs 8] [--bs 32] [--sched EXPR] [--out DIR]
    python -m demos.schedules --data mnist_pkl --data-path mnist.pkl.gz --bs 512

Lesson 06 trains for 8 epochs with the learning rate following
``combine_scheds([.5,.5], [sched_cos(.2,1.), sched_cos(1.,.1)])``: a cosine warm-up
from 0.2 to 1.0 over the first half, a cosine annealing down to 0.1 over the
second. Here that is the ``schedule`` plugin with
``lr=combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])``; ``--sched`` takes any
other schedule expression (``one_cycle(0.4)`` also cycles the momentum), and
``--mom`` a momentum schedule. The schedule replaces ``--lr``.

The CNN is kaiming-initialized (the lesson's run also used ``GeneralRelu``,
reaching 0.9826 valid accuracy on MNIST with bs 512). The demo prints each
epoch's learning-rate range and valid accuracy, and writes ``schedule.png``
(the learning rate and momentum per batch, from the recorder) into ``--out``
beside the recorder's and CSV logger's files. On the embedded digits the
default batch size is 32 (45 batches per epoch); for MNIST use the lesson's
``--bs 512``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from demos.lr_find import kaiming_cnn
from engine.cli import add_training_arguments
from engine.datasets import load_data
from engine.exceptions import LookinsideError
from engine.learner import Learner
from engine.manager import load_catalog
from observers import plots
from observers.recorder import Recorder

LESSON_SCHEDULE = "combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])"
"""Lesson 06's ``combine_scheds([.5,.5], [sched_cos(.2,1.), sched_cos(1.,.1)])``."""

PLOT_FILE = "schedule.png"
"""The learning rate and momentum per batch, side by side."""


def save_schedule_plot(recorder: Recorder, path: Path) -> Path:
    """Write the recorded learning rate and momentum per batch next to each other.

    :param recorder: the recorder of the fit.
    :param path: where the PNG goes.
    """
    names = [name for name in ("lr", "momentum", "beta1") if name in recorder.hypers]
    figure = plots.new_figure((4.0 * max(len(names), 1), 3.5))
    for i, name in enumerate(names):
        recorder.plot_hyper(name, ax=figure.add_subplot(1, len(names), i + 1))
    return plots.save_figure(figure, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo schedules", description=__doc__.split("\n")[0]
    )
    add_training_arguments(parser, out="lookinside-out/schedules", epochs=8, lr=0.2, bs=32)
    parser.add_argument("--sched", default=LESSON_SCHEDULE, help="the lr schedule expression")
    parser.add_argument("--mom", default=None, help="a momentum schedule expression")
    args = parser.parse_args(argv)

    catalog = load_catalog()
    data = load_data(
        args.data,
        {name: spec.loader for name, spec in catalog.datasets.items()},
        bs=args.bs,
        seed=args.seed,
        data_dir=args.data_dir,
        data_path=args.data_path,
        download=args.download,
    )
    n_in = data.input_shape[0] if data.input_shape else 1
    model = kaiming_cnn(data.c or 10, n_in, args.seed)
    options = {"lr": args.sched} if args.mom is None else {"lr": args.sched, "mom": args.mom}
    learner = Learner(
        model,
        data,
        lr=args.lr,
        plugins=[*args.plugins, ("schedule", options), "recorder", "metrics"],
        out_dir=args.out,
        catalog=catalog,
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
        print(
            f"epoch {epoch}: lr {seen[0]:.3f} -> {seen[-1]:.3f}, valid accuracy {shown}"
        )
    if lrs:
        path = save_schedule_plot(recorder, Path(args.out) / PLOT_FILE)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
