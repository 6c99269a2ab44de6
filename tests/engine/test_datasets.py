"""Built-in datasets, read from small files the tests write (nothing is downloaded)."""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.error import URLError

import numpy as np
import pytest
import torch

from engine import hookimpl
from engine.data import DataBunch
from engine.data import TensorLoader
from engine.datasets import _mnist_split
from engine.datasets import available_datasets
from engine.datasets import digits
from engine.datasets import fashion_mnist
from engine.datasets import load_data
from engine.datasets import mnist
from engine.datasets import mnist_pkl
from engine.exceptions import DataError
from engine.manager import Catalog
from engine.manager import load_catalog

N_TRAIN, N_TEST, SIDE = 120, 20, 28
TORCHVISION = [(mnist, "MNIST", "mnist"), (fashion_mnist, "FashionMNIST", "fashion_mnist")]
BUILTIN_NAMES = ("digits", "fashion_mnist", "mnist", "mnist_pkl")


def _loaders(bunch: DataBunch) -> tuple[TensorLoader, TensorLoader]:
    assert isinstance(bunch.train_dl, TensorLoader)
    assert isinstance(bunch.valid_dl, TensorLoader)
    return bunch.train_dl, bunch.valid_dl


def _normalized(x_train: np.ndarray, x_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lesson's normalization, computed independently in float64."""
    mean, std = x_train.mean(), x_train.std(ddof=1)
    return (x_train - mean) / std, (x_valid - mean) / std


# ---------------------------------------------------------------- digits


def test_digits_sizes_and_normalization() -> None:
    bunch = digits(bs=32)
    train, valid = _loaders(bunch)
    assert (train.x.shape, valid.x.shape) == ((1437, 64), (360, 64))
    assert (train.x.dtype, train.y.dtype) == (torch.float32, torch.int64)
    assert (bunch.c, bunch.input_shape, bunch.name) == (10, (1, 8, 8), "digits")
    assert abs(train.x.mean().item()) < 1e-4
    assert abs(train.x.std().item() - 1) < 1e-3
    assert abs(valid.x.mean().item()) < 0.1  # train stats, so close to but not exactly 0
    assert (train.bs, valid.bs, train.shuffle, valid.shuffle) == (32, 64, True, False)


def test_digits_split_is_fixed_and_seed_only_shuffles() -> None:
    from sklearn.datasets import load_digits

    a_train, a_valid = _loaders(digits(seed=0))
    b_train, b_valid = _loaders(digits(seed=1))
    assert torch.equal(a_train.x, b_train.x)
    assert torch.equal(a_valid.x, b_valid.x)
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    target = torch.as_tensor(load_digits().target)
    assert torch.equal(a_valid.y, target[perm[1437:]])
    assert torch.equal(a_train.y, target[perm[:1437]])
    assert next(iter(a_train))[1].tolist() != next(iter(b_train))[1].tolist()
    assert next(iter(a_valid))[1].tolist() == next(iter(b_valid))[1].tolist()


# ---------------------------------------------------------------- mnist / fashion_mnist


def _write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    header = struct.pack(">IIII", 2051, n, h, w)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes()
    )


def _fake_mnist(root: Path, cls_name: str, n_train: int = N_TRAIN) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_train, SIDE, SIDE), dtype=np.uint8)
    labels = (np.arange(n_train) * 7) % 10
    raw = root / cls_name / "raw"
    _write_idx(raw, "train", images, labels)
    test_images = np.full((N_TEST, SIDE, SIDE), 255, dtype=np.uint8)  # must be ignored
    _write_idx(raw, "t10k", test_images, np.zeros(N_TEST, dtype=np.uint8))
    return images, labels


def test_split_rule() -> None:
    assert _mnist_split(60_000) == 10_000
    assert _mnist_split(120) == 20
    assert _mnist_split(7) == 1


