"""The batchnorm demo in tiny configurations: its table, files and defaults."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from demos import batchnorm
from engine.cli import main


def test_tiny_run_prints_and_writes_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    argv = ["--bs-list", "64,2", "--norms", "none,running_batch", "--epochs", "1"]
    argv += ["--subset", "64", "--out", str(tmp_path)]
    assert main(["demo", "batchnorm", *argv]) == 0
    assert torch.get_num_threads() == threads  # restored after the one-thread fits
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[1:-1] == [
        " norm ",
        " bs ",
        " lr ",
        " epochs ",
        " valid acc ",
        " valid loss ",
        " seconds ",
        " lesson (MNIST) ",
    ]
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows[1:]]
    assert [c[:4] for c in cells] == [
        ["no norm", "64", "0.4", "1"],
        ["RunningBatchNorm", "64", "1", "1"],
        ["no norm", "2", "0.05", "1"],
        ["RunningBatchNorm", "2", "0.05", "1"],
    ]
    assert [c[7] for c in cells] == ["-", "-", "-", "0.9730"]
    assert all(0.0 <= float(c[4]) <= 1.0 for c in cells)
    assert "Ours are on digits, not MNIST" in text
    markdown = (tmp_path / "batchnorm.md").read_text()
    assert all(row in markdown for row in rows)
    assert (tmp_path / "batchnorm.png").stat().st_size > 1000


def test_mnist_pkl_uses_the_lessons_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A small mnist.pkl.gz: 28x28 images, the lesson's lr (0.4 at bs 2) and epochs."""
    gen = np.random.default_rng(0)
    split = (gen.random((8, 784), dtype=np.float32), gen.integers(0, 10, 8))
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as handle:
        pickle.dump((split, split, split), handle)
    argv = ["--data", "mnist_pkl", "--data-path", str(path), "--bs", "2"]
    argv += ["--norms", "running_batch", "--out", str(tmp_path / "out")]
    assert batchnorm.main(argv) == 0
    text = capsys.readouterr().out
    assert "| RunningBatchNorm | 2 | 0.4 | 1 |" in text
    assert "not MNIST" not in text


def test_epoch_and_lr_defaults() -> None:
    assert [batchnorm.lesson_epochs(k, 512) for k in ("none", "batch")] == [2, 3]
    assert [batchnorm.lesson_epochs("running_batch", bs) for bs in (32, 2)] == [1, 1]
    assert [batchnorm.digits_epochs(bs, 1437) for bs in (512, 32, 2, 128)] == [40, 4, 1, 10]
    lrs = {k: v.lr for k, v in batchnorm.VARIANTS.items()}
    assert lrs == {
        "none": 0.4,
        "batch": 1.0,
        "torch_batch": 1.0,
        "layer": 0.8,
        "instance": 0.1,
        "group": 0.4,
        "running_batch": 1.0,
    }


def test_rejects_unknown_norms(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        batchnorm.main(["--norms", "batch,weight"])
    assert "unknown norms ['weight']" in capsys.readouterr().err
