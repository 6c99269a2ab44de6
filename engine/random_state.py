"""The random-number generators' states: captured as saveable values, and put back.

A training run draws from four global generators: torch's on the CPU, torch's on
each CUDA device, Python's ``random`` and numpy's (when numpy is installed).
:func:`capture_rng` returns their states as values that
``torch.load(..., weights_only=True)`` can read back: tensors, dicts, lists, str,
int, float and None. Python's state (a tuple of ints) becomes a list, and numpy's
(a uint32 array) an int64 tensor; :func:`restore_rng` converts them back, so a
captured state restores the generators bit for bit.

The generators a data loader keeps for itself are not global: they belong to the
learner's state (:mod:`engine.learner_state`).
"""

from __future__ import annotations

import importlib
import random
from types import ModuleType
from typing import Any


def capture_rng() -> dict[str, Any]:
    """The states of the torch (CPU and CUDA), Python and numpy generators.

    :returns: a dict with the keys ``torch`` (a uint8 tensor), ``cuda`` (one
        uint8 tensor per CUDA device; empty without CUDA), ``python`` (a dict)
        and ``numpy`` (a dict, or ``None`` when numpy is not installed).
    """
    import torch

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

    What cannot be restored on this machine is skipped, never guessed: CUDA
    states saved with another number of devices (a CUDA state belongs to one
    device), and numpy's state when numpy is not installed here.

    :param state: what :func:`capture_rng` returned (possibly saved and loaded).
    :returns: what could not be restored here, in words (e.g. ``"the CUDA
        generators (2 saved, 0 device(s) here)"``); empty when everything was.
    """
    import torch

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


def _numpy() -> ModuleType | None:
    """numpy, or ``None`` when it is not installed (it is optional here)."""
    try:
        return importlib.import_module("numpy")
    except ImportError:
        return None
