"""Schedule any optimizer hyper-parameter, per parameter group, over a fit's progress.

The lesson's ``ParamScheduler``: before every training batch, each scheduled
hyper-parameter is set from a function of the progress ``p = n_epochs / epochs``
(0 at the first batch, just under 1 at the last; the loop keeps
``n_epochs``). The schedules themselves (``lin``, ``cos``, ``exp``, ``no``,
``combine``, ``one_cycle``) and the parser of their string form live in
:mod:`plugins._schedules`; they are re-exported here.

From Python::

    Schedule(lr=combine([0.5, 0.5], [cos(0.2, 1.0), cos(1.0, 0.1)]))

From the command line (a value holding commas but no ``=`` stays one option)::

    -p "schedule:lr=combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])"
"""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeAlias

from engine import order
from engine._checks import is_number
from engine.hookspecs import Register
from engine.hookspecs import hookimpl
from plugins._schedules import FUNCTIONS
from plugins._schedules import ScheduleSyntaxError
from plugins._schedules import combine
from plugins._schedules import const
from plugins._schedules import cos
from plugins._schedules import exp
from plugins._schedules import lin
from plugins._schedules import no
from plugins._schedules import one_cycle
from plugins._schedules import parse

if TYPE_CHECKING:
    import torch

    from engine.learner import Learner

__all__ = [
    "FUNCTIONS",
    "Schedule",
    "ScheduleSyntaxError",
    "combine",
    "const",
    "cos",
    "exp",
    "lin",
    "no",
    "one_cycle",
    "parse",
]

SchedFunc: TypeAlias = Callable[[float], Any]
"""A schedule: progress in [0, 1] to a hyper-parameter value."""

SchedSpec: TypeAlias = str | float | SchedFunc | Sequence[Any] | None
"""What an option accepts: an expression, a constant, a schedule, or one per group."""

ALIASES: dict[str, tuple[tuple[str, int | None], ...]] = {
    "mom": (("momentum", None), ("betas", 0)),
    "beta2": (("betas", 1),),
}
"""Names that are not param-group keys: where each one goes, first match wins."""

_Target: TypeAlias = tuple[dict[str, Any], str, int | None, SchedFunc]
"""One value set per batch: the param group, its key, the index in a tuple, the schedule."""


class Schedule:
    """Set optimizer hyper-parameters from schedules of training progress, every batch.

    Each option takes a schedule: a callable of the progress ``p`` in [0, 1]
    (from Python), a constant, or an expression such as ``cos(0.2,1.0)`` or
    ``combine([0.3,0.7],[lin(0.6,2.0),lin(2.0,0.1)])`` (from anywhere); a list of
    them sets each parameter group its own (as many as the optimizer has). The
    values are set in ``begin_batch`` of each training batch, before anything
    reads them, and stay where the last batch left them after the fit.

    ``mom`` is the momentum: ``momentum`` for SGD and RMSprop, the first of
    ``betas`` for Adam-like optimizers. ``one_cycle(...)`` on ``lr`` also
    schedules ``mom`` (0.95 to 0.85 and back) unless ``mom`` is given, and skips
    it for an optimizer without momentum or with momentum 0 (plain
    ``torch.optim.SGD``: pass ``opt_func=partial(SGD, momentum=0.9)`` to have it
    cycled). From Python any other param-group key
    can be scheduled by name, e.g. ``Schedule(eps=exp(1e-6, 1e-8))``.

    Progress comes from ``n_epochs``, so a resumed fit picks the schedule up
    where it stopped. A training loader without a length advances it once per
    epoch.

    :param lr: schedule of the learning rate, e.g. one_cycle(0.4) or cos(0.2,0.01).
    :param mom: schedule of the momentum (SGD/RMSprop momentum, Adam's beta1).
    :param beta2: schedule of the second of Adam's betas.
    :param weight_decay: schedule of the weight decay.
    :param hypers: (Python only) schedules of other param-group keys, by key.
    """

    name = "schedule"
    order = order.SCHEDULE

    def __init__(
        self,
        lr: SchedSpec = None,
        mom: SchedSpec = None,
        beta2: SchedSpec = None,
        weight_decay: SchedSpec = None,
        **hypers: SchedSpec,
    ) -> None:
        given = {"lr": lr, "mom": mom, "beta2": beta2, "weight_decay": weight_decay, **hypers}
        for key in hypers:
            if key == "params" or not key.isidentifier():
                raise ValueError(
                    f"cannot schedule {key!r}; name a hyper-parameter of the optimizer's "
                    "param_groups such as lr, momentum or weight_decay"
                )
        self.scheds: dict[str, tuple[SchedFunc, ...]] = {
            key: _normalize(key, value) for key, value in given.items() if value is not None
        }
        """The schedules by hyper-parameter: one for all groups, or one per group."""
        if not self.scheds:
            raise ValueError(
                "no schedule given; e.g. -p schedule:lr=one_cycle(0.4) or "
                "Schedule(lr=cos(0.2, 0.01))"
            )
        self.companions: dict[str, tuple[SchedFunc, ...]] = {}
        """Schedules that come with another (``one_cycle``'s momentum), kept if possible."""
        for scheds in list(self.scheds.values()):
            extra = [getattr(s, "companions", {}) for s in scheds]
            for key in set.intersection(*(set(e) for e in extra)):
                if key not in self.scheds:
                    self.companions[key] = tuple(e[key] for e in extra)
        self._targets: list[_Target] = []
        self._opt: torch.optim.Optimizer | None = None
        self._groups: list[dict[str, Any]] | None = None

    def begin_fit(self, learner: Learner) -> None:
        self._plan(learner.opt)

    def begin_batch(self, learner: Learner) -> None:
        import torch

        if not learner.in_train:
            return
        opt = learner.opt
        if opt is not self._opt or opt.param_groups is not self._groups:  # type: ignore[union-attr]
            self._plan(opt)  # a new optimizer, or its state loaded (new param-group dicts)
        epochs = learner.epochs
        p = min(max(learner.n_epochs / epochs, 0.0), 1.0) if epochs else 0.0
        for group, key, index, sched in self._targets:
            value = sched(p)
            if index is not None:
                items = list(group[key])
                items[index] = value
                group[key] = type(group[key])(items)
            elif isinstance(group[key], torch.Tensor):
                group[key].fill_(value)  # a tensor lr (capturable/fused optimizers)
            else:
                group[key] = value

    def _plan(self, opt: torch.optim.Optimizer | None) -> None:
        """Check every schedule against the optimizer, and list what to set per batch."""
        if opt is None:
            raise ValueError("plugin 'schedule': the learner has no optimizer to schedule")
        groups = opt.param_groups
        targets: list[_Target] = []
        for optional, scheds in ((False, self.scheds), (True, self.companions)):
            for key, funcs in scheds.items():
                if len(funcs) not in (1, len(groups)):
                    raise ValueError(
                        f"plugin 'schedule': {key} has {len(funcs)} schedules but the "
                        f"optimizer has {len(groups)} parameter group(s); give one schedule, "
                        "or one per group"
                    )
                found = _locate(key, groups[0])
                if found is None:
                    if optional:
                        continue
                    raise ValueError(
                        f"plugin 'schedule': the optimizer {type(opt).__name__} has no "
                        f"hyper-parameter {key!r}; its param_groups have: "
                        f"{', '.join(hyper_parameters(groups[0]))}"
                    )
                slot, index = found
                current = groups[0][slot] if index is None else groups[0][slot][index]
                if optional and not current:
                    continue  # momentum is off (plain SGD): one_cycle leaves it off
                for i, group in enumerate(groups):
                    sched = funcs[i if len(funcs) > 1 else 0]
                    _check_value(key, sched, group[slot] if index is None else group[slot][index])
                    targets.append((group, slot, index, sched))
        self._targets = targets
        self._opt = opt
        self._groups = groups

    def __repr__(self) -> str:
        items = ", ".join(
            f"{key}={list(funcs) if len(funcs) > 1 else funcs[0]!r}"
            for key, funcs in self.scheds.items()
        )
        return f"Schedule({items})"


