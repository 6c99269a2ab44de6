"""The checkpoint file: its layout, safe values, random-number states, atomic writes.

Everything here produces or accepts values that ``torch.load(..., weights_only=True)``
can read back: tensors, dicts, lists, tuples, str, int, float, bool and None. The
random-number states of Python's ``random`` and of numpy are therefore converted
to lists and tensors, and back.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from typing import Any

import torch

from engine.exceptions import PluginError

if TYPE_CHECKING:
    from engine.learner import Learner

FORMAT = "lookinside-checkpoint"
"""The value of a checkpoint's ``format`` key."""

VERSION = 1
"""The layout version this module writes; it reads this one and older."""

_REQUIRED: dict[str, tuple[type, ...]] = {
    "epoch": (int,),
    "complete": (bool,),
    "n_iter": (int,),
    "n_epochs": (int, float),
    "model": (dict,),
    "optimizer": (dict, type(None)),
    "rng": (dict,),
    "loaders": (dict,),
    "plugins": (dict,),
}
"""The keys every checkpoint has, with the types their values must have."""

SAFE_HINT = (
    "a checkpoint may hold only tensors, dicts, lists, tuples, str, int, float, bool "
    "and None (it is read back with torch.load(weights_only=True))"
)
"""Ends the error raised when something unsafe would be saved."""

SAFE_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))
"""The plain values a checkpoint may hold, besides tensors and containers."""


