"""Data-parallel training on ``torch.distributed``, under ``torchrun``.

On by default and idle in a single process: when ``torchrun`` starts several
processes (``WORLD_SIZE`` > 1), each one's ``ddp`` plugin joins the process
group (nccl for a model on CUDA, gloo on the CPU), wraps the model in
``DistributedDataParallel`` and gives its rank a shard of every pass. Every
other plugin keeps working: metrics are summed over the ranks, only rank 0
prints and writes files (``learner.is_main``), and cancellations are agreed by
all ranks (see :mod:`engine.distributed`).

``bs`` is per process: the ranks together train on ``world_size * bs``
samples per step, so one step of N processes matches one step of a single
process with N times the batch size.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from engine import order
from engine.distributed import Distributed
from engine.distributed import DistributedCoordinator
from engine.distributed import env_rank
from engine.distributed import env_world_size
from engine.exceptions import PluginError
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    import torch

    from engine.learner import Learner

SHARD_HINT = (
    "use a TensorLoader or a DataLoader over a map-style dataset, or give each rank its "
    "own shard yourself (a DistributedSampler) and set -p ddp:shard=false"
)

_LOADER_KEYS = (
    "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout", "worker_init_fn",
    "multiprocessing_context", "generator", "persistent_workers", "pin_memory_device",
)  # fmt: skip
"""What a sharded DataLoader copies from the one it replaces."""


def _ddp_takes_sync() -> bool:
    """Whether DistributedDataParallel takes ``forward_sync_buffers`` (torch 2.15's name
    for ``broadcast_buffers``)."""
    from torch.nn.parallel.distributed import DistributedDataParallel

    return "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters


class DDP:
    """Train on every process ``torchrun`` started, as one model.

    Does nothing when the process runs alone. Under ``torchrun`` with
    ``WORLD_SIZE`` > 1, for each fit: starts the process group (unless the
    script did), wraps the model in ``DistributedDataParallel`` (the loop calls
    ``learner.model_wrapper``; ``learner.model`` stays the plain module, so
    checkpoints move freely between one process and several), shards the
    loaders, and in ``after_fit`` ends the groups it started.

    The training loader is padded so every rank runs as many batches (as
    ``DistributedSampler`` does); the validation loader is not, so every
    validation sample counts once. In-memory loaders draw rank 0's order;
    DataLoaders get a :class:`~engine.data.ShardSampler` seeded with ``seed``
    plus the epoch.

    :param backend: ``auto`` (nccl for a model on CUDA, else gloo), ``gloo`` or ``nccl``.
    :param timeout: seconds a rank waits for the others in a collective operation
        before failing (a crashed peer then ends the fit instead of hanging it).
    :param shard: give each rank its share of the loaders; ``false`` when they
        yield each rank's shard already.
    :param seed: seeds the shuffling of sharded DataLoaders (with the epoch).
    :param find_unused: DistributedDataParallel's ``find_unused_parameters``,
        for models that leave some parameters out of the loss.
    :param broadcast_buffers: send rank 0's buffers (BatchNorm statistics) to the
        others before each training forward.
    """

    name = "ddp"
    order = order.DDP

    def __init__(
        self,
        backend: str = "auto",
        timeout: float = 600.0,
        shard: bool = True,
        seed: int = 0,
        find_unused: bool = False,
        broadcast_buffers: bool = True,
    ) -> None:
        import torch

        if backend not in ("auto", "gloo", "nccl"):
            raise ValueError(
                f"plugin 'ddp': option 'backend' should be auto, gloo or nccl, got {backend!r}"
            )
        if not timeout > 0:
            raise ValueError(f"plugin 'ddp': option 'timeout' should be > 0, got {timeout!r}")
        self.backend = backend
        self.timeout = float(timeout)
        self.shard = shard
        self.seed = seed
        self.find_unused = find_unused
        self.broadcast_buffers = broadcast_buffers
        self.world_size = env_world_size()
        self.active = self.world_size > 1
        """Whether this process is one of several (else the plugin does nothing)."""
        self.dist: Distributed | None = None
        self._loaders: tuple[Any, Any] | None = None
        self._undo: list[Callable[[], None]] = []
        if self.active and backend != "gloo" and torch.cuda.is_available():
            # so that device=auto (plain "cuda") means this rank's own GPU
            torch.cuda.set_device(env_rank()[1] % torch.cuda.device_count())

    def begin_fit(self, learner: Learner) -> None:
        from torch import nn
        from torch.nn.parallel import DistributedDataParallel

        if not self.active:
            return
        device = _model_device(learner)
        backend = self.backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        self.dist = Distributed.start(backend, self.timeout)
        learner.dist = self.dist
        self._check_alike(learner, device)
        index = [device.index] if device.type == "cuda" else None
        # torch 2.15 renamed broadcast_buffers to forward_sync_buffers
        sync_key = "forward_sync_buffers" if _ddp_takes_sync() else "broadcast_buffers"
        sync: dict[str, Any] = {sync_key: self.broadcast_buffers}
        learner.model_wrapper = DistributedDataParallel(
            learner.model,
            device_ids=index,
            output_device=index[0] if index else None,
            find_unused_parameters=self.find_unused,
            **sync,
        )
        # the forward communicates only to broadcast buffers, or in SyncBatchNorm
        model = learner.model
        has_buffers = next(iter(model.buffers()), None) is not None
        self.dist.sync_forward = (self.broadcast_buffers and has_buffers) or any(
            isinstance(m, nn.SyncBatchNorm) for m in model.modules()
        )
        # every rank validates rank 0's model: its buffers (BatchNorm statistics), as
        # DDP would send them before the next training forward
        broadcast = self.broadcast_buffers and has_buffers
        learner.coordinator = DistributedCoordinator(
            self.dist, self.dist.sync_forward, model.buffers if broadcast else None
        )
        if self.shard:
            self._shard_loaders(learner)

    def begin_epoch(self, learner: Learner) -> None:
        for dl in (learner.data.train_dl, learner.data.valid_dl):
            sampler = getattr(dl, "sampler", None)
            if self.active and callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(learner.epoch)  # type: ignore[union-attr]

    def after_fit(self, learner: Learner) -> None:
        # runs before the other plugins' after_fit: none of them may communicate
        learner.model_wrapper = None
        for undo in reversed(self._undo):
            undo()
        self._undo = []
        if self.dist is not None:
            self.dist.close()  # learner.dist stays, with its rank, for is_main
            self.dist = None

    # -- set-up ----------------------------------------------------------------

    def _check_alike(self, learner: Learner, device: torch.device) -> None:
        """Every rank must train the same data on its own device."""
        assert self.dist is not None
        mine = {
            "device": str(device),
            "train": _size(learner.data.train_dl),
            "valid": _size(learner.data.valid_dl),
        }
        everyone = self.dist.gather(mine)
        for key in ("train", "valid"):
            sizes = [info[key] for info in everyone]
            if len(set(sizes)) > 1:
                kind = "training" if key == "train" else "validation"
                raise PluginError(
                    f"plugin 'ddp': the ranks have different {kind} sets (samples per "
                    f"rank: {sizes}); every rank must load the same dataset, and ddp "
                    "gives each its share"
                )
        devices = [info["device"] for info in everyone]
        if device.type == "cuda" and len(set(devices)) < len(devices):
            raise PluginError(
                f"plugin 'ddp': several ranks train on the same GPU ({devices}); use "
                "-p device:device=auto (or cuda) so that each rank takes the GPU of its "
                "LOCAL_RANK"
            )

    def _shard_loaders(self, learner: Learner) -> None:
        assert self.dist is not None
        rank, world = self.dist.rank, self.dist.world_size
        data = learner.data
        originals = (data.train_dl, data.valid_dl)
        data.train_dl = self._shard(data.train_dl, rank, world, pad=True)
        data.valid_dl = self._shard(data.valid_dl, rank, world, pad=False)

        def put_back() -> None:
            data.train_dl, data.valid_dl = originals

        self._undo.append(put_back)

    def _shard(self, dl: Any, rank: int, world: int, pad: bool) -> Any:
        from torch.utils.data import DataLoader
        from torch.utils.data import IterableDataset
        from torch.utils.data import RandomSampler
        from torch.utils.data import SequentialSampler

        from engine.data import ShardSampler
        from engine.data import TensorLoader

        if dl is None:
            return None
        if isinstance(dl, TensorLoader):
            if dl.world_size > 1:
                return dl  # sharded already
            state = self.dist.broadcast(dl.generator.get_state())  # type: ignore[union-attr]
            dl.generator.set_state(state)  # rank 0's order, on every rank

            def unshard() -> None:
                dl.shard(0, 1)

            self._undo.append(unshard)
            return dl.shard(rank, world, pad)
        if not isinstance(dl, DataLoader):
            raise PluginError(
                f"plugin 'ddp': cannot give each rank a share of a {type(dl).__name__}; "
                + SHARD_HINT
            )
        if isinstance(dl.dataset, IterableDataset):
            raise PluginError(
                "plugin 'ddp': cannot give each rank a share of a DataLoader over an "
                f"IterableDataset ({type(dl.dataset).__name__}); " + SHARD_HINT
            )
        sampler = dl.sampler
        if hasattr(sampler, "num_replicas") and callable(getattr(sampler, "set_epoch", None)):
            return dl  # a DistributedSampler: sharded already
        custom = dl.batch_sampler if dl.batch_size is None else sampler
        plain = type(sampler) in (RandomSampler, SequentialSampler) and not (
            isinstance(sampler, RandomSampler)
            and (sampler.replacement or sampler._num_samples is not None)
        )
        if dl.batch_size is None or not plain:
            raise PluginError(
                "plugin 'ddp': cannot give each rank a share of a DataLoader with its own "
                f"sampler or batch_sampler ({type(custom).__name__}, or a RandomSampler "
                "with replacement or num_samples); " + SHARD_HINT
            )
        shuffle = isinstance(sampler, RandomSampler)
        shards = ShardSampler(len(dl.dataset), rank, world, shuffle, self.seed, pad)  # type: ignore[arg-type]
        options = {key: getattr(dl, key) for key in _LOADER_KEYS if hasattr(dl, key)}
        if dl.num_workers > 0:
            options["prefetch_factor"] = dl.prefetch_factor
        return DataLoader(dl.dataset, batch_size=dl.batch_size, sampler=shards, **options)


def _model_device(learner: Learner) -> torch.device:
    first = next(iter(learner.model.parameters()), None)
    if first is None:
        raise PluginError("plugin 'ddp': the model has no parameters to train")
    return first.device


def _size(dl: Any) -> int | None:
    """Samples (or, failing that, batches) a loader holds; None when it cannot say."""
    from engine.data import TensorLoader

    if dl is None:
        return None
    if isinstance(dl, TensorLoader):
        return len(dl.x)
    dataset = getattr(dl, "dataset", None)
    for sized in (dataset, dl):
        try:
            return len(sized)  # type: ignore[arg-type]
        except TypeError:
            continue
    return None


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`DDP`, on by default (idle unless torchrun started several processes).

    :param register: the registration function bound to this module.
    """
    register(DDP, default=True)
