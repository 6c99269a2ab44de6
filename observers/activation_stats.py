"""Watch every layer's activations while the model trains: the lesson's look inside.

:class:`ActivationStats` hooks modules of the model (by default the blocks that
transform: each convolution or linear layer with its activation, not pooling,
reshapes or the output logits; see :mod:`observers.default_layers`) and records, for each hooked module and each
recorded batch, the mean and standard deviation of its output, a histogram, and
the fraction of the output near zero, the lesson's measure of dead units. With
``grads=True`` it records the same for the gradient of the loss with respect to
each module's output (a hook on the output tensor).

**On the device, no sync per batch.** Everything stays on the device where the
activations are, in one preallocated tensor per kind
(:class:`~observers.activation_data.ActivationBuffer`), copied to the host once
per epoch and at the end. The only other host reads are one per module on the
first recorded batch, when the histogram range is chosen automatically. How the
histogram is sampled, the automatic ranges and the near-zero measure are
described in :mod:`observers.activation_data`.

**Memory is bounded.** At most ``max_batches`` rows are kept:
``max_batches x modules x (bins + 2) x 4`` bytes on the device (twice that with
``grads``), and as much again on the host: 2048 x 4 x 42 x 4 bytes = 1.4 MB for
the lesson's CNN. Only as many rows as the fit will record are allocated. When a
fit records more batches than ``max_batches``, every other row is dropped and
from then on only every other eligible batch is recorded: the record always
spans the whole fit, evenly spaced.
"""

from __future__ import annotations

import fnmatch
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from engine import notebook
from engine import order
from engine._checks import integer
from engine._checks import non_negative_int
from engine._checks import number
from engine._checks import positive_int
from engine._checks import strings
from engine.exceptions import diverged
from engine.hookspecs import Register
from engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from torch import Tensor
    from torch import nn

    from engine.learner import Learner
    from observers.activation_data import ActivationBuffer
    from observers.activation_data import ActivationData
    from observers.diagnosis import Diagnosis
    from observers.hooks import Hooks

FOLDER = "activations"
"""The folder inside the learner's out_dir that receives the plots and ``diagnosis.md``."""


