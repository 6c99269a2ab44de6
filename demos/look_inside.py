"""Look inside the model while it trains: notebook 06, step by step.

Run it with::

    lookinside demo look_inside [--steps plain,kaiming,general_relu] [--epochs 4] [--lr 0.6]
    python -m demos.look_inside --data mnist --data-dir data --bs 512 --lr 0.9 --epochs 2

The same CNN of widths ``[8, 16, 32, 32]`` is trained three times, each time with
the ``activation_stats`` observer on its four convolutional layers (conv + ReLU,
the lesson's "first four layers"):

1. ``plain``: torch's default initialization at a high learning rate. The deeper
   the layer, the smaller its activations at the start (the diagnosis's starting
   std ratio); training pushes them up exponentially until they crash
   (``means_stds_first10.png``, ``means_stds.png``), and it learns little;
2. ``kaiming``: the same with kaiming normal initialization (``init_cnn``): the
   scale is kept through depth from the start and it learns; but the histograms
   (``color_dim.png``) and the near-zero fraction (``near_zero.png``) show most
   activations stuck at 0: dead ReLUs;
3. ``general_relu``: ``GeneralRelu(leak=0.1, sub=0.4, maxv=6)`` with
   ``init_cnn(a=0.1)``: few activations wasted, the histograms spread out, the
   best accuracy.

Each step trains from the same seed on the same batches (the data is loaded anew
for each). Its pictures and ``diagnosis.md`` go into ``--out/STEP/activations``;
the demo prints each step's diagnosis, then one table of every layer's
near-zero fraction late in training (the lesson's "dead" measure) and the valid
accuracy of each step, and draws the steps side by side in ``look_inside.png``:
each step's layer stds over training above its last layer's colorful dimension,
the lesson's story in one picture.

The lesson trains on MNIST at bs 512 and lr 0.9 (hooks with kaiming init: 2
epochs, 0.9572 valid accuracy; GeneralRelu with init_cnn: 1 epoch, 0.9572),
after the plain CNN at lr 0.4 (3 epochs, 0.9606). The embedded digits (1,437 8x8
training images) are not MNIST: there the defaults are bs 64, lr 0.6 and 4
epochs (92 steps per fit; at bs 32 and lr 0.9 the GeneralRelu network
diverges), and the same pictures appear in seconds.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn

from engine.cli import add_training_arguments
from engine.cli import data_from_args
from engine.cli import learner_from_args
from engine.data import DataBunch
from engine.manager import load_catalog
from engine.nn import GeneralRelu
from engine.nn import cnn
from engine.nn import conv_norm_layer
from engine.nn import init_cnn
from engine.notebook import not_shown
from observers.activation_data import ActivationData
from observers.activation_plots import compare_figure
from observers.activation_stats import ActivationStats
from observers.diagnosis import Diagnosis
from observers.plots import save_figure

STORY_FILE = "look_inside.png"
"""The steps side by side (:func:`observers.activation_plots.compare_figure`), in ``--out``."""

CHANNELS = (8, 16, 32, 32)
"""The convolutions' widths of notebook 06's CNN."""

CONV_LAYERS = tuple(str(i) for i in range(len(CHANNELS)))
"""The names of the convolutional layers among the model's children: the ones watched."""


def plain(n_out: int, n_in: int) -> nn.Module:
    """The lesson's CNN with torch's default initialization."""
    return cnn(n_out=n_out, channels=CHANNELS, n_in=n_in)


def kaiming(n_out: int, n_in: int) -> nn.Module:
    """The same, every convolution and linear layer kaiming-normal initialized."""
    return init_cnn(plain(n_out, n_in))


def general_relu(n_out: int, n_in: int) -> nn.Module:
    """GeneralRelu(0.1, 0.4, 6) after each convolution, kaiming init with a = 0.1."""
    layer = conv_norm_layer(None, act=partial(GeneralRelu, leak=0.1, sub=0.4, maxv=6))
    return init_cnn(cnn(n_out=n_out, channels=CHANNELS, n_in=n_in, layer=layer), a=0.1)


STEPS: dict[str, Callable[[int, int], nn.Module]] = {
    "plain": plain,
    "kaiming": kaiming,
    "general_relu": general_relu,
}
"""The demo's steps, in the lesson's order: each builds the model ``f(n_out, n_in)``."""


def _steps(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STEPS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected steps among {', '.join(STEPS)} separated by commas, got {text!r}"
        )
    return names


def run_step(
    name: str, data: DataBunch, args: argparse.Namespace, plugins: Sequence[object]
) -> tuple[Diagnosis, float | None, ActivationData]:
    """Train one step's model; returns its diagnosis (with the run's context), its last
    valid accuracy and what the observer recorded."""
    torch.manual_seed(args.seed)
    n_in = data.input_shape[0] if data.input_shape else 1
    model = STEPS[name](data.c or 10, n_in)
    stats = ActivationStats(modules=CONV_LAYERS, report=False)
    learner = learner_from_args(
        args, model, data, plugins=[*plugins, stats], out_dir=Path(args.out) / name
    )
    learner.fit(args.epochs)
    if stats.data is None or not len(stats.data) or stats.diagnosis is None:
        raise SystemExit(f"look_inside: step {name!r} recorded no batch; use --epochs 1 or more")
    accuracy = learner.log.get("valid_accuracy")
    return stats.diagnosis, accuracy if isinstance(accuracy, float) else None, stats.data


def dead_table(results: dict[str, tuple[Diagnosis, float | None]]) -> str:
    """Near-zero fraction per layer (rows) and step (columns), then the valid accuracy."""
    steps = list(results)
    first = results[steps[0]][0]
    labels = [layer.name for layer in first.layers] + ["valid accuracy"]
    width = max(len(label) for label in labels)
    lines = [f"{'near zero, late':<{width}}  " + "  ".join(f"{s:>12}" for s in steps)]
    for i, layer in enumerate(first.layers):
        cells = [_pct(results[s][0].layers[i].near_zero) for s in steps]
        lines.append(f"{layer.name:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    accuracies = [results[s][1] for s in steps]
    cells = ["-" if a is None else f"{a:.4f}" for a in accuracies]
    lines.append(f"{'valid accuracy':<{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{value:.1%}" if math.isfinite(value) else "nan"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo look_inside", description=(__doc__ or "").split("\n")[0]
    )
    add_training_arguments(parser, out="lookinside-out/look_inside", epochs=4, lr=0.6, bs=64)
    parser.add_argument(
        "--steps", type=_steps, default=list(STEPS), help=f"steps to run ({','.join(STEPS)})"
    )
    args = parser.parse_args(argv)
    args.catalog = load_catalog()
    results: dict[str, tuple[Diagnosis, float | None]] = {}
    recorded: dict[str, ActivationData] = {}
    for number, name in enumerate(args.steps, start=1):
        print(f"== step {number}: {name} ({STEPS[name].__doc__}) lr {args.lr}, bs {args.bs}")
        data = data_from_args(args, args.catalog)  # anew: every step sees the same batches
        diagnosis, accuracy, recorded[name] = run_step(name, data, args, args.plugins)
        results[name] = diagnosis, accuracy
        print(diagnosis.table())
        print(f"pictures and diagnosis.md in {Path(args.out) / name / 'activations'}\n")
    print(dead_table(results))
    with not_shown():  # for the file
        titles = {name: f"{name} (valid acc {results[name][1] or 0:.2f})" for name in recorded}
        figure = compare_figure({titles[name]: data for name, data in recorded.items()})
    path = save_figure(figure, Path(args.out) / STORY_FILE)
    print(f"the steps side by side: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
