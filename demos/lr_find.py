"""Find a learning rate with the LR finder, then train the lesson's CNN at that rate.

Run it with::

    lookinside demo lr_find [--data digits] [--epochs 3] [--bs 16] [--num-it 100] [--out DIR]
    python -m demos.lr_find --data mnist_pkl --data-path mnist.pkl.gz --bs 512 --epochs 3

The network is lesson 06's (``GeneralRelu`` and kaiming init, see
``demos/schedules.py``; with the default init the loss hardly moves during a
100-batch sweep, and no rate can be read from it). The finder
sweeps the learning rate from ``--min-lr`` to ``--max-lr`` over ``--num-it``
batches, prints its suggestions and writes ``lr_find.png`` into ``--out``; the
learner is then exactly as before the sweep, and is trained for ``--epochs`` at
the ``min/10`` suggestion (the lr at the lowest smoothed loss divided by 10: the
steepest point often sits close to where the loss explodes; ``--use steepest``
picks it instead, and ``--lr`` is used when the sweep gives no suggestion).

Last, a benchmark line: the finder's run against the same number of plain
training steps (no validation, same plugins, progress off), alternated
``--bench-runs`` times in this process; it prints the medians and the median of
the paired ratios (target <= 1.05). ``--bench-runs 0`` skips it. On MNIST use
the lesson's ``--bs 512`` (``--lr 0.4`` as the fallback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from demos.schedules import lesson_cnn
from engine.cli import add_training_arguments
from engine.cli import config_from_args
from engine.cli import data_from_args
from engine.cli import learner_from_args
from engine.data import DataBunch
from engine.exceptions import CancelTrainException
from engine.learner import Learner
from engine.manager import load_catalog
from plugins.lr_finder import PLOT_FILE
from plugins.lr_finder import lr_find


class _StopAfter:
    """Stop the fit before batch ``n`` (the plain run of the benchmark)."""

    name = "stop_after"

    def __init__(self, n: int) -> None:
        self.n = n

    def begin_batch(self, learner: Any) -> None:
        if learner.n_iter >= self.n:
            raise CancelTrainException


def benchmark(
    make_model: Callable[[], nn.Module],
    data: DataBunch,
    plugins: Sequence[Any],
    num_it: int,
    runs: int,
    **learner_options: Any,
) -> dict[str, float]:
    """Time ``lr_find`` against ``num_it`` plain training steps, ``runs`` pairs, alternating.

    The sweep goes from 1e-4 to 1 without stopping early, so both runs take
    exactly ``num_it`` steps at rates that keep the loss finite. The plain run
    is a fit of the same model with the same plugins, on the training data
    alone, cancelled before batch ``num_it``. One untimed run of each comes
    first; then each pair runs in turn finder-first and plain-first.

    :param make_model: builds the model (the same weights each call).
    :param data: the data; the plain run uses its training loader only.
    :param plugins: the plugins of both learners (progress is turned off).
    :param num_it: the number of training steps of each run.
    :param runs: the number of timed pairs.
    :param learner_options: more keyword arguments for both learners (catalog, config).
    :returns: the median seconds of each (``finder_s``, ``plain_s``) and the
        median of the paired ratios (``ratio``).
    """
    plugins = [*plugins, "no:progress"]
    finder = Learner(make_model(), data, plugins=plugins, **learner_options)
    plain = Learner(
        make_model(),
        dataclasses.replace(data, valid_dl=None),
        plugins=[*plugins, _StopAfter(num_it)],
        **learner_options,
    )
    start = {k: v.clone() for k, v in plain.model.state_dict().items()}
    epochs = -(-num_it // len(data.train_dl))  # type: ignore[arg-type]

    def run_finder() -> float:
        begin = time.perf_counter()
        lr_find(finder, 1e-4, 1.0, num_it, stop_div=False)
        return time.perf_counter() - begin

    def run_plain() -> float:
        plain.model.load_state_dict(start)
        plain.opt = None  # a fresh optimizer, as the finder's learner gets
        begin = time.perf_counter()
        plain.fit(epochs)
        return time.perf_counter() - begin

    pairs: list[tuple[float, float]] = []
    with contextlib.redirect_stdout(io.StringIO()):
        run_finder()
        run_plain()
        for i in range(runs):
            if i % 2:
                plain_s = run_plain()
                pairs.append((run_finder(), plain_s))
            else:
                pairs.append((run_finder(), run_plain()))
    return {
        "finder_s": statistics.median(f for f, _ in pairs),
        "plain_s": statistics.median(p for _, p in pairs),
        "ratio": statistics.median(f / p for f, p in pairs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo lr_find", description=__doc__.split("\n")[0]
    )
    add_training_arguments(parser, out="lookinside-out/lr_find", epochs=3, lr=0.2, bs=16)
    parser.add_argument("--min-lr", type=float, default=1e-7, help="first lr of the sweep")
    parser.add_argument("--max-lr", type=float, default=10.0, help="last lr of the sweep")
    parser.add_argument("--num-it", type=int, default=100, help="batches of the sweep")
    parser.add_argument(
        "--use",
        choices=("min/10", "steepest", "valley"),
        default="min/10",
        help="suggestion to train at",
    )
    parser.add_argument("--bench-runs", type=int, default=5, help="benchmark runs (0: skip)")
    args = parser.parse_args(argv)

    catalog = load_catalog()
    data = data_from_args(args, catalog)
    n_in = data.input_shape[0] if data.input_shape else 1

    def make_model() -> nn.Module:
        return lesson_cnn(data.c or 10, n_in, args.seed)

    config = config_from_args(args)
    args.catalog = catalog
    learner = learner_from_args(args, make_model(), data)
    result = lr_find(learner, args.min_lr, args.max_lr, args.num_it)
    print(result)
    path = result.save_plot(Path(args.out) / PLOT_FILE)
    print(f"wrote {path}")

    lr = result.suggestions.get(args.use, args.lr)
    source = args.use if args.use in result.suggestions else "--lr"
    print(f"training {args.epochs} epochs at lr {lr:.3g} ({source})")
    learner.fit(args.epochs, lr=lr)
    accuracy = learner.log.get("valid_accuracy")
    if accuracy is not None:
        print(f"valid accuracy after {args.epochs} epochs at lr {lr:.3g}: {accuracy:.4f}")

    if args.bench_runs > 0:
        found = benchmark(
            make_model,
            data,
            args.plugins,
            args.num_it,
            args.bench_runs,
            catalog=catalog,
            config=config,
        )
        print(
            f"benchmark ({args.bench_runs} runs, {args.num_it} steps, bs {args.bs}): lr_find "
            f"{found['finder_s']:.3f} s, plain steps {found['plain_s']:.3f} s, "
            f"ratio {found['ratio']:.3f} (target <= 1.05)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
