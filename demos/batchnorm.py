"""Compare normalization layers at batch sizes 512, 32 and 2: notebook 07's table.

Run it with::

    lookinside demo batchnorm [--bs-list 512,32,2] [--norms none,batch,...] [--epochs N]
    python -m demos.batchnorm --data mnist_pkl --data-path mnist.pkl.gz
    python -m demos.batchnorm --data mnist --data-dir data --bs-list 512,2

The same network, notebook 07's CNN of widths ``[8, 16, 32, 64, 64]``
(``engine.nn.cnn_07``, ReLU, conv -> activation -> norm, kaiming init), is
trained with each normalization: none, our ``BatchNorm``, torch's
``nn.BatchNorm2d``, ``LayerNorm``, ``InstanceNorm`` (the lesson's eps 1.0),
``nn.GroupNorm`` (4 groups) and ``RunningBatchNorm``, at each batch size, with plain
SGD at the lesson's learning rates: no norm 0.4, batch norms 1.0, LayerNorm 0.8,
InstanceNorm 0.1, RunningBatchNorm 1.0 (its bs-32 schedule starts there), GroupNorm
0.4 (not in the lesson); every row at bs 2 uses 0.4 on MNIST, as the lesson's bs-2
runs do, and 0.05 on the digits, where 0.4 makes every row diverge. ``--lr`` sets
one rate for all. The training loader drops its last, smaller batch: a batch of one
sample with 1x1 feature maps cannot be batch-normalized. Validation runs at the
lesson's batch of 1024.

It prints one table of valid accuracy and seconds per fit and writes it to
``batchnorm.md``, and the accuracies as grouped bars to ``batchnorm.png``, in
``--out``. Next to ours it prints the lesson's published MNIST accuracy where
there is one.

Epochs: on MNIST (``--data mnist`` / ``mnist_pkl``) the lesson's, 2 epochs with no
norm and 3 with a norm at bs 512, 1 epoch at bs 32 and bs 2. The embedded digits
(1,437 training images of 8x8, the last layers' feature maps 1x1) are not MNIST:
at bs 512 an epoch is only 2 steps, so the default there is 40 epochs at bs 512,
4 at bs 32 and 1 at bs 2 (80, 176 and 718 steps); the numbers are ours, not the
lesson's. ``--subset N`` trains on the first N training images, to bound bs 2.
InstanceNorm cannot classify with this network, on MNIST too: the last layers'
feature maps are 1x1, where normalizing each sample's channel over its pixels
leaves only the learned shift. On the digits LayerNorm diverges (NaN loss) at the
lesson's 0.8 and trains at 0.4 (``--norms layer --lr 0.4``).
The tiny digits models run fastest on one thread, which is the default there
(``--threads`` changes it); the seconds are one fit each, so they move with the
load of the machine.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from matplotlib.axes import Axes
from torch import nn

from engine.atomic_write import atomic_write
from engine.cli import add_training_arguments
from engine.cli import config_from_args
from engine.cli import data_from_args
from engine.data import DataBunch
from engine.data import TensorLoader
from engine.learner import Learner
from engine.manager import load_catalog
from engine.nn import InstanceNorm
from engine.nn import NormSpec
from engine.nn import cnn_07
from engine.nn import init_cnn
from engine.notebook import not_shown
from observers.plots import axes_or_new
from observers.plots import new_figure
from observers.plots import save_figure

SMALL_BATCH = 2
"""At or below this batch size every row trains at one small-batch rate."""
SMALL_BATCH_LR = 0.4
"""The lesson's learning rate for its bs-2 runs (``nn.BatchNorm2d`` and RunningBatchNorm)."""
SMALL_BATCH_LR_DIGITS = 0.05
"""The small-batch rate on the digits: at 0.4 every row diverges there (0.11-0.28)."""


@dataclass(frozen=True)
class Variant:
    """One row of the table: a normalization and the lesson's learning rate for it."""

    key: str
    label: str
    norm: NormSpec
    lr: float


VARIANTS = {
    v.key: v
    for v in (
        Variant("none", "no norm", None, 0.4),
        Variant("batch", "BatchNorm (ours)", "batch", 1.0),
        Variant("torch_batch", "nn.BatchNorm2d", "torch_batch", 1.0),
        Variant("layer", "LayerNorm", "layer", 0.8),
        Variant("instance", "InstanceNorm (eps 1)", partial(InstanceNorm, eps=1.0), 0.1),
        Variant("group", "GroupNorm (4 groups)", "group", 0.4),
        Variant("running_batch", "RunningBatchNorm", "running_batch", 1.0),
    )
}
"""The rows, by the key ``--norms`` takes."""

