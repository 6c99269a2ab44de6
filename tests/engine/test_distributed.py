"""Data-parallel building blocks, in one process: the agreement table, sharded
loaders and samplers, and the loop's sync points with a fake ``learner.dist``.

No process group is started here (the torchrun tests are in tests/distributed):
a fake stands in for :class:`~engine.distributed.Distributed`, recording what the
loop says at each sync point and answering with scripted counts.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import CancelBatchException
from engine import CancelEpochException
from engine import CancelException
from engine import CancelTrainException
from engine import Learner
from engine.coordinator import Coordinator
from engine.coordinator import Vote
from engine.data import DataBunch
from engine.data import ShardSampler
from engine.data import TensorLoader
from engine.distributed import DistributedCoordinator
from engine.distributed import decide
from tests.helpers import Spy
from tests.helpers import tiny_data
from tests.helpers import tiny_model

G, CB, P, CE, CT = Vote

TRAIN = ["begin_batch", "after_pred", "after_loss", "after_backward", "after_step", "after_batch"]
VALID = ["begin_batch", "after_pred", "after_loss", "after_batch"]
ONE_EPOCH_SAYINGS = [G, G, G, G, P, P, G]
"""2 training batches (2 sync points each), 2 pass ends, the epoch end."""


# -- fakes ----------------------------------------------------------------------


class FakeDist:
    """Stands in for :class:`~engine.distributed.Distributed`; records each sync point.

    By default every rank says what this one says; ``answers`` maps the number of
    a sync point (1 for the first) to the counts it returns instead.
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 2,
        answers: dict[int, list[int]] | None = None,
        sync_forward: bool = True,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.answers = answers or {}
        self.sync_forward = sync_forward
        self.said: list[int] = []
        self.sums: list[list[float]] = []

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, saying: int) -> list[int]:
        self.said.append(saying)
        answer = self.answers.get(len(self.said))
        if answer is not None:
            return list(answer)
        counts = [0] * len(Vote)
        counts[saying] = self.world_size
        return counts

    def sum(self, values: list[float]) -> list[float]:
        self.sums.append(list(values))
        return [v * self.world_size for v in values]


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


class Raiser:
    """Raises ``exc`` at ``event`` when ``when(learner)`` is true (order 10, after the spy)."""

    name = "raiser"
    order = 10

    def __init__(self, event: str, exc: type[BaseException], when: Any = None) -> None:
        self.exc = exc
        self.when = when or (lambda learner: True)
        setattr(self, event, self._fire)

    def _fire(self, learner: Any) -> None:
        if self.when(learner):
            raise self.exc


def train_batch(i: int) -> Any:
    return lambda learner: learner.in_train and learner.iter == i


def fit(dist: FakeDist | None, *extra: object, epochs: int = 1, data: Any = None) -> Learner:
    plugins: list[object] = [*extra]
    if dist is not None:
        plugins.append(Join(dist))
    learner = Learner(
        tiny_model(), data or tiny_data(), lr=0.1, plugins=plugins, defaults=False, config=False
    )
    learner.fit(epochs)
    return learner


def counts(**said: int) -> list[int]:
    """Counts per saying from keyword names: ``counts(G=1, CT=1)``."""
    names = {"G": G, "CB": CB, "P": P, "CE": CE, "CT": CT}
    out = [0] * len(Vote)
    for name, n in said.items():
        out[names[name]] = n
    return out


# -- votes and the decision ------------------------------------------------------

EXCEPTION_OF = {
    CB: CancelBatchException,
    P: CancelBatchException,  # the batch under way ends; pass_over then ends the pass
    CE: CancelEpochException,
    CT: CancelTrainException,
}


