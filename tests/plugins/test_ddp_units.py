"""The ddp plugin in one process: sharding loaders, option checks, and what the
other plugins do in a distributed fit (metrics summed over ranks, rank 0 alone
printing and writing), with a fake ``learner.dist`` instead of a process group.

The torchrun tests, with real processes, are in tests/distributed.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler
from torch.utils.data import DataLoader
from torch.utils.data import IterableDataset
from torch.utils.data import RandomSampler
from torch.utils.data import Sampler
from torch.utils.data import SequentialSampler
from torch.utils.data import TensorDataset
from torch.utils.data.distributed import DistributedSampler

import plugins.ddp
from engine import Learner
from engine import PluginError
from engine.coordinator import Vote
from engine.data import ShardSampler
from engine.data import TensorLoader
from engine.distributed import DistributedCoordinator
from observers.csv_logger import CSVLogger
from observers.metrics import Metrics
from observers.progress import Progress
from observers.recorder import Recorder
from plugins.checkpoint import Checkpoint
from plugins.ddp import DDP
from plugins.early_stopping import EarlyStopping
from tests.helpers import tiny_data
from tests.helpers import tiny_model

GOING_ON, PASS_OVER, CANCEL_TRAIN = Vote.GOING_ON, Vote.PASS_OVER, Vote.CANCEL_TRAIN

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


class FakeDist:
    """Stands in for :class:`~engine.distributed.Distributed` without a process group.

    Every rank says what this one says at each sync point. ``sum`` answers as
    if the other ranks had added ``other`` (default: as much as this rank, that
    is ``world_size`` identical ranks).
    """

    def __init__(
        self, rank: int = 0, world_size: int = 2, other: list[float] | None = None
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.other = other
        self.sync_forward = True
        self.said: list[int] = []
        self.sums: list[list[float]] = []
        self.broadcasts: list[Any] = []
        self.state: Any = None
        """What :meth:`broadcast` answers (rank 0's object); ``None``: the caller's."""
        self.peer: Any = None
        self.gathered: list[Any] = []
        self.closed = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, saying: int) -> list[int]:
        self.said.append(saying)
        counts = [0] * len(Vote)
        counts[saying] = self.world_size
        return counts

    def sum(self, values: list[float]) -> list[float]:
        self.sums.append(list(values))
        if self.other is None:
            return [v * self.world_size for v in values]
        assert len(self.other) == len(values)
        return [v + o for v, o in zip(values, self.other)]

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        self.broadcasts.append(obj)
        return obj if self.state is None else self.state

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``: the others sent ``peer`` (default: the same)."""
        self.gathered.append(obj)
        everyone = [obj if self.peer is None else self.peer] * self.world_size
        everyone[self.rank] = obj
        return everyone

    def close(self) -> None:
        self.closed += 1


class Join:
    """Puts the fake on ``learner.dist`` in begin_fit, and a coordinator over it, where
    the ddp plugin would."""

    name = "fake_ddp"
    order = -45

    def __init__(self, dist: FakeDist) -> None:
        self.dist = dist

    def begin_fit(self, learner: Any) -> None:
        learner.dist = self.dist
        learner.coordinator = DistributedCoordinator(self.dist, self.dist.sync_forward)  # type: ignore[arg-type]


@pytest.fixture
def ddp(monkeypatch: pytest.MonkeyPatch) -> DDP:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return DDP(seed=5)


def dataset(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n))


def targets(dl: Any) -> list[list[int]]:
    return [yb.tolist() for _, yb in dl]


# -- sharding DataLoaders -----------------------------------------------------------


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batch)
    return torch.stack(xs), torch.stack(ys) * 100


def test_shuffled_dataloader_gets_a_padded_shard_sampler(ddp: DDP) -> None:
    dl = DataLoader(dataset(), batch_size=2, shuffle=True, drop_last=True, collate_fn=collate)
    sharded = ddp._shard(dl, 1, 3, pad=True)
    assert isinstance(sharded, DataLoader) and sharded is not dl
    sampler = sharded.sampler
    assert type(sampler) is ShardSampler
    assert (sampler.n, sampler.rank, sampler.world_size) == (10, 1, 3)
    assert (sampler.shuffle, sampler.seed, sampler.pad) == (True, 5, True)
    assert sharded.batch_size == 2
    assert sharded.drop_last is True
    assert sharded.collate_fn is collate
    assert sharded.dataset is dl.dataset
    order = list(ShardSampler(10, 0, 1, shuffle=True, seed=5))
    padded = order + order[:2]
    mine = padded[1::3]  # 4 indices, the last one the order's first
    assert mine == [order[1], order[4], order[7], order[0]]
    assert targets(sharded) == [[100 * i for i in mine[:2]], [100 * i for i in mine[2:]]]
    assert len(sharded) == 2


