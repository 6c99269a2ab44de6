"""Write a file atomically: a reader sees the old file or the new one, never half of one.

:func:`atomic_write` is the one way lookinside writes files that must not be
left half-written (checkpoints, plots, reports). The content goes to a temporary
file beside the target, named ``.NAME.PID.HOST.TOKEN.tmp``, is flushed to disk
(``fsync``) and then renamed over the target with ``os.replace``, which is
atomic within one file system. Any exception, ``KeyboardInterrupt`` included,
removes the temporary file and leaves the target as it was.

A process killed during a write (``SIGKILL``, a power cut) cannot remove its
temporary file. The next write of the same target removes such leftovers, but
only those that are certainly dead, see :func:`remove_stale_temps`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
"""This machine's name as it appears in temporary file names (no dots, so they parse)."""


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    copies: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Write ``path`` atomically with ``write(file)``; returns the path.

    ``write`` gets a file opened for writing bytes and may call anything that
    takes one (``torch.save(obj, file)``, ``figure.savefig(file)``,
    ``file.write(data)``). Each target in ``copies`` receives the same bytes, written
    once and copied, each copy renamed over its target in turn: a failure
    leaves every target not yet renamed as it was. The folders must exist. A
    new file gets the usual permissions (``0o666`` less the umask).

    Not guaranteed: that two processes writing the same target at once agree on
    the winner (the last rename wins), or atomicity where ``os.replace`` is not
    atomic (some network file systems).

    :param path: the file to write.
    :param write: writes the content into the file it is given.
    :param copies: more files that receive the same content.
    """
    targets = [Path(path), *(Path(copy) for copy in copies)]
    for target in targets:
        remove_stale_temps(target)
    temps: list[Path] = []
    try:
        first = _temp_for(targets[0])
        temps.append(first)
        with first.open("xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        for target in targets[1:]:
            temp = _temp_for(target)
            temps.append(temp)
            with first.open("rb") as source, temp.open("xb") as file:
                shutil.copyfileobj(source, file)
                file.flush()
                os.fsync(file.fileno())
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
            _sync_folder(target.parent)
    finally:
        # after a rename the temporary name is gone: this removes only what failed
        for temp in temps:
            temp.unlink(missing_ok=True)
    return targets[0]


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of ``path`` that dead writers left behind.

    A temporary file ``.NAME.PID.HOST.TOKEN.tmp`` beside ``path`` is removed
    when it was written on this machine (HOST is this machine's name; files
    named ``.NAME.PID.TOKEN.tmp``, without HOST, by older versions, count as
    this machine's), PID is not this process, and no process with that PID runs
    here. Everything else is kept: a file of another machine sharing the folder
    (its writer may be alive; there is no way to tell from here), a file of a
    live process (a write in progress), and any other name. A dead writer's PID
    reused by a new process only delays the cleanup. Removal is best effort: a
    file that cannot be removed is left for the next time.

    Machines are told apart by their host name: containers sharing one host name
    but not one process table should not write into the same folder at once.
    Only POSIX systems can check for a process without disturbing it; elsewhere
    nothing is removed.

    :param path: the target whose leftovers to remove.
    :returns: the files removed.
    """
    target = Path(path)
    pattern = re.compile(
        rf"\.{re.escape(target.name)}\.(?P<pid>\d+)(?:\.(?P<host>[A-Za-z0-9-]+))?"
        r"\.[0-9a-f]{8}\.tmp"
    )
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed  # no folder yet (or unreadable): nothing of ours to clean
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] not in (None, _HOST):
            continue
        if _running(int(match["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue  # removed by someone else meanwhile, or not ours to remove
        removed.append(Path(entry.path))
    return removed


def _temp_for(target: Path) -> Path:
    # beside the target, so that os.replace is a rename within one file system
    token = secrets.token_hex(4)
    return target.with_name(f".{target.name}.{os.getpid()}.{_HOST}.{token}.tmp")


def _running(pid: int) -> bool:
    """Whether a process ``pid`` may be running here (``True`` when in doubt)."""
    if pid == os.getpid() or pid <= 0 or os.name != "posix":
        # on Windows os.kill(pid, 0) sends CTRL_C_EVENT; 0 means our process group
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # PermissionError: it exists, under another user
    return True


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry for a renamed file to disk, where the system allows it."""
    if os.name != "posix":
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse it; the rename is done
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
