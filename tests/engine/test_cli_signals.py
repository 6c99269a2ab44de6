"""Ctrl-C and SIGTERM on the ``lookinside`` command: one line, the shell's exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

import engine.manager
from engine import hookimpl
from engine.cli import main
from plugins.checkpoint import load_checkpoint


def test_ctrl_c_while_plugins_load_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.manager, "load_catalog", interrupted)
    assert main(["plugins"]) == 130
    assert capsys.readouterr().err == "lookinside: interrupted\n"


def test_sigterm_is_one_line_and_143_and_the_old_handler_comes_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def terminated(*args: object, **kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    def previous(signum: int, frame: object) -> None:
        raise AssertionError("the command's own handler should run")

    monkeypatch.setattr(engine.manager, "load_catalog", terminated)
    old = signal.signal(signal.SIGTERM, previous)
    try:
        assert main(["plugins"]) == 143
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert capsys.readouterr().err == "lookinside: terminated\n"


def test_sigterm_during_fit_writes_interrupted_pt(tmp_path: Path) -> None:
    """As Ctrl-C: the checkpoint plugin writes interrupted.pt, then one line and 143."""
    out = tmp_path / "run"
    argv = ["fit", "--out", str(out), "--epochs", "500", "--no-config", "-p", "checkpoint"]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *argv, "-p", "no:progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, MPLBACKEND="Agg"),
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "last.pt").exists():  # an epoch ran: fitting now
            assert process.poll() is None and time.monotonic() < deadline, process.poll()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert stderr == "lookinside: terminated\n"
    assert "checkpoint: interrupted in epoch" in stdout
    saved = load_checkpoint(out / "checkpoints" / "interrupted.pt")
    assert saved["epoch"] >= 0


def test_the_printed_resume_command_keeps_every_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C in a fit: the hint repeats the invocation, its --resume replaced."""
    import shlex

    from engine.cli import resume_command

    out = tmp_path / "my run"
    argv = ["fit", "--out", str(out), "--bs", "32", "--epochs", "3", "--no-config"]
    argv += ["-p", "checkpoint:every=2", "-p", "no:progress", "-p", "ctrl_c_once"]
    ctrl_c = types.ModuleType("ctrl_c_once")

    class CtrlC:
        def after_batch(self, learner: object) -> None:
            raise KeyboardInterrupt

    @hookimpl
    def lookinside_register(register: Any) -> None:
        register(CtrlC)

    ctrl_c.lookinside_register = lookinside_register  # type: ignore[attr-defined]
    catalog = engine.manager.load_catalog()
    catalog.add_module(ctrl_c)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.manager, "load_catalog", lambda *a, **k: catalog)
        assert main(argv) == 130
    path = out / "checkpoints" / "interrupted.pt"
    expected = shlex.join(["lookinside", *argv, "--resume", str(path)])
    assert f"(resume with: {expected})" in capsys.readouterr().out
    assert resume_command("x.pt") == "lookinside fit --resume x.pt"  # a fit from Python


def test_the_resume_command_replaces_a_resume_option(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.cli

    argv = ["fit", "--resume", "a.pt", "--bs", "8", "--resume=b.pt", "-p", "checkpoint"]
    monkeypatch.setattr(engine.cli, "_invocations", [argv])
    assert engine.cli.resume_command("c.pt") == (
        "lookinside fit --bs 8 -p checkpoint --resume c.pt"
    )