def test_sequential_dataloader_shard_without_padding(ddp: DDP) -> None:
    dl = DataLoader(dataset(), batch_size=3)
    sharded = ddp._shard(dl, 0, 4, pad=False)
    sampler = sharded.sampler
    assert type(sampler) is ShardSampler
    assert (sampler.shuffle, sampler.pad) == (False, False)
    assert sharded.drop_last is False
    assert targets(sharded) == [[0, 4, 8]]
    assert targets(ddp._shard(dl, 3, 4, pad=False)) == [[3, 7]]
    # every sample counted once over the ranks
    shards = [targets(ddp._shard(dl, r, 4, pad=False)) for r in range(4)]
    assert sorted(itertools.chain.from_iterable(itertools.chain(*shards))) == list(range(10))


def test_shard_sampler_epoch_follows_begin_epoch(ddp: DDP) -> None:
    sharded = ddp._shard(DataLoader(dataset(), batch_size=10, shuffle=True), 0, 1, pad=True)
    learner = SimpleNamespace(epoch=3, data=SimpleNamespace(train_dl=sharded, valid_dl=None))
    ddp.begin_epoch(learner)  # type: ignore[arg-type]
    assert sharded.sampler.epoch == 0  # idle: nothing changes
    ddp.active = True
    ddp.begin_epoch(learner)  # type: ignore[arg-type]
    assert sharded.sampler.epoch == 3
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(5 + 3)).tolist()
    assert targets(sharded) == [expected]


class Stream(IterableDataset):
    def __iter__(self) -> Any:
        return iter([(torch.zeros(1), torch.tensor(0))])


class Backwards(Sampler[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        return iter(range(self.n - 1, -1, -1))

    def __len__(self) -> int:
        return self.n


def test_iterable_dataset_cannot_be_sharded(ddp: DDP) -> None:
    with pytest.raises(PluginError) as info:
        ddp._shard(DataLoader(Stream(), batch_size=1), 0, 2, pad=True)
    message = str(info.value)
    assert message.startswith(
        "plugin 'ddp': cannot give each rank a share of a DataLoader over an IterableDataset "
        "(Stream); "
    )
    assert "DistributedSampler" in message
    assert message.endswith("set -p ddp:shard=false")


def test_custom_sampler_cannot_be_sharded(ddp: DDP) -> None:
    dl = DataLoader(dataset(), batch_size=2, sampler=Backwards(10))
    with pytest.raises(PluginError, match=r"with its own sampler or batch_sampler \(Backwards,"):
        ddp._shard(dl, 0, 2, pad=True)


def test_random_sampler_with_replacement_or_num_samples_cannot_be_sharded(ddp: DDP) -> None:
    for sampler in (
        RandomSampler(range(10), replacement=True),
        RandomSampler(range(10), num_samples=40),
    ):
        dl = DataLoader(dataset(), batch_size=5, sampler=sampler)
        with pytest.raises(PluginError, match=r"a RandomSampler with replacement or num_samples"):
            ddp._shard(dl, 0, 2, pad=True)


def test_batch_sampler_cannot_be_sharded(ddp: DDP) -> None:
    batches = BatchSampler(SequentialSampler(range(10)), batch_size=3, drop_last=False)
    dl = DataLoader(dataset(), batch_sampler=batches)
    with pytest.raises(PluginError) as info:
        ddp._shard(dl, 0, 2, pad=True)
    assert (
        "cannot give each rank a share of a DataLoader with its own sampler or batch_sampler "
        "(BatchSampler," in (str(info.value))
    )
    assert str(info.value).endswith("set -p ddp:shard=false")


def test_a_list_of_batches_cannot_be_sharded(ddp: DDP) -> None:
    batches = [(torch.zeros(2, 1), torch.zeros(2))]
    with pytest.raises(PluginError) as info:
        ddp._shard(batches, 0, 2, pad=True)
    assert str(info.value).startswith(
        "plugin 'ddp': cannot give each rank a share of a list; use a TensorLoader or a "
        "DataLoader over a map-style dataset"
    )


def test_distributed_sampler_is_kept(ddp: DDP) -> None:
    data = dataset()
    dl = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, num_replicas=2, rank=0))
    assert ddp._shard(dl, 1, 2, pad=True) is dl
    assert ddp._shard(None, 1, 2, pad=False) is None


