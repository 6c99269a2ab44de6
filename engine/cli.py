"""The ``lookinside`` command: ``fit``, ``plugins``, ``new-plugin``, and what plugins add.

Other commands come through the ``lookinside_commands`` hook, the built-in ones
(``demo``, ``lr-find``) the same way as a third party's. Each module's hook is
called on its own: one that fails, or adds a command another module added first,
is listed by ``lookinside plugins`` (naming both) and the other commands work.
Built-in command names are reserved; between two third parties the first loaded
keeps the name.

Bad input (an unknown dataset or plugin, a bad option value, a missing file)
ends with a one-line ``lookinside: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import Literal
from typing import cast

if TYPE_CHECKING:
    from torch import nn

    from engine.config import Config
    from engine.data import DataBunch
    from engine.learner import Learner
    from engine.manager import Catalog
    from engine.manager import Origin
    from engine.nn.build import ModelSpec

# The model choices, spelled out so that building the parser imports no torch;
# tests/engine/test_cli_models.py checks them against engine.nn.build.
_MODEL_CHOICES = ("auto", "cnn", "cnn_07", "mlp", "resnet18")
_INIT_CHOICES = ("default", "kaiming")
_NORM_CHOICES = ("none", "batch", "torch_batch", "layer", "instance", "group", "running_batch")


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(piece) for piece in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 8,16,32,32, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths should be positive integers, got {text!r}")
    return widths


def add_plugin_arguments(parser: argparse.ArgumentParser) -> None:
    """``-p NAME[:key=value,...]``, ``-p no:NAME``, ``--config`` and ``--no-config``."""
    parser.add_argument(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME[:key=value,...]",
        help="enable a plugin (with options), or turn one off with no:NAME; repeatable",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: lookinside.toml or [tool.lookinside] found upward)",
    )
    parser.add_argument("--no-config", action="store_true", help="read no config file")


def named_plugins(argv: Sequence[str]) -> list[str]:
    """The plugin names given with ``-p`` in ``argv``, before it is parsed.

    ``-p NAME``, ``-pNAME``, ``-p=NAME``, options after ``:`` left out, ``no:NAME``
    skipped. With autoload off, :func:`main` loads these plugins' distributions
    before building the parser, so that their subcommands and datasets exist.

    >>> named_plugins(["fit", "-p", "ww:every=2", "-pno:progress", "-p=x", "--data", "blobs"])
    ['ww', 'x']

    :param argv: the command line's arguments.
    """
    names = []
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "-p" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("-p") and not arg.startswith("--"):
            value = arg[2:].removeprefix("=")
        else:
            continue
        name = value.partition(":")[0]
        if name and name != "no" and ":" not in name:
            names.append(name)
    return names


def config_from_args(args: argparse.Namespace) -> Config | Literal[False]:
    """The config ``--config``/``--no-config`` ask for, for :class:`~engine.learner.Learner`."""
    from engine.config import load_config

    if args.no_config:
        return False
    return load_config(args.config)


def learner_from_args(
    args: argparse.Namespace, model: nn.Module, data: DataBunch, **overrides: Any
) -> Learner:
    """The Learner the command line asks for: ``--lr``, ``--out``, ``-p`` and
    ``--config``/``--no-config`` (found upward when neither is given), on ``model`` and
    ``data``; ``overrides`` replace or add keyword arguments (``plugins``, ``out_dir``...).

    ``fit`` and every demo build their learners here, so each honours the same options.
    """
    from engine.learner import Learner

    options: dict[str, Any] = {
        "lr": args.lr,
        "plugins": list(args.plugins),
        "out_dir": args.out,
        "catalog": getattr(args, "catalog", None),
        "config": config_from_args(args),
    }
    options.update(overrides)
    return Learner(model, data, **options)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--act``, ``--init``, ``--norm`` and ``--widths``: the model to build.

    Each left out means the model's own; :func:`model_spec_from_args` reads them
    into a checked :class:`~engine.nn.build.ModelSpec`.
    """
    group = parser.add_argument_group(
        "model", "the model to train; an option left out means the model's own"
    )
    group.add_argument(
        "--model",
        choices=_MODEL_CHOICES,
        default="auto",
        help="auto (default): the model the dataset supplies, else the lesson's CNN for "
        "images, input_shape (C, H, W), and an MLP for flat features, (F,)",
    )
    group.add_argument(
        "--act",
        metavar="NAME[:key=value,...]",
        help="the activation: relu (default) or general_relu, which takes leak, sub and "
        "maxv (the lesson's 0.1, 0.4 and 6 by default; none turns one off), e.g. "
        "general_relu:leak=0.1,sub=0.4,maxv=6",
    )
    group.add_argument(
        "--init",
        choices=_INIT_CHOICES,
        help="default: the model's own (torch's; torchvision's for resnet18); kaiming: "
        "kaiming normal for every conv and linear layer, a = the activation's leak, zero biases",
    )
    group.add_argument(
        "--norm",
        choices=_NORM_CHOICES,
        help="the normalization after each activation (default: none; batch for cnn_07, "
        "torch_batch (nn.BatchNorm2d) for resnet18); mlp takes none, batch, layer, group "
        "and running_batch",
    )
    group.add_argument(
        "--widths",
        "--channels",
        dest="widths",
        type=_widths,
        metavar="W,W,...",
        help="the layers' widths: the CNN's convolution channels (default 8,16,32,32; "
        "cnn_07 8,16,32,64,64), the MLP's hidden layers (default 50)",
    )


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The model the model arguments ask for, checked (nothing is built yet).

    :raises ~engine.nn.build.ModelError: a bad ``--act``, or a combination the model
        cannot take (``--model mlp --norm instance``...).
    """
    from engine.nn.build import ModelSpec
    from engine.nn.build import parse_activation

    act, options = (None, {}) if args.act is None else parse_activation(args.act)
    return ModelSpec(args.model, act, options, args.init, args.norm, args.widths)


def add_data_arguments(parser: argparse.ArgumentParser, default_bs: int = 16) -> None:
    """The dataset options shared by ``fit`` and the demos."""
    parser.add_argument("--data", default="digits", help="dataset name (default: digits, embedded)")
    parser.add_argument("--data-dir", default="data", help="folder of torchvision datasets")
    parser.add_argument("--data-path", default=None, help="path of mnist.pkl.gz for mnist_pkl")
    parser.add_argument("--download", action="store_true", help="let torchvision download")
    parser.add_argument(
        "--bs", type=_positive_int, default=default_bs, help=f"batch size (default {default_bs})"
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")


def data_from_args(
    args: argparse.Namespace, catalog: Catalog | None = None, bs: int | None = None
) -> DataBunch:
    """The dataset the data arguments name, looked up in the catalogue (built-ins included).

    :param catalog: where plugin modules registered datasets; loaded when ``None``.
    :param bs: a batch size instead of ``args.bs``.
    """
    from engine.datasets import load_data

    return load_data(
        args.data,
        catalog,
        bs=args.bs if bs is None else bs,
        seed=args.seed,
        data_dir=args.data_dir,
        data_path=args.data_path,
        download=args.download,
    )


def add_training_arguments(
    parser: argparse.ArgumentParser, out: str, epochs: int = 10, lr: float = 0.2, bs: int = 16
) -> None:
    """Data, epochs, learning rate, output folder and ``-p``: ``fit``'s and the demos'.

    The defaults (10 epochs, lr 0.2, bs 16) are chosen for the embedded digits:
    the lesson's CNN reaches about 0.95 valid accuracy there. For MNIST use the
    lesson's bs 512 and lr 0.4.
    """
    add_data_arguments(parser, default_bs=bs)
    parser.add_argument(
        "--epochs", type=_non_negative_int, default=epochs, help=f"epochs (default {epochs})"
    )
    parser.add_argument(
        "--lr", type=_positive_float, default=lr, help=f"learning rate (default {lr})"
    )
    parser.add_argument("--out", default=out, help=f"folder for metrics.csv and plots ({out})")
    add_plugin_arguments(parser)


def _plugin_options_epilog(catalog: Catalog | None) -> str | None:
    """Every plugin's options, for ``fit --help``."""
    if catalog is None:
        return None
    lines = ["plugins and their options (-p NAME:key=value; `lookinside plugins` for more):"]
    for spec in sorted(catalog.plugins.values(), key=lambda s: s.name):
        on = " (on by default)" if spec.default else ""
        options = ", ".join(f"{o.name}={_shown(o.default)}" for o in spec.options) or "-"
        lines.append(f"  {spec.name}{on}: {options}")
    return "\n".join(lines)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


