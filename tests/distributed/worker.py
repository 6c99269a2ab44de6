"""What each process of the distributed tests runs, under ``torchrun``.

``python -m torch.distributed.run --nproc_per_node=2 tests/distributed/worker.py
SCENARIO OUT`` trains small learners and saves, per rank, ``OUT/rank<R>.pt``: what
the test compares (weights, metrics, the events each rank saw). The pytest
process builds the same learners with :func:`make_learner` to compare a
single-process fit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine import CancelBatchException
from engine import CancelEpochException
from engine import CancelTrainException
from engine import DataBunch
from engine import Learner

N_TRAIN, N_VALID, FEATURES, CLASSES = 256, 100, 12, 4
EVENTS_SEEN = ("after_cancel_batch", "after_cancel_epoch", "after_cancel_train", "after_epoch")


def make_data(bs: int, seed: int = 0) -> DataBunch:
    """A learnable classification problem; ``bs`` per process."""
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(N_TRAIN + N_VALID, FEATURES, generator=gen)
    w = torch.randn(FEATURES, CLASSES, generator=gen)
    y = (x @ w).argmax(1)
    return DataBunch.from_tensors(
        x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:], bs=bs, valid_bs=32, seed=seed
    )


def cnn_keys() -> list[str]:
    """The state_dict keys of the lesson's CNN (what the README's script saves)."""
    from engine.nn import cnn

    return list(cnn().state_dict())


def make_learner(
    bs: int, plugins: list[Any], out: Path | None = None, norm: bool = False
) -> Learner:
    torch.manual_seed(0)
    layers = [nn.Linear(FEATURES, 32), nn.BatchNorm1d(32)] if norm else [nn.Linear(FEATURES, 32)]
    model = nn.Sequential(*layers, nn.ReLU(), nn.Linear(32, CLASSES))
    return Learner(
        model,
        make_data(bs),
        lr=0.1,
        opt_func=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        plugins=["no:progress", "no:recorder", "device:device=cpu", *plugins],
        out_dir=out,
        config=False,
    )


class Seen:
    """Counts the events that tell how a fit ended, on this rank."""

    order = 200

    def __init__(self) -> None:
        self.counts = dict.fromkeys(EVENTS_SEEN, 0)

    def _count(self, event: str) -> None:
        self.counts[event] += 1

    def after_cancel_batch(self, learner: Learner) -> None:
        self._count("after_cancel_batch")

    def after_cancel_epoch(self, learner: Learner) -> None:
        self._count("after_cancel_epoch")

    def after_cancel_train(self, learner: Learner) -> None:
        self._count("after_cancel_train")

    def after_epoch(self, learner: Learner) -> None:
        self._count("after_epoch")


class Canceller:
    """Raises ``exc`` on rank ``rank`` in ``event`` at (epoch, iter), or every epoch."""

    order = 100  # after metrics in after_epoch

    def __init__(self, event: str, rank: int, exc: type[Exception], epoch: int | None, it: int):
        self.rank, self.exc, self.epoch, self.it = rank, exc, epoch, it
        setattr(self, event, self._maybe_raise)

    def _maybe_raise(self, learner: Learner) -> None:
        if learner.rank != self.rank:
            return
        if self.epoch is not None and learner.epoch != self.epoch:
            return
        if self.it >= 0 and learner.iter != self.it:
            return
        raise self.exc(f"from rank {self.rank}")


CANCEL_CASES: dict[str, tuple[str, int, type[Exception], int | None, int, bool | None]] = {
    # name: (event, rank, exception, epoch, iter (-1: any), in validation (None: either))
    "train_in_begin_batch": ("begin_batch", 1, CancelTrainException, 0, 2, False),
    "train_in_after_loss": ("after_loss", 1, CancelTrainException, 1, 1, False),
    "train_in_after_step": ("after_step", 0, CancelTrainException, 0, 1, False),
    "train_in_last_train_batch": ("after_batch", 1, CancelTrainException, 0, 7, False),
    "train_in_validation": ("after_batch", 1, CancelTrainException, 0, 1, True),
    "train_in_after_epoch": ("after_epoch", 1, CancelTrainException, 1, -1, None),
    "train_in_last_after_epoch": ("after_epoch", 1, CancelTrainException, 2, -1, None),
    "epoch_in_begin_epoch": ("begin_epoch", 1, CancelEpochException, 1, -1, None),
    "epoch_in_after_pred": ("after_pred", 0, CancelEpochException, 0, 3, False),
    "epoch_in_begin_validate": ("begin_validate", 0, CancelEpochException, 1, -1, None),
    "batch_in_begin_batch": ("begin_batch", 1, CancelBatchException, None, 2, False),
    "batch_in_after_loss": ("after_loss", 0, CancelBatchException, None, 5, False),
}

EARLY_CASES: dict[str, tuple[str, int, type[Exception], int]] = {
    # name: (event, rank, exception, epoch), raised by a plugin ordered before all
    # built-ins, with a BatchNorm model (buffers to broadcast before validation):
    # the collective operations plugins do must still happen on every rank
    "epoch_in_begin_validate_before_ddp": ("begin_validate", 1, CancelEpochException, 1),
    "train_in_after_epoch_before_metrics": ("after_epoch", 1, CancelTrainException, 1),
}


class OnlyIn:
    """Wraps a Canceller so it fires only during training or only during validation."""

    def __init__(self, inner: Canceller, event: str, in_validation: bool | None) -> None:
        self.order = inner.order
        self.name = "canceller"

        def receiver(learner: Learner) -> None:
            if in_validation is None or learner.in_train != in_validation:
                getattr(inner, event)(learner)

        setattr(self, event, receiver)


def run_batchnorm_one_validation_sample() -> dict[str, Any]:
    """BatchNorm (buffers DDP broadcasts) and one validation sample: rank 1 has none."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(65, FEATURES, generator=gen)
    y = (x[:, 0] > 0).long()
    data = DataBunch.from_tensors(x[:64], y[:64], x[64:], y[64:], bs=16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    plugins = ["no:progress", "no:recorder", "device:device=cpu", "ddp:timeout=60"]
    learner = Learner(model, data, lr=0.1, plugins=plugins, config=False)
    learner.fit(2)
    return {
        "history": learner.plugins["metrics"].history,
        "weights": {k: v.clone() for k, v in learner.model.named_parameters()},
    }


def run_cancel_cases(out: Path, names: list[str]) -> dict[str, Any]:
    results = {"batchnorm_one_validation_sample": run_batchnorm_one_validation_sample()}
    for name in names or [*CANCEL_CASES, *EARLY_CASES]:
        seen = Seen()
        if name in EARLY_CASES:
            event, rank, exc, epoch = EARLY_CASES[name]
            early = Canceller(event, rank, exc, epoch, -1)
            early.order = -1000
            learner = make_learner(16, [seen, early], norm=True)
        else:
            event, rank, exc, epoch, it, in_valid = CANCEL_CASES[name]
            canceller = OnlyIn(Canceller(event, rank, exc, epoch, it), event, in_valid)
            learner = make_learner(16, [seen, canceller])
        learner.fit(3)
        results[name] = {
            "epoch": learner.epoch,
            "n_iter": learner.n_iter,
            "seen": seen.counts,
            "weights": {k: v.clone() for k, v in learner.model.state_dict().items()},
            "agreements": learner.dist.agreements if learner.dist is not None else 0,
        }
    return results


def fit_plugins(ckpt_dir: Path, csv_path: Path, resume: str | None = None) -> list[Any]:
    """The plugins of the fit the tests compare: every kind of file and a resumable state."""
    return [
        ("checkpoint", {"dir": str(ckpt_dir), "resume": resume}),
        ("csv_logger", {"path": str(csv_path)}),
        "recorder",
        "early_stopping:patience=50,restore_best=false",
    ]


def run_fit(out: Path, rank: int, epochs: int, resume: str | None) -> dict[str, Any]:
    """A fit writing every kind of file, each rank into its own folders."""
    folder = out / f"files{rank}"
    plugins = fit_plugins(out / f"checkpoints{rank}", folder / "absolute.csv", resume)
    learner = make_learner(16, plugins, out=folder)
    learner.fit(epochs)
    return {
        "weights": {k: v.clone() for k, v in learner.model.state_dict().items()},
        "history": learner.plugins["metrics"].history,
        "is_main": learner.is_main,
        "world_size": learner.world_size,
        "out_dir": learner.out_dir,
    }


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    rank = int(os.environ.get("RANK", "0"))
    torch.set_num_threads(1)
    if os.environ.get("WORKER_DUMP_AFTER"):  # where a hanging run is stuck
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["WORKER_DUMP_AFTER"]), exit=True)
    if scenario == "fit":
        epochs = int(argv[2]) if len(argv) > 2 else 3
        result = run_fit(out, rank, epochs, argv[3] if len(argv) > 3 else None)
    elif scenario == "cancel":
        result = run_cancel_cases(out, argv[2:])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    torch.save(result, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
