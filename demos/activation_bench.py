"""Time the activation_stats observer against the same fit without it.

Run it with::

    lookinside demo activation_bench [--runs 5] [--samples 10000] [--bs 512] [--device cpu]
    python -m demos.activation_bench --runs 3 --samples 50000 --device cuda

The workload is the lesson's: its CNN ``[8, 16, 32, 32]`` at batch size 512 on
random 28x28 images (MNIST-sized; the numbers do not matter to the timing),
one epoch with validation, SGD at lr 0.4, the default plugins but the progress
bar. Four fits alternate run by run from the same initial weights:

- ``none``: no activation statistics;
- ``lesson``: the lesson's hooks: per batch and module ``mean``, ``std`` and
  ``.cpu().histc(40, 0, 10)``, kept in lists;
- ``histc``: the same, but the histogram stays on the tensor's device;
- ``activation_stats``: this project's observer, on every training batch
  (mean, std, a 40-bin histogram of an 8192-value sample, the near-zero
  fraction; on the device, one copy per epoch).

It prints each one's median time and the median of its paired ratios to
``none``; the target for ``activation_stats`` is a ratio of at most 1.10.
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
from typing import Any

import torch
from torch import Tensor
from torch import nn

from engine.data import DataBunch
from engine.learner import Learner
from engine.nn import cnn
from observers.activation_stats import ActivationStats
from observers.hooks import Hooks


class LessonHooks:
    """The lesson's statistics: mean, std and histogram per module and training batch.

    :param to_cpu: copy each output to the host before the histogram (the lesson).
    """

    name = "lesson_hooks"

    def __init__(self, to_cpu: bool) -> None:
        self.to_cpu = to_cpu
        self.stats: list[list[tuple[Tensor, Tensor, Tensor]]] = []
        self._hooks: Hooks | None = None
        self._on = False

    def begin_fit(self, learner: Learner) -> None:
        children = list(learner.model.children())
        self.stats = [[] for _ in children]
        index = {id(m): i for i, m in enumerate(children)}

        def record(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if self._on:
                out = output.detach()
                hist = (out.cpu() if self.to_cpu else out).histc(40, 0, 10)
                self.stats[index[id(module)]].append((out.mean().cpu(), out.std().cpu(), hist))

        self._hooks = Hooks(children, record)

    def begin_batch(self, learner: Learner) -> None:
        self._on = learner.in_train

    def after_fit(self, learner: Learner) -> None:
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None


def make_data(samples: int, bs: int) -> DataBunch:
    gen = torch.Generator().manual_seed(0)
    n_valid = max(samples // 5, 1)
    x = torch.randn(samples + n_valid, 784, generator=gen)
    y = torch.randint(0, 10, (samples + n_valid,), generator=gen)
    return DataBunch.from_tensors(
        x[:samples], y[:samples], x[samples:], y[samples:], bs=bs, input_shape=(1, 28, 28)
    )


VARIANTS: dict[str, Callable[[], list[object]]] = {
    "none": lambda: [],
    "lesson": lambda: [LessonHooks(to_cpu=True)],
    "histc": lambda: [LessonHooks(to_cpu=False)],
    "activation_stats": lambda: [ActivationStats(save=False, report=False)],
}
"""The extra plugins of each timed fit."""


def time_fit(model: nn.Module, data: DataBunch, extra: list[object], device: str) -> float:
    plugins: list[object] = ["progress:bar=false", f"device:device={device}", *extra]
    learner = Learner(model, data, lr=0.4, plugins=plugins)  # type: ignore[arg-type]
    gc.collect()
    gc.disable()  # keep the collector's pauses out of the timings
    try:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            learner.fit(1)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the metrics' epoch-end read syncs already; be sure
        return time.perf_counter() - start
    finally:
        gc.enable()


def measure(samples: int, bs: int, runs: int, device: str) -> dict[str, tuple[float, float]]:
    """Median seconds and median paired ratio to ``none`` of each variant."""
    data = make_data(samples, bs)
    torch.manual_seed(0)
    initial = cnn(n_out=10).state_dict()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    time_fit(cnn(n_out=10), data, [], device)  # warm up (CUDA context, kernels, allocator)
    for _ in range(runs):
        for name, extra in VARIANTS.items():
            model = cnn(n_out=10)
            model.load_state_dict(initial)
            times[name].append(time_fit(model, data, extra(), device))
    result = {}
    for name, seconds in times.items():
        ratios = [t / base for t, base in zip(seconds, times["none"])]
        result[name] = (statistics.median(seconds), statistics.median(ratios))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lookinside demo activation_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each variant (default 5)")
    parser.add_argument("--samples", type=int, default=10_000, help="training samples")
    parser.add_argument("--bs", type=int, default=512, help="batch size (the lesson's 512)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto...")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} thread(s); "
        f"lesson CNN, bs {args.bs}, {args.samples} random 28x28 samples, {args.runs} runs"
    )
    print(f"{'variant':<18} {'median s':>9} {'ratio':>7}")
    results = measure(args.samples, args.bs, args.runs, args.device)
    for name, (seconds, ratio) in results.items():
        print(f"{name:<18} {seconds:>9.3f} {ratio:>7.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
