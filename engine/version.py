"""lookinside's version, and the versions of what it runs on.

The environment's torch is chosen by the resolver, not by us (``setup.cfg`` does not
pin it: 2.14 on one machine, 2.15 on another), and numbers a user compares across
machines depend on it; ``lookinside --version`` and the test run's header say which.
"""

from __future__ import annotations

import platform
from importlib import metadata


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


__version__ = _installed("lookinside")
"""This distribution's version as installed ("not installed" when run from a bare checkout)."""


def torch_version() -> str:
    """torch's own version string (with its build, e.g. ``2.14.1+cu130``), or why there is none.

    Imports torch (about a second); a torch that fails to import is reported, not raised.
    """
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 (a broken install is what this should show)
        return f"{_installed('torch')} (import failed: {type(exc).__name__}: {exc})"
    return str(torch.__version__)


def versions() -> dict[str, str]:
    """lookinside's, torch's, torchvision's and Python's versions, by name."""
    return {
        "lookinside": __version__,
        "torch": torch_version(),
        "torchvision": _installed("torchvision"),
        "Python": platform.python_version(),
    }


def version_line() -> str:
    """One line for ``--version`` and the test header: ``lookinside 0.1.0, torch 2.14.1+cu130...``."""
    return ", ".join(f"{name} {version}" for name, version in versions().items())
