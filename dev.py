"""Set up the environment and run lookinside: needs only Python 3.10+ and pip's registries.

    python3 dev.py demo [NAME] [ARGS...]   create/reuse the environment, run a demo
    python3 dev.py test [PYTEST ARGS...]   create/reuse the environment, lint, type-check, test
    python3 dev.py lint                    ruff and mypy only
    python3 dev.py env                     create/update the environment and print its path

The virtual environment is ``.venv`` beside this file, or ``$LOOKINSIDE_VENV``.
It is reinstalled only when ``setup.cfg`` or ``pyproject.toml`` change (or the
checkout moves); the first install downloads PyTorch (several GB, a few minutes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def environment() -> Path:
    """Create or update the virtual environment; returns its folder."""
    env = Path(os.environ.get("LOOKINSIDE_VENV") or ROOT / ".venv").expanduser().resolve()
    python = env / "bin" / "python"
    stamp = env / ".lookinside-stamp"
    digest = hashlib.sha256(str(ROOT).encode())
    for name in ("setup.cfg", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    wanted = digest.hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return env
    if not python.exists():
        print(f"dev.py: creating the environment in {env}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=env.exists()).create(env)
    print("dev.py: installing lookinside and its dependencies (first time: PyTorch, a few minutes)")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools>=64", "wheel"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    stamp.write_text(wanted)
    return env


def run(env: Path, *command: str) -> int:
    """Run ``command`` with the environment's ``bin`` first on PATH."""
    bin_dir = env / "bin"
    variables = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    variables.setdefault("MPLBACKEND", "Agg")
    command_line = [str(bin_dir / command[0]), *command[1:]]
    return subprocess.run(command_line, cwd=ROOT, env=variables, check=False).returncode


def lint(env: Path) -> int:
    """ruff (lint and format check) and mypy; the first failure's status."""
    for command in (
        ("ruff", "check", "--config", ".ci/ruff.toml", "."),
        ("ruff", "format", "--config", ".ci/ruff.toml", "--check", "."),
        ("mypy",),
    ):
        status = run(env, *command)
        if status:
            return status
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "lint", "env"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    env = environment()
    if command == "env":
        print(env)
        return 0
    if command == "demo":
        return run(env, "lookinside", "demo", *rest)
    if command == "lint":
        return lint(env)
    status = lint(env)
    if status:
        return status
    return run(env, "python", "-m", "pytest", *rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
