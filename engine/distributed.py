"""What a fit needs from ``torch.distributed``: ranks, agreement and reductions.

A distributed fit runs one process per device (launched by ``torchrun``), each
with its own :class:`~engine.learner.Learner`. The ``ddp`` plugin starts the
process group and puts a :class:`Distributed` on ``learner.dist`` for the
length of the fit; plugins read ``learner.rank``, ``learner.world_size`` and
``learner.is_main`` rather than this module.

Cancellations must be agreed: when one rank stops and the others go on to the
next collective operation (the gradients' all-reduce in ``backward``, the
buffers' broadcast in ``forward``, the metrics' sums), they wait for it for ever.
So, during a distributed fit, the ``ddp`` plugin installs a
:class:`DistributedCoordinator` as ``learner.coordinator``, and the loop meets the
other ranks at its sync points (listed in :mod:`engine.coordinator`): before each
training forward (only when the forward communicates: a model with buffers that
DDP broadcasts, or SyncBatchNorm), before each backward, at the end of each pass
and of each epoch, and before the collective operations plugins do through the
coordinator (the buffers' broadcast before validation, the metrics' sums before
``after_epoch``), so that no plugin ordered before them can make one rank skip
them. At each, every rank casts a vote (going on, cancel the batch, out of
batches, cancel the pass, cancel the fit) and all of them act on the strongest. A
rank whose own plugin raised a cancellation casts it at the next sync point the
others reach. These exchanges travel on a separate gloo group, on the CPU, so they
never wait for a GPU.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any

from engine.coordinator import Coordinator
from engine.coordinator import Vote
from engine.exceptions import CancelBatchException
from engine.exceptions import CancelException

if TYPE_CHECKING:
    import torch

_STARTS = itertools.count(1)
"""How many process groups this process started (the same count on every rank)."""


def env_world_size() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``), 1 outside it.

    :raises ValueError: ``WORLD_SIZE`` is not a positive integer.
    """
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if size < 1:
        raise ValueError(f"WORLD_SIZE should be a positive integer, got {raw!r}")
    return size


def env_rank() -> tuple[int, int]:
    """This process's ``(RANK, LOCAL_RANK)`` as ``torchrun`` set them; ``(0, 0)`` outside it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


class Distributed:
    """This process's place in a distributed fit, and the exchanges the loop needs.

    :param group: the process group the model's gradients travel on (``None``:
        the default group).
    :param control: a gloo group for agreement and reductions of host values.
    :param owned: the groups were started here, and :meth:`close` ends them.
    """

    def __init__(self, group: Any = None, control: Any = None, owned: bool = False) -> None:
        import torch.distributed as dist

        self.group = group
        self.control = control
        self.owned = owned
        self.rank = dist.get_rank(group)
        """This process's rank, 0 to ``world_size - 1``."""
        self.world_size = dist.get_world_size(group)
        """The number of processes in the fit."""
        self.local_rank = env_rank()[1]
        """This process's rank on its machine: the GPU it uses."""
        self.backend = str(dist.get_backend(group))
        self.agreements = 0
        """How many sync points this process has passed (for tests and traces)."""
        self.sync_forward = True
        """Whether the training forward communicates (buffers broadcast, SyncBatchNorm),
        so that the ranks must agree before it too, not only before the backward."""

    @classmethod
    def start(cls, backend: str = "auto", timeout: float = 600.0) -> Distributed:
        """Join the process group ``torchrun`` describes, unless one is running already.

        :param backend: ``gloo``, ``nccl``, or ``auto`` (nccl when CUDA is
            available, else gloo).
        :param timeout: seconds a collective operation may wait for the others
            before failing.
        """
        import torch
        import torch.distributed as dist

        owned = not dist.is_initialized()
        if owned:
            for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
                if key not in os.environ:
                    raise RuntimeError(
                        f"WORLD_SIZE is set but {key} is not: start the processes with "
                        "torchrun (or `lookinside fit --nproc N`), which sets both"
                    )
            if backend == "auto":
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            # each fit starts a new group; a new key prefix in torchrun's store keeps
            # it from reading the addresses the previous fit's group left there
            from torch.distributed.distributed_c10d import PrefixStore
            from torch.distributed.rendezvous import rendezvous

            store, rank, size = next(iter(rendezvous("env://")))
            dist.init_process_group(
                backend,
                store=PrefixStore(f"lookinside/{next(_STARTS)}/", store),
                rank=rank,
                world_size=size,
                timeout=timedelta(seconds=timeout),
            )
        control = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout))
        return cls(None, control, owned)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that prints and writes files."""
        return self.rank == 0

    def agree(self, vote: Vote) -> list[int]:
        """Meet the other ranks at a sync point; returns how many ranks cast each vote.

        :param vote: what this rank does.
        :returns: per vote (indexed by :class:`~engine.coordinator.Vote`), the
            number of ranks that cast it.
        """
        import torch
        import torch.distributed as dist

        counts = torch.zeros(len(Vote), dtype=torch.int64)
        counts[vote] = 1
        dist.all_reduce(counts, group=self.control)
        self.agreements += 1
        return [int(c) for c in counts.tolist()]

    def sum(self, values: list[float]) -> list[float]:
        """Sum host numbers over the ranks (float64, on the control group)."""
        import torch
        import torch.distributed as dist

        if not values:
            return []
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, group=self.control)
        return [float(v) for v in tensor.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` (picklable), on every rank."""
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src, group=self.control)
        return box[0]

    def close(self) -> None:
        """End the groups this object started; it keeps its rank for ``is_main``."""
        import torch.distributed as dist

        if self.control is not None and dist.is_initialized():
            dist.destroy_process_group(self.control)
        self.control = None
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
        self.owned = False

    def __repr__(self) -> str:
        return f"<Distributed rank {self.rank} of {self.world_size}, {self.backend}>"


