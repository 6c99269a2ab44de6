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


def compatible_range(version: str = __version__) -> str:
    """The releases of lookinside a plugin package written against ``version`` works with.

    The plugin API (events, the learner's attributes, hooks, ``register``) changes
    only with the first non-zero part of the version: a minor release while it is
    0.x (``0.1.0`` -> ``>=0.1,<0.2``), a major one from 1.0 on (``1.4.2`` ->
    ``>=1.4,<2``). ``lookinside new-plugin`` writes this range into the package's
    requirements. Empty when the version is unknown (a bare checkout).

    >>> compatible_range("0.1.0"), compatible_range("1.4.2"), compatible_range("not installed")
    ('>=0.1,<0.2', '>=1.4,<2', '')

    :param version: a lookinside version, ``MAJOR.MINOR[.PATCH...]``.
    """
    parts = version.split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return ""
    major, minor = int(parts[0]), int(parts[1])
    upper = f"0.{minor + 1}" if major == 0 else str(major + 1)
    return f">={major}.{minor},<{upper}"


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