class ActivationStats:
    """Record each hooked module's output statistics and histograms during training.

    After the fit, :attr:`data` (and :attr:`grad_data` with ``grads=True``)
    holds everything recorded; :mod:`observers.activation_plots` draws it and
    :mod:`observers.diagnosis` reads it. When the learner has an out_dir, the
    plots and ``diagnosis.md`` are written into its ``activations`` folder; the
    diagnosis is printed in any case (``report=false`` turns it off). Each fit
    starts a new record. Hooks are removed in ``after_fit``, whatever ended the
    fit, and the observer keeps no reference to the model. A module whose output
    is not a floating-point tensor gets NaN statistics.

    :param modules: name patterns (``fnmatch``, e.g. ``0,1.*``) of the modules to
        hook among ``model.named_modules()``; default: the blocks that transform,
        chosen as :mod:`observers.default_layers` describes.
    :param types: class names (e.g. ``Conv2d,ReLU``) of the modules to hook; with
        ``modules`` too, a module must match both.
    :param every: record every N-th batch.
    :param valid: record validation batches too (training only by default).
    :param bins: histogram bins.
    :param range_min: the histogram's lower edge for every module (with range_max).
    :param range_max: the histogram's upper edge (default: 0..10 or -7..7 per module).
    :param zero_bins: how many bins around 0 count as near zero (dead).
    :param sample: histogram at most this many values of each output; 0: all.
    :param grads: also record the gradients of each module's output.
    :param grad_range: gradient histograms span +-grad_range (default: 4 std).
    :param max_batches: the most rows kept; beyond, every other row is dropped.
    :param save: write the plots and diagnosis.md into the learner's out_dir.
    :param report: print the diagnosis after the fit.
    """

    name = "activation_stats"
    order = order.ACTIVATION_STATS

    def __init__(
        self,
        modules: tuple[str, ...] = (),
        types: tuple[str, ...] = (),
        every: int = 1,
        valid: bool = False,
        bins: int = 40,
        range_min: float | None = None,
        range_max: float | None = None,
        zero_bins: int = 2,
        sample: int = 8192,
        grads: bool = False,
        grad_range: float | None = None,
        max_batches: int = 2048,
        save: bool = True,
        report: bool = True,
    ) -> None:
        self.patterns = tuple(p for p in strings("modules", modules) if p)
        self.types = tuple(t for t in strings("types", types) if t)
        self.every = positive_int("every", every)
        self.bins = positive_int("bins", bins)
        self.zero_bins = positive_int("zero_bins", zero_bins)
        if self.zero_bins > self.bins:
            raise ValueError(
                f"zero_bins ({zero_bins}) should be at most bins ({bins}); lower zero_bins "
                "or raise bins"
            )
        self.sample = non_negative_int("sample", sample)
        self.max_batches = integer("max_batches", max_batches, at_least=2)
        self.fixed_range = _range(range_min, range_max)
        if grad_range is not None:
            number("grad_range", grad_range, positive=True)
        self.grad_range = grad_range
        self.valid, self.grads, self.save, self.report = valid, grads, save, report
        self.data: ActivationData | None = None
        """What was recorded on the activations, updated after every epoch."""
        self.grad_data: ActivationData | None = None
        """What was recorded on the gradients (``grads=True``), updated after every epoch."""
        self.names: list[str] = []
        """The hooked modules' names in the current (or last) fit."""
        self.iterations: list[int] = []
        """The training batch (0-based, over the run: a resumed fit goes on counting) of each
        row recorded so far."""
        self.epochs: list[int] = []
        self.train_rows: list[bool] = []
        self.capacity = 0
        """The rows allocated for the current fit (at most ``max_batches``)."""
        self.batch_size: int | None = None
        """The size of the first recorded training batch."""
        self.layer_types: set[str] = set()
        """The class names of every module of the model (for the diagnosis)."""
        self.written: list[Path] = []
        """The files written after the last fit."""
        self.diagnosis: Diagnosis | None = None
        """The diagnosis of the last fit (:func:`observers.diagnosis.diagnose`), with the
        run's context; shown as a table when it is a notebook cell's value."""
        self._hooks: Hooks | None = None
        self._acts: ActivationBuffer | None = None
        self._grads: ActivationBuffer | None = None
        self._index: dict[int, int] = {}
        self._row = -1
        self._rows = 0
        self._stride = 1
        self._seen = 0
        self._fired = False
        self._begun = False
        self._grad_scale: Tensor | None = None

    # -- events --------------------------------------------------------------

    def begin_fit(self, learner: Learner) -> None:
        from observers.default_layers import kind
        from observers.hooks import Hooks

        self._release()
        self._begun = True  # after_fit reports only a fit whose record began here
        self.data = self.grad_data = None
        self.iterations, self.epochs, self.train_rows, self.written = [], [], [], []
        self._rows, self._stride, self._seen = 0, 1, 0
        self.batch_size = None
        named = select_modules(learner.model, self.patterns, self.types)
        self.names = [name for name, _ in named]
        self.layer_types = {type(m).__name__ for m in learner.model.modules()}
        self.capacity = self._capacity(learner)
        self._index = {id(module): i for i, (_, module) in enumerate(named)}
        types = [kind(module) for _, module in named]
        self._acts = self._buffer("activations", types)
        if self.grads:
            self._grads = self._buffer("gradients", types)
        self._hooks = Hooks([module for _, module in named], self._forward)

    def begin_batch(self, learner: Learner) -> None:
        from torch import Tensor

        self._row = -1
        if not learner.in_train and not self.valid:
            return
        seen = self._seen
        self._seen += 1
        if seen % (self.every * self._stride):
            return
        if self._rows == self.capacity:
            self._halve()
            if seen % (self.every * self._stride):
                return  # off the doubled stride's grid: keep the rows evenly spaced
        self._row = self._rows
        self._rows += 1
        self._fired = False
        # the training batch over the run (a resumed fit goes on counting): this one,
        # or for a validation row the last one trained
        self.iterations.append(learner.n_iter if learner.in_train else learner.n_iter - 1)
        self.epochs.append(learner.epoch)
        self.train_rows.append(bool(learner.in_train))
        if self.batch_size is None and learner.in_train and isinstance(learner.xb, Tensor):
            self.batch_size = int(learner.xb.shape[0])

    def after_batch(self, learner: Learner) -> None:
        if self._row >= 0 and not self._fired:  # cancelled before the forward pass
            self._rows -= 1
            del self.iterations[-1], self.epochs[-1], self.train_rows[-1]
        self._row = -1

    def after_epoch(self, learner: Learner) -> None:
        self._to_host()

    def after_fit(self, learner: Learner) -> None:
        try:
            self._remove_hooks()
            self._to_host()
        finally:
            self._release()
        if self._begun and self.data is not None and len(self.data):
            self._publish(learner)
        self._begun = False

    # -- hooks ---------------------------------------------------------------

    def _forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        from torch import Tensor

        row = self._row
        if row >= 0 and self._acts is not None:
            self._fired = True
            index = self._index[id(module)]
            self._acts.record(index, row, output)
            if self._grads is not None and isinstance(output, Tensor) and output.requires_grad:
                # a hook on the output tensor: called with d(loss)/d(output) in backward
                output.register_hook(functools.partial(self._gradient, index, row))  # type: ignore[no-untyped-call]

    def _gradient(self, module: int, row: int, grad: Tensor) -> None:
        if self._grads is not None:
            scale = self._grad_scale
            self._grads.record(module, row, grad if scale is None else grad / scale)

    def after_loss(self, learner: Learner) -> None:
        # mixed precision's loss scaler multiplies every gradient of this backward
        # pass; it publishes the factor as a device tensor (no host sync)
        self._grad_scale = getattr(learner, "grad_scale", None)

    # -- helpers -------------------------------------------------------------

    def _capacity(self, learner: Learner) -> int:
        """Rows to preallocate: the batches this fit will record, at most max_batches."""
        try:
            batches = len(learner.data.train_dl)  # type: ignore[arg-type]
            if self.valid and learner.data.valid_dl is not None:
                batches += len(learner.data.valid_dl)  # type: ignore[arg-type]
        except TypeError:
            return self.max_batches
        expected = -(-batches * max(learner.epochs, 1) // self.every)
        return max(2, min(self.max_batches, expected))

    def _buffer(self, kind: str, types: list[str]) -> ActivationBuffer:
        from observers.activation_data import ActivationBuffer

        # range_min/range_max are the activations' range; gradients use grad_range
        # (or their own automatic range), whatever the activations' is
        return ActivationBuffer(
            kind,
            self.names,
            types,
            self.capacity,
            self.bins,
            self.sample,
            self.fixed_range if kind == "activations" else None,
            self.grad_range,
        )

    def _halve(self) -> None:
        for buffer in (self._acts, self._grads):
            if buffer is not None:
                buffer.halve(self._rows)
        self.iterations = self.iterations[::2]
        self.epochs = self.epochs[::2]
        self.train_rows = self.train_rows[::2]
        self._rows = len(self.iterations)
        self._stride *= 2

    def _to_host(self) -> None:
        rows = (self._rows, self.iterations, self.epochs, self.train_rows, self.zero_bins)
        if self._acts is not None:
            self.data = self._acts.to_host(*rows)
        if self._grads is not None:
            self.grad_data = self._grads.to_host(*rows)

    def _remove_hooks(self) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.remove()

    def _release(self) -> None:
        self._remove_hooks()
        self._acts = self._grads = None
        self._index = {}
        self._row = -1

    def _publish(self, learner: Learner) -> None:
        from observers.diagnosis import diagnose

        if self.data is None:
            return
        result = diagnose(self.data, batch_size=self.batch_size, layer_types=self.layer_types)
        result.context = run_context(learner, self.batch_size)
        self.diagnosis = result
        if self.report and learner.is_main:
            if notebook.in_notebook():
                notebook.display(result)  # the HTML table
            else:
                print(result.table(), file=sys.stdout)
        if self.save and learner.out_dir is not None and not diverged(learner):
            from observers.activation_plots import save_activation_plots
            from observers.plots import run_title

            folder = learner.out_dir / FOLDER
            title = run_title(learner)
            self.written = save_activation_plots(self.data, folder, title=title)
            if self.grad_data is not None and len(self.grad_data):
                self.written += save_activation_plots(
                    self.grad_data, folder, prefix="grad_", title=title
                )
            result.pictures = [path.name for path in self.written]
            self.written.append(result.save(folder / "diagnosis.md"))


def run_context(learner: Learner, batch_size: int | None) -> dict[str, str]:
    """What a diagnosis needs to say which run it is about: the model, its size, the
    learning rate, the epochs, the batch size and the last epoch's metrics.

    :param learner: the learner after its fit.
    :param batch_size: the training batch size, if known.
    """
    from engine.summary import describe_model

    context = {
        "model": describe_model(learner.model),
        "lr": f"{learner.lr:.3g}",
        "epochs": f"{learner.n_epochs:g}",
    }
    if batch_size is not None:
        context["batch size"] = str(batch_size)
    for key, value in learner.log.items():
        if key not in ("epoch", "time") and isinstance(value, (int, float)):
            context[key] = f"{value:.4g}"
    return context


def select_modules(
    model: nn.Module, patterns: Sequence[str] = (), types: Sequence[str] = ()
) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs :class:`ActivationStats` hooks.

    With neither patterns nor types: :func:`~observers.default_layers.default_modules`,
    the blocks that transform (each convolution or linear layer with the
    activation and norm after it), leaving out pooling, reshapes and the output
    layer. Otherwise the modules of
    ``model.named_modules()`` whose name matches one of ``patterns`` (when
    given) and whose class, or a base class, is named in ``types`` (when given).

    :param model: the model.
    :param patterns: ``fnmatch`` patterns of module names.
    :param types: class names.
    """
    from observers.default_layers import default_modules

    if not patterns and not types:
        return default_modules(model)
    found = []
    for name, module in model.named_modules():
        if patterns and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        if types and not any(c.__name__ in types for c in type(module).__mro__):
            continue
        found.append((name or "model", module))
    if not found:
        names = [name for name, _ in model.named_modules() if name]
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ValueError(
            f"plugin 'activation_stats': no module matches modules={tuple(patterns)} "
            f"types={tuple(types)}; the model's modules are: {shown or 'none'}"
        )
    return found


def _range(low: float | None, high: float | None) -> tuple[float, float] | None:
    if low is None and high is None:
        return None
    if low is None or high is None:
        raise TypeError(
            "give both range_min and range_max, or neither for the automatic range; "
            f"got range_min={low!r}, range_max={high!r}"
        )
    low = number("range_min", low, finite=True)
    high = number("range_max", high, finite=True)
    if low >= high:
        raise ValueError(f"range_min should be below range_max, got {low!r} and {high!r}")
    return low, high


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`ActivationStats` (off by default: ``-p activation_stats``).

    :param register: the registration function bound to this module.
    """
    register(ActivationStats)
