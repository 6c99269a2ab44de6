"""The plugin door: discovery through entry points, blocking, broken and unknown plugins."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from engine import DataError
from engine import Learner
from engine import PluginError
from engine.listing import describe_plugins
from engine.listing import training_loop
from engine.manager import load_catalog
from engine.selection import select
from tests.helpers import fake_distribution
from tests.helpers import tiny_data
from tests.helpers import tiny_model

PLUGIN_MODULE = '''
from engine import hookimpl

class Counter:
    """Counts training batches."""

    name = "counter"
    order = 7

    def __init__(self, start: int = 0, label: str = "n") -> None:
        """:param start: the first count.
        :param label: a label."""
        self.count = start
        self.label = label

    def after_batch(self, learner):
        if learner.in_train:
            self.count += 1

@hookimpl
def lookinside_register(register):
    register(Counter)
'''


def test_third_party_plugin_is_discovered_with_its_distribution(site: Path) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    catalog = load_catalog(autoload=True)
    spec = catalog.plugins["counter"]
    assert (spec.origin.distribution, spec.origin.version) == ("lookinside-counter", "1.2.3")
    assert spec.events == ["after_batch"] and spec.order == 7 and not spec.default
    assert [(o.name, o.type, o.default, o.help) for o in spec.options] == [
        ("start", int, 0, "the first count."),
        ("label", str, "n", "a label."),
    ]
    assert "counter" not in catalog.defaults
    text = describe_plugins(catalog)
    assert "counter  [off]  lookinside-counter 1.2.3, order 7" in text
    assert "-p counter:start=  (int; default 0)  the first count." in text


def test_enable_by_name_with_converted_options(site: Path) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    catalog = load_catalog(autoload=True)
    learner = Learner(tiny_model(), tiny_data(), plugins=["counter:start=10"], catalog=catalog)
    learner.fit(2)
    assert learner.plugins["counter"].count == 14  # type: ignore[attr-defined]
    assert list(learner.plugins)[:3] == ["device", "ddp", "batch_transform"]


def test_builtins_come_through_the_same_door() -> None:
    catalog = load_catalog(autoload=True)
    for name in (
        "device",
        "ddp",
        "batch_transform",
        "metrics",
        "recorder",
        "progress",
        "csv_logger",
    ):
        assert catalog.plugins[name].origin.distribution == "lookinside"
        assert catalog.plugins[name].origin.entry_point.startswith(f"{name} = ")
    assert "train_eval" not in catalog.plugins  # the loop itself sets train/eval mode


def test_no_name_turns_a_default_off() -> None:
    catalog = load_catalog(autoload=True)
    enabled, _ = select(catalog, ["no:progress", "no:recorder"])
    names = [item.spec.name for item in enabled]
    assert "progress" not in names and "recorder" not in names and "metrics" in names
    with pytest.raises(
        PluginError, match="unknown plugin 'progres' \\(did you mean 'progress'\\?\\)"
    ):
        select(catalog, ["no:progres"])


def test_unknown_name_lists_available_and_closest(site: Path) -> None:
    with pytest.raises(PluginError) as info:
        Learner(tiny_model(), tiny_data(), plugins=["devcie"], catalog=load_catalog(autoload=True))
    message = str(info.value)
    assert message.startswith("unknown plugin 'devcie' (did you mean 'device'?); available: ")
    available = message.partition("available: ")[2]
    for name in ("batch_transform", "csv_logger", "device", "metrics", "progress"):
        assert name in available


def test_broken_entry_point_never_crashes_and_names_its_cause(site: Path) -> None:
    fake_distribution(
        site,
        "lookinside-broken",
        {"broken": "fake_broken", "counter": "fake_counter"},
        {"fake_broken": "import not_a_module_anywhere\n", "fake_counter": PLUGIN_MODULE},
    )
    catalog = load_catalog(autoload=True)
    assert "counter" in catalog.plugins  # the rest keep working
    assert "No module named 'not_a_module_anywhere'" in catalog.broken["broken"].error
    text = describe_plugins(catalog)
    assert (
        "Broken plugins" in text
        and "broken  [lookinside-broken 1.2.3, entry point 'broken = fake_broken']" in text
    )
    with pytest.raises(PluginError) as info:
        select(catalog, ["broken"])
    assert str(info.value) == (
        "plugin 'broken' (entry point 'broken = fake_broken' of distribution lookinside-broken "
        "1.2.3) failed to load: ModuleNotFoundError: No module named 'not_a_module_anywhere'"
    )


def test_module_whose_hook_raises_is_reported_broken(site: Path) -> None:
    source = "from engine import hookimpl\n@hookimpl\ndef lookinside_register(register):\n    raise ValueError('bad config')\n"
    fake_distribution(site, "lookinside-raises", {"raises": "fake_raises"}, {"fake_raises": source})
    catalog = load_catalog(autoload=True)
    assert catalog.broken["raises"].error == "ValueError: bad config"


def test_two_distributions_with_one_name_are_both_named(site: Path) -> None:
    fake_distribution(
        site, "dist-one", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    fake_distribution(
        site, "dist-two", {"counter": "fake_counter_two"}, {"fake_counter_two": PLUGIN_MODULE}
    )
    catalog = load_catalog(autoload=True)
    assert "counter" not in catalog.plugins
    error = catalog.broken["counter"].error
    assert (
        "dist-one (counter = fake_counter)" in error
        and "dist-two (counter = fake_counter_two)" in error
    )


def test_disabled_autoload_imports_third_party_only_when_named(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    monkeypatch.setenv("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "1")
    catalog = load_catalog()
    assert "fake_counter" not in sys.modules
    assert "counter" in catalog.unloaded and "metrics" in catalog.plugins
    assert "Not loaded (LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD" in describe_plugins(catalog)
    enabled, _ = select(catalog, ["counter"])
    assert "fake_counter" in sys.modules
    assert "counter" in [item.spec.name for item in enabled]


def test_bad_option_name_and_value_errors(site: Path) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    catalog = load_catalog(autoload=True)
    with pytest.raises(
        PluginError,
        match="plugin 'counter' has no option 'strat' \\(did you mean 'start'\\?\\); its options: start, label",
    ):
        select(catalog, ["counter:strat=1"])
    with pytest.raises(
        PluginError, match="plugin 'counter': option 'start' expects int, got 'ten'"
    ):
        select(catalog, ["counter:start=ten"])
    with pytest.raises(PluginError, match="plugin 'device': unknown device 'gpu'"):
        Learner(tiny_model(), tiny_data(), plugins=["device:device=gpu"], catalog=catalog)


def test_training_loop_printout_lists_plugins_per_event_in_order() -> None:
    catalog = load_catalog(autoload=True)
    enabled, _ = select(catalog, ["no:progress"])
    lines = dict(
        line.split(None, 1) for line in training_loop(enabled).splitlines() if len(line.split()) > 1
    )
    assert lines["begin_batch"] == "device, batch_transform"
    assert lines["begin_fit"].startswith("device, ddp, batch_transform")
    assert "progress" not in training_loop(enabled)


DATASET_MODULE = '''
import torch
from engine import hookimpl
from engine.data import DataBunch

def squares(bs: int = 4, seed: int = 0):
    """Tiny synthetic squares."""
    x = torch.randn(8, 4)
    y = torch.zeros(8, dtype=torch.long)
    return DataBunch.from_tensors(x, y, x, y, bs=bs, seed=seed, c=2, input_shape=(1, 2, 2), name="squares")

@hookimpl
def lookinside_datasets(register):
    register("squares", squares)
'''


def test_a_plugin_module_can_add_datasets(site: Path) -> None:
    fake_distribution(
        site, "lookinside-squares", {"squares": "fake_squares"}, {"fake_squares": DATASET_MODULE}
    )
    from engine.datasets import load_data

    catalog = load_catalog(autoload=True)
    spec = catalog.datasets["squares"]
    assert (
        spec.doc == "Tiny synthetic squares." and spec.origin.distribution == "lookinside-squares"
    )
    data = load_data("squares", catalog, bs=2, data_dir="x")
    assert data.name == "squares" and len(data.train_dl) == 4  # type: ignore[arg-type]


BUILTIN_DATASETS = ("digits", "fashion_mnist", "mnist", "mnist_pkl")


def test_builtin_datasets_come_through_the_same_door(monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in datasets are registered by the lookinside distribution, autoload or not."""
    monkeypatch.setenv("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "")
    catalog = load_catalog()
    for name in BUILTIN_DATASETS:
        origin = catalog.datasets[name].origin
        assert (origin.distribution, origin.entry_point) == (
            "lookinside",
            "datasets = engine.datasets",
        )
    assert catalog.datasets["digits"].doc.startswith("scikit-learn's 8x8")


def _dataset_module(name: str, loaded_as: str) -> str:
    """A plugin module registering dataset ``name``, whose bunch is called ``loaded_as``."""
    return f"""
import torch
from engine import hookimpl
from engine.data import DataBunch

def load(bs: int = 4):
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    return DataBunch.from_tensors(x, y, x, y, bs=bs, name={loaded_as!r})

@hookimpl
def lookinside_datasets(register):
    register({name!r}, load)
"""


def test_a_third_party_builtin_dataset_name_is_reported_and_the_builtin_loads(
    site: Path,
) -> None:
    from engine.datasets import load_data

    fake_distribution(
        site,
        "lookinside-digits",
        {"digits": "fake_digits"},
        {"fake_digits": _dataset_module("digits", "their digits")},
    )
    installed = list(importlib.metadata.entry_points(group="lookinside.plugins"))
    for entry_points in (installed, installed[::-1]):  # whichever loads first
        catalog = load_catalog(autoload=True, entry_points=entry_points)
        assert catalog.datasets["digits"].origin.distribution == "lookinside"
        assert load_data("digits", catalog, bs=8).name == "digits"
        error = catalog.broken_datasets["digits"].error
        assert (
            "lookinside (datasets = engine.datasets)" in error
            and "lookinside-digits (digits = fake_digits)" in error
        )
        assert "digits  two distributions register the dataset name 'digits'" in (
            describe_plugins(catalog)
        )


def test_two_distributions_with_one_dataset_name_are_both_named(site: Path) -> None:
    from engine.datasets import load_data

    fake_distribution(
        site, "dist-one", {"blobs": "fake_blobs"}, {"fake_blobs": _dataset_module("blobs", "1")}
    )
    fake_distribution(
        site, "dist-two", {"blobs2": "fake_blobs2"}, {"fake_blobs2": _dataset_module("blobs", "2")}
    )
    catalog = load_catalog(autoload=True)
    assert "blobs" not in catalog.datasets  # neither wins
    with pytest.raises(DataError) as info:
        load_data("blobs", catalog)
    message = str(info.value)
    assert message.startswith("dataset 'blobs' cannot be loaded: two distributions register")
    assert (
        "dist-one (blobs = fake_blobs)" in message and "dist-two (blobs2 = fake_blobs2)" in message
    )


COMMAND_MODULE = """
from engine import hookimpl

def hello(args):
    print(f"hello {args.who}")
    return 3

@hookimpl
def lookinside_commands(commands):
    parser = commands.add_parser("hello", help="say hello")
    parser.add_argument("who")
    parser.set_defaults(run=hello)
"""


def test_a_plugin_module_can_add_a_subcommand(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.cli import main

    fake_distribution(
        site, "lookinside-hello", {"hello": "fake_hello"}, {"fake_hello": COMMAND_MODULE}
    )
    assert main(["hello", "world"]) == 3
    assert capsys.readouterr().out == "hello world\n"


def test_every_builtin_plugin_runs_at_its_place_in_the_order_table() -> None:
    """The full order of the built-ins, not only the defaults (engine/order.py)."""
    from engine import order

    catalog = load_catalog(autoload=True)
    builtins = {
        name: spec.factory
        for name, spec in catalog.plugins.items()
        if spec.origin.distribution == "lookinside"
    }
    ranked = sorted(builtins, key=lambda name: builtins[name].order)  # type: ignore[attr-defined]
    assert ranked == [
        "device",
        "ddp",
        "schedule",
        "lr_find",
        "batch_transform",
        "terminate_on_nan",
        "metrics",
        "recorder",
        "activation_stats",
        "progress",
        "tensorboard",
        "grad_accumulation",
        "mixed_precision",
        "grad_clip",
        "checkpoint",
        "csv_logger",
        "early_stopping",
    ]
    constants = {n: v for n, v in vars(order).items() if n.isupper()}
    for name, factory in builtins.items():
        assert factory.order == constants[name.upper()], name  # type: ignore[attr-defined]
    assert len(set(constants.values())) == len(constants)  # no two places alike


def _plugin_named(name: str) -> str:
    return PLUGIN_MODULE.replace("register(Counter)", f"register(Counter, name={name!r})")


@pytest.mark.parametrize("entry_point", ["progress", "mine"])
def test_a_third_party_builtin_plugin_name_is_reported_and_the_builtin_kept(
    entry_point: str, site: Path
) -> None:
    """Whether the entry point or the registered plugin takes the name."""
    fake_distribution(
        site,
        "dist-one",
        {entry_point: "fake_progress"},
        {"fake_progress": _plugin_named("progress")},
    )
    catalog = load_catalog(autoload=True)
    assert catalog.plugins["progress"].origin.distribution == "lookinside"
    error = catalog.broken["progress"].error
    assert "lookinside (progress = observers.progress)" in error
    assert f"dist-one ({entry_point} = fake_progress)" in error
    assert "built-in names are reserved" in error
    assert "progress" in catalog.defaults


def test_a_builtin_plugin_name_is_kept_whatever_the_loading_order(site: Path) -> None:
    fake_distribution(
        site, "dist-one", {"mine": "fake_progress"}, {"fake_progress": _plugin_named("progress")}
    )
    third_party = [ep for ep in importlib.metadata.entry_points(group="lookinside.plugins")]
    third_party.sort(key=lambda ep: ep.dist is not None and ep.dist.name == "lookinside")
    catalog = load_catalog(autoload=True, entry_points=third_party)
    assert catalog.plugins["progress"].origin.distribution == "lookinside"
    assert catalog.broken["progress"].origin.distribution == "dist-one"


@pytest.mark.parametrize("marked", [True, False])
def test_a_misspelt_hook_is_reported_with_the_closest_name(marked: bool, site: Path) -> None:
    source = PLUGIN_MODULE.replace("def lookinside_register", "def lookinside_registr")
    if not marked:
        source = source.replace("@hookimpl\n", "")
    fake_distribution(site, "dist-one", {"hookbad": "fake_hookbad"}, {"fake_hookbad": source})
    catalog = load_catalog(autoload=True)
    error = catalog.broken["hookbad"].error
    assert "'lookinside_registr'" in error and "(did you mean 'lookinside_register'?)" in error
    assert "hookbad" in describe_plugins(catalog).partition("Broken plugins")[2]
    with pytest.raises(PluginError, match="did you mean 'lookinside_register'"):
        select(catalog, ["hookbad"])


def test_a_hook_without_hookimpl_is_reported(site: Path) -> None:
    source = PLUGIN_MODULE.replace("@hookimpl\n", "")
    fake_distribution(site, "dist-one", {"bare": "fake_bare"}, {"fake_bare": source})
    error = load_catalog(autoload=True).broken["bare"].error
    assert "'lookinside_register' is not marked with @hookimpl" in error


@pytest.mark.parametrize("methods", [["after_stp"], ["after_epoch", "after_stp"]])
def test_a_misspelt_event_is_reported_when_the_class_registers(
    methods: list[str], site: Path
) -> None:
    body = "".join(f"    def {method}(self, learner):\n        pass\n" for method in methods)
    source = (
        "from engine import hookimpl\n\nclass Typo:\n" + body + "\n@hookimpl\n"
        "def lookinside_register(register):\n    register(Typo)\n"
    )
    fake_distribution(site, "dist-one", {"typo": "fake_typo"}, {"fake_typo": source})
    catalog = load_catalog(autoload=True)
    assert "typo" not in catalog.plugins
    error = catalog.broken["typo"].error
    assert "method 'after_stp' looks like an event" in error
    assert "(did you mean 'after_step'?)" in error
    assert "typo" in describe_plugins(catalog).partition("Broken plugins")[2]


def test_the_allow_list_accepts_distribution_names(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    fake_distribution(
        site, "dist-two", {"other": "fake_other"}, {"fake_other": _plugin_named("other")}
    )
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "lookinside-counter")
    catalog = load_catalog(autoload=True)
    assert "counter" in catalog.plugins
    assert "other" in catalog.blocked and "other" not in catalog.plugins


def test_an_allow_list_name_matching_nothing_is_warned_about(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        site, "lookinside-counter", {"counter": "fake_counter"}, {"fake_counter": PLUGIN_MODULE}
    )
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "counter,lookinside-countr")
    with pytest.warns(UserWarning, match="'lookinside-countr'") as record:
        catalog = load_catalog(autoload=True)
    assert "(did you mean 'lookinside-counter'?)" in str(record[0].message)
    assert "counter" in catalog.plugins


WEIGHTWATCH = {
    "ww_plugin": """
        from engine import Register, hookimpl

        class WeightWatch:
            def after_epoch(self, learner):
                learner.log["watched"] = 1

        @hookimpl
        def lookinside_register(register: Register) -> None:
            register(WeightWatch)
    """,
    "ww_extras": """
        import torch
        from engine import hookimpl
        from engine.data import DataBunch

        def blobs(bs=16, **kwargs):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(32, 2, generator=g)
            y = (x[:, 0] > 0).long()
            return DataBunch.from_tensors(x[:24], y[:24], x[24:], y[24:], bs=bs)

        @hookimpl
        def lookinside_datasets(register):
            register("blobs", blobs)

        def _report(args):
            print("weightwatch report")
            return 0

        @hookimpl
        def lookinside_commands(commands):
            commands.add_parser("weightwatch-report", help="report").set_defaults(run=_report)
    """,
}


def test_autoload_off_a_named_plugin_brings_its_packages_datasets_and_commands(
    site: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from engine.cli import main

    fake_distribution(
        site,
        "lookinside-weightwatch",
        {"weightwatch": "ww_plugin", "weightwatch_extras": "ww_extras"},
        WEIGHTWATCH,
    )
    monkeypatch.setenv("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.chdir(tmp_path)
    argv = ["fit", "--epochs", "1", "--no-config", "-p", "weightwatch", "--data", "blobs"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "watched" in capsys.readouterr().out.splitlines()[0]
    assert main(["fit", "--data", "blobs", "--epochs", "1", "--no-config"]) == 2
    assert "unknown dataset 'blobs'" in capsys.readouterr().err  # not named: not loaded
    catalog = load_catalog()
    catalog.load_distribution_of("weightwatch")
    assert {"weightwatch"} <= set(catalog.plugins) and "blobs" in catalog.datasets
    assert not catalog.unloaded  # both entry points of the distribution
    # a package's command, autoload off: name the package in LOOKINSIDE_PLUGINS (as
    # PYTEST_PLUGINS works with PYTEST_DISABLE_PLUGIN_AUTOLOAD)
    monkeypatch.setenv("LOOKINSIDE_PLUGINS", "lookinside-weightwatch")
    assert main(["weightwatch-report"]) == 0
    assert capsys.readouterr().out == "weightwatch report\n"


def test_autoload_off_finds_a_plugin_named_unlike_its_entry_point(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_distribution(
        site,
        "lookinside-fancy",
        {"fancy": "fancy_module"},
        {
            "fancy_module": """
                from engine import hookimpl

                class Fancy:
                    name = "fancy_stats"

                    def after_epoch(self, learner):
                        pass

                @hookimpl
                def lookinside_register(register):
                    register(Fancy)
            """
        },
    )
    monkeypatch.setenv("LOOKINSIDE_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert load_catalog().get("fancy_stats").name == "fancy_stats"  # by the class's name
    with pytest.raises(PluginError, match="unknown plugin 'fancy' \\(did you mean 'fancy_stats'"):
        load_catalog().get("fancy")  # the entry point's name is not the plugin's