@pytest.mark.parametrize("mine", list(Vote))
@pytest.mark.parametrize("other", list(Vote))
def test_decision_table(mine: Vote, other: Vote) -> None:
    """One rank votes ``mine``, another ``other``: only a stronger vote raises."""
    answer = [0] * 5
    answer[mine] += 1
    answer[other] += 1
    winner = decide(answer, mine)
    if other <= mine:
        assert winner is G
        return
    assert winner is other
    dist = FakeDist(answers={1: answer})
    coordinator = DistributedCoordinator(dist)  # type: ignore[arg-type]
    with pytest.raises(CancelException) as info:
        if mine is G:
            coordinator.before_backward()
        elif mine is P:
            coordinator.end_of_pass()
        else:
            coordinator.cancelled(mine.exception("this rank's own"))
    assert dist.said == [mine]
    assert type(info.value) is EXCEPTION_OF[other]
    assert str(info.value) == f"{other.words}: agreed by all 2 ranks"
    assert coordinator.pass_over is (other is P)


def test_decide_picks_the_strongest_of_several() -> None:
    answer = counts(G=3, CB=2, P=1, CE=2)
    assert decide(answer, G) is CE
    assert decide(answer, CE) is G
    assert decide(counts(CB=1, CT=3), CB) is CT
    # between mine and the strongest: what is weaker than mine is ignored
    assert decide(counts(G=1, CB=4, P=2), P) is G
    assert decide(counts(G=4), G) is G


def test_votes_stand_for_the_cancellations() -> None:
    assert Vote.of(CancelTrainException()) is CT
    assert Vote.of(CancelEpochException()) is CE
    assert Vote.of(CancelBatchException()) is CB
    assert [v.words for v in Vote] == [
        "going on",
        "cancel the batch",
        "out of batches",
        "cancel the pass",
        "cancel the fit",
    ]
    with pytest.raises(ValueError, match="going on is not a cancellation"):
        G.exception("x")


def test_a_cancellation_raised_by_a_sync_point_is_not_cast_again() -> None:
    """The rank's own cancellation is cast at once; one the ranks agreed on is not."""
    dist = FakeDist(answers={1: counts(G=1, CE=1)})
    coordinator = DistributedCoordinator(dist)  # type: ignore[arg-type]
    with pytest.raises(CancelEpochException) as info:
        coordinator.before_backward()
    coordinator.cancelled(info.value)
    assert dist.said == [G]
    coordinator.cancelled(CancelTrainException("mine"))
    assert dist.said == [G, CT]


def test_the_single_process_coordinator_does_nothing() -> None:
    coordinator = Coordinator()
    coordinator.begin_pass(True)
    coordinator.before_forward()
    coordinator.before_backward()
    coordinator.end_of_pass()
    coordinator.before_epoch_ends()
    coordinator.end_of_epoch()
    coordinator.cancelled(CancelTrainException())
    coordinator.add_reduction(lambda: pytest.fail("never called in one process"))
    assert coordinator.pass_over is False


# -- TensorLoader.shard -----------------------------------------------------------


def _loader(n: int, bs: int, shuffle: bool = True, seed: int = 7, **kw: Any) -> TensorLoader:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1) * 10
    return TensorLoader(x, torch.arange(n), bs=bs, shuffle=shuffle, seed=seed, **kw)


def _flat(lists: Any) -> list[int]:
    return list(itertools.chain.from_iterable(lists))


def _targets(loader: TensorLoader) -> list[list[int]]:
    batches = []
    for xb, yb in loader:
        assert torch.equal(xb.squeeze(1), yb.float() * 10)  # x and y stay together
        batches.append(yb.tolist())
    return batches


