"""Helpers for checkpoints: random-number states, safe values, atomic writes.

Everything here produces or accepts values that ``torch.load(..., weights_only=True)``
can read back: tensors, dicts, lists, tuples, str, int, float, bool and None. The
random-number states of Python's ``random`` and of numpy are therefore converted
to lists and tensors, and back.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

SAFE_SCALARS: tuple[type, ...] = (str, int, float, bool, type(None))
"""The plain values a checkpoint may hold, besides tensors and containers."""


def find_unsafe(obj: Any, where: str = "") -> str | None:
    """Where ``obj`` holds something ``torch.load(weights_only=True)`` cannot read.

    :param obj: the value to inspect, recursively through dicts, lists and tuples.
    :param where: the path of ``obj`` itself, used as the prefix of the answer.
    :returns: ``None`` when every value is safe, else the path and type of the first
        value that is not, e.g. ``"['history'][2]: a set"``.
    """
    if isinstance(obj, (torch.Tensor, *SAFE_SCALARS)):
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, SAFE_SCALARS):
                return f"{where}: a key of type {type(key).__name__}"
            found = find_unsafe(value, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            found = find_unsafe(value, f"{where}[{index}]")
            if found:
                return found
        return None
    return f"{where or 'the value'}: a {type(obj).__name__}"


def plain(mapping: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``mapping`` whose values are safe (see :func:`find_unsafe`)."""
    return {key: value for key, value in mapping.items() if find_unsafe(value) is None}


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


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (a bool is not), NaN included."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """Whether ``value`` is a real, finite number."""
    return is_number(value) and math.isfinite(value)
