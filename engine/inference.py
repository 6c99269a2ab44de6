"""Run the model outside the loop: predictions over a loader, a validation pass, one prediction.

These passes send no events: no observer records them, no plugin counts them,
nothing is written to disk, and the weights, the optimizer and the counters stay
as they were. Each one puts the model in eval mode under ``torch.no_grad`` and
gives every module its own train/eval mode back afterwards, whatever is raised.

In a fit, plugins prepare each batch for the model in ``begin_batch``: ``device``
moves it, ``batch_transform`` reshapes it. Without events, :func:`batch_preparer`
does what those two do, so the model sees its inputs as it does in a fit: moved
to the device of the model's parameters, then transformed as the attached
``batch_transform`` plugin would (its ``fn``, else a view as its ``shape`` or the
data's ``input_shape``). Not done: what any other plugin does in ``begin_batch``,
and the contexts plugins wrap the forward in (``mixed_precision``'s autocast):
predictions here are computed in the model's own precision.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import nn

from engine.exceptions import DataError
from engine.learner_state import loader_generators

if TYPE_CHECKING:
    from engine.data import DataBunch
    from engine.learner import Learner

Prepare: TypeAlias = Callable[[Any], Any]
"""Turns a loader's inputs into what the model takes (:func:`batch_preparer`)."""

LossFunc: TypeAlias = Callable[[Any, Any], Tensor]
"""``loss_func(pred, yb)``: the batch mean of the loss, a 0-d tensor."""

MetricFunc: TypeAlias = Callable[[Tensor, Tensor], Tensor]
"""``f(pred, yb)``: the batch mean of a metric, a 0-d tensor (as the ``metrics`` plugin's)."""


class Prediction(NamedTuple):
    """What :meth:`engine.learner.Learner.predict` returns: classes and probabilities, on the CPU.

    Unpacks as a pair: ``classes, probs = learner.predict(x)``.
    """

    classes: Tensor
    """The index of the highest output per sample: 0-d for one sample, else ``(N,)``."""
    probs: Tensor
    """The softmax of the outputs over their last dimension: each row sums to 1."""


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode without gradients; restore each module's mode after.

    Modes are put back module by module, so a model that was partly in eval mode
    (frozen batch norms during fine-tuning) comes back exactly as it was, also
    when the body raises.

    :param model: the network.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, mode in modes:
            module.training = mode


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU when it has none.

    :param model: the network.
    """
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (also inside tuples, lists and dicts) on ``device``.

    :param obj: a tensor, or a container of them; anything else comes back unchanged.
    :param device: where the tensors should be.
    """
    if isinstance(obj, Tensor):
        return obj if obj.device == device else obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(item, device) for item in obj)
    if isinstance(obj, dict):
        return {key: to_device(value, device) for key, value in obj.items()}
    return obj


def batch_preparer(learner: Learner) -> Prepare:
    """What the loop's batch preparation does to inputs, for a pass without events.

    Moves the inputs to the device of the model's parameters, then applies the
    transform of the attached ``batch_transform`` plugin, if any (see the module's
    docstring).

    :param learner: the learner whose model, plugins and data decide.
    """
    device = model_device(learner.model)
    transform = _input_transform(learner.plugins.get("batch_transform"), learner.data)

    def prepare(xb: Any) -> Any:
        xb = to_device(xb, device)
        return xb if transform is None else transform(xb)

    return prepare


def _input_transform(plugin: object, data: DataBunch) -> Prepare | None:
    """The transform of a ``batch_transform`` plugin, read from its ``fn`` and ``shape``."""
    if plugin is None:
        return None
    fn = getattr(plugin, "fn", None)
    if callable(fn):
        return fn  # type: ignore[no-any-return]
    shape = getattr(plugin, "shape", None) or getattr(data, "input_shape", None)
    return partial(_view_as, shape=tuple(shape)) if shape else None


def _view_as(xb: Any, shape: tuple[int, ...]) -> Any:
    """``xb`` as ``(N, *shape)``; left alone when it is no tensor or has that shape."""
    if not isinstance(xb, Tensor) or tuple(xb.shape[1:]) == shape:
        return xb
    try:
        return xb.reshape(xb.shape[0], *shape)
    except RuntimeError as exc:
        raise ValueError(
            f"cannot view inputs of shape {tuple(xb.shape)} as (N, {', '.join(map(str, shape))}) "
            "as the batch_transform plugin would; set its shape option (or the data's "
            "input_shape) to what the model takes"
        ) from exc