@pytest.mark.parametrize("n", [24, 20])
def test_shards_together_are_the_batches_of_one_process(n: int) -> None:
    """Batch t of ranks 0 and 1 at bs 3 = batch t of one loader at bs 6, each pass."""
    whole = _loader(n, 6)
    rank0 = _loader(n, 3).shard(0, 2)
    rank1 = _loader(n, 3).shard(1, 2)
    for _ in range(2):  # a second pass draws a new order, the same on every rank
        expected = _targets(whole)
        got0, got1 = _targets(rank0), _targets(rank1)
        assert len(got0) == len(got1) == len(expected) == len(rank0) == len(rank1)
        for t, batch in enumerate(expected):
            assert sorted(got0[t] + got1[t]) == sorted(batch)
            assert got0[t] == batch[0::2]  # sample i of the order goes to rank i % 2
            assert got1[t] == batch[1::2]


def test_shard_pads_with_the_first_samples_of_the_order() -> None:
    order = _targets(_loader(7, 7))[0]  # one batch: the whole shuffled order
    shards = [_targets(_loader(7, 2).shard(r, 3)) for r in range(3)]
    flat = [_flat(s) for s in shards]
    assert [len(f) for f in flat] == [3, 3, 3]
    assert flat == [
        [order[0], order[3], order[6]],
        [order[1], order[4], order[0]],
        [order[2], order[5], order[1]],
    ]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert [len(b) for b in shards[0]] == [2, 1]


def test_shard_without_padding_is_a_partition() -> None:
    order = _targets(_loader(11, 11))[0]
    flat = [_flat(_targets(_loader(11, 2).shard(r, 3, pad=False))) for r in range(3)]
    assert flat == [order[0::3], order[1::3], order[2::3]]
    assert [len(f) for f in flat] == [4, 4, 3]
    assert sorted(_flat(flat)) == list(range(11))


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("pad", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_shard_len_matches_iteration(shuffle: bool, pad: bool, drop_last: bool) -> None:
    for n, bs, world in [(10, 2, 3), (23, 4, 2), (5, 2, 4), (9, 3, 3), (3, 4, 2)]:
        for rank in range(world):
            loader = _loader(n, bs, shuffle=shuffle, drop_last=drop_last).shard(rank, world, pad)
            batches = _targets(loader)
            assert len(loader) == len(batches), (n, bs, world, rank)
            if drop_last:
                assert all(len(b) == bs for b in batches)


def test_unshuffled_shards_take_every_world_th_sample() -> None:
    assert _targets(_loader(7, 2, shuffle=False).shard(1, 3)) == [[1, 4], [0]]
    assert _targets(_loader(7, 2, shuffle=False).shard(1, 3, pad=False)) == [[1, 4]]
    assert _targets(_loader(7, 2, shuffle=False, drop_last=True).shard(0, 3)) == [[0, 3]]


def test_shard_0_of_1_restores_the_original_batches() -> None:
    for shuffle in (True, False):
        reference = _targets(_loader(10, 3, shuffle=shuffle))
        loader = _loader(10, 3, shuffle=shuffle).shard(1, 2)
        assert loader.shard(0, 1) is loader
        assert (loader.rank, loader.world_size) == (0, 1)
        assert len(loader) == 4
        assert _targets(loader) == reference


def test_shard_checks_the_rank() -> None:
    loader = _loader(10, 3)
    with pytest.raises(ValueError, match=r"rank should be in \[0, 2\), got 2"):
        loader.shard(2, 2)
    with pytest.raises(ValueError, match=r"rank should be in \[0, 2\), got -1"):
        loader.shard(-1, 2)
    assert (loader.rank, loader.world_size) == (0, 1)  # unchanged by a refused shard


def test_shard_repr_names_the_rank() -> None:
    loader = _loader(10, 3)
    assert repr(loader) == "TensorLoader(10 samples, bs=3, shuffle=True, seed=7)"
    loader.shard(1, 4)
    assert repr(loader) == "TensorLoader(10 samples, bs=3, shuffle=True, seed=7, rank 1 of 4)"


# -- ShardSampler -----------------------------------------------------------------


def test_shard_sampler_order_follows_seed_and_epoch() -> None:
    sampler = ShardSampler(20, 0, 1, shuffle=True, seed=3)
    first = list(sampler)
    assert list(sampler) == first  # the order changes only with set_epoch
    assert sorted(first) == list(range(20)) and first != list(range(20))
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(20))
    again = ShardSampler(20, 0, 1, shuffle=True, seed=3)
    again.set_epoch(1)
    assert list(again) == second
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(4)).tolist()
    assert second == expected  # seeded with seed + epoch
    assert list(ShardSampler(20, 0, 1, shuffle=True, seed=4)) != first