def hyper_parameters(group: dict[str, Any]) -> list[str]:
    """The keys of a param group that hold numbers (or tuples of numbers), plus aliases.

    :param group: one of an optimizer's ``param_groups``.
    """
    keys = [
        key
        for key, value in group.items()
        if key != "params" and (_is_scalar(value) or _is_scalars(value))
    ]
    keys += [alias for alias in ALIASES if _locate(alias, group) is not None]
    return keys


def _locate(key: str, group: dict[str, Any]) -> tuple[str, int | None] | None:
    for slot, index in ALIASES.get(key, ((key, None),)):
        value: Any = group.get(slot)
        if index is None and slot in group and slot != "params":
            return slot, None
        if index is not None and _is_scalars(value) and len(value) > index:
            return slot, index
    return None


def _is_scalar(value: Any) -> bool:
    """A number, or a one-element tensor (the lr of a capturable or fused optimizer)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return is_number(value)


def _is_scalars(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and bool(value) and all(map(_is_scalar, value))


def _check_value(key: str, sched: SchedFunc, current: Any) -> None:
    """Call the schedule at progress 0 and check that it gives what the group holds."""
    value = sched(0.0)
    if _is_scalar(current) and not (is_number(value) and math.isfinite(value)):
        raise TypeError(
            f"plugin 'schedule': the schedule of {key!r} ({sched!r}) should return a finite "
            f"number, returned {value!r} at progress 0"
        )


def _normalize(key: str, value: Any) -> tuple[SchedFunc, ...]:
    """One schedule for every group, or a tuple of one per group."""
    if isinstance(value, str):
        try:
            value = parse(value)
        except ScheduleSyntaxError as exc:
            raise ValueError(f"option {key!r}: {exc}") from None
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"option {key!r} is an empty list of schedules")
    scheds: list[SchedFunc] = []
    for item in items:
        if isinstance(item, str):
            item = _normalize(key, item)[0]
        if is_number(item):
            item = no(item)
        if not callable(item):
            raise TypeError(
                f"option {key!r} should be a schedule (a callable of the progress, a number "
                f"or an expression such as cos(0.2,1.0)), got {item!r}"
            )
        scheds.append(item)
    return tuple(scheds)


@hookimpl
def lookinside_register(register: Register) -> None:
    """Register :class:`Schedule` (off unless asked for).

    :param register: the registration function bound to this module.
    """
    register(Schedule)