def find_unsafe(obj: Any, where: str = "") -> str | None:
    """Where ``obj`` holds something ``torch.load(weights_only=True)`` cannot read.

    :param obj: the value to inspect, recursively through dicts, lists and tuples.
    :param where: the path of ``obj`` itself, used as the prefix of the answer.
    :returns: ``None`` when every value is safe, else the path and type of the first
        value that is not, e.g. ``"['history'][2]: a set"``.
    """
    # exact types: subclasses (numpy floats, IntEnum, namedtuple, defaultdict) pass
    # isinstance but torch.load(weights_only=True) refuses them
    kind = type(obj)
    if isinstance(obj, torch.Tensor) or kind in SAFE_SCALARS:
        return None
    if kind in (dict, OrderedDict):
        for key, value in obj.items():
            if type(key) not in SAFE_SCALARS:
                return f"{where}: a key of type {type(key).__name__}"
            found = find_unsafe(value, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if kind in (list, tuple):
        for index, value in enumerate(obj):
            found = find_unsafe(value, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"{where or 'the value'}: a {type(obj).__name__}"


def plain(mapping: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` whose values are safe (see :func:`find_unsafe`).

    Numbers of other types (numpy scalars, one-element tensors, int/float
    subclasses) become Python numbers first.
    """
    converted = {key: _as_number(value) for key, value in mapping.items()}
    return {key: value for key, value in converted.items() if find_unsafe(value) is None}


def _as_number(value: Any) -> Any:
    if type(value) in SAFE_SCALARS:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    numpy = _numpy()
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value


def _numpy() -> ModuleType | None:
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None


def capture_rng() -> dict[str, Any]:
    """The states of the torch (CPU and CUDA), Python and numpy generators."""
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": None,
    }
    np = _numpy()
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        state["numpy"] = {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    return state


def restore_rng(state: dict[str, Any]) -> list[str]:
    """Put the generators back in the states :func:`capture_rng` returned.

    :param state: what :func:`capture_rng` returned (possibly saved and loaded).
    :returns: what could not be restored here, in words (e.g. CUDA states saved on
        a machine with another number of GPUs); empty when everything was.
    """
    skipped: list[str] = []
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all(cuda)
        else:
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            skipped.append(f"the CUDA generators ({len(cuda)} saved, {have} device(s) here)")
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    saved_numpy = state.get("numpy")
    if saved_numpy is not None:
        np = _numpy()
        if np is None:
            skipped.append("numpy's generator (numpy is not installed)")
        else:
            keys = saved_numpy["keys"].numpy().astype(np.uint32)
            np.random.set_state(
                (
                    saved_numpy["kind"],
                    keys,
                    saved_numpy["pos"],
                    saved_numpy["has_gauss"],
                    saved_numpy["cached_gaussian"],
                )
            )
    return skipped


def loader_generator(loader: Any) -> torch.Generator | None:
    """The ``torch.Generator`` a loader shuffles with, if it has its own.

    Both :class:`~engine.data.TensorLoader` and ``torch.utils.data.DataLoader``
    (when built with ``generator=``) keep it in ``.generator``; a loader without
    one shuffles with the global torch generator, which :func:`capture_rng` saves.
    """
    generator = getattr(loader, "generator", None)
    return generator if isinstance(generator, torch.Generator) else None


def _temp_path(path: Path) -> Path:
    # beside the target, so os.replace is a rename within one file system; created
    # here (not by mkstemp) so the file gets the usual permissions
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    temp.touch(exist_ok=False)
    return temp


def atomic_save(obj: Any, paths: Sequence[Path]) -> None:
    """Write ``obj`` with ``torch.save`` to every path in ``paths``, atomically.

    The object is serialised once into a temporary file in the first path's
    folder, flushed to disk, copied for the other paths, and each copy is renamed
    over its target. A failure at any point (disk full, Ctrl-C) leaves the
    targets as they were and removes the temporary files.

    :param obj: what to save.
    :param paths: the files to write; their folders must exist.
    """
    if not paths:
        return
    temps: list[Path] = []
    try:
        first = _temp_path(paths[0])
        temps.append(first)
        with first.open("wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        for path in paths[1:]:
            copy = _temp_path(path)
            temps.append(copy)
            shutil.copyfile(first, copy)
        for temp, path in zip(temps, paths):
            os.replace(temp, path)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


class CheckpointError(PluginError):
    """A checkpoint file cannot be read, or does not fit the learner resuming from it."""


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by :class:`plugins.checkpoint.Checkpoint`.

    The file is loaded with ``torch.load(..., weights_only=True)``, so nothing in it
    can run code. A missing, truncated or foreign file raises
    :class:`CheckpointError` naming the path and what is wrong.

    :param path: the ``.pt`` file.
    :param map_location: where tensors are loaded (``torch.load``'s argument).
    :returns: the checkpoint as a dict (:mod:`plugins.checkpoint` lists what it holds).
    """
    where = Path(path)
    if not where.exists():
        raise CheckpointError(f"checkpoint {where}: no such file")
    if not where.is_file():
        raise CheckpointError(f"checkpoint {where}: not a file")
    try:
        file = where.open("rb")
    except OSError as exc:
        raise CheckpointError(f"checkpoint {where}: cannot be opened ({exc.strerror})") from exc
    with file:
        try:
            with warnings.catch_warnings():
                # a plain pickle makes torch warn about its protocol before failing
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types (even OSError) for a damaged file
            reason = (str(exc).strip().splitlines() or [""])[0][:160]
            if "Weights only load failed" in str(exc):
                problem = (
                    "it holds a type that weights_only loading refuses (a plugin state "
                    "or log value that is not a tensor, number, str, list, tuple or dict)"
                )
            else:
                problem = "the file is truncated, damaged or not a checkpoint"
            raise CheckpointError(
                f"checkpoint {where}: cannot be loaded; {problem} ({type(exc).__name__}: {reason})"
            ) from exc
    _check_layout(where, state)
    return state  # type: ignore[no-any-return]


def _check_layout(path: Path, state: Any) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path}: not a lookinside checkpoint (it holds a {type(state).__name__})"
        )
    if "format" not in state:
        hint = ""
        if state and all(isinstance(v, torch.Tensor) for v in state.values()):
            hint = (
                "; it looks like a bare state_dict: load it with "
                "model.load_state_dict(torch.load(path, weights_only=True))"
            )
        raise CheckpointError(f"checkpoint {path}: not a lookinside checkpoint (no 'format'){hint}")
    if state["format"] != FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: not a lookinside checkpoint (format {state['format']!r})"
        )
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"checkpoint {path}: damaged (version {version!r})")
    if version > VERSION:
        raise CheckpointError(
            f"checkpoint {path}: written by a newer lookinside (layout version {version}; "
            f"this one reads up to {VERSION}); upgrade lookinside to resume from it"
        )
    for key, types in _REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path}: damaged ({key!r} is missing)")
        value = state[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise CheckpointError(
                f"checkpoint {path}: damaged ({key!r} should be {expected}, got "
                f"{type(value).__name__})"
            )


def check_fits(path: Path | None, learner: Learner, state: dict[str, Any]) -> None:
    """Refuse a checkpoint of another model or optimizer, before anything is changed.

    :param path: where the checkpoint came from, for the messages.
    :param learner: the learner about to resume.
    :param state: the checkpoint, as :func:`load_checkpoint` returned it.
    :raises CheckpointError: the state dicts' keys or shapes, the optimizer's
        class or its parameter groups differ.
    """
    mine = learner.model.state_dict()
    saved = state["model"]
    missing = [key for key in mine if key not in saved]
    unexpected = [key for key in saved if key not in mine]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not fit this model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}; build the model the checkpoint was saved from"
        )
    for key, value in mine.items():
        other = saved[key]
        if isinstance(value, torch.Tensor) and (
            not isinstance(other, torch.Tensor) or other.shape != value.shape
        ):
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else other
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {key!r} has shape "
                f"{shape} in the checkpoint and {tuple(value.shape)} in the model"
            )
    opt, saved_opt = learner.opt, state["optimizer"]
    if opt is None or saved_opt is None:
        return
    saved_class = state.get("optimizer_class")
    if saved_class not in (None, type(opt).__name__):
        raise CheckpointError(
            f"checkpoint {path} holds the state of a {saved_class} optimizer but this "
            f"learner uses {type(opt).__name__}; use the same opt_func"
        )
    sizes = [len(group["params"]) for group in opt.param_groups]
    saved_sizes = [len(group.get("params", ())) for group in saved_opt.get("param_groups", ())]
    if sizes != saved_sizes:
        raise CheckpointError(
            f"checkpoint {path}: its optimizer has parameter groups of sizes {saved_sizes}, "
            f"this learner's {sizes}; use the same model and parameter groups"
        )
