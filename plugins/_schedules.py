"""Schedule functions of training progress, and a small safe parser for them.

A schedule maps the progress ``p`` of a fit, from 0 (start) to 1 (end), to the
value of a hyper-parameter. Each one is a small frozen object that is called
like a function and prints as the expression that builds it, so
``parse(repr(s)) == s``:

>>> sched = combine([0.5, 0.5], [cos(0.2, 1.0), cos(1.0, 0.1)])
>>> [sched(p) for p in (0.0, 0.5, 1.0)]
[0.2, 1.0, 0.1]
>>> round(sched(0.25), 12), round(sched(0.75), 12)
(0.6, 0.55)
>>> parse("combine([0.5,0.5],[cos(0.2,1.0),cos(1.0,0.1)])") == sched
True

:func:`parse` reads the same expressions from strings (``-p schedule:lr=...``,
config files) without ``eval``: it knows numbers, ``[...]`` lists, ``None`` and
calls to the functions of :data:`FUNCTIONS`, and nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine._checks import did_you_mean
from engine._checks import number

_PCT_TOLERANCE = 1e-9
"""How far the percentages of :func:`combine` may sum from 1 (rounding of decimals)."""


def _fmt(value: float) -> str:
    return repr(float(value))


@dataclass(frozen=True)
class _Ramp:
    """A schedule from ``start`` (progress 0) to ``end`` (progress 1), written as its call."""

    start: float
    end: float

    def __post_init__(self) -> None:
        name = type(self).__name__.lower()
        object.__setattr__(self, "start", number(f"{name}(start, ...)", self.start, finite=True))
        object.__setattr__(self, "end", number(f"{name}(..., end)", self.end, finite=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__.lower()}({_fmt(self.start)}, {_fmt(self.end)})"


class Lin(_Ramp):
    """Linear: ``start + p*(end - start)``; past halfway ``end - (1-p)*(end - start)``.

    Computed from the nearer end, so that both ends are exact (so are the others').
    """

    def __call__(self, p: float) -> float:
        if p < 0.5:
            return self.start + p * (self.end - self.start)
        return self.end - (1.0 - p) * (self.end - self.start)


class Cos(_Ramp):
    """Cosine annealing: ``start + (end-start)*(1-cos(pi*p))/2``, flat at both ends."""

    def __call__(self, p: float) -> float:
        if p < 0.5:
            return self.start + (self.end - self.start) * (1.0 - math.cos(math.pi * p)) / 2.0
        return self.end - (self.end - self.start) * (1.0 + math.cos(math.pi * p)) / 2.0


class Exp(_Ramp):
    """Geometric, straight on a log scale: ``start * (end/start)**p``; both must be > 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start <= 0 or self.end <= 0:
            raise ValueError(
                f"exp(start, end) needs positive start and end (a geometric ramp), got "
                f"{self!r}; use lin() or cos() for values that reach 0"
            )

    def __call__(self, p: float) -> float:
        if p < 0.5:
            return self.start * float((self.end / self.start) ** p)
        return self.end * float((self.start / self.end) ** (1.0 - p))


@dataclass(frozen=True)
class No:
    """The same ``value`` at every progress."""

    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", number("no(value)", self.value, finite=True))

    def __call__(self, p: float) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"no({_fmt(self.value)})"


lin = Lin
"""``lin(start, end)``: a :class:`Lin` schedule."""
cos = Cos
"""``cos(start, end)``: a :class:`Cos` schedule."""
exp = Exp
"""``exp(start, end)``: an :class:`Exp` schedule."""
no = No
"""``no(value)``: a constant, :class:`No`."""
const = No
"""Another name for :func:`no`."""


@dataclass(frozen=True)
class Combine:
    """Run ``scheds[i]`` over the fraction ``pcts[i]`` of training, one after another.

    Each sub-schedule sees its own progress from 0 to 1 over its stretch. At a
    boundary the later schedule takes over (at its progress 0); at ``p = 1`` the
    last one gives its value at progress 1.
    """

    pcts: tuple[float, ...]
    scheds: tuple[Callable[[float], float], ...]

    def __call__(self, p: float) -> float:
        start = 0.0
        last = len(self.pcts) - 1
        for i, (pct, sched) in enumerate(zip(self.pcts, self.scheds)):
            end = 1.0 if i == last else start + pct
            if p < end or i == last:
                return sched(min(max((p - start) / pct, 0.0), 1.0))
            start = end
        raise AssertionError("unreachable: combine() always has a schedule")

    def __repr__(self) -> str:
        pcts = ", ".join(_fmt(p) for p in self.pcts)
        scheds = ", ".join(repr(s) for s in self.scheds)
        return f"combine([{pcts}], [{scheds}])"


@dataclass(frozen=True)
class OneCycle:
    """The one-cycle learning rate: cosine warm-up to ``max_lr``, cosine annealing down.

    ``max_lr/div`` rises to ``max_lr`` over the first ``pct_start`` of training,
    then falls to ``max_lr/final_div``. :attr:`companions` carries the momentum
    schedule that goes with it, which the ``schedule`` plugin applies to ``mom``
    unless told otherwise.
    """

    max_lr: float
    div: float = 25.0
    final_div: float = 1e4
    pct_start: float = 0.25
    moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95)

    @property
    def lr(self) -> Combine:
        """The learning-rate schedule, as a :class:`Combine` of two cosines."""
        peak = self.max_lr
        return Combine(
            (self.pct_start, 1.0 - self.pct_start),
            (cos(peak / self.div, peak), cos(peak, peak / self.final_div)),
        )

    @property
    def companions(self) -> dict[str, Callable[[float], float]]:
        """``{"mom": schedule}``: momentum high, down while the lr rises, back up."""
        if self.moms is None:
            return {}
        high, low, end = self.moms
        pcts = (self.pct_start, 1.0 - self.pct_start)
        return {"mom": Combine(pcts, (Cos(high, low), Cos(low, end)))}

    def __call__(self, p: float) -> float:
        return self.lr(p)

    def __repr__(self) -> str:
        moms = "None" if self.moms is None else "[" + ", ".join(map(_fmt, self.moms)) + "]"
        return (
            f"one_cycle({_fmt(self.max_lr)}, div={_fmt(self.div)}, "
            f"final_div={_fmt(self.final_div)}, pct_start={_fmt(self.pct_start)}, moms={moms})"
        )