def test_tensor_loader_is_sharded_in_place_with_rank_0_order(ddp: DDP) -> None:
    x = torch.arange(10, dtype=torch.float32).unsqueeze(1)
    loader = TensorLoader(x, torch.arange(10), bs=2, shuffle=True, seed=1)
    rank0 = TensorLoader(x, torch.arange(10), bs=2, shuffle=True, seed=99)
    ddp.dist = FakeDist(rank=1)
    ddp.dist.state = rank0.generator.get_state()  # rank 0 was seeded differently
    assert ddp._shard(loader, 1, 2, pad=True) is loader
    assert (loader.rank, loader.world_size) == (1, 2)
    assert torch.equal(ddp.dist.broadcasts[0], torch.Generator().manual_seed(1).get_state())
    order = targets(TensorLoader(x, torch.arange(10), bs=10, shuffle=True, seed=99))[0]
    assert targets(loader) == [order[1:4:2], order[5:8:2], order[9:10]]
    assert ddp._shard(loader, 1, 2, pad=True) is loader  # sharded already: left alone
    assert len(ddp.dist.broadcasts) == 1
    for undo in ddp._undo:
        undo()
    assert (loader.rank, loader.world_size) == (0, 1)
    assert len(loader) == 5


def test_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(
        ValueError, match="option 'backend' should be auto, gloo or nccl, got 'mpi'"
    ):
        DDP(backend="mpi")
    with pytest.raises(ValueError, match="option 'timeout' should be > 0, got 0"):
        DDP(timeout=0)
    with pytest.raises(ValueError, match="option 'timeout' should be > 0, got nan"):
        DDP(timeout=float("nan"))


def test_active_only_with_several_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert DDP().active is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert DDP().active is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    plugin = DDP(backend="gloo")
    assert (plugin.active, plugin.world_size) == (True, 2)
    monkeypatch.setenv("WORLD_SIZE", "zero")
    with pytest.raises(ValueError, match="WORLD_SIZE should be a positive integer, got 'zero'"):
        DDP()


# -- a whole fit through the plugin, with the process group and DDP faked -----------


class Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: calls the module, keeps the options."""

    def __init__(self, module: nn.Module, **options: Any) -> None:
        super().__init__()
        self.module = module
        self.options = options
        self.training_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.training_calls += self.module.training
        return self.module(x)


class Snapshot:
    """What the learner looks like at each begin_epoch."""

    name = "snapshot"

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def begin_epoch(self, learner: Any) -> None:
        train, valid = learner.data.train_dl, learner.data.valid_dl
        self.seen.append(
            {
                "dist": learner.dist,
                "wrapper": learner.model_wrapper,
                "train": (train.rank, train.world_size, train.pad),
                "valid": (valid.rank, valid.world_size, valid.pad),
            }
        )


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch) -> Any:
    """WORLD_SIZE=2, with Distributed.start answering a FakeDist and DDP a Wrapped."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", Wrapped)
    state = SimpleNamespace(dist=FakeDist(rank=1), starts=[])

    def start(backend: str, timeout: float) -> FakeDist:
        state.starts.append((backend, timeout))
        return state.dist

    monkeypatch.setattr(plugins.ddp, "Distributed", SimpleNamespace(start=start))
    return state


def test_fit_with_the_plugin_shards_wraps_and_undoes(faked: Any) -> None:
    snapshot = Snapshot()
    plugin = DDP(timeout=30)
    data = tiny_data()
    train_dl, valid_dl = data.train_dl, data.valid_dl
    learner = Learner(tiny_model(), data, plugins=[plugin, snapshot], defaults=False, config=False)
    fake = faked.dist
    learner.fit(1)
    assert faked.starts == [("gloo", 30.0)]
    seen = snapshot.seen[0]
    assert seen["dist"] is fake
    wrapper = seen["wrapper"]
    assert type(wrapper) is Wrapped and wrapper.module is learner.model
    sync_key = "forward_sync_buffers" if plugins.ddp._ddp_takes_sync() else "broadcast_buffers"
    assert wrapper.options == {
        "device_ids": None,
        "output_device": None,
        "find_unused_parameters": False,
        sync_key: True,
    }
    assert wrapper.training_calls == 1  # the loop calls the wrapper, not the model
    assert seen["train"] == (1, 2, True) and seen["valid"] == (1, 2, False)
    assert fake.gathered == [{"device": "cpu", "train": 8, "valid": 4}]
    assert len(fake.broadcasts) == 2  # each loader's generator state, from rank 0
    # a Linear model has no buffers: no sync point before the forward; rank 1 has
    # one training batch (4 of 8 samples) and one validation batch (2 of 4)
    assert fake.sync_forward is False
    assert fake.said == [GOING_ON, PASS_OVER, PASS_OVER, GOING_ON]
    # after the fit: unwrapped, unsharded, the groups closed; the rank stays
    assert learner.model_wrapper is None
    assert learner.data.train_dl is train_dl and learner.data.valid_dl is valid_dl
    assert (train_dl.rank, train_dl.world_size, valid_dl.world_size) == (0, 1, 1)
    assert fake.closed == 1 and plugin.dist is None
    assert learner.dist is fake and learner.is_main is False


