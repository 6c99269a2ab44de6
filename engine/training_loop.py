"""One learner's training loop as a table: which attached plugins receive each event.

What ``lookinside plugins --events`` prints for the plugins a command line would
enable, :meth:`engine.learner.Learner.show_training_loop` shows for the plugins a
learner has attached, in the same layout: one line per event in firing order, the
plugins that receive it in the order they run, ``-`` for none.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass

from engine.bus import PluginBus
from engine.events import EVENTS


def loop_table(receivers: Mapping[str, Sequence[str]]) -> str:
    """The table: per event of :data:`~engine.events.EVENTS`, the names that receive it.

    >>> print(loop_table({"begin_fit": ["device", "metrics"]}).splitlines()[0])
    begin_fit           device, metrics

    :param receivers: the plugin names per event, in run order; a missing event has none.
    """
    width = max(len(event) for event in EVENTS)
    lines = [f"{event:<{width}}  {', '.join(receivers.get(event, ())) or '-'}" for event in EVENTS]
    return "\n".join(lines)


@dataclass(frozen=True)
class TrainingLoop:
    """Which plugins receive each event, in the order they run, as a learner has them.

    A snapshot: attaching or removing a plugin later does not change it. ``str()``
    and ``repr()`` give the table, so a notebook cell ending with
    ``learner.show_training_loop()`` shows it; ``print()`` it in a script.
    """

    receivers: dict[str, tuple[str, ...]]
    """Per event, in firing order, the names of the plugins that receive it, in run order."""

    @classmethod
    def of(cls, plugins: PluginBus) -> TrainingLoop:
        """The loop the plugins attached to ``plugins`` make.

        :param plugins: a learner's plugin bus.
        """
        return cls({event: tuple(plugins.receivers(event)) for event in EVENTS})

    def __str__(self) -> str:
        return loop_table(self.receivers)

    __repr__ = __str__
