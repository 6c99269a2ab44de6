"""The checkpoint file: its layout, safe values, atomic writes, and older layouts.

A checkpoint is a learner state (:mod:`engine.learner_state`: counters, model,
optimizer, random-number and loader states, plugin states) with the checkpoint's
own keys added (``format``, ``version``, ``complete``, the log and the best value).
Everything in it is a value that ``torch.load(..., weights_only=True)`` can read
back: tensors, dicts, lists, tuples, str, int, float, bool and None.

Layout versions: 1 kept one generator state (or ``None``) per loader and no
``lr``; 2 keeps a list of generator states per loader and ``lr``.
:func:`learner_part` turns either into a learner state.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from engine.atomic_write import atomic_write
from engine.exceptions import PluginError

if TYPE_CHECKING:
    from engine.learner import Learner

FORMAT = "lookinside-checkpoint"
"""The value of a checkpoint's ``format`` key."""

VERSION = 2
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

_REQUIRED_SINCE: dict[int, dict[str, tuple[type, ...]]] = {2: {"lr": (int, float)}}
"""The keys a layout version added to :data:`_REQUIRED`."""

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
    import torch

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
    import torch

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
    numpy = sys.modules.get("numpy")  # a numpy number means numpy was imported
    if numpy is not None and isinstance(value, numpy.generic):
        return value.item()
    return value


def save_checkpoint(state: dict[str, Any], path: Path, *copies: Path) -> None:
    """Write ``state`` with ``torch.save`` to ``path`` and each of ``copies``, atomically.

    The state is serialised once; see :func:`engine.atomic_write.atomic_write`. A
    failure at any point (disk full, Ctrl-C) leaves the targets as they were.

    :param state: the checkpoint.
    :param path: the file to write; its folder must exist.
    :param copies: more files that receive the same bytes.
    """
    import torch

    atomic_write(path, lambda file: torch.save(state, file), copies=copies)


class CheckpointError(PluginError):
    """A checkpoint file cannot be read, or does not fit the learner resuming from it."""


ZIP_MAGIC = b"PK\x03\x04"
"""How a file ``torch.save`` writes begins: it is a zip archive."""


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint written by :class:`plugins.checkpoint.Checkpoint`.

    The file is loaded with ``torch.load(..., weights_only=True)``, so nothing in it
    can run code. A missing, truncated or foreign file raises
    :class:`CheckpointError` naming the path and what is wrong.

    :param path: the ``.pt`` file.
    :param map_location: where tensors are loaded (``torch.load``'s argument).
    :returns: the checkpoint as a dict (:mod:`plugins.checkpoint` lists what it holds).
    """
    import torch

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
        head = file.read(4)
        file.seek(0)
        zipped = head.startswith(ZIP_MAGIC)
        if not (zipped or head.startswith(b"\x80")):  # a zip archive, or torch's legacy pickle
            shown = head.hex(" ") if head else "nothing: it is empty"
            raise CheckpointError(
                f"checkpoint {where}: not a checkpoint (torch.save writes a zip archive, "
                f"which starts with 50 4b 03 04; this file starts with {shown})"
            )
        try:
            with warnings.catch_warnings():
                # a plain pickle makes torch warn about its protocol before failing
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types (even OSError) for a damaged file
            reason = (str(exc).strip().splitlines() or [""])[0][:160]
            if zipped and "Weights only load failed" in str(exc):
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
    import torch

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
    required = dict(_REQUIRED)
    for since, keys in _REQUIRED_SINCE.items():
        if version >= since:
            required.update(keys)
    for key, types in required.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path}: damaged ({key!r} is missing)")
        value = state[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types)
            raise CheckpointError(
                f"checkpoint {path}: damaged ({key!r} should be {expected}, got "
                f"{type(value).__name__})"
            )


def learner_part(state: dict[str, Any], learner: Learner) -> dict[str, Any]:
    """The learner state of a checkpoint of any layout version, in today's layout.

    Version 1 kept each loader's generator state or ``None``: it becomes a list
    of none or one. Its ``lr`` is taken as the learner's (version 1 did not save
    it, and the optimizer's param groups hold the rates that were in use). The
    checkpoint itself is not changed.

    :param state: a checkpoint, as :func:`load_checkpoint` returned it.
    :param learner: the learner it will be loaded into.
    """
    part = dict(state)
    part.setdefault("lr", learner.lr)
    part["loaders"] = {key: _as_list(saved) for key, saved in state["loaders"].items()}
    return part


def _as_list(saved: Any) -> Any:
    """A loader's entry of version 1 (a generator state or None) as of version 2 (a list)."""
    import torch

    if saved is None:
        return []
    return [saved] if isinstance(saved, torch.Tensor) else saved
