"""Tests of engine.testing: what a plugin package's tests lean on must itself hold."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.testing import CliResult
from engine.testing import catalog_with
from engine.testing import hermetic_env
from engine.testing import make_learner
from engine.testing import run_cli
from engine.testing import tiny_data
from engine.testing import tiny_model

PLUGIN = '''
from engine import Register, hookimpl


class Counter:
    """Count training batches into the epoch's log.

    :param step: added per batch.
    """

    name = "counter"
    log_keys = ("counted",)

    def __init__(self, step: int = 1) -> None:
        self.step = step
        self.count = 0

    def begin_epoch(self, learner):
        self.count = 0

    def after_batch(self, learner):
        if learner.in_train:
            self.count += self.step

    def after_epoch(self, learner):
        learner.log["counted"] = self.count


@hookimpl
def lookinside_register(register: Register) -> None:
    register(Counter)
'''


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A plugin module on sys.path, not installed: ``my_counter``."""
    (tmp_path / "my_counter.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_counter"
    sys.modules.pop("my_counter", None)


def test_tiny_data_is_learnable_flat_or_images() -> None:
    flat = tiny_data()
    xb, yb = next(iter(flat.train_dl))
    assert xb.shape == (8, 4) and flat.c == 2 and flat.input_shape == (4,)
    assert torch.equal(yb, xb[:, :2].argmax(dim=1))
    images = tiny_data(image=True, features=6, classes=3)
    xb, yb = next(iter(images.train_dl))
    assert xb.shape == (8, 1, 6, 6) and images.c == 3
    assert tiny_model(images)(xb).shape == (8, 3)
    assert tiny_data(n_valid=0).valid_dl is None
    with pytest.raises(ValueError, match="classes should be between 2 and features"):
        tiny_data(classes=5)


def test_a_module_registered_as_if_installed(plugin_module: str) -> None:
    learner = make_learner(["counter:step=2", "metrics"], modules=[plugin_module])
    learner.fit(2)
    assert learner.log["counted"] == 8  # 4 batches of 8, step 2
    assert list(learner.plugins) == ["counter", "metrics"]  # run order; no default plugins
    spec = catalog_with([plugin_module]).plugins["counter"]
    assert spec.origin.distribution == "(local)"
    assert [option.name for option in spec.options] == ["step"]


def test_under_another_name(plugin_module: str) -> None:
    catalog = catalog_with([("renamed", plugin_module)])
    assert "renamed" in catalog.modules and "counter" in catalog.plugins


def test_the_environment_and_config_files_change_nothing(
    plugin_module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lookinside.toml").write_text('plugins = ["no-such-plugin"]\n')
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "nothing-here")
    monkeypatch.setenv("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "1")
    learner = make_learner(["counter"], modules=[plugin_module])
    assert list(learner.plugins) == ["counter"]
    assert os.environ["LOOKINSIDE_PLUGINS"] == "nothing-here"  # put back
    result = run_cli(["fit", "--epochs", "1", "-p", "counter"], modules=[plugin_module])
    assert result.exit_code == 0, result.err
    assert "counted" in result.lines[0].split()


def test_hermetic_env_clears_and_restores() -> None:
    os.environ["LOOKINSIDE_X"] = "outer"
    try:
        with hermetic_env({"LOOKINSIDE_Y": "inner"}):
            assert os.environ.get("LOOKINSIDE_X") is None
            assert os.environ["LOOKINSIDE_Y"] == "inner"
            os.environ["LOOKINSIDE_Z"] = "leak"
        assert os.environ["LOOKINSIDE_X"] == "outer"
        assert "LOOKINSIDE_Y" not in os.environ and "LOOKINSIDE_Z" not in os.environ
    finally:
        os.environ.pop("LOOKINSIDE_X", None)


def test_run_cli_returns_status_and_output(plugin_module: str) -> None:
    listed = run_cli(["plugins"], modules=[plugin_module])
    assert listed.exit_code == 0 and "counter" in listed.out
    bad = run_cli(["fit", "-p", "countr"], modules=[plugin_module])
    assert bad == CliResult(2, "", bad.err)
    assert bad.err.startswith("lookinside: error: unknown plugin 'countr'")
    assert "did you mean 'counter'?" in bad.err
    usage = run_cli(["fit", "--epochs", "zero"])
    assert usage.exit_code == 2
    assert usage.err.splitlines()[-1] == (
        "lookinside fit: error: argument --epochs: expected an integer, got 'zero'"
    )
    helped = run_cli(["--help"])
    assert helped.exit_code == 0 and "usage: lookinside" in helped.out


NAMELESS = '''
from engine import Register, hookimpl


class WeightWatch:
    """Keeps a count across checkpoints (no name attribute)."""

    def __init__(self) -> None:
        self.seen = 0

    def after_epoch(self, learner):
        self.seen += 1

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


@hookimpl
def lookinside_register(register: Register) -> None:
    register(WeightWatch)
'''


def test_a_plugin_has_one_name_however_it_is_attached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By entry point "weightwatch", or as an object of the registered class: the same
    name, so a checkpoint made one way resumes the other (the issue's weight_watch)."""
    (tmp_path / "ww_module.py").write_text(textwrap.dedent(NAMELESS))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ww_module

    modules = [("weightwatch", ww_module)]
    by_name = make_learner(
        ["weightwatch", "checkpoint:monitor=none"], modules=modules, out_dir=tmp_path
    )
    by_name.fit(2)
    as_object = ww_module.WeightWatch()
    resumed = make_learner(
        [as_object, f"checkpoint:monitor=none,resume={tmp_path / 'checkpoints' / 'last.pt'}"],
        modules=modules,
        out_dir=tmp_path,
    )
    assert "weightwatch" in resumed.plugins and resumed.plugins["weightwatch"] is as_object
    resumed.fit(3)
    assert as_object.seen == 3  # 2 restored from the checkpoint, then epoch 2
    sys.modules.pop("ww_module", None)


def test_the_registered_name_wins_over_the_objects_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = NAMELESS.replace("    register(WeightWatch)", '    register(WeightWatch, name="ww")')
    source = source.replace("class WeightWatch:\n", 'class WeightWatch:\n    name = "own"\n')
    (tmp_path / "ww_named.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ww_named

    learner = make_learner([ww_named.WeightWatch()], modules=[ww_named])
    assert list(learner.plugins) == ["ww"]  # as "-p ww" would name it
    sys.modules.pop("ww_named", None)


def test_the_default_model_leaves_the_callers_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = tiny_model()
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), tiny_model().parameters()))