@pytest.mark.parametrize(
    ("norm", "broadcast", "sync_forward"),
    [
        (None, True, False),
        (nn.BatchNorm1d, True, True),
        (nn.BatchNorm1d, False, False),
        (nn.SyncBatchNorm, False, True),
    ],
)
def test_forward_sync_point_only_when_the_forward_communicates(
    faked: Any, norm: Any, broadcast: bool, sync_forward: bool
) -> None:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(3, 2)]
    if norm is not None:
        layers.append(norm(2))
    learner = Learner(
        nn.Sequential(*layers),
        tiny_data(),
        plugins=[DDP(broadcast_buffers=broadcast)],
        defaults=False,
        config=False,
    )
    learner.fit(0)
    assert faked.dist.sync_forward is sync_forward


def test_ranks_with_different_datasets_are_refused(faked: Any) -> None:
    faked.dist.peer = {"device": "cpu", "train": 9, "valid": 4}
    data = tiny_data()
    learner = Learner(tiny_model(), data, plugins=[DDP()], defaults=False, config=False)
    with pytest.raises(PluginError) as info:
        learner.fit(1)
    assert str(info.value).startswith(
        "plugin 'ddp': the ranks have different training sets (samples per rank: [9, 8]); "
        "every rank must load the same dataset"
    )
    assert faked.dist.closed == 1  # after_fit still ends the groups
    assert learner.model_wrapper is None
    assert data.train_dl.world_size == 1


# -- metrics summed over the ranks ------------------------------------------------


def mean_abs_logit(pred: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return pred.abs().mean()


def metrics_fit(dist: FakeDist | None, epochs: int = 2) -> Metrics:
    metrics = Metrics(("accuracy", mean_abs_logit))
    plugins: list[object] = [metrics]
    if dist is not None:
        plugins.append(Join(dist))
    learner = Learner(
        tiny_model(), tiny_data(), lr=0.5, plugins=plugins, defaults=False, config=False
    )
    learner.fit(epochs)
    return metrics


KEYS = [f"{p}_{k}" for p in ("train", "valid") for k in ("loss", "accuracy", "mean_abs_logit")]


def test_identical_ranks_log_the_single_process_values() -> None:
    alone = metrics_fit(None).history
    dist = FakeDist()
    together = metrics_fit(dist).history
    assert len(together) == len(alone) == len(dist.sums) == 2
    for epoch, (a, b, sent) in enumerate(zip(alone, together, dist.sums)):
        assert [b[k] for k in KEYS] == [a[k] for k in KEYS]
        # what this rank sent: per pass samples, loss sum, compared, right, metric sum
        assert len(sent) == 11
        assert (sent[0], sent[2], sent[5], sent[7]) == (8.0, 8.0, 4.0, 4.0)
        assert sent[1] / sent[0] == a["train_loss"]
        assert sent[3] / sent[2] == a["train_accuracy"]
        assert sent[6] / sent[5] == a["valid_loss"]
        # the time is this rank's: the pooled sum over 2 ranks, halved
        assert b["time"] == sent[-1]
        assert b["epoch"] == epoch


def test_pooled_means_with_another_rank() -> None:
    """The other rank adds 12 training samples (loss sum 6, 9 right, metric sum 30),
    6 validation samples (loss sum 3, 2 right, metric sum 1.5) and 5 seconds."""
    other = [12.0, 6.0, 12.0, 9.0, 30.0, 6.0, 3.0, 6.0, 2.0, 1.5, 5.0]
    dist = FakeDist(other=other)
    history = metrics_fit(dist).history
    alone = metrics_fit(None).history
    for log, sent, mine in zip(history, dist.sums, alone):
        n, loss, compared, right, metric = sent[:5]
        nv, loss_v, compared_v, right_v, metric_v = sent[5:10]
        assert (n, compared, nv, compared_v) == (8.0, 8.0, 4.0, 4.0)
        assert right == mine["train_accuracy"] * 8 and right_v == mine["valid_accuracy"] * 4
        assert log["train_loss"] == (loss + 6.0) / (8.0 + 12.0)
        assert log["train_accuracy"] == (right + 9.0) / (8.0 + 12.0)
        assert log["train_mean_abs_logit"] == (metric + 30.0) / 20.0
        assert log["valid_loss"] == (loss_v + 3.0) / (4.0 + 6.0)
        assert log["valid_accuracy"] == (right_v + 2.0) / 10.0
        assert log["valid_mean_abs_logit"] == (metric_v + 1.5) / 10.0
        assert log["time"] == (sent[-1] + 5.0) / 2
        assert log["train_loss"] != mine["train_loss"]


def test_a_pass_with_no_batch_here_counts_the_other_ranks() -> None:
    """This rank has no validation loader; the other's 6 samples make the valid_* values."""
    dist = FakeDist(other=[0.0, 0.0, 0.0, 0.0, 6.0, 3.0, 6.0, 4.0, 0.0])
    metrics = Metrics()
    data = tiny_data()
    data.valid_dl = None
    learner = Learner(tiny_model(), data, plugins=[metrics, Join(dist)], defaults=False)
    learner.fit(1)
    sent = dist.sums[0]
    assert sent[4:8] == [0.0, 0.0, 0.0, 0.0]
    assert metrics.history[0]["valid_loss"] == 0.5
    assert metrics.history[0]["valid_accuracy"] == 4.0 / 6.0


# -- rank 0 alone prints and writes ------------------------------------------------


def output_fit(tmp_path: Path, rank: int) -> Learner:
    plugins: list[object] = [
        Metrics(),
        Recorder(),
        Progress(bar=False),
        CSVLogger(),
        Checkpoint(dir=str(tmp_path / "ckpt")),
        Join(FakeDist(rank=rank)),
    ]
    if HAS_TENSORBOARD:
        from observers.tensorboard import TensorBoard

        plugins.append(TensorBoard(histograms=False))
    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=plugins,
        defaults=False,
        config=False,
        out_dir=tmp_path / "out",
    )
    learner.add_plugin(CSVLogger(tmp_path / "abs" / "log.csv"), "csv_absolute")
    learner.fit(1)
    return learner


