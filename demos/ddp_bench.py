"""Samples per second of the lesson's CNN on one process and on several (torchrun).

Run it with::

    lookinside demo ddp_bench [--runs 3] [--samples 20000] [--nproc 2]
    python -m demos.ddp_bench --runs 3

Trains the lesson's CNN on random MNIST-sized images with the same *global*
batch (512) in each set-up:

- one process using every core (torch's threads),
- one process on one thread,
- ``--nproc`` processes on one thread each, launched by torchrun, each with a
  batch of 512 / nproc (the ``ddp`` plugin shards the data and all-reduces the
  gradients over gloo, or nccl on GPUs).

Each set-up runs ``--runs`` times, alternating; the script prints the median
training samples per second (epochs after the first, which warms up) and its
ratio to the first set-up, and the cost of one agreement between the ranks
(see :mod:`engine.distributed`).

On a machine with fewer cores than processes times threads, several processes
only share the same cores: expect no gain on CPU there, only the cost of the
all-reduce. On GPUs, give each process its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from engine.distributed import torchrun_command

GLOBAL_BS = 512


def _worker(args: argparse.Namespace) -> None:
    """One process of a set-up: train, then print its figures as JSON (rank 0)."""
    from engine.coordinator import Vote
    from engine.data import DataBunch
    from engine.distributed import Distributed
    from engine.learner import Learner
    from engine.nn import cnn

    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    agree_us = None
    if world > 1:  # the price of one sync point, alone
        group = Distributed.start("gloo")
        for _ in range(20):
            group.agree(Vote.GOING_ON)
        start = time.perf_counter()
        for _ in range(200):
            group.agree(Vote.GOING_ON)
        agree_us = (time.perf_counter() - start) / 200 * 1e6
        group.close()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (args.samples,), generator=gen)
    torch.manual_seed(0)
    data = DataBunch.from_tensors(x, y, bs=GLOBAL_BS // world)
    learner = Learner(
        cnn(), data, lr=0.4, plugins=["no:progress", "no:recorder", "no:csv_logger"], config=False
    )
    learner.fit(args.epochs)
    times = [h["time"] for h in learner.plugins["metrics"].history][1:]
    if learner.is_main:
        print(
            json.dumps({"samples_s": args.samples / statistics.median(times), "agree_us": agree_us})
        )


def _measure(nproc: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    worker = ["-m", "demos.ddp_bench", "--worker", "--threads", str(threads)]
    worker += ["--samples", str(args.samples), "--epochs", str(args.epochs)]
    command = torchrun_command(nproc, []) if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command + worker, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command + worker)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ddp_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each set-up")
    parser.add_argument("--samples", type=int, default=20_000, help="training samples")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (first skipped)")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the parallel set-up")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs should be at least 2 (the first one is not timed)")
    if args.worker:
        _worker(args)
        return
    cores = os.cpu_count() or 1
    setups = [
        (f"1 process, {cores} threads", 1, cores),
        ("1 process, 1 thread", 1, 1),
        (f"{args.nproc} processes (torchrun, gloo), 1 thread each", args.nproc, 1),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in setups}
    agree: list[float] = []
    for run in range(args.runs):
        for name, nproc, threads in setups:
            got = _measure(nproc, threads, args)
            rates[name].append(got["samples_s"])
            if got.get("agree_us") is not None:
                agree.append(got["agree_us"])
            print(
                f"run {run + 1}/{args.runs}: {name}: {got['samples_s']:.0f} samples/s", flush=True
            )
    base = statistics.median(rates[setups[0][0]])
    print(f"\nlesson CNN, global batch {GLOBAL_BS}, {args.samples} samples, {cores} cores")
    print(f"{'set-up':50s} {'samples/s':>10s} {'ratio':>6s}")
    for name, _, _ in setups:
        rate = statistics.median(rates[name])
        print(f"{name:50s} {rate:10.0f} {rate / base:6.2f}")
    if agree:
        print(
            f"one agreement between the ranks: {statistics.median(agree):.0f} µs; the loop "
            "makes one per training batch here (two for models with buffers, e.g. BatchNorm)"
        )


if __name__ == "__main__":
    main()
