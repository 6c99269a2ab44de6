"""Built-in datasets: small image-classification sets as flat, normalized rows.

Every loader returns a :class:`~engine.data.DataBunch` of float32 rows
``(N, H*W)`` with int64 targets, ``c=10`` and ``input_shape=(1, H, W)``. Inputs
are normalized the lesson's way: ``(x - mean) / std`` with the *training* set's
scalar mean and standard deviation, applied to both splits. The training loader
is shuffled with ``seed``; the validation loader runs in order at ``2 * bs``.

The built-ins are declared through the ``lookinside_datasets`` hook, like a
third party's datasets: this module is the ``datasets`` entry point of the
``lookinside`` distribution, and their names are reserved (see
:mod:`engine.manager`). :func:`load_data` looks a name up in the plugin catalogue
and passes the loader only the keyword arguments its signature accepts.
"""

from __future__ import annotations

import gzip
import inspect
import math
import pickle
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from engine.exceptions import DataError
from engine.hookspecs import RegisterDataset
from engine.hookspecs import hookimpl
from engine.manager import Catalog
from engine.manager import load_catalog

if TYPE_CHECKING:
    import numpy as np
    import torch

    from engine.data import DataBunch

    _Pair = tuple[torch.Tensor, torch.Tensor]

N_CLASSES = 10
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_PKL_URL = (
    "https://github.com/mnielsen/neural-networks-and-deep-learning/raw/master/data/mnist.pkl.gz"
)
_PKL_LAYOUT = "((x_train, y_train), (x_valid, y_valid), (x_test, y_test))"
_UNPICKLE_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, pickle.UnpicklingError)
_UNPICKLE_ERRORS += (AttributeError, ImportError, IndexError, KeyError, TypeError, ValueError)
_PKL_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)
"""The globals a pickle of numpy arrays names, whatever the protocol and numpy version.

``_reconstruct``, ``ndarray`` and ``dtype`` rebuild an array (``numpy.core`` before
numpy 2, ``numpy._core`` after); protocol 5 uses ``_frombuffer`` instead, and
protocols 0-2 written by Python 3 spell the raw bytes with ``_codecs.encode``.
None of them runs code chosen by the file; every other global is refused.
"""


def _bunch(
    train: _Pair, valid: _Pair, hw: tuple[int, int], name: str, bs: int, seed: int
) -> DataBunch:
    """Check the labels, normalize with the training statistics and build the loaders.

    :param train: training inputs (one sample per first index; flattened here) and labels.
    :param valid: validation inputs and labels.
    :param hw: height and width of one image.
    :param name: the dataset's name, for the bunch and the error messages.
    :param bs: the training batch size.
    :param seed: seeds the training loader's shuffling.
    """
    import torch

    from engine.data import DataBunch

    (x_train, y_train), (x_valid, y_valid) = train, valid
    for split, y in (("training", y_train), ("validation", y_valid)):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= N_CLASSES):
            raise DataError(
                f"{name}: {split} labels should be class indices in 0..{N_CLASSES - 1}, "
                f"found values from {int(y.min())} to {int(y.max())}"
            )
    x_train = x_train.reshape(len(x_train), -1).to(torch.float32)
    x_valid = x_valid.reshape(len(x_valid), -1).to(torch.float32)
    mean, std = x_train.mean(), x_train.std()
    if not (torch.isfinite(std) and std > 0):
        raise DataError(
            f"{name}: cannot normalize, the training inputs have standard deviation "
            f"{float(std)}; check that the files hold real images"
        )
    return DataBunch.from_tensors(
        (x_train - mean) / std,
        y_train.to(torch.int64),
        (x_valid - mean) / std,
        y_valid.to(torch.int64),
        bs=bs,
        seed=seed,
        c=N_CLASSES,
        input_shape=(1, *hw),
        name=name,
    )


