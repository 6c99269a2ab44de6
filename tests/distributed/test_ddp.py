"""Two processes with gloo on the CPU, started by torchrun, against one process.

Each torchrun launch costs a few seconds (three Python processes importing
torch), so the scenarios share launches through module-scoped fixtures. Every
launch has a timeout: a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.distributed import torchrun_command
from tests.distributed import worker

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(worker.__file__)
LAUNCH_TIMEOUT = 240


def torchrun(*args: str, timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``args`` under ``torchrun --nproc_per_node=2``; fails (not hangs) on a timeout."""
    return run(torchrun_command(2, list(args)), timeout)


def run(
    command: list[str], timeout: float = LAUNCH_TIMEOUT, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKER_DUMP_AFTER": str(timeout - 20)}
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a hang can be killed with every worker
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(command)} hung for {timeout}s\n{out}\n{err[-6000:]}")
    result = subprocess.CompletedProcess(command, proc.returncode, out, err)
    assert result.returncode == 0, f"exit {result.returncode}\n{out}\n{err[-6000:]}"
    return result


def ranks(folder: Path) -> list[dict[str, Any]]:
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        torch.testing.assert_close(value, b[key], rtol=1e-5, atol=1e-6, msg=key)


def single_fit(folder: Path, epochs: int, resume: str | None = None) -> Any:
    """One process, twice the per-process batch: the same global batch as two ranks."""
    plugins = worker.fit_plugins(folder / "checkpoints", folder / "absolute.csv", resume)
    learner = worker.make_learner(32, plugins, out=folder)
    learner.fit(epochs)
    return learner


# -- one fit on two processes ---------------------------------------------------


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("ddp_fit")
    torchrun(str(WORKER), "fit", str(out), "2")
    return out, ranks(out)


def test_two_processes_train_like_one_with_twice_the_batch(
    two_ranks: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, (rank0, rank1) = two_ranks
    alone = single_fit(tmp_path, 2)
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), f"ranks differ in {key}"
    assert_weights_close(rank0["weights"], alone.model.state_dict())
    # the epoch numbers are those of every sample, pooled: the single process's
    for mine, single in zip(rank0["history"], alone.plugins["metrics"].history, strict=True):
        for key in ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy"):
            assert mine[key] == pytest.approx(single[key], rel=1e-5), key


def test_both_ranks_report_the_same_epoch_numbers(
    two_ranks: tuple[Path, list[dict[str, Any]]],
) -> None:
    _, (rank0, rank1) = two_ranks
    assert len(rank0["history"]) == 2
    assert rank0["history"] == rank1["history"]  # time included: it is averaged too