def decide(counts: list[int], mine: Vote) -> Vote:
    """What this rank does after a sync point: the strongest vote cast, if stronger
    than its own, else :attr:`~engine.coordinator.Vote.GOING_ON` (go on as it was).

    :param counts: :meth:`Distributed.agree`'s answer.
    :param mine: the vote this rank cast.
    """
    strongest = max((v for v in Vote if counts[v]), default=Vote.GOING_ON)
    return strongest if strongest > mine else Vote.GOING_ON


class DistributedCoordinator(Coordinator):
    """The ranks of a distributed fit meet at the loop's sync points (installed by ``ddp``).

    At each point every rank casts a :class:`~engine.coordinator.Vote` and raises
    the strongest one if it is stronger than its own. A cancellation a rank raised
    itself is cast at the next point the loop reaches (:meth:`cancelled`), where the
    others meet it; one raised by a sync point is not cast again: every rank knows.

    :param dist: this process's :class:`Distributed`.
    :param sync_forward: the training forward communicates (buffers broadcast,
        SyncBatchNorm), so the ranks must agree before it too.
    :param buffers: rank 0's buffers are broadcast to the others before each
        validation pass (``None``: no broadcast).
    """

    def __init__(
        self,
        dist: Distributed,
        sync_forward: bool = True,
        buffers: Callable[[], Iterable[torch.Tensor]] | None = None,
    ) -> None:
        self.dist = dist
        self.sync_forward = sync_forward
        self.buffers = buffers
        self.pass_over = False
        self._training = True
        self._raised: CancelException | None = None
        self._reductions: list[Callable[[], None]] = []

    def _agree(self, vote: Vote) -> None:
        winner = decide(self.dist.agree(vote), vote)
        if winner is Vote.GOING_ON:
            return
        self.pass_over = winner is Vote.PASS_OVER
        exc = winner.exception(f"{winner.words}: agreed by all {self.dist.world_size} ranks")
        self._raised = exc
        raise exc

    def begin_pass(self, training: bool) -> None:
        import torch.distributed as dist

        self.pass_over = False
        self._training = training
        if not training and self.buffers is not None:
            # every rank validates rank 0's model; agreeing first, so that a rank
            # that cancelled since the training pass ended does not leave the others
            # waiting in the broadcast
            self._agree(Vote.GOING_ON)
            for buffer in self.buffers():
                dist.broadcast(buffer, src=0)

    def before_forward(self) -> None:
        if self.sync_forward:
            self._agree(Vote.GOING_ON)

    def before_backward(self) -> None:
        self._agree(Vote.GOING_ON)

    def end_of_pass(self) -> None:
        self._agree(Vote.PASS_OVER)

    def before_epoch_ends(self) -> None:
        if self._reductions:
            self._agree(Vote.GOING_ON)
            for reduce in self._reductions:
                reduce()

    def end_of_epoch(self) -> None:
        self._agree(Vote.GOING_ON)

    def cancelled(self, exc: CancelException, after_backward: bool = False) -> None:
        if exc is self._raised:
            return  # raised by a sync point: every rank raised it
        if isinstance(exc, CancelBatchException) and (after_backward or not self._training):
            return  # nothing collective left in this batch: the cancellation is local
        self._agree(Vote.of(exc))

    def add_reduction(self, reduce: Callable[[], None]) -> None:
        self._reductions.append(reduce)


def main_process() -> bool:
    """Whether this process should print: rank 0 of a running process group, else
    rank 0 as ``torchrun`` numbered it (``RANK``, before the group starts), or alone.

    For code without a learner at hand, or before ``ddp``'s ``begin_fit`` set one
    up; plugins read ``learner.is_main``, which stays right after the fit's group
    has ended.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return bool(dist.get_rank() == 0)
    return env_rank()[0] == 0


def say(message: str) -> None:
    """Print ``message`` on rank 0 only (see :func:`main_process`)."""
    if main_process():
        print(message, flush=True)


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command running ``python ARGS`` in ``nproc`` processes of this machine."""
    import sys

    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        *args,
    ]


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python ARGS`` in ``nproc`` processes of this machine with ``torchrun``.

    :param nproc: the number of processes (one per GPU, or CPU workers).
    :param args: what follows ``python`` (``-m module ...`` or ``script.py ...``).
    :returns: torchrun's exit status.
    """
    import subprocess

    try:
        return subprocess.call(torchrun_command(nproc, args))
    except KeyboardInterrupt:  # torchrun got the Ctrl-C too and stops the processes
        return 130