def test_shard_sampler_without_padding_partitions_the_indices() -> None:
    whole = list(ShardSampler(10, 0, 1, seed=5))
    shards = [list(ShardSampler(10, r, 3, seed=5, pad=False)) for r in range(3)]
    assert shards == [whole[0::3], whole[1::3], whole[2::3]]
    assert sorted(_flat(shards)) == list(range(10))
    assert [len(ShardSampler(10, r, 3, pad=False)) for r in range(3)] == [4, 3, 3]


def test_shard_sampler_pads_with_the_first_indices() -> None:
    whole = list(ShardSampler(10, 0, 1, seed=5))
    shards = [list(ShardSampler(10, r, 4, seed=5)) for r in range(4)]
    assert [len(s) for s in shards] == [3, 3, 3, 3]
    assert [len(ShardSampler(10, r, 4)) for r in range(4)] == [3, 3, 3, 3]
    padded = whole + whole[:2]
    assert shards == [padded[r::4] for r in range(4)]
    assert set(_flat(shards)) == set(range(10))


def test_shard_sampler_unshuffled_and_tiny() -> None:
    assert list(ShardSampler(5, 1, 2, shuffle=False)) == [1, 3, 0]
    assert list(ShardSampler(5, 1, 2, shuffle=False, pad=False)) == [1, 3]
    # fewer samples than ranks: padding repeats the order more than once
    assert [list(ShardSampler(2, r, 5, shuffle=False)) for r in range(5)] == [
        [0],
        [1],
        [0],
        [1],
        [0],
    ]
    assert list(ShardSampler(0, 0, 2)) == []
    with pytest.raises(ValueError, match=r"rank should be in \[0, 2\), got 3"):
        ShardSampler(10, 3, 2)


# -- the loop's sync points -------------------------------------------------------


def test_one_epoch_sync_points(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy)
    assert dist.said == ONE_EPOCH_SAYINGS
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        *TRAIN * 2,
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_sync_points_match_a_single_process_fit() -> None:
    """Agreeing to go on changes nothing: same weights as without a dist."""
    alone = fit(None, epochs=2)
    together = fit(FakeDist(), epochs=2)
    for a, b in zip(alone.model.parameters(), together.model.parameters()):
        assert torch.equal(a, b)


def test_agreed_cancel_train_ends_the_fit_without_announcing_it(spy: Spy) -> None:
    """Another rank cancels the fit at the 3rd sync point (batch 1, before forward)."""
    dist = FakeDist(answers={3: counts(G=1, CT=1)})
    learner = fit(dist, spy, epochs=2)
    assert dist.said == [G, G, G]  # no CANCEL_TRAIN said back: the ranks know
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        *TRAIN,
        "begin_batch",
        "after_cancel_train",
        "after_fit",
    ]
    assert spy.seen.count("after_step") == 1
    # the same weights as one process stopped before its second batch
    alone = fit(None, Raiser("begin_batch", CancelTrainException, train_batch(1)))
    for a, b in zip(alone.model.parameters(), learner.model.parameters()):
        assert torch.equal(a, b)
    assert learner.error is None


