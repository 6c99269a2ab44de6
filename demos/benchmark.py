"""Time lookinside against a hand-written PyTorch loop doing the same work.

Run it with::

    lookinside demo benchmark [--runs 5] [--samples 50000] [--only cnn|tiny]
    python -m demos.benchmark --runs 3 --samples 10000

Two workloads, on random MNIST-sized data (784 features, 10 classes):

- ``cnn``: the lesson's CNN at batch size 512 (the model dominates; target ratio
  <= 1.02);
- ``tiny``: ``Linear(784, 10)`` at batch size 64, which exposes the engine's own
  per-batch cost (target <= 25 µs per batch).

The hand-written loop does what the default plugins do: train/eval modes,
``no_grad`` validation, the reshape to images, the loss and accuracy kept on the
tensors with one host sync per epoch, the learning rate and loss recorded per
batch, a line printed per epoch. The two alternate run by run in one process
(hand, engine, hand, engine, ...) from the same initial weights; the script
prints the median time of each, the median of the paired ratios and the
engine's overhead in µs per batch. The progress bar is off in both, so the
figures do not depend on whether the output is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from engine.nn import cnn


@dataclass
class Workload:
    name: str
    make_model: Callable[[], nn.Module]
    bs: int
    shape: tuple[int, ...] | None
    lr: float
    samples: int
    """Training samples by default (validation adds a fifth)."""
    runs: int
    """Runs of each loop by default: many short ones where noise is large."""


WORKLOADS = {
    "cnn": Workload("cnn", lambda: cnn(n_out=10), 512, (1, 28, 28), 0.4, 50_000, 3),
    "tiny": Workload("tiny", lambda: nn.Linear(784, 10), 64, None, 0.1, 10_000, 41),
}


def make_data(samples: int, bs: int, shape: tuple[int, ...] | None) -> DataBunch:
    gen = torch.Generator().manual_seed(0)
    n_valid = max(samples // 5, 1)
    x = torch.randn(samples + n_valid, 784, generator=gen)
    y = torch.randint(0, 10, (samples + n_valid,), generator=gen)
    return DataBunch.from_tensors(
        x[:samples], y[:samples], x[samples:], y[samples:], bs=bs, input_shape=shape
    )


def hand_written(model: nn.Module, data: DataBunch, lr: float, epochs: int) -> float:
    """The loop a careful user writes by hand, with the default plugins' work."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    shape = data.input_shape
    lrs: list[float] = []
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        sums = []
        for loader, training in ((data.train_dl, True), (data.valid_dl, False)):
            guesses, targets, batch_losses, sizes = [], [], [], []
            with torch.set_grad_enabled(training):
                for xb, yb in loader:  # type: ignore[union-attr]
                    if shape is not None:
                        xb = xb.view(xb.shape[0], *shape)
                    pred = model(xb)
                    loss = F.cross_entropy(pred, yb)
                    guesses.append(pred.argmax(-1))
                    targets.append(yb)
                    batch_losses.append(loss.detach())
                    sizes.append(yb.shape[0])
                    if training:
                        loss.backward()
                        opt.step()
                        opt.zero_grad()
                        lrs.append(opt.param_groups[0]["lr"])
                        losses.append(loss.detach())
            hits = (torch.cat(guesses) == torch.cat(targets)).sum()
            weights = torch.tensor(sizes, dtype=torch.float32)
            sums.append(torch.stack([(torch.stack(batch_losses) * weights).sum(), hits]))
            if training:
                model.eval()
        values = torch.cat(sums).tolist()  # the one sync of the epoch
        n_train, n_valid = len(data.train_dl.x), len(data.valid_dl.x)  # type: ignore[union-attr]
        print(
            epoch,
            values[0] / n_train,
            values[1] / n_train,
            values[2] / n_valid,
            values[3] / n_valid,
        )
    torch.stack(losses).tolist()
    return time.perf_counter() - start


def with_engine(model: nn.Module, data: DataBunch, lr: float, epochs: int) -> float:
    """The same fit through lookinside with its default plugins."""
    learner = Learner(model, data, lr=lr, plugins=["progress:bar=false", "device:device=cpu"])
    start = time.perf_counter()
    learner.fit(epochs)
    return time.perf_counter() - start


def measure(workload: Workload, samples: int, runs: int, epochs: int) -> dict[str, float]:
    data = make_data(samples, workload.bs, workload.shape)
    torch.manual_seed(0)
    initial = workload.make_model().state_dict()
    times: dict[str, list[float]] = {"hand": [], "engine": []}
    for _ in range(runs):
        for label, run in (("hand", hand_written), ("engine", with_engine)):
            model = workload.make_model()
            model.load_state_dict(initial)
            # the collector's pauses land on whichever loop is running: keep them out
            gc.collect()
            gc.disable()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    times[label].append(run(model, data, workload.lr, epochs))
            finally:
                gc.enable()
    n_batches = epochs * (len(data.train_dl) + len(data.valid_dl))  # type: ignore[arg-type]
    ratios = [e / h for e, h in zip(times["engine"], times["hand"])]
    overheads = [(e - h) / n_batches * 1e6 for e, h in zip(times["engine"], times["hand"])]
    return {
        "hand_s": statistics.median(times["hand"]),
        "engine_s": statistics.median(times["engine"]),
        "ratio": statistics.median(ratios),
        "overhead_us": statistics.median(overheads),
        "batches": n_batches,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo benchmark", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, help="runs of each loop (default: cnn 3, tiny 41)")
    parser.add_argument(
        "--samples", type=int, help="training samples (default: cnn 50000, tiny 10000)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run")
    parser.add_argument("--only", choices=sorted(WORKLOADS), help="one workload only")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [args.only] if args.only else list(WORKLOADS)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.epochs} epoch(s) per run"
    )
    print(
        f"{'workload':<8} {'bs':>4} {'samples':>8} {'runs':>5} {'batches':>8} {'hand s':>9} "
        f"{'engine s':>9} {'ratio':>7} {'µs/batch':>9}"
    )
    for name in names:
        workload = WORKLOADS[name]
        samples = args.samples or workload.samples
        runs = args.runs or workload.runs
        result = measure(workload, samples, runs, args.epochs)
        print(
            f"{name:<8} {workload.bs:>4} {samples:>8} {runs:>5} {result['batches']:>8.0f} "
            f"{result['hand_s']:>9.3f} {result['engine_s']:>9.3f} {result['ratio']:>7.3f} "
            f"{result['overhead_us']:>9.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