class _VersionAction(argparse.Action):
    """``--version``: lookinside's, torch's and Python's versions (torch is imported only here)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the versions and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from engine.version import version_line

        print(version_line())
        parser.exit()


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The sub-parsers, knowing who added each command: a name taken is an error naming both.

    The ``commands`` a ``lookinside_commands`` hook receives.
    """

    owners: dict[str, Origin]
    """Who added each command name (filled by :func:`build_parser`)."""
    adding: Origin
    """Whose hook is running now."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        from engine.exceptions import PluginError
        from engine.manager import BUILTIN_DISTRIBUTION
        from engine.manager import RESERVED_FIX
        from engine.manager import clash

        names = [name, *kwargs.get("aliases", ())]
        for each in names:
            if each in self.owners:
                first = self.owners[each]
                builtin = first.distribution == BUILTIN_DISTRIBUTION
                fix = RESERVED_FIX if builtin else "the first is kept; uninstall one of them"
                raise PluginError(clash("command", each, first, self.adding, fix))
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        self.owners.update(dict.fromkeys(names, self.adding))
        return parser


def build_parser(catalog: Catalog | None = None) -> argparse.ArgumentParser:
    """The ``lookinside`` parser, with the subcommands plugin modules add.

    Who added each command is recorded in ``catalog.commands``, and the modules
    whose hook failed or clashed in ``catalog.broken_commands``.
    """
    from engine.manager import BUILTIN_DISTRIBUTION
    from engine.manager import Origin

    parser = argparse.ArgumentParser(
        prog="lookinside",
        description="Train PyTorch models with plugins on an event bus, and look inside them.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = cast(
        _Commands, parser.add_subparsers(dest="command", metavar="COMMAND", action=_Commands)
    )
    commands.required = True
    commands.owners = {} if catalog is None else catalog.commands
    commands.owners.clear()
    commands.adding = Origin("built-in", BUILTIN_DISTRIBUTION, "")

    fit = commands.add_parser(
        "fit",
        help="train a model on a dataset (the lesson's CNN for images, an MLP for features)",
        epilog=_plugin_options_epilog(catalog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(fit, out="lookinside-out")
    add_model_arguments(fit)
    fit.add_argument("--no-defaults", action="store_true", help="enable only the named plugins")
    fit.add_argument(
        "--resume", metavar="PATH", help="continue from a checkpoint (= -p checkpoint:resume=PATH)"
    )
    fit.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="train on N processes of this machine, data-parallel (runs torchrun; bs is "
        "per process)",
    )
    fit.set_defaults(run=_fit)

    plugins = commands.add_parser("plugins", help="list installed plugins and their options")
    plugins.add_argument("--events", action="store_true", help="print the training loop")
    plugins.add_argument("--no-defaults", action="store_true", help="as fit --no-defaults")
    add_plugin_arguments(plugins)
    plugins.set_defaults(run=_plugins)

    scaffold = commands.add_parser("new-plugin", help="write a plugin package to start from")
    scaffold.add_argument("name", help="the plugin's name, e.g. grad_watch")
    scaffold.add_argument("dir", nargs="?", default=".", help="where to write it (default .)")
    scaffold.set_defaults(run=_new_plugin)
    if catalog is not None:
        _add_plugin_commands(catalog, commands)
    return parser


def _add_plugin_commands(catalog: Catalog, commands: _Commands) -> None:
    """Call each module's ``lookinside_commands`` on its own, built-in modules first."""
    from engine.manager import BUILTIN_DISTRIBUTION
    from engine.manager import call_own_hook

    pm = catalog.pm
    catalog.broken_commands.clear()
    modules = sorted(
        catalog.modules.items(), key=lambda item: item[1].distribution != BUILTIN_DISTRIBUTION
    )
    for name, origin in modules:
        module = pm.get_plugin(name)
        if module is None:
            continue
        commands.adding = origin
        try:
            call_own_hook(pm, module, "lookinside_commands", commands=commands)
        except Exception as exc:  # noqa: BLE001 -- one module's commands never break the others
            from engine.manager import BrokenPlugin

            error = f"{type(exc).__name__}: {exc}"
            catalog.broken_commands[name] = BrokenPlugin(name, origin, error)


