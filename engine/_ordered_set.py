"""An insertion-ordered set, so blinker calls receivers in the order they connected."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import MutableSet
from typing import Any


class OrderedSet(MutableSet[Any]):
    """A set that iterates in insertion order; ``a | b`` keeps a's items first."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[Any, None] = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Any) -> None:
        self._items[item] = None

    def discard(self, item: Any) -> None:
        self._items.pop(item, None)

    def copy(self) -> OrderedSet:
        return OrderedSet(self._items)

    def __or__(self, other: Iterable[Any]) -> OrderedSet:
        merged = OrderedSet(self._items)
        merged._items.update(dict.fromkeys(other))
        return merged

    def __repr__(self) -> str:
        return f"OrderedSet({list(self._items)!r})"
