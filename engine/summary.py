"""A model's layers as one batch goes through them: names, types, output shapes, parameters.

:func:`summarize` runs one batch through the model in eval mode under
``torch.no_grad``, with a forward hook on every module, and reports each layer
(each module without children; with ``containers=True`` every module) in the
order the model defines them, like fastai's ``Learner.summary`` and torchinfo.
The hooks are removed and every module's train/eval mode put back afterwards,
whatever the forward raises.

Not guaranteed: a module the batch does not go through has no output shape; a
module called more than once shows the shape of its first call (:attr:`LayerRow.calls`
says how many); parameters a module holds directly besides its children appear
only in the totals, and in its own row with ``containers=True``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch import nn

from engine.inference import evaluating
from engine.notebook import html_table


@dataclass(frozen=True)
class LayerRow:
    """One module of the summary."""

    name: str
    """The module's qualified name in ``model.named_modules()``, e.g. ``"0.1"``;
    ``""`` for the model itself."""
    type: str
    """The module's class name, e.g. ``"Conv2d"``."""
    output_shapes: tuple[tuple[int, ...], ...]
    """The shape of each tensor the module returned on its first call (one for most
    modules); empty when it was not called or returned no tensor."""
    params: int
    """The number of parameters in the module and its children."""
    trainable: int
    """How many of them require gradients."""
    depth: int
    """How deep the module sits: 1 for the model's children, 0 for the model itself."""
    calls: int
    """How many times the batch's forward called the module."""

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """The shape of the module's (first) output tensor, or ``None`` if it had none."""
        return self.output_shapes[0] if self.output_shapes else None


@dataclass(frozen=True)
class ModelSummary:
    """The layers of a model as one batch went through them, with parameter totals.

    ``str()`` and ``repr()`` give a plain-text table; a notebook shows an HTML one
    (``_repr_html_``). :attr:`rows` holds the same as data.
    """

    model: str
    """The model's class name."""
    input_shape: tuple[int, ...] | None
    """The shape of the batch the model was given, or ``None`` when it was no tensor."""
    output_shapes: tuple[tuple[int, ...], ...]
    """The shapes of the tensors the model returned."""
    rows: list[LayerRow]
    """One row per module reported, in the order the model defines them."""
    total_params: int
    """The model's parameters, each counted once even when modules share it."""
    trainable_params: int
    """How many of them require gradients."""
    containers: bool = False
    """Whether :attr:`rows` hold the modules with children too (the table indents by depth)."""

    @property
    def non_trainable_params(self) -> int:
        """The parameters that do not require gradients (frozen)."""
        return self.total_params - self.trainable_params

    def table(self) -> list[list[str]]:
        """The rows as the text and HTML tables show them, the header first."""
        cells = [["Layer", "Type", "Output shape", "Params", "Trainable"]]
        for row in self.rows:
            indent = "  " * (row.depth - 1) if self.containers else ""
            name = indent + (row.name or "(model)")
            shapes = ", ".join(_shape(s) for s in row.output_shapes)
            if not shapes:
                shapes = "-" if not row.calls else "(no tensor)"
            cells.append([name, row.type, shapes, f"{row.params:,}", f"{row.trainable:,}"])
        return cells

    def footer(self) -> list[str]:
        """The lines under the table: input and output shapes, parameter totals."""
        given = _shape(self.input_shape) if self.input_shape is not None else "(not a tensor)"
        out = ", ".join(_shape(s) for s in self.output_shapes) or "(not a tensor)"
        return [
            f"Input shape: {given}  Output shape: {out}",
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
        ]

    def __str__(self) -> str:
        cells = self.table()
        widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
        numeric = (False, False, False, True, True)
        lines = [f"{self.model} summary"]
        for line in cells:
            padded = [
                cell.rjust(width) if right else cell.ljust(width)
                for cell, width, right in zip(line, widths, numeric)
            ]
            lines.append("  ".join(padded).rstrip())
        rule = "-" * len(max(lines[1:], key=len))
        return "\n".join([lines[0], lines[1], rule, *lines[2:], rule, *self.footer()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        header, *lines = self.table()
        table = html_table(
            header, lines, lambda column, cell: f"text-align:{'right' if column >= 3 else 'left'}"
        )
        footer = "<br>".join(html.escape(line) for line in self.footer())
        return f"<p><b>{html.escape(self.model)}</b> summary</p>{table}<p>{footer}</p>"


def summarize(model: nn.Module, xb: Any, containers: bool = False) -> ModelSummary:
    """Run ``xb`` through ``model`` and report its layers (see the module's docstring).

    :param model: the network.
    :param xb: one batch of inputs, already where and as the model takes them.
    :param containers: also report the modules that have children, indented by depth.
    """
    seen: dict[str, _Seen] = {}
    with _hooked(model, seen), evaluating(model):
        output = model(xb)
    rows = []
    for name, module in model.named_modules():
        has_children = next(module.children(), None) is not None
        if name == "" and has_children:
            continue  # the model itself: the footer has its totals
        if has_children and not containers:
            continue
        params = list(module.parameters())
        record = seen[name]
        rows.append(
            LayerRow(
                name=name,
                type=type(module).__name__,
                output_shapes=record.shapes,
                params=sum(p.numel() for p in params),
                trainable=sum(p.numel() for p in params if p.requires_grad),
                depth=name.count(".") + 1 if name else 0,
                calls=record.calls,
            )
        )
    params = list(model.parameters())
    return ModelSummary(
        model=type(model).__name__,
        input_shape=tuple(xb.shape) if isinstance(xb, Tensor) else None,
        output_shapes=_shapes(output),
        rows=rows,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        containers=containers,
    )


@dataclass
class _Seen:
    """What the hook of one module saw."""

    shapes: tuple[tuple[int, ...], ...] = ()
    calls: int = 0


@contextmanager
def _hooked(model: nn.Module, seen: dict[str, _Seen]) -> Iterator[None]:
    """A forward hook on every module, recording into ``seen``; all removed on exit."""
    handles = []
    try:
        for name, module in model.named_modules():
            record = seen[name] = _Seen()
            handles.append(module.register_forward_hook(_recorder(record)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _recorder(record: _Seen) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not record.calls:
            record.shapes = _shapes(output)
        record.calls += 1

    return hook


def _shapes(output: Any) -> tuple[tuple[int, ...], ...]:
    """The shapes of the tensors in ``output``, also inside tuples, lists and dicts."""
    if isinstance(output, Tensor):
        return (tuple(output.shape),)
    if isinstance(output, (tuple, list)):
        return tuple(shape for item in output for shape in _shapes(item))
    if isinstance(output, dict):
        return tuple(shape for item in output.values() for shape in _shapes(item))
    return ()


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def describe_model(model: nn.Module) -> str:
    """``Sequential (15,594 parameters)``: a model in one phrase, for reprs and reports.

    Parameters a lazy layer has not made yet (before its first batch) are not counted.

    :param model: the model.
    """
    lazy = nn.parameter.UninitializedParameter
    params = sum(p.numel() for p in model.parameters() if not isinstance(p, lazy))
    return f"{type(model).__name__} ({params:,} parameters)"