@pytest.mark.parametrize(("loader", "cls_name", "name"), TORCHVISION)
def test_torchvision_offline(
    loader: Callable[..., DataBunch], cls_name: str, name: str, tmp_path: Path
) -> None:
    images, labels = _fake_mnist(tmp_path, cls_name)
    bunch = loader(data_dir=tmp_path, bs=16, seed=2)
    train, valid = _loaders(bunch)
    assert (bunch.c, bunch.input_shape, bunch.name) == (10, (1, 28, 28), name)
    assert (train.x.shape, valid.x.shape) == ((100, 784), (20, 784))
    assert (train.bs, valid.bs, train.seed) == (16, 32, 2)
    pixels = images.reshape(N_TRAIN, -1).astype(np.float64) / 255
    want_train, want_valid = _normalized(pixels[:100], pixels[100:])
    np.testing.assert_allclose(train.x.numpy(), want_train, atol=1e-5)
    np.testing.assert_allclose(valid.x.numpy(), want_valid, atol=1e-5)
    assert train.y.tolist() == labels[:100].tolist()
    assert valid.y.tolist() == labels[100:].tolist()
    assert train.y.dtype == torch.int64


@pytest.mark.parametrize(("loader", "cls_name", "name"), TORCHVISION)
def test_torchvision_missing_files(
    loader: Callable[..., DataBunch], cls_name: str, name: str, tmp_path: Path
) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        loader(data_dir=folder)
    message = str(info.value)
    assert str(folder / cls_name / "raw") in message
    assert "--download" in message
    assert "train-images-idx3-ubyte" in message
    assert "mnist_pkl" in message
    assert not folder.exists()


def test_mnist_gz_files_hint(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST")
    image_file = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    image_file.rename(image_file.with_name(image_file.name + ".gz"))
    with pytest.raises(DataError, match=r"lacks t10k-images-idx3-ubyte \(.*\.gz found: gunzip"):
        mnist(data_dir=tmp_path)


def test_mnist_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.mnist as tv_mnist

    def offline(url: str, *args: Any, **kwargs: Any) -> None:
        raise URLError("no network in tests")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match=r"could not download MNIST into .*no network in tests"):
        mnist(data_dir=tmp_path, download=True)


