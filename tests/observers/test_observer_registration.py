"""The observers register through the plugin door with CLI-friendly options."""

from __future__ import annotations

import pytest

from engine.manager import load_catalog
from engine.options import convert
from observers import csv_logger
from observers import metrics
from observers import progress
from observers import recorder

MODULES = {
    "metrics": (metrics, metrics.Metrics, 10),
    "recorder": (recorder, recorder.Recorder, 20),
    "progress": (progress, progress.Progress, 30),
    "csv_logger": (csv_logger, csv_logger.CSVLogger, 90),
}


@pytest.fixture
def catalog():
    catalog = load_catalog(entry_points=[])
    for name, (module, _, _) in MODULES.items():
        catalog.add_module(module, name)
    return catalog


@pytest.mark.parametrize("name", list(MODULES))
def test_registered_by_default_with_name_and_order(catalog, name):
    _, factory, order = MODULES[name]
    spec = catalog.get(name)
    assert spec.factory is factory
    assert spec.default
    assert spec.order == order
    assert factory.name == name
    assert spec.doc
    for option in spec.options:
        assert option.help, f"{name}:{option.name} has no help text"


def test_options_convert_from_cli_strings(catalog):
    option = catalog.get("metrics").option("metrics")
    value = convert("metrics", option, "accuracy,error_rate")
    assert value == ("accuracy", "error_rate")
    assert metrics.Metrics(value).names == ["accuracy", "error_rate"]
    assert convert("progress", catalog.get("progress").option("bar"), "false") is False
    assert convert("progress", catalog.get("progress").option("bar"), "none") is None
    assert convert("recorder", catalog.get("recorder").option("save"), "no") is False
    assert convert("csv_logger", catalog.get("csv_logger").option("path"), "a/b.csv") == "a/b.csv"


def test_plugins_created_from_the_catalog_attach(make_learner, catalog, tmp_path):
    plugins = [catalog.get(name).factory() for name in MODULES]
    learner = make_learner(plugins, out_dir=tmp_path)
    assert list(learner.plugins) == list(MODULES)
    learner.fit(1)
    assert (tmp_path / "metrics.csv").exists()
    assert (tmp_path / "loss.png").exists()