LESSON_MNIST = {
    ("none", 512): "0.9698",
    ("batch", 512): "0.9707",
    ("torch_batch", 512): "0.9813",
    ("layer", 512): "NaN*",
    ("instance", 512): "NaN*",
    ("torch_batch", 2): "0.2604",
    ("running_batch", 2): "0.9730",
    ("running_batch", 32): "0.9818+",
}
"""The lesson's published MNIST valid accuracies (* before its variance fix, + with a
``lin(1., .2)`` learning-rate schedule)."""

VALID_BS = 1024
"""The lesson's validation batch size (eval mode: it changes the speed, not the results)."""

DIGITS_EPOCHS = {512: 40, 32: 4, 2: 1}
"""Default epochs on the small digits set, by batch size (others: about 100 steps)."""


def lesson_epochs(key: str, bs: int) -> int:
    """The lesson's epochs on MNIST: 2 (no norm) or 3 at bs 512, 1 at smaller batches.

    :param key: the row's key in :data:`VARIANTS`.
    :param bs: the batch size.
    """
    if bs < 512:
        return 1
    return 2 if key == "none" else 3


def digits_epochs(bs: int, n_train: int) -> int:
    """Default epochs on a small dataset: :data:`DIGITS_EPOCHS`, else ~100 steps.

    :param bs: the batch size.
    :param n_train: the training samples.
    """
    if bs in DIGITS_EPOCHS:
        return DIGITS_EPOCHS[bs]
    return max(1, math.ceil(100 / max(1, n_train // bs)))


@dataclass
class Result:
    """One fit: the final valid accuracy and loss, and the wall time of the fit."""

    key: str
    bs: int
    lr: float
    epochs: int
    accuracy: float
    loss: float
    seconds: float


def _int_list(text: str) -> list[int]:
    try:
        values = [int(piece) for piece in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 512,32,2, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _norm_list(text: str) -> list[str]:
    keys = [piece.strip() for piece in text.split(",") if piece.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown norms {unknown or text!r}; choose from {','.join(VARIANTS)}"
        )
    return keys


def _subset(data: DataBunch, subset: int | None) -> DataBunch:
    """``data`` with its last short training batch dropped (maybe cut), validated at 1024."""
    train = data.train_dl
    if not isinstance(train, TensorLoader):
        raise TypeError(
            f"the batchnorm demo needs in-memory data (a TensorLoader), got {type(train).__name__}"
        )
    n = len(train.x) if subset is None else min(subset, len(train.x))
    loader = TensorLoader(
        train.x[:n], train.y[:n], train.bs, shuffle=True, seed=train.seed, drop_last=True
    )
    valid = data.valid_dl
    if isinstance(valid, TensorLoader):
        valid = TensorLoader(valid.x, valid.y, VALID_BS)
    return DataBunch(loader, valid, data.c, data.input_shape, data.name)


def fit_one(
    variant: Variant,
    data: DataBunch,
    lr: float,
    epochs: int,
    seed: int,
    plugins: Sequence[str],
    **learner_options: Any,
) -> Result:
    """Train notebook 07's CNN with ``variant``'s norm; return its final metrics.

    :param variant: the normalization.
    :param data: the loaders; the batch size is the training loader's.
    :param lr: the learning rate.
    :param epochs: the epochs.
    :param seed: seeds the initial weights.
    :param plugins: more plugin requests for the Learner.
    :param learner_options: more keyword arguments for the Learner (catalog, config).
    """
    torch.manual_seed(seed)
    model: nn.Module = init_cnn(cnn_07(variant.norm, n_out=data.c or 10))
    quiet = ["no:progress", "no:recorder", "no:csv_logger"]
    learner = Learner(model, data, lr=lr, plugins=[*quiet, *plugins], **learner_options)
    start = time.perf_counter()
    learner.fit(epochs)
    seconds = time.perf_counter() - start
    log = learner.log
    bs = getattr(data.train_dl, "bs", 0)
    return Result(
        variant.key,
        bs,
        lr,
        epochs,
        float(log.get("valid_accuracy", math.nan)),
        float(log.get("valid_loss", math.nan)),
        seconds,
    )


def table(results: Sequence[Result], lesson: bool) -> str:
    """The results as a Markdown table, one row per fit.

    :param results: the fits, in order.
    :param lesson: add the lesson's published MNIST accuracy as a column.
    """
    head = "| norm | bs | lr | epochs | valid acc | valid loss | seconds |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if lesson:
        head += " lesson (MNIST) |"
        rule += "---:|"
    lines = [head, rule]
    for r in results:
        line = (
            f"| {VARIANTS[r.key].label} | {r.bs} | {r.lr:g} | {r.epochs} | {r.accuracy:.4f} "
            f"| {r.loss:.4g} | {r.seconds:.1f} |"
        )
        if lesson:
            line += f" {LESSON_MNIST.get((r.key, r.bs), '-')} |"
        lines.append(line)
    return "\n".join(lines)


def plot_accuracies(results: Sequence[Result], ax: Axes | None = None) -> Axes:
    """Grouped bars: valid accuracy per batch size (groups) and norm (bars).

    :param results: the fits.
    :param ax: the Axes to draw on; a new headless figure's when None.
    """
    ax = axes_or_new(ax)
    sizes = sorted({r.bs for r in results}, reverse=True)
    keys = [k for k in VARIANTS if any(r.key == k for r in results)]
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        by_bs = {r.bs: r.accuracy for r in results if r.key == key}
        xs = [g + (i - (len(keys) - 1) / 2) * width for g in range(len(sizes))]
        ys = [by_bs.get(bs, math.nan) for bs in sizes]
        ax.bar(xs, [0.0 if math.isnan(y) else y for y in ys], width, label=VARIANTS[key].label)
    ax.set_xticks(range(len(sizes)), [f"bs {bs}" for bs in sizes])
    ax.set_ylabel("valid accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("valid accuracy by normalization and batch size")
    ax.legend(fontsize="small", ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    return ax


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in UTF-8, atomically (see :mod:`engine.atomic_write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    atomic_write(path, lambda file: file.write(data))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookinside demo batchnorm", description=(__doc__ or "").split("\n")[0]
    )
    add_training_arguments(parser, out="lookinside-out/batchnorm", epochs=1, lr=0.4, bs=512)
    # None: the per-row defaults described in the module docstring.
    parser.set_defaults(epochs=None, lr=None, bs=None)
    parser.add_argument(
        "--bs-list",
        type=_int_list,
        default=[512, 32, 2],
        help="batch sizes to compare (default 512,32,2); --bs N runs only N",
    )
    parser.add_argument(
        "--norms",
        type=_norm_list,
        default=list(VARIANTS),
        help=f"rows to run (default all: {','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--subset", type=int, default=None, help="train on the first N training images only"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads during the fits (default: 1 on digits, torch's own otherwise)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for option in ("subset", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise SystemExit(f"--{option} should be a positive integer, got {value}")
    mnist = args.data != "digits"
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or (threads if mnist else 1))
    try:
        return _run(args, mnist)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, mnist: bool) -> int:
    """Fit every row, print the table, write the Markdown and the plot."""
    sizes: list[int] = [args.bs] if args.bs is not None else args.bs_list
    small_lr = SMALL_BATCH_LR if mnist else SMALL_BATCH_LR_DIGITS
    catalog = load_catalog()
    config = config_from_args(args)
    results: list[Result] = []
    print(f"norm{'':<18} {'bs':>4} {'lr':>4} {'epochs':>6} {'valid acc':>9} {'seconds':>8}")
    for bs in sizes:
        data = data_from_args(args, catalog, bs=bs)
        data = _subset(data, args.subset)
        n_train = len(data.train_dl.x)  # type: ignore[attr-defined]
        for key in args.norms:
            variant = VARIANTS[key]
            lr = args.lr or (small_lr if bs <= SMALL_BATCH else variant.lr)
            if args.epochs is not None:
                epochs = args.epochs
            else:
                epochs = lesson_epochs(key, bs) if mnist else digits_epochs(bs, n_train)
            result = fit_one(
                variant, data, lr, epochs, args.seed, args.plugins, catalog=catalog, config=config
            )
            results.append(result)
            print(
                f"{variant.label:<22} {bs:>4} {lr:>4g} {epochs:>6} {result.accuracy:>9.4f} "
                f"{result.seconds:>8.1f}"
            )
    out = Path(args.out)
    text = table(results, lesson=True)
    note = (
        "The lesson column is the lesson's published MNIST accuracy "
        "(* NaN loss, recorded before its variance fix; + with a lin(1., .2) lr schedule)."
    )
    if args.data not in ("mnist", "mnist_pkl"):
        note += f" Ours are on {args.data}, not MNIST: compare the rows, not the numbers."
    _write_text(
        out / "batchnorm.md", f"# Normalization at batch sizes {sizes}\n\n{text}\n\n{note}\n"
    )
    with not_shown():  # drawn for the file only, not for a notebook's output
        figure = new_figure((8.0, 4.0))
        plot_accuracies(results, figure.add_subplot())
    save_figure(figure, out / "batchnorm.png")
    print()
    print(text)
    print(note)
    print(f"wrote batchnorm.md and batchnorm.png to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
