"""Count the calls that read a tensor's values back to the host, while a flag is on.

On a GPU such a read (``loss.item()``, ``float(t)``, ``if t:``) waits until the
device has finished all the work queued before it: a host-device sync, which
stalls the pipeline when it happens every batch. On the CPU nothing waits, so a
test on the CPU counts the Python entry points of such reads instead
(:data:`READERS`), patched on ``torch.Tensor`` with ``monkeypatch`` for one test.

What is counted, and what is not:

- ``__index__`` is counted. Indexing a tensor *with* a tensor (``x[idx]``) does
  not call it: torch indexes on the device. It is called where Python needs the
  value as an int (a slice bound ``x[:t]``, ``range(t)``, ``list[t]``), and on a
  GPU that is a sync.
- ``cpu()`` is counted; ``to(...)`` is not: on a CPU-only run ``to(device)`` for
  the compute device also goes to the CPU and cannot be told from a copy back.
- Reads inside torch's C++ code are not seen: a tensor as a size
  (``torch.zeros(t)``), boolean-mask indexing, ``nonzero``, ``torch.unique``.
  The CUDA tests catch those with ``torch.cuda.set_sync_debug_mode("error")``.
- A read that makes another (``__format__`` calls ``item``) counts once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

READERS = (
    "item",
    "tolist",
    "numpy",
    "__array__",
    "__bool__",
    "__float__",
    "__int__",
    "__complex__",
    "__index__",
    "__format__",
    "__repr__",
    "cpu",
)
"""The ``torch.Tensor`` methods that read values back to the host."""

ROOT = Path(__file__).resolve().parent.parent

LOOP_SITE = "engine/batch_checks.py"
"""Where the loop reads once per fit (:mod:`engine.batch_checks`), counted apart."""


@dataclass(frozen=True)
class Read:
    """One counted read: the method, where it was called from, and the tag then."""

    method: str
    site: str
    """``path:line in function`` of the caller, the path relative to the repository."""
    tag: Any


class SyncCounter:
    """Counts calls of :data:`READERS` while :attr:`active` is true.

    :param monkeypatch: the test's ``monkeypatch``; the methods are restored after it.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.active = False
        """Count only while this is true."""
        self.tag: Any = None
        """Stored with each read: set it to say which batch is running."""
        self.reads: list[Read] = []
        self.loop_reads: list[Read] = []
        """The loop's own documented read, kept apart from :attr:`reads`: the first
        batch's labels against the model's outputs, once per fit (:data:`LOOP_SITE`)."""
        self._depth = 0
        for name in READERS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    @property
    def calls(self) -> list[str]:
        """The methods of the reads, in order."""
        return [read.method for read in self.reads]

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if not self.active or self._depth:
                return original(tensor, *args, **kwargs)
            read = Read(name, _site(sys._getframe(1)), self.tag)
            (self.loop_reads if read.site.startswith(LOOP_SITE) else self.reads).append(read)
            self._depth += 1
            try:
                return original(tensor, *args, **kwargs)
            finally:
                self._depth -= 1

        return counted


def _site(frame: Any) -> str:
    path = Path(frame.f_code.co_filename)
    if path.is_relative_to(ROOT):
        path = path.relative_to(ROOT)
    return f"{path.as_posix()}:{frame.f_lineno} in {frame.f_code.co_name}"
