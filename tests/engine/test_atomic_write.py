"""Atomic writes: all or nothing, no temporary file left, dead writers' leftovers removed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from engine import atomic_write as module
from engine.atomic_write import atomic_write
from engine.atomic_write import remove_stale_temps

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX process checks")


def writes(data: bytes) -> Callable[[BinaryIO], int]:
    return lambda file: file.write(data)


def temp_name(target: str, pid: int, host: str | None = module._HOST) -> str:
    return f".{target}.{pid}.{host}.0123abcd.tmp" if host else f".{target}.{pid}.0123abcd.tmp"


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The PID of another process, running for the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def test_writes_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    assert atomic_write(target, writes(b"new")) == target
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


def test_copies_get_the_same_bytes_written_once(tmp_path: Path) -> None:
    calls: list[int] = []

    def write(file: BinaryIO) -> None:
        calls.append(1)
        file.write(b"both")

    atomic_write(tmp_path / "last.pt", write, copies=[tmp_path / "best.pt"])
    assert calls == [1]
    assert (tmp_path / "last.pt").read_bytes() == (tmp_path / "best.pt").read_bytes() == b"both"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_target_and_no_temporary_file(
    tmp_path: Path, exc: BaseException
) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"good")

    def write(file: BinaryIO) -> None:
        file.write(b"half of a")
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, write, copies=[tmp_path / "b.bin"])
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failing_copy_replaces_no_target(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"good")
    with pytest.raises(FileNotFoundError):
        atomic_write(target, writes(b"new"), copies=[tmp_path / "missing" / "b.bin"])
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


@posix_only
def test_a_dead_writers_leftovers_are_removed_at_the_next_write(
    tmp_path: Path, dead_pid: int, live_pid: int
) -> None:
    target = tmp_path / "last.pt"
    dead = [temp_name("last.pt", dead_pid), temp_name("last.pt", dead_pid, host=None)]
    kept = [
        temp_name("last.pt", live_pid),  # a write in progress
        temp_name("last.pt", os.getpid()),  # ours: maybe another thread's write
        temp_name("last.pt", dead_pid, host="another-machine"),  # we cannot tell
        temp_name("best.pt", dead_pid),  # another target's
        f".last.pt.{dead_pid}.tmp",  # not a name we write
        "notes.txt",
    ]
    for name in dead + kept:
        (tmp_path / name).write_bytes(b"x")
    atomic_write(target, writes(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "last.pt"])


@posix_only
def test_copies_clean_their_own_leftovers(tmp_path: Path, dead_pid: int) -> None:
    (tmp_path / temp_name("best.pt", dead_pid)).write_bytes(b"x")
    atomic_write(tmp_path / "last.pt", writes(b"new"), copies=[tmp_path / "best.pt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_remove_stale_temps_without_a_folder_removes_nothing(tmp_path: Path) -> None:
    assert remove_stale_temps(tmp_path / "missing" / "last.pt") == []


@posix_only
def test_a_writer_killed_mid_write_leaves_a_temp_file_the_next_write_removes(
    tmp_path: Path,
) -> None:
    """SIGKILL during a write: the old file stays whole; its leftover goes at the next write."""
    target = tmp_path / "last.pt"
    target.write_bytes(b"good")
    # the module alone, loaded from its file: importing the engine package loads torch
    child = textwrap.dedent(
        """
        import importlib.util, sys, time
        spec = importlib.util.spec_from_file_location("atomic_write", sys.argv[1])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def write(file):
            file.write(b"half of a checkpoint")
            file.flush()
            print("writing", flush=True)
            time.sleep(60)

        module.atomic_write(sys.argv[2], write)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child, module.__file__ or "", str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "writing\n"
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".last.pt.{process.pid}.")
    assert target.read_bytes() == b"good"
    atomic_write(target, writes(b"new"))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    assert target.read_bytes() == b"new"