def test_local_cancel_epoch_is_announced_once(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("after_pred", CancelEpochException, train_batch(0)))
    # batch 0's sync before backward and batch 1's are replaced by one CANCEL_EPOCH
    assert dist.said == [G, CE, P, G]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_pred",
        "after_cancel_epoch",
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_agreed_cancel_epoch_from_another_rank(spy: Spy) -> None:
    """Another rank cancelled the pass: this one stops before its backward."""
    dist = FakeDist(answers={2: counts(G=1, CE=1)})
    fit(dist, spy)
    assert dist.said == [G, G, P, G]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_pred",
        "after_loss",
        "after_cancel_epoch",
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_local_cancel_batch_before_forward_is_announced(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("begin_batch", CancelBatchException, train_batch(0)))
    assert dist.said == [CB, G, G, P, P, G]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_cancel_batch",
        "after_batch",
        *TRAIN,
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]


def test_local_cancel_batch_after_loss_is_announced(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("after_loss", CancelBatchException, lambda lr: lr.in_train))
    assert dist.said == [G, CB, G, CB, P, P, G]
    assert spy.seen.count("after_cancel_batch") == 2
    assert "after_backward" not in spy.seen


def test_agreed_cancel_batch_from_another_rank(spy: Spy) -> None:
    dist = FakeDist(answers={1: counts(G=1, CB=1)})
    fit(dist, spy)
    assert dist.said == [G, G, G, P, P, G]
    assert spy.seen[:5] == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_cancel_batch",
        "after_batch",
    ]
    assert spy.seen.count("after_step") == 1


def test_cancel_batch_answered_by_cancel_train(spy: Spy) -> None:
    """This rank cancels its batch while another cancels the fit: the fit ends."""
    dist = FakeDist(answers={1: counts(CB=1, CT=1)})
    fit(dist, spy, Raiser("begin_batch", CancelBatchException, train_batch(0)), epochs=2)
    assert dist.said == [CB]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_cancel_train",
        "after_fit",
    ]


def test_cancel_batch_after_backward_is_not_announced(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("after_backward", CancelBatchException, lambda lr: lr.in_train))
    assert dist.said == ONE_EPOCH_SAYINGS
    assert spy.seen.count("after_cancel_batch") == 2
    assert "after_step" not in spy.seen


def test_local_cancel_train_is_announced_once(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("after_step", CancelTrainException, train_batch(0)), epochs=2)
    assert dist.said == [G, G, CT]
    assert spy.seen[-2:] == ["after_cancel_train", "after_fit"]


def test_cancel_train_in_after_epoch_replaces_the_epoch_end_sync(spy: Spy) -> None:
    dist = FakeDist()
    fit(dist, spy, Raiser("after_epoch", CancelTrainException, lambda lr: lr.epoch == 1), epochs=3)
    assert dist.said == ONE_EPOCH_SAYINGS + ONE_EPOCH_SAYINGS[:-1] + [CT]
    assert spy.seen.count("after_epoch") == 2


def test_pass_over_from_another_rank_ends_the_training_pass(spy: Spy) -> None:
    dist = FakeDist(answers={1: counts(G=1, P=1)})
    learner = fit(dist, spy)
    assert dist.said == [G, P, G]  # no PASS_OVER at the training pass's end
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_cancel_batch",  # the begun batch ends as cancelled, then the pass
        "after_batch",
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]
    assert learner.error is None


def test_no_sync_point_before_a_forward_that_does_not_communicate(spy: Spy) -> None:
    """A model without buffers to broadcast: the ranks meet only before the backward."""
    dist = FakeDist(sync_forward=False)
    fit(dist, spy)
    assert dist.said == [G, G, P, P, G]
    assert spy.seen.count("after_step") == 2


def test_cancel_batch_before_forward_without_forward_sync_point(spy: Spy) -> None:
    """The cancellation meets the others at their sync point before the backward."""
    dist = FakeDist(sync_forward=False)
    fit(dist, spy, Raiser("begin_batch", CancelBatchException, train_batch(0)))
    assert dist.said == [CB, G, P, P, G]
    assert spy.seen.count("after_cancel_batch") == 1
    assert spy.seen.count("after_step") == 1


