"""Build a model by name for the data: the lesson's CNN, notebook 07's CNN, an MLP, ResNet18.

What ``lookinside fit --model --act --init --norm`` builds, from Python as well::

    model = build_model("cnn", data, act="general_relu", init="kaiming", norm="batch")

The model fits the data: it outputs the data's ``c`` classes and takes inputs of
the data's ``input_shape``. ``"auto"`` (the default) builds the model the data
supplies (:attr:`engine.data.DataBunch.make_model`) when it has one, else the CNN
for images ``(C, H, W)`` and an MLP for flat features ``(F,)``.

A :class:`ModelSpec` holds the choice and checks it when it is made, before any
data is loaded; what depends on the data (``c``, ``input_shape``) is checked when
the model is built, before any training. Each refusal is a :class:`ModelError`, a
``ValueError`` whose one line says what was wrong and how to fix it; the
``lookinside`` command prints it as its error and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from functools import partial
from typing import cast

from torch import nn

from engine._checks import did_you_mean
from engine._checks import number
from engine._checks import one_of
from engine._checks import positive_int
from engine.exceptions import LookinsideError
from engine.nn.init import init_cnn
from engine.nn.layers import GeneralRelu
from engine.nn.models import CHANNELS
from engine.nn.models import CHANNELS_07
from engine.nn.models import FLAT_NORMS
from engine.nn.models import MLP_WIDTHS
from engine.nn.models import NORMS
from engine.nn.models import cnn
from engine.nn.models import cnn_07
from engine.nn.models import conv_norm_layer
from engine.nn.models import mlp
from engine.nn.resnet import replace_modules
from engine.nn.resnet import small_resnet18

MODELS = ("cnn", "cnn_07", "mlp", "resnet18")
"""The models built by name: :func:`~engine.nn.models.cnn` (the lesson's CNN),
:func:`~engine.nn.models.cnn_07` (notebook 07's), :func:`~engine.nn.models.mlp` and
:func:`~engine.nn.resnet.small_resnet18`."""

MODEL_CHOICES = ("auto", *MODELS)
"""What ``model`` may be: ``"auto"`` or a name in :data:`MODELS`."""

ACTIVATIONS: dict[str, dict[str, float | None]] = {
    "relu": {},
    "general_relu": {"leak": 0.1, "sub": 0.4, "maxv": 6.0},
}
"""The activations by name, each with its options and their defaults.

``general_relu`` is :class:`~engine.nn.layers.GeneralRelu` with the lesson's
``leak=0.1, sub=0.4, maxv=6`` unless options say otherwise (``None`` turns one off).
"""

INITS = ("default", "kaiming")
"""The initializations: the model's own (torch's; torchvision's for ``resnet18``), or
:func:`~engine.nn.init.init_cnn` with ``a`` the activation's leak."""

NORM_CHOICES = ("none", *NORMS)
"""What ``norm`` may be: ``"none"`` or a name in :data:`~engine.nn.models.NORMS`."""

OWN_NORMS = {"cnn": "none", "cnn_07": "batch", "mlp": "none", "resnet18": "torch_batch"}
"""The norm of each model when none is asked for; ``torch_batch`` is ``nn.BatchNorm2d``,
which torchvision's ResNet18 is built with."""

OWN_WIDTHS: dict[str, tuple[int, ...]] = {
    "cnn": CHANNELS,
    "cnn_07": CHANNELS_07,
    "mlp": MLP_WIDTHS,
}
"""The layer widths of each model when none are asked for: the convolutions' channels
of the CNNs, the hidden layers of the MLP. ResNet18's are fixed."""


class ModelError(LookinsideError, ValueError):
    """A model cannot be built as asked; the message says what is wrong and the fix."""


def parse_activation(text: str) -> tuple[str, dict[str, float | None]]:
    """Split ``NAME[:key=value,...]`` into the activation's name and its options.

    Values are numbers, or ``none`` for ``None``. Only the syntax is checked here;
    :class:`ModelSpec` checks the name and the options.

    >>> parse_activation("general_relu:leak=0.2,maxv=none")
    ('general_relu', {'leak': 0.2, 'maxv': None})

    :param text: what ``--act`` was given, e.g. ``general_relu:leak=0.1,sub=0.4,maxv=6``.
    :raises ModelError: an option is not ``key=value``, is given twice, or its value
        is not a number.
    """
    name, _, rest = text.partition(":")
    options: dict[str, float | None] = {}
    for piece in (p.strip() for p in rest.split(",")):
        if not piece:
            continue
        key, sep, value = (part.strip() for part in piece.partition("="))
        if not sep or not key:
            raise ModelError(
                f"act {text!r}: options should be key=value separated by commas, like "
                f"general_relu:leak=0.1,sub=0.4,maxv=6; got {piece!r}"
            )
        if key in options:
            raise ModelError(f"act {text!r}: option {key!r} is given twice")
        options[key] = _option_value(text, key, value)
    return name.strip(), options


def _option_value(text: str, key: str, value: str) -> float | None:
    """``value`` as a float, or None for ``none``; raise naming the option otherwise."""
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise ModelError(f"act {text!r}: {key} should be a number or none, got {value!r}") from None


def _checked(check: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Run one of :mod:`engine._checks`, turning its ValueError into a :class:`ModelError`."""
    try:
        check(*args, **kwargs)
    except ValueError as exc:
        raise ModelError(str(exc)) from None


@dataclass(frozen=True)
class ModelSpec:
    """A model to build: its name, activation, initialization, norm and widths, checked.

    ``None`` for ``act``, ``init``, ``norm`` or ``widths`` means the model's own:
    ReLU, its own initialization, its own norm (:data:`OWN_NORMS`), its own widths
    (:data:`OWN_WIDTHS`). Everything that does not depend on the data is checked
    when the spec is made; :meth:`build` checks the rest. A spec asking for any of
    them cannot build the model the data supplies (its ``make_model``): with
    ``name="auto"`` that is an error, so that an option is never silently ignored.

    Every model takes every norm, except the MLP: ``instance`` (which normalizes
    each channel over its pixels) and ``torch_batch`` (``nn.BatchNorm2d``, images
    only) need images. In ResNet18 the norm and the activation replace every
    ``nn.BatchNorm2d`` and ``nn.ReLU`` (``none``: ``nn.Identity``; its convolutions
    keep no bias).

    :param name: a name in :data:`MODEL_CHOICES`.
    :param act: a name in :data:`ACTIVATIONS`; None for ReLU.
    :param act_options: the activation's options (``leak``, ``sub``, ``maxv`` for
        ``general_relu``), a number each, or None to turn one off.
    :param init: a name in :data:`INITS`; None for the model's own (``default``).
    :param norm: a name in :data:`NORM_CHOICES`; None for the model's own.
    :param widths: the widths of the layers: the CNNs' convolution channels, the
        MLP's hidden layers; None for the model's own. ResNet18 takes none.
    """

    name: str = "auto"
    act: str | None = None
    act_options: Mapping[str, float | None] = field(default_factory=dict)
    init: str | None = None
    norm: str | None = None
    widths: Sequence[int] | None = None

    def __post_init__(self) -> None:
        _checked(one_of, "model", self.name, MODEL_CHOICES)
        if self.act is not None:
            _checked(one_of, "act", self.act, tuple(ACTIVATIONS))
        if self.init is not None:
            _checked(one_of, "init", self.init, INITS)
        if self.norm is not None:
            _checked(one_of, "norm", self.norm, NORM_CHOICES)
        # Copies, so that the spec stays as it was checked.
        object.__setattr__(self, "act_options", self._checked_options())
        if self.widths is not None:
            object.__setattr__(self, "widths", self._checked_widths())
        if self.name == "mlp" and self.norm is not None:
            _check_flat_norm(self.norm, "model 'mlp'")

    def _checked_options(self) -> dict[str, float | None]:
        if not isinstance(self.act_options, Mapping):
            raise ModelError(
                f"act_options should be a mapping like {{'leak': 0.1}}, got {self.act_options!r}"
            )
        act = self.act or "relu"
        allowed = ACTIVATIONS[act]
        options = dict(self.act_options)
        for key, value in options.items():
            if key not in allowed:
                takes = (
                    f"its options: {', '.join(allowed)}"
                    if allowed
                    else "it takes none (general_relu takes leak, sub and maxv)"
                )
                raise ModelError(
                    f"activation {act!r} has no option {key!r}{did_you_mean(key, allowed)}; {takes}"
                )
            if value is not None:
                try:
                    number(key, value, non_negative=key == "leak", finite=True)
                except ValueError as exc:
                    raise ModelError(f"activation {act!r}: {exc} (none turns it off)") from None
        return options

    def _checked_widths(self) -> tuple[int, ...]:
        if self.name == "resnet18":
            raise ModelError(
                "model 'resnet18' takes no widths (its stages are 64, 128, 256 and 512 "
                "channels wide); leave widths (--widths) out, or choose model 'cnn' or 'cnn_07'"
            )
        widths = self.widths
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise ModelError(f"widths should be positive integers like (8, 16, 32), got {widths!r}")
        for i, width in enumerate(widths):
            _checked(positive_int, f"widths[{i}]", width)
        return tuple(widths)

    @property
    def customized(self) -> bool:
        """Whether the spec asks for anything beyond the model's name."""
        options = (self.act, self.init, self.norm, self.widths)
        return bool(self.act_options) or any(o is not None for o in options)

    @property
    def leak(self) -> float:
        """The activation's negative slope: kaiming init's ``a`` (0 for ReLU)."""
        if self.act != "general_relu":
            return 0.0
        leak = {**ACTIVATIONS["general_relu"], **self.act_options}["leak"]
        return 0.0 if leak is None else float(leak)

    def make_act(self) -> Callable[[], nn.Module]:
        """What builds one activation module, called with no argument, for each layer."""
        if self.act != "general_relu":
            return nn.ReLU
        return partial(GeneralRelu, **{**ACTIVATIONS["general_relu"], **self.act_options})

    def resolve(self, data: object) -> str:
        """The name in :data:`MODELS` of the built-in model for ``data``.

        ``name`` itself, unless it is ``"auto"``: then ``"cnn"`` for an
        ``input_shape`` of images ``(C, H, W)``, ``"mlp"`` for flat features
        ``(F,)``. The model the data supplies is not considered here (:meth:`build`
        builds it first).

        :param data: a :class:`~engine.data.DataBunch`, or any object with
            ``input_shape`` (and maybe ``name``).
        :raises ModelError: ``"auto"`` and no ``input_shape``, or one of another length.
        """
        if self.name != "auto":
            return self.name
        shape = _input_shape(data)
        if len(shape) == 3:
            return "cnn"
        if len(shape) == 1:
            return "mlp"
        raise ModelError(
            f"{_label(data)} has input_shape {shape} of {len(shape)} dimensions; model "
            "'auto' builds the CNN for images (C, H, W) and an MLP for flat features (F,): "
            "set input_shape to one of those, or choose model 'mlp' (--model mlp), which "
            "flattens any input"
        )

    def build(self, data: object) -> nn.Module:
        """The model for ``data``, initialized, on the CPU.

        With ``name="auto"``, the data's own ``make_model()`` when it has one;
        otherwise the model :meth:`resolve` names, with ``data.c`` outputs and
        inputs of ``data.input_shape``. Weights are drawn from torch's global
        generator: seed it first for a repeatable model.

        :param data: a :class:`~engine.data.DataBunch`, or any object with ``c``
            and ``input_shape`` (and maybe ``name`` and ``make_model``).
        :raises ModelError: the data lacks ``c`` or ``input_shape``, or the model
            cannot take its inputs, or its ``make_model`` cannot be used.
        """
        make_model = getattr(data, "make_model", None)
        if self.name == "auto" and make_model is not None:
            return self._data_model(data, make_model)
        name = self.resolve(data)
        n_out = _classes(data)
        shape = _input_shape(data)
        if name != "mlp" and len(shape) != 3:
            raise ModelError(
                f"model {name!r} takes images, input_shape (C, H, W), but {_label(data)} has "
                f"input_shape {shape}: if its rows are images, set input_shape=(C, H, W) "
                "(batch_transform views them so), or choose model 'mlp' (--model mlp)"
            )
        norm = self.norm if self.norm is not None else OWN_NORMS[name]
        if name == "mlp":
            chose = " (model 'auto' chose it for flat features)" if self.name == "auto" else ""
            _check_flat_norm(norm, f"model 'mlp'{chose}")
        act = self.make_act()
        widths = tuple(self.widths) if self.widths is not None else OWN_WIDTHS.get(name, ())
        model: nn.Module
        if name == "cnn":
            model = cnn(n_out, widths, n_in=shape[0], layer=conv_norm_layer(norm, act))
        elif name == "cnn_07":
            model = cnn_07(norm, n_out=n_out, n_in=shape[0], act=act, channels=widths)
        elif name == "mlp":
            model = mlp(math.prod(shape), n_out, widths, act=act, norm=norm)
        else:
            model = _resnet18(n_out, shape[0], norm, act if self.act == "general_relu" else None)
        if self.init == "kaiming":
            init_cnn(model, a=self.leak)
        return model

    def _data_model(self, data: object, make_model: object) -> nn.Module:
        """Build the model the data supplies, refusing options it would ignore."""
        if self.customized:
            raise ModelError(
                f"{_label(data)} supplies its own model (make_model), which act, init, norm "
                f"and widths do not change; choose a built-in model ({', '.join(MODELS)}; "
                "--model) to build it with them, or leave them out"
            )
        if not callable(make_model):
            raise ModelError(
                f"{_label(data)}: make_model should build the model when called with no "
                f"argument, got {make_model!r}"
            )
        model = make_model()
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"{_label(data)}: make_model() should return an nn.Module, got "
                f"{type(model).__name__}"
            )
        return model


def build_model(
    name: str,
    data: object,
    *,
    act: str | None = None,
    act_options: Mapping[str, float | None] | None = None,
    init: str | None = None,
    norm: str | None = None,
    widths: Sequence[int] | None = None,
) -> nn.Module:
    """Build the model ``name`` for ``data``: ``ModelSpec(...).build(data)``.

    ``build_model("auto", data)`` is what ``lookinside fit`` trains by default;
    ``build_model("cnn_07", data, norm="running_batch", init="kaiming")`` is notebook
    07's network with RunningBatchNorm. See :class:`ModelSpec` for the choices and
    what ``None`` means.

    :param name: a name in :data:`MODEL_CHOICES` (``"auto"``, ``"cnn"``...).
    :param data: a :class:`~engine.data.DataBunch`, or any object with ``c`` and
        ``input_shape``.
    :param act: ``"relu"`` or ``"general_relu"``; None for ReLU.
    :param act_options: ``general_relu``'s ``leak``, ``sub``, ``maxv``.
    :param init: ``"default"`` or ``"kaiming"``; None for the model's own.
    :param norm: a name in :data:`NORM_CHOICES`; None for the model's own.
    :param widths: the layers' widths; None for the model's own.
    :raises ModelError: the choice, or the data, does not allow the model.
    """
    spec = ModelSpec(name, act, dict(act_options or {}), init, norm, widths)
    return spec.build(data)


def _check_flat_norm(norm: str, who: str) -> None:
    """Raise unless the MLP can take ``norm`` (``who`` names it in the message)."""
    if norm == "none" or norm in FLAT_NORMS:
        return
    why = {
        "instance": "instance norm normalizes each channel over its pixels, and flat "
        "features have none",
        "torch_batch": "torch_batch is nn.BatchNorm2d, which takes only images (batch is "
        "ours and takes flat features too)",
    }.get(norm, "it needs images")
    raise ModelError(
        f"{who} cannot take norm {norm!r}: {why}; choose none, {', '.join(FLAT_NORMS)}"
    )


def _resnet18(n_out: int, n_in: int, norm: str, act: Callable[[], nn.Module] | None) -> nn.Module:
    """ResNet18 for small images with ``norm`` for its BatchNorm2d and ``act`` for its ReLU."""
    model = small_resnet18(n_out, n_in)
    if norm != "torch_batch":
        make_norm = NORMS.get(norm)

        def new_norm(old: nn.Module) -> nn.Module:
            if make_norm is None:
                return nn.Identity()
            return make_norm(cast(nn.BatchNorm2d, old).num_features)

        replace_modules(model, nn.BatchNorm2d, new_norm)
    if act is not None:
        make_act = act
        replace_modules(model, nn.ReLU, lambda old: make_act())
    return model


def _label(data: object) -> str:
    """``the data 'NAME'`` for messages, or ``the data`` when it has no name."""
    name = getattr(data, "name", None)
    return f"the data {name!r}" if isinstance(name, str) and name else "the data"


def _classes(data: object) -> int:
    """``data.c``, checked: the number of outputs the model needs."""
    c = getattr(data, "c", None)
    if c is None:
        raise ModelError(
            f"{_label(data)} has no c, the number of classes the model outputs; set it where "
            "the data is built, e.g. DataBunch.from_tensors(..., c=10) (which infers it from "
            "integer labels) or DataBunch(train_dl, valid_dl, c=10)"
        )
    if isinstance(c, bool) or not isinstance(c, int) or c < 1:
        raise ModelError(
            f"{_label(data)}: c should be a positive integer (the number of classes), got {c!r}"
        )
    return c


def _input_shape(data: object) -> tuple[int, ...]:
    """``data.input_shape``, checked: the shape of one input."""
    shape = getattr(data, "input_shape", None)
    if shape is None:
        raise ModelError(
            f"{_label(data)} has no input_shape, the shape of one input: (C, H, W) for "
            "images, (F,) for flat features; set it where the data is built, e.g. "
            "DataBunch(train_dl, valid_dl, c=10, input_shape=(1, 28, 28)) "
            "(DataBunch.from_tensors infers it from the tensors)"
        )
    if (
        not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ):
        raise ModelError(
            f"{_label(data)}: input_shape should be a tuple of positive integers like "
            f"(1, 28, 28) or (20,), got {shape!r}"
        )
    return tuple(shape)
