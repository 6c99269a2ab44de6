"""The config file, its precedence under the CLI, the allow-list, and where things came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Learner
from engine import PluginError
from engine.cli import main
from engine.config import ConfigError
from engine.config import find_config
from engine.config import load_config
from engine.manager import load_catalog
from engine.selection import select
from tests.engine.test_manager import PLUGIN_MODULE
from tests.helpers import fake_distribution
from tests.helpers import tiny_data
from tests.helpers import tiny_model

LOOKINSIDE_TOML = """
plugins = ["no:progress", "batch_transform:shape=3"]

[device]
device = "cpu"
non_blocking = false
"""

PYPROJECT = """
[project]
name = "someone"

[tool.lookinside]
plugins = ["no:recorder"]

[tool.lookinside.device]
device = "cpu"
"""


def test_found_from_the_current_folder_upward(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config(nested) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_config(nested) is None  # no [tool.lookinside]: not ours
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    assert find_config(nested) == tmp_path / "pyproject.toml"
    (tmp_path / "a" / "lookinside.toml").write_text(LOOKINSIDE_TOML)
    assert find_config(nested) == tmp_path / "a" / "lookinside.toml"


def test_pyproject_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    config = load_config(start=tmp_path)
    assert config.plugins == ["no:recorder"]
    assert config.options == {"device": {"device": "cpu"}}


def test_file_applies_and_cli_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lookinside.toml").write_text(LOOKINSIDE_TOML)
    monkeypatch.chdir(tmp_path)
    learner = Learner(tiny_model(), tiny_data(), config=True)
    assert "progress" not in learner.plugins
    assert learner.plugins["device"].non_blocking is False  # type: ignore[attr-defined]
    assert learner.plugins["batch_transform"].shape == (3,)  # type: ignore[attr-defined]
    override = Learner(
        tiny_model(), tiny_data(), plugins=["progress", "device:non_blocking=true"], config=True
    )
    assert "progress" in override.plugins
    assert override.plugins["device"].non_blocking is True  # type: ignore[attr-defined]
    assert "progress" in Learner(tiny_model(), tiny_data(), config=False).plugins


def test_learner_from_python_reads_no_config_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stray lookinside.toml in the working folder does not change a script's learner;
    the command line finds it (tests/engine/test_cli.py), Python asks for it."""
    (tmp_path / "lookinside.toml").write_text(LOOKINSIDE_TOML)
    monkeypatch.chdir(tmp_path)
    learner = Learner(tiny_model(), tiny_data())
    assert "progress" in learner.plugins and learner.config.path is None
    found = Learner(tiny_model(), tiny_data(), config=True)
    assert "progress" not in found.plugins and found.config.path == tmp_path / "lookinside.toml"
    named = Learner(tiny_model(), tiny_data(), config=tmp_path / "lookinside.toml")
    assert "progress" not in named.plugins


def test_listing_says_where_plugins_and_options_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "lookinside.toml"
    config.write_text(LOOKINSIDE_TOML)
    monkeypatch.chdir(tmp_path)
    assert main(["plugins", "-p", "device:device=cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"config file: {config}\n")
    assert "progress  [off (on by default)]" in out
    assert "batch_transform  [on: default]" in out
    assert f"        = 3  (from {config})" in out  # shape
    assert "        = cpu  (from -p)" in out  # device: the command line wins
    assert f"        = false  (from {config})" in out  # non_blocking


def test_bad_config_values_name_the_file_plugin_and_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "lookinside.toml"
    config.write_text('[device]\nnon_blocking = "sometimes"\n')
    with pytest.raises(PluginError) as info:
        Learner(tiny_model(), tiny_data(), config=config)
    assert str(info.value) == (
        f"{config}: plugin 'device': option 'non_blocking' expects a bool (true/false), "
        "got 'sometimes'"
    )
    config.write_text("[device]\nnon_blocking = 3\n")
    with pytest.raises(PluginError, match=r"expects a bool \(true/false\), got 3 \(int\)"):
        Learner(tiny_model(), tiny_data(), config=config)
    config.write_text("epochs = 3\n")
    with pytest.raises(ConfigError, match="unexpected key 'epochs' = 3"):
        load_config(config)
    config.write_text("plugins = [\n")
    assert main(["fit", "--config", str(config), "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err


def test_allow_list_restricts_third_party_plugins(
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "something_else")
    with pytest.warns(UserWarning, match="names 'something_else', which is no installed plugin"):
        catalog = load_catalog(autoload=True)
    assert "counter" in catalog.blocked and "metrics" in catalog.plugins
    with pytest.raises(PluginError, match="'counter' is installed but not in LOOKINSIDE_PLUGINS"):
        select(catalog, ["counter"])
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "counter")
    assert "counter" in load_catalog(autoload=True).plugins


def test_plugin_class_without_events_is_reported(
    site: Path,
) -> None:
    source = (
        "from engine import hookimpl\n"
        "class Idle:\n"
        "    def helper(self): pass\n"
        "@hookimpl\n"
        "def lookinside_register(register):\n"
        "    register(Idle)\n"
    )
    fake_distribution(site, "lookinside-idle", {"idle": "fake_idle"}, {"fake_idle": source})
    catalog = load_catalog(autoload=True)
    assert catalog.broken["idle"].error.startswith(
        "PluginError: plugin 'idle': class Idle has no event methods; define at least one, "
        "e.g. 'def after_epoch(self, learner)'"
    )


def test_a_table_enables_its_plugin_and_no_in_the_list_wins(tmp_path: Path) -> None:
    from engine.manager import load_catalog
    from engine.selection import select

    path = tmp_path / "lookinside.toml"
    path.write_text("[grad_clip]\nmax_norm = 1.0\n")
    enabled, _ = select(load_catalog(), config=load_config(path))
    clip = next(item for item in enabled if item.spec.name == "grad_clip")
    assert clip.options == {"max_norm": 1.0}
    path.write_text('plugins = ["no:grad_clip"]\n[grad_clip]\nmax_norm = 1.0\n')
    enabled, _ = select(load_catalog(), config=load_config(path))
    assert "grad_clip" not in [item.spec.name for item in enabled]