def first_batch(dl: Iterable[Any]) -> tuple[Any, Any] | None:
    """The first ``(xb, yb)`` of ``dl``, or ``None``; every random state is left as it was.

    Starting a pass over a shuffling loader draws a permutation (and a
    ``DataLoader`` a base seed for its workers): from the loader's own generator,
    or from torch's global one; a dataset's transforms may draw from Python's or
    numpy's. All of these are put back, so peeking at a batch before a fit does not
    change the fit. The CUDA generators are left out: loaders do not draw from
    them, and reading their states would start CUDA on every device.

    :param dl: a loader yielding ``(xb, yb)`` pairs.
    """
    generators = loader_generators(dl)
    states = [generator.get_state() for generator in generators]
    torch_state = torch.get_rng_state()
    python_state = random.getstate()
    np = sys.modules.get("numpy")  # not imported: nothing drew from it
    numpy_state = np.random.get_state() if np is not None else None
    try:
        batch = next(iter(dl), None)
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(python_state)
        if np is not None:
            np.random.set_state(numpy_state)
        for generator, state in zip(generators, states):
            generator.set_state(state)
    return None if batch is None else pair(batch)


def loader(data: DataBunch, dl: Iterable[Any] | None, what: str) -> Iterable[Any]:
    """``dl``, or by default the validation loader.

    :param data: the learner's data.
    :param dl: the loader asked for, or ``None``.
    :param what: the method asking, for the error.
    :raises DataError: no loader was given and the data has no validation loader.
    """
    if dl is not None:
        return dl
    if data.valid_dl is None:
        raise DataError(
            f"{what}: the learner's data has no validation loader; pass one, e.g. "
            f"learner.{what}(dl=learner.data.train_dl)"
        )
    return data.valid_dl


def sample_inputs(data: DataBunch, what: str) -> Any:
    """The inputs of the training loader's first batch, else the validation loader's.

    Random states are left as they were (:func:`first_batch`).

    :param data: the learner's data.
    :param what: the method asking, for the error.
    :raises DataError: neither loader yields a batch.
    """
    xb = _first_inputs(data)
    if xb is None:
        raise DataError(f"{what}: neither the training nor the validation loader yields a batch")
    return xb


def _first_inputs(data: DataBunch) -> Any:
    """The first batch's inputs of the training loader, else the validation one's, or ``None``."""
    for dl in (data.train_dl, data.valid_dl):
        batch = first_batch(dl) if dl is not None else None
        if batch is not None:
            return batch[0]
    return None