def main(
    argv: Sequence[str] | None = None, *, catalog: Catalog | None = None, config: bool = True
) -> int:
    """Run the ``lookinside`` command; returns the exit status.

    Bad input (a :class:`~engine.exceptions.LookinsideError`) is one line and
    status 2. Ctrl-C, also while plugins load, is one line and status 130.
    SIGTERM is handled like Ctrl-C for the duration of the command (a
    :class:`~engine.exceptions.Terminated` is raised where the program is, so
    ``checkpoint`` writes ``interrupted.pt``), then one line and status 143; the
    previous handler is put back afterwards.

    :param argv: the arguments; ``sys.argv[1:]`` by default.
    :param catalog: the plugins to use; by default the installed ones
        (:func:`engine.manager.load_catalog`). :func:`engine.testing.run_cli` passes one.
    :param config: read a config file (``lookinside.toml``) as the command line
        does; ``False`` is ``--no-config`` for every command.
    """
    from engine.exceptions import LookinsideError
    from engine.exceptions import Terminated

    depth = len(_invocations)
    with _SigtermRaises():
        try:
            if catalog is None:
                from engine.manager import load_catalog

                catalog = load_catalog()
            argv = list(sys.argv[1:] if argv is None else argv)
            for name in named_plugins(argv):  # autoload off: their packages' commands, datasets
                catalog.load_distribution_of(name)
            args = build_parser(catalog).parse_args(argv)
            args.catalog = catalog
            if not config and hasattr(args, "no_config"):
                args.no_config = True
            args.argv = list(argv)
            _invocations.append(list(args.argv))
            return int(args.run(args) or 0)
        except LookinsideError as exc:
            print(f"lookinside: error: {exc}", file=sys.stderr)
            return 2
        except Terminated:
            print("lookinside: terminated", file=sys.stderr)
            return 143  # 128 + SIGTERM, as a shell reports it
        except KeyboardInterrupt:
            print("lookinside: interrupted", file=sys.stderr)
            return 130
        finally:
            del _invocations[depth:]