def combine(pcts: Sequence[float], scheds: Sequence[Callable[[float], float]]) -> Combine:
    """The lesson's ``combine_scheds``: ``scheds[i]`` over the fraction ``pcts[i]``.

    :param pcts: positive fractions of training, summing to 1.
    :param scheds: as many schedules (callables of progress), one per fraction.
    """
    if isinstance(pcts, (str, bytes)) or not isinstance(pcts, Sequence):
        raise TypeError(f"combine(pcts, scheds): pcts should be a list of numbers, got {pcts!r}")
    if isinstance(scheds, (str, bytes)) or not isinstance(scheds, Sequence):
        raise TypeError(
            f"combine(pcts, scheds): scheds should be a list of schedules, got {scheds!r}"
        )
    fractions = tuple(number(f"combine(): pcts[{i}]", p, finite=True) for i, p in enumerate(pcts))
    if not fractions or len(fractions) != len(scheds):
        raise ValueError(
            f"combine(pcts, scheds) needs one schedule per percentage, got {len(fractions)} "
            f"percentage(s) and {len(scheds)} schedule(s)"
        )
    if min(fractions) <= 0:
        raise ValueError(f"combine(): every percentage should be > 0, got {list(fractions)}")
    if abs(math.fsum(fractions) - 1.0) > _PCT_TOLERANCE:
        raise ValueError(
            f"combine(): pcts should sum to 1, got {list(fractions)} (sum "
            f"{math.fsum(fractions):g}); e.g. combine([0.3, 0.7], [...])"
        )
    for i, sched in enumerate(scheds):
        if not callable(sched):
            raise TypeError(
                f"combine(): scheds[{i}] should be a schedule such as cos(0.2, 1.0), got {sched!r}"
            )
    return Combine(fractions, tuple(scheds))


def one_cycle(
    max_lr: float,
    div: float = 25.0,
    final_div: float = 1e4,
    pct_start: float = 0.25,
    moms: Sequence[float] | None = (0.95, 0.85, 0.95),
) -> OneCycle:
    """The one-cycle preset: lr from ``max_lr/div`` up to ``max_lr``, down to ``max_lr/final_div``.

    Both phases are cosines (fastai's ``fit_one_cycle``); ``final_div`` is taken
    relative to ``max_lr``, as fastai's ``div_final`` (PyTorch's ``OneCycleLR``
    divides the *starting* lr by its ``final_div_factor`` instead). The momentum
    goes the other way: ``moms[0]`` down to ``moms[1]`` while the lr rises, back
    to ``moms[2]`` while it falls.

    :param max_lr: the peak learning rate.
    :param div: the starting lr is ``max_lr/div``.
    :param final_div: the final lr is ``max_lr/final_div``.
    :param pct_start: the fraction of training spent rising, in (0, 1).
    :param moms: momentum at the start, at the peak and at the end, or ``None`` to
        leave momentum alone.
    """
    peak = number("one_cycle(max_lr)", max_lr, finite=True)
    factor = number("one_cycle(div=...)", div, finite=True)
    final = number("one_cycle(final_div=...)", final_div, finite=True)
    start = number("one_cycle(pct_start=...)", pct_start, finite=True)
    if peak <= 0 or factor <= 0 or final <= 0:
        raise ValueError(
            f"one_cycle(): max_lr, div and final_div should be > 0, got max_lr={max_lr!r}, "
            f"div={div!r}, final_div={final_div!r}"
        )
    if not 0 < start < 1:
        raise ValueError(f"one_cycle(): pct_start should be in (0, 1), got {pct_start!r}")
    triple: tuple[float, float, float] | None = None
    if moms is not None:
        if isinstance(moms, (str, bytes)) or not isinstance(moms, Sequence) or len(moms) != 3:
            raise ValueError(
                f"one_cycle(): moms should be 3 numbers (start, peak, end) or None, got {moms!r}"
            )
        a, b, c = (number("one_cycle(moms=...)", m, finite=True) for m in moms)
        triple = (a, b, c)
    return OneCycle(peak, factor, final, start, triple)


