"""Measure every trained-outcome claim over seeds and thread counts; print the spread.

    python -m tests.spread                      # 10 seeds x 1 and 2 threads, every claim
    python -m tests.spread --seeds 20 --threads 1 2 4 --only batchnorm

Each row is one claim at one thread count: the smallest, median and largest value
over the seeds, the bound the suite asserts, the worst value's margin to it, and how
many seeds broke the claim. Run it under each torch release the resolver may pick
(it prints which one it ran on) before moving a bound in :mod:`tests.outcomes`.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from tests.outcomes import CLAIMS
from tests.outcomes import Claim


def spread(claim: Claim, seeds: range, threads: int) -> tuple[list[float], float]:
    """The claim's values over ``seeds`` at ``threads`` intra-op threads, and the seconds taken."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        values = [claim.measure(seed) for seed in seeds]
    finally:
        torch.set_num_threads(before)
    return values, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.spread", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="default: 1 2")
    parser.add_argument("--only", default="", help="claims whose name contains this text")
    args = parser.parse_args(argv)
    claims = [c for c in CLAIMS if args.only.lower() in c.name.lower()]
    if not claims:
        parser.error(f"no claim matches --only {args.only!r}")
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{args.seeds} seeds, threads {' '.join(map(str, args.threads))}"
    )
    header = f"{'claim':58} {'thr':>3} {'min':>7} {'median':>7} {'max':>7} {'bound':>7} {'margin':>7} broken"
    print(header)
    broken_total = 0
    for claim in claims:
        for threads in args.threads:
            values, seconds = spread(claim, range(args.seeds), threads)
            worst = min(values) if claim.above else max(values)
            margin = worst - claim.bound if claim.above else claim.bound - worst
            broken = sum(not claim.holds(v) for v in values)
            broken_total += broken
            print(
                f"{claim.name[:58]:58} {threads:>3} {min(values):7.4f} "
                f"{statistics.median(values):7.4f} {max(values):7.4f} "
                f"{('>' if claim.above else '<') + format(claim.bound, 'g'):>7} "
                f"{margin:7.4f} {broken}/{len(values)}  ({seconds:.0f} s)",
                flush=True,
            )
    return 1 if broken_total else 0


if __name__ == "__main__":
    sys.exit(main())