_invocations: list[list[str]] = []
"""The arguments of the ``lookinside`` commands running now, innermost last (empty
outside :func:`main`)."""


def resume_command(path: str | os.PathLike[str]) -> str:
    """The command line that resumes the running command from the checkpoint ``path``.

    Every option of the original invocation is kept (``--bs``, ``--out``,
    ``-p``...), a ``--resume`` it had is replaced. Outside the ``lookinside``
    command (a fit from Python), ``lookinside fit --resume PATH``.

    :param path: the checkpoint to resume from.
    """
    import shlex

    argv = list(_invocations[-1]) if _invocations else ["fit"]
    kept = _without_option(argv, "--resume")
    return shlex.join(["lookinside", *kept, "--resume", os.fspath(path)])


class _SigtermRaises:
    """Within ``with _SigtermRaises():``, SIGTERM raises :class:`~engine.exceptions.Terminated`.

    The previous handler is put back on leaving (the default one when it was not
    set from Python). Only the main thread may set signal handlers: elsewhere
    (``main`` called from a thread) SIGTERM keeps its handler.
    """

    def __enter__(self) -> None:
        import signal
        import threading

        self._installed = threading.current_thread() is threading.main_thread()
        if self._installed:
            self._previous = signal.signal(signal.SIGTERM, _raise_terminated)

    def __exit__(self, *exc_info: object) -> None:
        import signal

        if self._installed:
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGTERM, previous)


def _raise_terminated(signum: int, frame: object) -> None:
    from engine.exceptions import Terminated

    raise Terminated("SIGTERM")


def _plugins(args: argparse.Namespace) -> int:
    from engine.listing import describe_plugins
    from engine.listing import training_loop
    from engine.selection import select

    catalog = args.catalog
    config = config_from_args(args) or None
    if args.events:
        enabled, _ = select(catalog, args.plugins, not args.no_defaults, config, "-p")
        print(training_loop(enabled))
    else:
        print(describe_plugins(catalog, args.plugins, not args.no_defaults, config))
    return 0


def _fit(args: argparse.Namespace) -> int:
    import torch

    from engine.distributed import launch

    spec = model_spec_from_args(args)  # a bad --act or --norm fails before anything starts
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        # the processes torchrun starts must not start more
        return launch(args.nproc, ["-m", "engine.cli", *_without_option(args.argv, "--nproc")])

    from engine.exceptions import LookinsideError

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LookinsideError(
            f"cannot create the output folder --out {out}: {exc.strerror}"
        ) from exc
    catalog = args.catalog
    data = data_from_args(args, catalog)
    torch.manual_seed(args.seed)
    model = spec.build(data)  # the data lacking c or input_shape is one line, before training
    plugins = list(args.plugins)
    if args.resume:
        plugins.append(("checkpoint", {"resume": args.resume}))
    learner = learner_from_args(
        args, model, data, plugins=plugins, defaults=not args.no_defaults, out_dir=out
    )
    learner.fit(args.epochs)
    written = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if written and learner.is_main:
        print(f"wrote {', '.join(written)} to {out}")
    return 0


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``OPTION VALUE`` and ``OPTION=VALUE``, wherever they are."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            kept.append(arg)
    return kept


def _new_plugin(args: argparse.Namespace) -> int:
    from engine.scaffold import new_plugin

    root = new_plugin(args.name, args.dir)
    print(f"wrote {root}: cd {root} && pip install . && lookinside fit -p {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
