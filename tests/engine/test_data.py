"""TensorLoader: shuffling, seeding, views, lengths and argument checks."""

from __future__ import annotations

import pytest
import torch

from engine.data import DataBunch
from engine.data import TensorLoader


def _loader(n: int = 10, bs: int = 3, **kwargs: object) -> TensorLoader:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1) * 10
    return TensorLoader(x, torch.arange(n), bs=bs, **kwargs)  # type: ignore[arg-type]


def _targets(loader: TensorLoader) -> list[list[int]]:
    return [yb.tolist() for _, yb in loader]


def test_shuffled_pass_yields_every_sample_once() -> None:
    loader = _loader(n=23, bs=4, shuffle=True, seed=3)
    for _ in range(3):
        seen = [i for batch in _targets(loader) for i in batch]
        assert sorted(seen) == list(range(23))
        assert seen != list(range(23))


def test_shuffled_batches_keep_x_and_y_together() -> None:
    for xb, yb in _loader(n=17, bs=5, shuffle=True, seed=1):
        assert torch.equal(xb.squeeze(1), yb.to(torch.float32) * 10)


def test_same_seed_same_batches_across_loaders() -> None:
    a = _loader(n=30, bs=7, shuffle=True, seed=5)
    b = _loader(n=30, bs=7, shuffle=True, seed=5)
    assert [_targets(a), _targets(a)] == [_targets(b), _targets(b)]
    c = _loader(n=30, bs=7, shuffle=True, seed=6)
    assert _targets(c) != _targets(_loader(n=30, bs=7, shuffle=True, seed=5))


def test_shuffle_ignores_global_rng() -> None:
    torch.manual_seed(0)
    first = _targets(_loader(n=30, shuffle=True, seed=2))
    torch.manual_seed(1)
    assert _targets(_loader(n=30, shuffle=True, seed=2)) == first


def test_two_passes_differ() -> None:
    loader = _loader(n=30, bs=7, shuffle=True, seed=0)
    assert _targets(loader) != _targets(loader)


def test_unshuffled_batches_are_in_order_views() -> None:
    loader = _loader(n=10, bs=4)
    batches = list(loader)
    assert [yb.tolist() for _, yb in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for xb, yb in batches:
        assert xb._base is loader.x
        assert yb._base is loader.y
    batches[1][0][0, 0] = -1.0  # writing through a view changes the loader's tensor
    assert loader.x[4, 0].item() == -1.0


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "length", "sizes"),
    [
        (10, 3, False, 4, [3, 3, 3, 1]),
        (10, 3, True, 3, [3, 3, 3]),
        (9, 3, False, 3, [3, 3, 3]),
        (9, 3, True, 3, [3, 3, 3]),
        (2, 5, False, 1, [2]),
        (2, 5, True, 0, []),
    ],
)
@pytest.mark.parametrize("shuffle", [False, True])
def test_len_and_drop_last(
    n: int, bs: int, drop_last: bool, length: int, sizes: list[int], shuffle: bool
) -> None:
    loader = _loader(n=n, bs=bs, drop_last=drop_last, shuffle=shuffle)
    assert len(loader) == length
    assert [len(yb) for _, yb in loader] == sizes


@pytest.mark.parametrize("bs", [0, -2, 2.5, True, "8"])
def test_bad_batch_size(bs: object) -> None:
    with pytest.raises(ValueError, match=r"bs should be a positive integer, got"):
        TensorLoader(torch.zeros(4, 2), torch.zeros(4), bs=bs)  # type: ignore[arg-type]


def test_mismatched_x_and_y() -> None:
    with pytest.raises(ValueError, match=r"same number of samples, got 5 and 4"):
        TensorLoader(torch.zeros(5, 2), torch.zeros(4))


def test_from_tensors_shuffles_train_and_doubles_valid_bs() -> None:
    bunch = DataBunch.from_tensors(
        torch.zeros(10, 2), torch.arange(10), torch.zeros(6, 2), torch.arange(6), bs=2, seed=4
    )
    assert isinstance(bunch.train_dl, TensorLoader)
    assert isinstance(bunch.valid_dl, TensorLoader)
    assert bunch.train_dl.shuffle
    assert (bunch.train_dl.bs, bunch.train_dl.seed) == (2, 4)
    assert not bunch.valid_dl.shuffle
    assert bunch.valid_dl.bs == 4