def files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_rank_1_writes_and_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nor in the current folder (tensorboard's runs/ default)
    learner = output_fit(tmp_path, rank=1)
    assert list(tmp_path.rglob("*")) == []
    assert capsys.readouterr() == ("", "")
    assert learner.plugins["csv_logger"].file_path is None
    assert learner.plugins["csv_absolute"].file_path is None
    assert learner.plugins["checkpoint"].directory is None
    # the values are all there, only not written
    assert learner.plugins["recorder"].iterations == [0, 1]
    assert learner.plugins["metrics"].history[0]["valid_loss"] is not None


def test_rank_0_writes_and_prints_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    learner = output_fit(tmp_path, rank=0)
    written = files(tmp_path)
    board = [f for f in written if f.startswith("out/tensorboard/")]
    expected = [
        "abs/log.csv",
        "ckpt/best.pt",
        "ckpt/last.pt",
        "out/loss.png",  # no lr.png, loss_vs_lr.png: the lr was constant
        "out/metrics.csv",
    ]
    assert [f for f in written if f not in board] == expected
    if HAS_TENSORBOARD:
        assert len(board) == 1 and board[0].startswith("out/tensorboard/events.out.tfevents.")
    else:
        assert board == []
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2  # the header and epoch 0's row
    assert lines[0].split() == list(learner.plugins["metrics"].history[0])
    assert lines[1].split()[0] == "0"
    assert err == ""
    assert (tmp_path / "abs" / "log.csv").read_text() == (
        tmp_path / "out" / "metrics.csv"
    ).read_text()


class Flat:
    """Logs a value that never improves, for early stopping to watch."""

    name = "flat"
    order = 50

    def after_epoch(self, learner: Any) -> None:
        learner.log["flat"] = 1.0


REASON = "early_stopping: stopped after epoch 1: flat did not improve for 1 epoch(s); best flat 1 at epoch 0"


@pytest.mark.parametrize("rank", [0, 1])
def test_early_stopping_prints_on_rank_0_only(
    rank: int, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = FakeDist(rank=rank)
    stopper = EarlyStopping(monitor="flat", mode="min", patience=1)
    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=[Flat(), stopper, Join(dist)],
        defaults=False,
        config=False,
    )
    learner.fit(4)
    assert stopper.stopped_epoch == 1
    assert stopper.stopped_reason == REASON
    assert capsys.readouterr().out == (REASON + "\n" if rank == 0 else "")
    # every rank decides alike; the stop is announced at the epoch-end sync point
    epoch = [GOING_ON] * 4 + [PASS_OVER, PASS_OVER]
    assert dist.said == [*epoch, GOING_ON, *epoch, CANCEL_TRAIN]