def get_preds(
    model: nn.Module,
    dl: Iterable[Any],
    prepare: Prepare,
    loss_func: LossFunc | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The model's outputs and the targets over ``dl``, concatenated on the CPU, in order.

    With ``loss_func``, also the loss of each sample (see :func:`item_losses`).

    :param model: the network.
    :param dl: a loader yielding ``(xb, yb)`` pairs.
    :param prepare: applied to each batch's inputs (:func:`batch_preparer`); the
        targets are only moved to the model's device.
    :param loss_func: the learner's loss function, for the per-sample losses.
    :raises DataError: ``dl`` yielded no batch.
    :raises TypeError: the model's output or the targets are not tensors.
    """
    preds: list[Tensor] = []
    targets: list[Tensor] = []
    losses: list[Tensor] = []
    device = model_device(model)
    with evaluating(model):
        for batch in dl:
            xb, yb = pair(batch)
            pred = _tensor("the model's output", model(prepare(xb)))
            yb = _tensor("the targets", to_device(yb, device))
            preds.append(pred.cpu())
            targets.append(yb.cpu())
            if loss_func is not None:
                losses.append(item_losses(loss_func, pred, yb).cpu())
    if not preds:
        raise DataError("get_preds: the loader yielded no batch; there is nothing to predict")
    loss = torch.cat(losses) if loss_func is not None else None
    return torch.cat(preds), torch.cat(targets), loss


def item_losses(loss_func: LossFunc, pred: Tensor, yb: Tensor) -> Tensor:
    """The loss of each sample of a batch, a 1-d tensor.

    Asks ``loss_func`` for ``reduction="none"`` (``F.cross_entropy`` and the other
    functional losses take it) and averages what is left beyond the batch
    dimension; a loss function that does not take it is called once per sample.

    :param loss_func: returns the batch mean of ``loss_func(pred, yb)``.
    :param pred: the model's outputs for the batch.
    :param yb: the batch's targets.
    """
    n = pred.shape[0]
    try:
        losses = loss_func(pred, yb, reduction="none")  # type: ignore[call-arg]
    except TypeError:
        losses = None
    if isinstance(losses, Tensor) and losses.dim() >= 1 and losses.shape[0] == n:
        return losses.reshape(n, -1).float().mean(dim=1)
    return torch.stack([loss_func(pred[i : i + 1], yb[i : i + 1]).reshape(()) for i in range(n)])


def validate(
    model: nn.Module,
    dl: Iterable[Any],
    prepare: Prepare,
    loss_func: LossFunc,
    metrics: Mapping[str, MetricFunc] | None = None,
) -> dict[str, float]:
    """The loss and metrics of one pass over ``dl``, averaged over its samples.

    Each batch counts by its size, as the ``metrics`` plugin counts it, so the
    values equal what a validation pass of a fit would log. The sums stay on the
    device until the end: one host-device synchronisation in all.

    :param model: the network.
    :param dl: a loader yielding ``(xb, yb)`` pairs.
    :param prepare: applied to each batch's inputs (:func:`batch_preparer`).
    :param loss_func: returns the batch mean of the loss, a 0-d tensor.
    :param metrics: ``f(pred, yb)`` batch means by name, e.g. the ``metrics``
        plugin's ``funcs``.
    :returns: ``{"valid_loss": ..., "valid_<metric>": ...}``, as ``learner.log`` names them.
    :raises DataError: ``dl`` yielded no batch.
    """
    funcs = dict(metrics or {})
    sums: list[Tensor] = []
    samples = 0
    device = model_device(model)
    with evaluating(model):
        for batch in dl:
            xb, yb = pair(batch)
            pred = model(prepare(xb))
            yb = to_device(yb, device)
            values = [_batch_mean("the loss", loss_func(pred, yb), device)]
            values += [_batch_mean(f"metric {k!r}", f(pred, yb), device) for k, f in funcs.items()]
            n = len(yb)
            weighted = [value * n for value in values]
            sums = weighted if not sums else [s + w for s, w in zip(sums, weighted)]
            samples += n
    if not samples:
        raise DataError("validate: the loader yielded no batch; there is nothing to validate")
    means = (torch.stack(sums) / samples).tolist()  # the one sync
    names = ["loss", *funcs]
    return {f"valid_{name}": float(value) for name, value in zip(names, means)}


def looks_batched(x: Tensor, data: DataBunch) -> bool:
    """Whether ``x`` is a batch of inputs, rather than one, judged from the data.

    In this order: ``x`` shaped as the data's ``input_shape`` is one sample, and
    ``(N, *input_shape)`` a batch; otherwise ``x`` is a batch when it has as many
    dimensions as the loader's batches (the training loader's first, else the
    validation loader's), and one sample when it has one fewer. That peeks at a
    batch (:func:`first_batch`), which starts a ``DataLoader``'s workers, if it has
    any: pass ``batched=`` to ``predict`` to skip it.

    :param x: the inputs given to ``predict``.
    :param data: the learner's data.
    :raises ValueError: no rule applies; pass ``batched=`` to say.
    """
    shape = data.input_shape
    if shape:
        if tuple(x.shape) == tuple(shape):
            return False
        if tuple(x.shape[1:]) == tuple(shape):
            return True
    reference = _first_inputs(data)
    if not isinstance(reference, Tensor):
        seen = "the loaders yield no batch of tensors to compare with"
    elif x.dim() == reference.dim():
        return True
    elif x.dim() == reference.dim() - 1:
        return False
    else:
        seen = f"the loader's batches have shape {tuple(reference.shape)}"
    raise ValueError(
        f"predict: cannot tell whether x of shape {tuple(x.shape)} is one sample or a batch "
        f"({seen}; the data's input_shape is {shape}); pass batched=True or batched=False"
    )


def predict(model: nn.Module, x: Tensor, prepare: Prepare, batched: bool) -> Prediction:
    """The class indices and softmax probabilities the model gives ``x``, on the CPU.

    The outputs are taken as scores (logits, as ``F.cross_entropy`` expects them)
    with the classes along the last dimension.

    :param model: the network.
    :param x: one input, or a batch of them.
    :param prepare: applied to the batch of inputs (:func:`batch_preparer`).
    :param batched: whether ``x`` is a batch; one sample gets a batch dimension
        for the model, taken off the results again.
    :raises ValueError: the model's outputs have no class dimension.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"predict: x should be a tensor, got {type(x).__name__}")
    xb = x if batched else x.unsqueeze(0)
    with evaluating(model):
        out = _tensor("the model's output", model(prepare(xb)))
    if out.dim() < 2:
        raise ValueError(
            f"predict: the model's output has shape {tuple(out.shape)}, with no class "
            "dimension after the batch one; predict is for classifiers (use "
            "learner.get_preds() for other outputs)"
        )
    probs = F.softmax(out.detach().float(), dim=-1).cpu()
    classes = probs.argmax(dim=-1)
    if batched:
        return Prediction(classes, probs)
    return Prediction(classes[0], probs[0])


def pair(batch: Any) -> tuple[Any, Any]:
    """A loader's batch as ``(xb, yb)``, as the loop and the passes here read it.

    :param batch: what the loader yielded.
    :raises TypeError: it is not a pair.
    """
    try:
        xb, yb = batch
    except (TypeError, ValueError):
        raise TypeError(
            f"a batch should be a pair (inputs, targets), got {type(batch).__name__}; "
            "wrap the loader so it yields (xb, yb)"
        ) from None
    return xb, yb


def _batch_mean(what: str, value: Any, device: torch.device) -> Tensor:
    """A loss's or metric's batch mean as a 0-d float64 tensor on ``device``."""
    mean = torch.as_tensor(value, dtype=torch.float64, device=device).detach()
    if mean.dim() != 0:
        raise ValueError(
            f"validate: {what} should be a 0-d tensor (the batch mean), got shape "
            f"{tuple(mean.shape)}; use reduction='mean'"
        )
    return mean


def _tensor(what: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{what} should be a tensor to be gathered, got {type(value).__name__}; "
            "run the model by hand for other outputs"
        )
    return value
