"""Plugins created by name: their errors come out naming the plugin, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.exceptions import PluginError
from engine.exceptions import PluginTypeError
from engine.exceptions import PluginValueError
from engine.learner import Learner
from engine.manager import Catalog
from engine.manager import load_catalog
from engine.selection import select
from plugins.terminate_on_nan import TerminateOnNan
from tests.helpers import tiny_data
from tests.helpers import tiny_model


@pytest.fixture
def catalog() -> Catalog:
    """The built-in plugins, third-party ones left out."""
    return load_catalog(autoload=False)


def create(catalog: Catalog, request: object) -> object:
    enabled, _ = select(catalog, [request], defaults=False)
    (item,) = [item for item in enabled if item.source == "python"]
    return item.create()


def test_a_value_error_names_the_plugin_exactly_once(catalog: Catalog) -> None:
    with pytest.raises(PluginValueError) as info:
        create(catalog, "terminate_on_nan:every=0")
    error = info.value
    assert str(error) == "plugin 'terminate_on_nan': every should be a positive integer, got 0"
    assert isinstance(error, ValueError) and isinstance(error, PluginError)
    assert type(error.__cause__) is ValueError
    assert str(error.__cause__) == "every should be a positive integer, got 0"


def test_a_type_error_stays_a_type_error(catalog: Catalog) -> None:
    with pytest.raises(PluginTypeError) as info:
        create(catalog, ("activation_stats", {"modules": [3]}))
    assert isinstance(info.value, TypeError) and type(info.value.__cause__) is TypeError
    assert str(info.value) == (
        "plugin 'activation_stats': modules should be a sequence of strings, got [3]"
    )


def test_a_message_that_names_the_plugin_is_not_prefixed_again(catalog: Catalog) -> None:
    with pytest.raises(PluginValueError) as info:
        create(catalog, "early_stopping:monitor=speed")
    message = str(info.value)
    assert message.startswith("plugin 'early_stopping': cannot tell whether 'speed'")
    assert message.count("plugin 'early_stopping'") == 1


def test_a_learner_given_names_raises_the_same(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="^plugin 'grad_clip': max_norm should be a positive"):
        Learner(tiny_model(), tiny_data(), plugins=["grad_clip:max_norm=-1"], catalog=catalog)


def test_a_plugin_made_in_python_raises_the_bare_message() -> None:
    with pytest.raises(ValueError) as info:
        TerminateOnNan(every=0)
    assert type(info.value) is ValueError
    assert str(info.value) == "every should be a positive integer, got 0"


LOCAL_MODULE = """
class Shout:
    name = "shout"

    def __init__(self):
        self.epochs = 0

    def after_epoch(self, learner):
        self.epochs += 1
"""


def test_a_local_plugin_class_is_enabled_by_module_and_class(catalog: Catalog, site: Path) -> None:
    package = site / "fake_local"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(LOCAL_MODULE)
    _, objects = select(catalog, ["fake_local.plugin:Shout"], defaults=False)
    assert [type(plugin).__name__ for plugin in objects] == ["Shout"]
    learner = Learner(
        tiny_model(), tiny_data(), plugins=["fake_local.plugin:Shout"], catalog=catalog
    )
    learner.fit(2)
    assert learner.plugins["shout"].epochs == 2  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match=r"has no class 'Shuot' \(did you mean 'Shout'\?\)"):
        select(catalog, ["fake_local.plugin:Shuot"])
    with pytest.raises(PluginError, match="cannot import module 'fake_nowhere.plugin'"):
        select(catalog, ["fake_nowhere.plugin:Shout"])


def test_options_syntax_is_not_taken_for_a_local_class(catalog: Catalog) -> None:
    """``NAME:key=value`` has an '=', and a plugin name has no '.'."""
    with pytest.raises(PluginError, match="option 'Shout' has no value"):
        select(catalog, ["device:Shout"])
    enabled, objects = select(catalog, ["device:device=cpu"], defaults=False)
    assert objects == [] and enabled[0].options == {"device": "cpu"}