def digits(bs: int = 64, seed: int = 0) -> DataBunch:
    """scikit-learn's 8x8 handwritten digits (1797 images, no download).

    The train/valid split is fixed, whatever ``seed``: a permutation drawn from
    ``torch.Generator().manual_seed(0)`` puts 20% of the samples (360) in the
    validation set and the remaining 1437 in the training set. ``seed`` only
    changes the order of the training batches.

    :param bs: the training batch size.
    :param seed: seeds the shuffling of the training loader.
    """
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.as_tensor(np.asarray(raw.data, dtype=np.float32))
    y = torch.as_tensor(np.asarray(raw.target, dtype=np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_train = len(x) - math.ceil(0.2 * len(x))
    train, valid = perm[:n_train], perm[n_train:]
    return _bunch((x[train], y[train]), (x[valid], y[valid]), (8, 8), "digits", bs, seed)


def _mnist_split(n: int) -> int:
    """How many of the ``n`` official training images go to validation.

    The real files hold 60,000: the last 10,000 are the validation set, as in the
    lesson. Smaller files (tests, subsets) give their last sixth to validation.
    """
    return 10_000 if n >= 60_000 else n // 6


def _files_present(root: Path, cls_name: str) -> bool:
    """Whether torchvision will find the dataset: four raw files, or its legacy cache."""
    raw = root / cls_name / "raw"
    processed = root / cls_name / "processed"
    legacy = all((processed / f).is_file() for f in ("training.pt", "test.pt"))
    return legacy or all((raw / f).is_file() for f in MNIST_FILES)


def _missing_message(label: str, root: Path, cls_name: str) -> str:
    """Say where torchvision's files were looked for, which are missing, and the fixes."""
    raw = root / cls_name / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    zipped = [f for f in missing if (raw / f"{f}.gz").is_file()]
    hint = (
        f" ({', '.join(f + '.gz' for f in zipped)} found: gunzip them, or pass --download "
        "which unpacks them without fetching)"
        if zipped
        else ""
    )
    lacks = "does not exist" if not raw.is_dir() else f"lacks {', '.join(missing)}"
    return (
        f"{label} not found: searched {raw} (from data_dir {root}), which {lacks}{hint}. "
        "To fix: pass --download to fetch it (needs internet), "
        f"or put the uncompressed files {', '.join(MNIST_FILES)} in {raw}, "
        "or use the mnist_pkl dataset with --data-path pointing at mnist.pkl.gz"
    )


def _torchvision_mnist(
    cls_name: str, label: str, name: str, data_dir: str | Path, download: bool, bs: int, seed: int
) -> DataBunch:
    """Load the official training set of torchvision's ``cls_name`` and split it 5:1.

    :param cls_name: the class in ``torchvision.datasets`` (it names the folder).
    :param label: the dataset as users know it, for messages.
    :param name: the bunch's name.
    :param data_dir: the root torchvision looks under (``<root>/<cls_name>/raw``).
    :param download: fetch the files when missing.
    :param bs: the training batch size.
    :param seed: seeds the training loader's shuffling.
    """
    import torch

    root = Path(data_dir).expanduser()
    present = _files_present(root, cls_name)
    if not present and not download:
        raise DataError(_missing_message(label, root, cls_name))
    import torchvision.datasets

    dataset_cls = getattr(torchvision.datasets, cls_name)
    try:
        dataset = dataset_cls(str(root), train=True, download=download and not present)
    except (AssertionError, RuntimeError, OSError, TypeError, ValueError, IndexError) as err:
        cause = f"{type(err).__name__}: {' '.join(str(err).split()) or 'malformed file'}"
        if not _files_present(root, cls_name):
            raise DataError(
                f"could not download {label} into {root / cls_name / 'raw'}: {cause}. Check the "
                "internet connection, or put the files there yourself, or use the mnist_pkl "
                "dataset with --data-path"
            ) from err
        raise DataError(
            f"could not read the {label} files in {root / cls_name / 'raw'}: {cause}. Expected "
            f"uncompressed IDX files ({', '.join(MNIST_FILES)}); delete broken ones and pass "
            "--download"
        ) from err
    images, labels = dataset.data, dataset.targets
    n_valid = _mnist_split(len(images))
    n_train = len(images) - n_valid
    if n_valid == 0 or n_train == 0:
        raise DataError(
            f"{label}: only {len(images)} training images in {root / cls_name / 'raw'}; "
            "at least 6 are needed to split off a validation set"
        )
    if len(labels) != len(images):
        raise DataError(f"{label}: {len(images)} images but {len(labels)} labels in {root}")
    x = images.to(torch.float32) / 255.0
    train, valid = (x[:n_train], labels[:n_train]), (x[n_train:], labels[n_train:])
    return _bunch(train, valid, (int(images.shape[1]), int(images.shape[2])), name, bs, seed)


def mnist(
    data_dir: str | Path = "data", download: bool = False, bs: int = 64, seed: int = 0
) -> DataBunch:
    """MNIST handwritten digits (28x28) through torchvision: 50,000 train / 10,000 valid.

    Only the official training set is used: its first 50,000 images train and
    its last 10,000 validate, as in the lesson; the test set is ignored. Files
    with fewer than 60,000 images give their last sixth to validation. Pixels
    are scaled to [0, 1] before normalizing.

    :param data_dir: the folder holding ``MNIST/raw/train-images-idx3-ubyte`` and
        the three other uncompressed IDX files.
    :param download: fetch the files when missing (needs internet).
    :param bs: the training batch size.
    :param seed: seeds the shuffling of the training loader.
    """
    return _torchvision_mnist("MNIST", "MNIST", "mnist", data_dir, download, bs, seed)


def fashion_mnist(
    data_dir: str | Path = "data", download: bool = False, bs: int = 64, seed: int = 0
) -> DataBunch:
    """Fashion-MNIST clothing images (28x28) through torchvision: 50,000 / 10,000.

    Split, scaling and normalization as in :func:`mnist`.

    :param data_dir: the folder holding ``FashionMNIST/raw/train-images-idx3-ubyte``
        and the three other uncompressed IDX files.
    :param download: fetch the files when missing (needs internet).
    :param bs: the training batch size.
    :param seed: seeds the shuffling of the training loader.
    """
    return _torchvision_mnist(
        "FashionMNIST", "Fashion-MNIST", "fashion_mnist", data_dir, download, bs, seed
    )


class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays in tuples and lists, and nothing else.

    A pickle names the callables that rebuild its objects, and unpickling calls
    them: a crafted file can name ``os.system``. This one looks up only the
    globals in :data:`_PKL_GLOBALS` and refuses the others before anything runs.
    """

    def __init__(self, file: gzip.GzipFile, path: Path) -> None:
        super().__init__(file, encoding="latin-1")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; raise :class:`DataError` naming any other."""
        if (module, name) not in _PKL_GLOBALS:
            raise DataError(
                f"{self.path}: refusing to unpickle the global '{module}.{name}': mnist_pkl "
                f"only loads a pickle of {_PKL_LAYOUT} as numpy arrays, and anything else "
                "in a pickle can run code. Load trusted files of another layout yourself "
                "and pass the arrays to DataBunch.from_tensors"
            )
        return super().find_class(module, name)


def _describe(obj: object) -> str:
    import numpy as np

    if isinstance(obj, np.ndarray):
        return f"an array of shape {obj.shape} and dtype {obj.dtype}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of length {len(obj)}"
    return f"a {type(obj).__name__}"


def _pkl_pairs(obj: object, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check the unpickled object's layout; return the training and validation pairs."""
    import numpy as np

    expected = f"{path} should hold {_PKL_LAYOUT} as numpy arrays"
    if not isinstance(obj, (tuple, list)) or len(obj) not in (2, 3):
        raise DataError(f"{expected}; found {_describe(obj)} at the top level")
    pairs = []
    for split, pair in zip(("train", "valid"), obj):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise DataError(f"{expected}; found {_describe(pair)} for the {split} split")
        x, y = pair
        if not isinstance(x, np.ndarray) or x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
            raise DataError(
                f"{expected}; x_{split} should be a 2-D numeric array of rows, found {_describe(x)}"
            )
        if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(
                f"{expected}; y_{split} should be a 1-D integer array of labels, "
                f"found {_describe(y)}"
            )
        if len(x) != len(y) or len(x) == 0:
            raise DataError(
                f"{path}: x_{split} and y_{split} should have the same, non-zero number of "
                f"samples, found {len(x)} and {len(y)}"
            )
        pairs.append((x, y))
    (x_train, _), (x_valid, _) = pairs
    if x_train.shape[1] != x_valid.shape[1]:
        raise DataError(
            f"{path}: training rows have {x_train.shape[1]} values but validation rows "
            f"have {x_valid.shape[1]}; both splits should hold images of the same size"
        )
    return pairs


def mnist_pkl(data_path: str | Path = "mnist.pkl.gz", bs: int = 64, seed: int = 0) -> DataBunch:
    """MNIST from the lesson's ``mnist.pkl.gz`` (50,000 train / 10,000 valid rows).

    The file is a gzip'd pickle (read with ``encoding="latin-1"``) of
    ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` numpy arrays,
    inputs as float rows of 784 values in [0, 1). The test split is ignored (it
    may be left out). Images are taken to be square: the side is the square root
    of the row length. A pickle can name any callable to run while it loads, so
    the file is read by a restricted unpickler that rebuilds numpy arrays and
    nothing else: a file naming any other global (``os.system``, a class) is
    refused with a :class:`DataError` before that global is looked up.

    :param data_path: the path of ``mnist.pkl.gz``.
    :param bs: the training batch size.
    :param seed: seeds the shuffling of the training loader.
    """
    import numpy as np
    import torch

    path = Path(data_path).expanduser()
    if not path.is_file():
        raise DataError(
            f"mnist_pkl: no file at {path}. Download mnist.pkl.gz (e.g. from {MNIST_PKL_URL}) "
            "and pass its path with --data-path, or use the mnist dataset with --download"
        )
    with path.open("rb") as f:
        head = f.read(2)
    if head != b"\x1f\x8b":
        raise DataError(
            f"{path} is not gzip-compressed (it starts with {head!r}, a gzip file with "
            f"b'\\x1f\\x8b'); expected mnist.pkl.gz, a gzip'd pickle of {_PKL_LAYOUT}"
        )
    try:
        with gzip.open(path, "rb") as f:
            obj = _ArrayUnpickler(f, path).load()
    except _UNPICKLE_ERRORS as err:
        raise DataError(
            f"could not unpickle {path}: {type(err).__name__}: {err}; expected a gzip'd "
            f"pickle of {_PKL_LAYOUT}"
        ) from err
    (x_train, y_train), (x_valid, y_valid) = _pkl_pairs(obj, path)
    side = math.isqrt(x_train.shape[1])
    if side * side != x_train.shape[1]:
        raise DataError(
            f"{path}: rows of {x_train.shape[1]} values are not square images "
            f"(784 = 28x28 expected for MNIST)"
        )
    train, valid = (
        (torch.as_tensor(np.asarray(x, dtype=np.float32)), torch.as_tensor(y.astype(np.int64)))
        for x, y in ((x_train, y_train), (x_valid, y_valid))
    )
    return _bunch(train, valid, (side, side), "mnist_pkl", bs, seed)


@hookimpl
def lookinside_datasets(register: RegisterDataset) -> None:
    """Declare the built-in datasets, through the door every plugin module uses.

    :param register: the catalogue's ``register(name, loader)``.
    """
    register("digits", digits)
    register("mnist", mnist)
    register("fashion_mnist", fashion_mnist)
    register("mnist_pkl", mnist_pkl)


def _accepted_kwargs(loader: Callable[..., Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The non-``None`` entries of ``kwargs`` that ``loader``'s signature accepts."""
    given = {k: v for k, v in kwargs.items() if v is not None}
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return given
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in params if p.kind in kinds}
    return {k: v for k, v in given.items() if k in names}


def load_data(name: str, catalog: Catalog | None = None, **kwargs: Any) -> DataBunch:
    """Load the dataset called ``name``.

    The name is looked up in ``catalog.datasets``: the built-ins and the datasets
    plugin modules registered. The loader receives only the keyword arguments
    its signature accepts, and none whose value is ``None`` (meaning "use the
    loader's default"), so one set of options (``bs``, ``seed``, ``data_dir``,
    ``data_path``, ``download``) serves every dataset.

    :param name: the dataset's name, e.g. ``"digits"``.
    :param catalog: the plugin catalogue; loaded (:func:`~engine.manager.load_catalog`)
        when ``None``.
    :param kwargs: options for the loader.
    :raises DataError: no dataset has that name (the closest one is suggested), or
        two distributions register it.
    """
    catalog = catalog if catalog is not None else load_catalog()
    loader = catalog.dataset(name).loader
    result: DataBunch = loader(**_accepted_kwargs(loader, kwargs))
    return result


def available_datasets(catalog: Catalog | None = None) -> dict[str, str]:
    """Every dataset :func:`load_data` can load, by name, with the first line of its docstring.

    :param catalog: the plugin catalogue; loaded when ``None``.
    """
    catalog = catalog if catalog is not None else load_catalog()
    return {name: spec.doc for name, spec in sorted(catalog.datasets.items())}