def test_pass_over_before_the_backward_without_forward_sync_point(spy: Spy) -> None:
    """Without the forward's sync point, another rank's PASS_OVER arrives after the
    forward: the batch ends there, its gradients never computed."""
    dist = FakeDist(answers={1: counts(G=1, P=1)}, sync_forward=False)
    learner = fit(dist, spy)
    assert dist.said == [G, P, G]
    assert spy.seen == [
        "begin_fit",
        "begin_epoch",
        "begin_batch",
        "after_pred",
        "after_loss",
        "after_cancel_batch",
        "after_batch",
        "begin_validate",
        *VALID,
        "after_epoch",
        "after_fit",
    ]
    assert all(p.grad is None or not p.grad.any() for p in learner.model.parameters())


def test_validation_batches_have_no_sync_point(spy: Spy) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=gen)
    y = (x[:, 0] > 0).long()
    data = DataBunch.from_tensors(x[:4], y[:4], x[4:], y[4:], bs=4, valid_bs=2)
    dist = FakeDist()
    # a cancelled validation batch is local too: nothing to announce
    skip = Raiser("begin_batch", CancelBatchException, lambda lr: not lr.in_train and lr.iter == 1)
    fit(dist, spy, skip, data=data)
    assert dist.said == [G, G, P, P, G]
    assert spy.seen.count("begin_batch") == 4  # 1 training, 3 validation
    assert spy.seen.count("after_cancel_batch") == 1


def test_single_process_fit_calls_no_sync_point(spy: Spy) -> None:
    learner = fit(None, spy, Raiser("begin_batch", CancelBatchException, train_batch(0)))
    assert learner.dist is None
    assert spy.seen.count("after_cancel_batch") == 1


class Where:
    """What the learner says about its place at begin_epoch."""

    name = "where"

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def begin_epoch(self, learner: Any) -> None:
        self.seen.append((learner.rank, learner.world_size, learner.is_main, learner.out_dir))


def test_rank_world_size_is_main_and_out_dir(tmp_path: Path) -> None:
    where = Where()
    join = Join(FakeDist(rank=1, world_size=3))
    learner = Learner(
        tiny_model(),
        tiny_data(),
        plugins=[where, join],
        defaults=False,
        config=False,
        out_dir=tmp_path,
    )
    assert (learner.rank, learner.world_size, learner.is_main) == (0, 1, True)
    learner.fit(1)
    assert where.seen == [(1, 3, False, None)]
    # the dist stays after the fit, with its rank
    assert learner.dist is join.dist
    assert learner.out_dir is None
    learner.out_dir = tmp_path / "elsewhere"  # kept, but hidden on rank 1
    assert learner.out_dir is None
    learner.remove_plugin("fake_ddp")
    learner.fit(1)  # a fit without the ddp plugin resets dist
    assert learner.dist is None
    assert where.seen[-1] == (0, 1, True, tmp_path / "elsewhere")
    assert learner.out_dir == tmp_path / "elsewhere"
    join.dist.rank = 0
    learner.add_plugin(join)
    learner.fit(1)
    assert where.seen[-1] == (0, 3, True, tmp_path / "elsewhere")


def test_without_torchrun_ddp_is_attached_and_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.chdir(tmp_path)
    learner = Learner(tiny_model(), tiny_data(), plugins=["progress:bar=false"], config=False)
    assert "ddp" in learner.plugins
    ddp = learner.plugins["ddp"]
    assert ddp.active is False
    train_dl = learner.data.train_dl
    learner.fit(1)
    assert learner.dist is None
    assert learner.model_wrapper is None
    assert ddp.dist is None
    assert learner.data.train_dl is train_dl
    assert (train_dl.rank, train_dl.world_size) == (0, 1)
    assert (learner.rank, learner.world_size, learner.is_main) == (0, 1, True)
    assert list(tmp_path.iterdir()) == []  # no out_dir: nothing written