def test_mnist_download_skipped_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.mnist as tv_mnist

    def fail(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("should not download")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", fail)
    _fake_mnist(tmp_path, "MNIST")
    assert _loaders(mnist(data_dir=tmp_path, download=True))[0].x.shape == (100, 784)


def test_mnist_corrupt_file(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match=r"could not read the MNIST files in .*IDX"):
        mnist(data_dir=tmp_path)


def test_mnist_too_few_images(tmp_path: Path) -> None:
    _fake_mnist(tmp_path, "MNIST", n_train=5)
    with pytest.raises(DataError, match="only 5 training images"):
        mnist(data_dir=tmp_path)


# ---------------------------------------------------------------- mnist_pkl


def _pkl_arrays(n_features: int = 16) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(1)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.random((n, n_features), dtype=np.float32)
        return x, rng.integers(0, 10, size=n).astype(np.int64)

    return split(12), split(6), split(4)


def _write_pkl(path: Path, obj: object) -> Path:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def test_mnist_pkl_loads(tmp_path: Path) -> None:
    (x_train, y_train), (x_valid, y_valid), _ = arrays = _pkl_arrays()
    bunch = mnist_pkl(_write_pkl(tmp_path / "mnist.pkl.gz", arrays), bs=4, seed=1)
    train, valid = _loaders(bunch)
    assert (bunch.c, bunch.input_shape, bunch.name) == (10, (1, 4, 4), "mnist_pkl")
    assert (train.x.shape, valid.x.shape, train.bs, valid.bs) == ((12, 16), (6, 16), 4, 8)
    want_train, want_valid = _normalized(x_train.astype(np.float64), x_valid.astype(np.float64))
    np.testing.assert_allclose(train.x.numpy(), want_train, atol=1e-5)
    np.testing.assert_allclose(valid.x.numpy(), want_valid, atol=1e-5)
    assert torch.equal(train.y, torch.as_tensor(y_train))
    assert torch.equal(valid.y, torch.as_tensor(y_valid))


def test_mnist_pkl_missing(tmp_path: Path) -> None:
    path = tmp_path / "absent.pkl.gz"
    with pytest.raises(DataError, match=r"no file at .*absent\.pkl\.gz.*--data-path"):
        mnist_pkl(path)


def _wrong_structure(tmp_path: Path) -> list[tuple[Path, str]]:
    (x_train, y_train), valid, test = _pkl_arrays()
    text = tmp_path / "text.pkl.gz"
    text.write_text("hello, not a pickle\n")
    plain = tmp_path / "plain.pkl.gz"
    plain.write_bytes(pickle.dumps(_pkl_arrays()))
    gz_text = tmp_path / "gztext.pkl.gz"
    with gzip.open(gz_text, "wb") as f:
        f.write(b"just some text")
    truncated = tmp_path / "truncated.pkl.gz"
    truncated.write_bytes(_write_pkl(tmp_path / "full.gz", _pkl_arrays()).read_bytes()[:40])
    w = _write_pkl
    return [
        (text, "not gzip-compressed"),
        (plain, "not gzip-compressed"),
        (gz_text, "could not unpickle"),
        (truncated, "could not unpickle"),
        (w(tmp_path / "dict.gz", {"x": 1}), "found a dict at the top level"),
        (w(tmp_path / "one.gz", ((x_train, y_train),)), "found a tuple of length 1"),
        (w(tmp_path / "trip.gz", ((x_train, y_train, y_train), valid)), "for the train split"),
        (w(tmp_path / "list.gz", ((x_train.tolist(), y_train), valid)), "x_train should be a 2-D"),
        (w(tmp_path / "fy.gz", ((x_train, y_train * 0.5), valid)), "y_train should be a 1-D int"),
        (w(tmp_path / "len.gz", ((x_train, y_train[:3]), valid)), "found 12 and 3"),
        (
            w(tmp_path / "sq.gz", ((x_train[:, :15], y_train), (valid[0][:, :15], valid[1]))),
            "not square",
        ),
        (w(tmp_path / "mix.gz", ((x_train, y_train), (valid[0][:, :9], valid[1]))), "same size"),
        (w(tmp_path / "lab.gz", ((x_train, y_train + 10), valid, test)), "class indices in 0..9"),
    ]


def test_mnist_pkl_bad_files(tmp_path: Path) -> None:
    for path, message in _wrong_structure(tmp_path):
        with pytest.raises(DataError, match=message) as info:
            mnist_pkl(path)
        assert str(path) in str(info.value) or "labels" in str(info.value), path


class _Marker:
    """Pickles to a call of ``pathlib.Path.touch``: unpickling it creates a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., None], tuple[Path]]:
        return (Path.touch, (self.path,))


def test_mnist_pkl_refuses_code(tmp_path: Path) -> None:
    """A pickle naming a callable outside numpy's array rebuilding is refused before it runs."""
    marker = tmp_path / "marker"
    (x_train, y_train), valid, _ = _pkl_arrays()
    crafted = _write_pkl(tmp_path / "crafted.pkl.gz", ((x_train, y_train), valid, _Marker(marker)))
    pickle.loads(pickle.dumps(_Marker(tmp_path / "works")))
    assert (tmp_path / "works").exists()  # the payload does run under plain pickle
    with pytest.raises(DataError) as info:
        mnist_pkl(crafted)
    assert not marker.exists()
    message = str(info.value)
    assert "the global 'pathlib.Path.touch'" in message
    assert str(crafted) in message and "numpy arrays" in message and "\n" not in message


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_mnist_pkl_loads_every_protocol(tmp_path: Path, protocol: int) -> None:
    """Arrays pickled with any protocol load through the restricted unpickler."""
    arrays = _pkl_arrays()
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(arrays, f, protocol=protocol)
    train, valid = _loaders(mnist_pkl(path, bs=4))
    assert (train.x.shape, valid.x.shape) == ((12, 16), (6, 16))
    assert torch.equal(valid.y, torch.as_tensor(arrays[1][1]))


def test_mnist_pkl_reads_the_python2_layout(tmp_path: Path) -> None:
    """The lesson's file: protocol 2 from Python 2, ``numpy.core`` globals, byte strings."""
    (x_train, y_train), (x_valid, y_valid), _ = _pkl_arrays()

    def array(a: np.ndarray) -> bytes:
        shape = pickle.dumps(a.shape, protocol=2)[2:-1]
        kind = {np.dtype(np.float32): b"f4", np.dtype(np.int64): b"i8"}[a.dtype]
        raw = a.tobytes()
        # What Python 2's pickle wrote: opcodes GLOBAL, SHORT_BINSTRING, BINSTRING.
        reconstruct = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        dtype = b"cnumpy\ndtype\nU\x02" + kind + b"K\x00K\x01\x87R"
        dtype_state = b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        data = b"T" + len(raw).to_bytes(4, "little") + raw
        return b"".join([reconstruct, b"(K\x01", shape, dtype, dtype_state, b"\x89", data, b"tb"])

    body = array(x_train) + array(y_train) + b"\x86" + array(x_valid) + array(y_valid) + b"\x86"
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x80\x02" + body + b"\x86.")
    train, valid = _loaders(mnist_pkl(path, bs=4))
    assert torch.equal(train.y, torch.as_tensor(y_train))
    assert torch.equal(valid.y, torch.as_tensor(y_valid))
    want_train, _ = _normalized(x_train.astype(np.float64), x_valid.astype(np.float64))
    np.testing.assert_allclose(train.x.numpy(), want_train, atol=1e-5)


# ---------------------------------------------------------------- load_data


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(DataError) as info:
        load_data("digit")
    message = str(info.value)
    assert "did you mean 'digits'" in message
    for name in BUILTIN_NAMES:
        assert name in message
    with pytest.raises(DataError, match="unknown dataset 'zzz'; available datasets: digits"):
        load_data("zzz")


def test_load_data_filters_kwargs(tmp_path: Path) -> None:
    bunch = load_data("digits", bs=16, seed=None, data_dir=tmp_path, data_path=None, download=True)
    train, _ = _loaders(bunch)
    assert (train.bs, train.seed) == (16, 0)
    arrays = _pkl_arrays()
    path = _write_pkl(tmp_path / "m.pkl.gz", arrays)
    bunch = load_data("mnist_pkl", bs=None, seed=3, data_dir=None, data_path=path, download=False)
    assert (bunch.name, _loaders(bunch)[0].bs, _loaders(bunch)[0].seed) == ("mnist_pkl", 64, 3)
    with pytest.raises(DataError, match="--download"):
        load_data("mnist", data_dir=tmp_path, download=None, bs=8, data_path=path)


def _catalog_with(**loaders: Callable[..., DataBunch]) -> Catalog:
    """The built-ins' catalogue plus a module (added by hand) registering ``loaders``."""

    @hookimpl
    def lookinside_datasets(register: Callable[..., None]) -> None:
        for name, loader in loaders.items():
            register(name, loader)

    module = ModuleType("fake_datasets")
    module.lookinside_datasets = lookinside_datasets  # type: ignore[attr-defined]
    catalog = load_catalog(autoload=False)
    catalog.add_module(module)
    return catalog


def test_plugin_datasets_receive_only_the_options_they_accept() -> None:
    received: list[dict[str, Any]] = []
    tiny = DataBunch.from_tensors(torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))

    def narrow(bs: int = 1, data_dir: str | None = None) -> DataBunch:
        """A plugin's dataset taking two options."""
        received.append({"bs": bs, "data_dir": data_dir})
        return tiny

    def wide(**kwargs: Any) -> DataBunch:
        received.append(kwargs)
        return tiny

    catalog = _catalog_with(narrow=narrow, wide=wide)
    options = {"bs": 5, "seed": 3, "data_dir": None, "data_path": "p", "download": False}
    assert load_data("narrow", catalog, **options) is tiny
    assert load_data("wide", catalog, **options) is tiny
    assert received == [
        {"bs": 5, "data_dir": None},
        {"bs": 5, "seed": 3, "data_path": "p", "download": False},
    ]
    with pytest.raises(DataError, match="did you mean 'narrow'.*narrow, wide"):
        load_data("narow", catalog)


def test_a_plugin_cannot_take_a_builtin_name() -> None:
    """A plugin's ``digits`` is reported, and ``digits`` still loads the built-in."""
    catalog = _catalog_with(digits=mnist)
    assert load_data("digits", catalog, bs=8).name == "digits"
    error = catalog.broken_datasets["digits"].error
    assert "lookinside (datasets = engine.datasets)" in error and "(local)" in error


def test_available_datasets() -> None:
    listed = available_datasets(_catalog_with(mine=digits))
    assert list(listed) == sorted((*BUILTIN_NAMES, "mine"))
    assert listed["digits"].startswith("scikit-learn's 8x8")
    assert listed["mine"] == listed["digits"]
    assert all(listed.values())
    assert set(BUILTIN_NAMES) <= set(available_datasets())