def test_rank_0_alone_writes_files(two_ranks: tuple[Path, list[dict[str, Any]]]) -> None:
    out, (rank0, rank1) = two_ranks
    assert (rank0["is_main"], rank1["is_main"]) == (True, False)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank1["out_dir"] is None
    assert not (out / "files1").exists()
    assert not (out / "checkpoints1").exists()
    assert sorted(p.name for p in (out / "checkpoints0").iterdir()) == ["best.pt", "last.pt"]
    written = sorted(p.name for p in (out / "files0").iterdir())
    assert written == ["absolute.csv", "loss.png"]  # a constant lr: no lr pictures
    rows = (out / "files0" / "absolute.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["epoch", "0", "1"]


# -- checkpoints move between one process and two ----------------------------


def test_a_checkpoint_of_two_processes_resumes_on_one(
    two_ranks: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    out, _ = two_ranks
    resumed = single_fit(tmp_path / "resumed", 4, resume=str(out / "checkpoints0" / "last.pt"))
    straight = single_fit(tmp_path / "straight", 4)
    assert_weights_close(resumed.model.state_dict(), straight.model.state_dict())
    assert [h["epoch"] for h in resumed.plugins["metrics"].history] == [2, 3]


def test_a_checkpoint_of_one_process_resumes_on_two(tmp_path: Path) -> None:
    single_fit(tmp_path / "first", 2)
    out = tmp_path / "ddp"
    out.mkdir()
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    torchrun(str(WORKER), "fit", str(out), "4", str(last))
    rank0, rank1 = ranks(out)
    straight = single_fit(tmp_path / "straight", 4)
    assert_weights_close(rank0["weights"], straight.model.state_dict())
    assert_weights_close(rank1["weights"], straight.model.state_dict())
    assert [h["epoch"] for h in rank0["history"]] == [2, 3]


# -- cancellation on one rank -----------------------------------------------------

# per case: what every rank must have seen (after_cancel_batch, after_cancel_epoch,
# after_cancel_train) and the training batches done (n_iter), None where the
# cancelling rank legitimately skipped its own after_batch
EXPECTED: dict[str, tuple[tuple[int, int, int], int | None]] = {
    "train_in_begin_batch": ((0, 0, 1), 2),
    "train_in_after_loss": ((0, 0, 1), 9),
    "train_in_after_step": ((0, 0, 1), None),
    "train_in_last_train_batch": ((0, 0, 1), 8),
    "train_in_validation": ((0, 0, 1), 8),
    "train_in_after_epoch": ((0, 0, 1), 16),
    "train_in_last_after_epoch": ((0, 0, 1), 24),
    "epoch_in_begin_epoch": ((0, 1, 0), 16),
    "epoch_in_after_pred": ((0, 1, 0), 19),
    "epoch_in_begin_validate": ((0, 1, 0), 24),
    "batch_in_begin_batch": ((3, 0, 0), 24),
    "batch_in_after_loss": ((3, 0, 0), 24),
    # before ddp's buffers broadcast and metrics' sums: neither may hang
    "epoch_in_begin_validate_before_ddp": ((0, 1, 0), 24),
    "train_in_after_epoch_before_metrics": ((0, 0, 1), 16),
}


@pytest.fixture(scope="module")
def cancelled(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp_cancel")
    torchrun(str(WORKER), "cancel", str(out))
    return ranks(out)


def test_a_rank_without_validation_batches_does_not_hang_batchnorm(
    cancelled: list[dict[str, Any]],
) -> None:
    """Validation calls the plain model: no buffers broadcast for rank 1 to miss."""
    rank0, rank1 = (r["batchnorm_one_validation_sample"] for r in cancelled)
    assert rank0["history"] == rank1["history"]
    assert [h["valid_loss"] is not None for h in rank0["history"]] == [True, True]
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key


def test_every_case_is_checked() -> None:
    assert set(EXPECTED) == set(worker.CANCEL_CASES) | set(worker.EARLY_CASES)


@pytest.mark.parametrize("case", list(EXPECTED))
def test_a_cancellation_on_one_rank_stops_both_alike(
    cancelled: list[dict[str, Any]], case: str
) -> None:
    rank0, rank1 = cancelled[0][case], cancelled[1][case]
    (batches, epochs, trains), n_iter = EXPECTED[case]
    for result in (rank0, rank1):
        seen = result["seen"]
        assert (
            seen["after_cancel_batch"],
            seen["after_cancel_epoch"],
            seen["after_cancel_train"],
        ) == (batches, epochs, trains)
    if n_iter is not None:
        assert rank0["n_iter"] == rank1["n_iter"] == n_iter
    # the ranks met at the same sync points, and the replicas stayed identical
    assert rank0["agreements"] == rank1["agreements"] > 0
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), f"{case}: ranks differ in {key}"


# -- the command line -------------------------------------------------------------


def test_fit_nproc_trains_on_two_processes_and_reports_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine.cli", "fit", "--nproc", "2", "--epochs", "1"]
    result = run(
        [*command, "--out", str(out), "--no-config", "-p", "no:recorder", "-p", "device:device=cpu"]
    )
    lines = result.stdout.splitlines()
    assert sum(line.split() == ["epoch", *HEADER] for line in lines) == 1
    assert sum(line.startswith("wrote ") for line in lines) == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


HEADER = ["train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "time"]


def test_the_readme_script_runs_under_torchrun(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    script = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "torchrun" in b)
    (tmp_path / "train.py").write_text(script.replace("learner.fit(5)", "learner.fit(1)"))
    run(torchrun_command(2, ["train.py"]), cwd=tmp_path)
    state = torch.load(tmp_path / "runs" / "c" / "model.pt", weights_only=True)
    assert set(state) == set(worker.cnn_keys())
