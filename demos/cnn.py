"""Train the lesson's CNN on handwritten digits, every feature a plugin.

Run it with::

    lookinside demo cnn [--data digits] [--epochs 10] [--lr 0.2] [--bs 16] [--out DIR]
    python -m demos.cnn --data mnist_pkl --data-path mnist.pkl.gz --bs 512 --epochs 3

It prints which plugins run at each event, trains with live progress and one row
of metrics per epoch, then writes ``metrics.csv`` and the recorder's plots
(``loss.png``, ``lr.png``, ``loss_vs_lr.png``) into ``--out``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from engine.cli import add_training_arguments
from engine.cli import data_from_args
from engine.cli import learner_from_args
from engine.manager import load_catalog
from engine.nn import cnn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookinside demo cnn", description=__doc__.split("\n")[0])
    add_training_arguments(parser, out="lookinside-out/cnn")
    args = parser.parse_args(argv)

    catalog = load_catalog()
    data = data_from_args(args, catalog)
    torch.manual_seed(args.seed)
    model = cnn(n_out=data.c or 10)
    args.catalog = catalog
    learner = learner_from_args(args, model, data)

    print(f"{data.name}: the lesson's CNN {model[0][0]} ... {model[-1]}")
    print("Plugins at each event (lookinside plugins --events):")
    for event in (
        "begin_fit",
        "begin_batch",
        "after_loss",
        "after_batch",
        "after_epoch",
        "after_fit",
    ):
        print(f"  {event:<12} {', '.join(learner.plugins.receivers(event)) or '-'}")
    learner.fit(args.epochs)

    last = learner.log
    accuracy = last.get("valid_accuracy")
    if accuracy is not None:
        print(f"valid accuracy after {args.epochs} epochs: {accuracy:.4f}")
    out = Path(args.out)
    if out.is_dir():
        print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