FUNCTIONS: dict[str, Callable[..., Callable[[float], float]]] = {
    "lin": lin,
    "cos": cos,
    "exp": exp,
    "no": no,
    "const": const,
    "combine": combine,
    "one_cycle": one_cycle,
}
"""The functions :func:`parse` may call, by name."""

_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<punct>[()\[\],]))"
)
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=")


class ScheduleSyntaxError(ValueError):
    """A schedule expression could not be read; the message shows where."""


class _Parser:
    """Recursive descent over numbers, lists, ``None`` and calls of :data:`FUNCTIONS`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str, at: int | None = None) -> ScheduleSyntaxError:
        where = _skip_space(self.text, self.pos if at is None else at)
        found = self.text[where:].strip()[:12] or "the end"
        return ScheduleSyntaxError(
            f"cannot read schedule {self.text!r}: expected {expected} at position {where}, "
            f"found {found!r}\n    {self.text}\n    {' ' * where}^"
        )

    def take(self) -> tuple[str, str, int]:
        match = _TOKEN.match(self.text, self.pos)
        if match is None or match.lastgroup is None:
            raise self.fail("a number, a list or a call such as cos(0.2, 1.0)")
        self.pos = match.end()
        return match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)

    def accept(self, punct: str) -> bool:
        match = _TOKEN.match(self.text, self.pos)
        if match is None or match.group("punct") != punct:
            return False
        self.pos = match.end()
        return True

    def value(self) -> Any:
        kind, text, start = self.take()
        if kind == "number":
            return float(text)
        if (kind, text) == ("punct", "["):
            return self.sequence("]", keywords=False)[0]
        if kind == "name" and text == "None":
            return None
        if kind == "name" and text in FUNCTIONS:
            if not self.accept("("):
                raise self.fail("'('")
            args, kwargs = self.sequence(")", keywords=True)
            try:
                return FUNCTIONS[text](*args, **kwargs)
            except (TypeError, ValueError) as exc:
                raise ScheduleSyntaxError(
                    f"cannot read schedule {self.text!r}: {text}(...) at position {start}: {exc}"
                ) from None
        known = ", ".join(FUNCTIONS) + did_you_mean(text, FUNCTIONS)
        raise self.fail(f"a number, a list, None or one of {known}", at=start)

    def sequence(self, closing: str, keywords: bool) -> tuple[list[Any], dict[str, Any]]:
        """Values separated by commas up to ``closing``; ``name=value`` too if ``keywords``."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if self.accept(closing):
            return args, kwargs
        while True:
            keyword = _KEYWORD.match(self.text, self.pos) if keywords else None
            if keyword is not None:
                self.pos = keyword.end()
                kwargs[keyword.group(1)] = self.value()
            elif kwargs:
                raise self.fail("a keyword argument (name=value) after keyword arguments")
            else:
                args.append(self.value())
            if self.accept(closing):
                return args, kwargs
            if not self.accept(","):
                raise self.fail(f"',' or {closing!r}")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def parse(text: str) -> Any:
    """Read a schedule expression: a number, a call such as ``cos(0.2, 1.0)``, or a list.

    A number reads as itself and a list as a Python list (the ``schedule`` plugin
    reads a top-level list as one schedule per parameter group). Calls may only
    name the functions of :data:`FUNCTIONS`; nothing is evaluated by Python.

    >>> parse("one_cycle(0.4)")(0.25)
    0.4

    :param text: the expression.
    :raises ScheduleSyntaxError: the text is not a schedule; the message gives
        the position and what was expected there.
    """
    parser = _Parser(text)
    if not text.strip():
        raise parser.fail("a schedule such as cos(0.2, 1.0)")
    result = parser.value()
    parser.pos = _skip_space(text, parser.pos)
    if parser.pos != len(text):
        raise parser.fail("the end of the expression")
    return result
