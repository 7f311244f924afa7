"""Immutable map and set whose updates copy one bucket, not the whole collection.

The engine state changes on every allowed decision. Copying a whole dict per change makes a
decision's cost grow with the number of devices and containers already known; here the
entries are spread over WIDTH hash buckets (plain dicts / frozensets nobody else holds), so
an update copies the tuple of buckets and the one bucket it touches. Lookups are one hash
and one dict lookup. Iteration order follows the buckets, not insertion: nothing in the
engine may depend on it (denials sort what they list).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Set
from itertools import chain
from typing import Any, Generic, TypeVar

__all__ = ["WIDTH", "PMap", "PSet"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=Hashable)

WIDTH = 32
_MASK = WIDTH - 1
_set_slot = object.__setattr__
_new = object.__new__
_EMPTY_DICT: dict[Any, Any] = {}  # shared by empty buckets: buckets are never mutated
_EMPTY_SET: frozenset[Any] = frozenset()


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class PMap(_Frozen, Mapping[K, V], Generic[K, V]):
    """A read-only mapping; `set` and `delete` return new maps sharing untouched buckets."""

    __slots__ = ("_buckets", "_size")
    _buckets: tuple[dict[K, V], ...]
    _size: int

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        buckets: list[dict[K, V]] = [{} for _ in range(WIDTH)]
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            buckets[hash(key) & _MASK][key] = value
        _set_slot(self, "_buckets", tuple(b or _EMPTY_DICT for b in buckets))
        _set_slot(self, "_size", sum(map(len, buckets)))

    @classmethod
    def _make(cls, buckets: tuple[dict[K, V], ...], size: int) -> PMap[K, V]:
        new = object.__new__(cls)
        _set_slot(new, "_buckets", buckets)
        _set_slot(new, "_size", size)
        return new

    def __getitem__(self, key: K) -> V:
        return self._buckets[hash(key) & _MASK][key]

    def get(self, key: K, default: Any = None) -> Any:
        return self._buckets[hash(key) & _MASK].get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets[hash(key) & _MASK]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        return chain.from_iterable(self._buckets)

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PMap, (dict(self.items()),))

    def set(self, key: K, value: V) -> PMap[K, V]:
        """A map with `key` bound to `value`."""
        slot = hash(key) & _MASK
        bucket = self._buckets[slot]
        size = self._size if key in bucket else self._size + 1
        changed = bucket.copy()
        changed[key] = value
        buckets = list(self._buckets)
        buckets[slot] = changed
        new = _new(PMap)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", size)
        return new

    def delete(self, *keys: K) -> PMap[K, V]:
        """A map without `keys` (absent keys are ignored)."""
        buckets: list[dict[K, V]] | None = None
        size = self._size
        for key in keys:
            slot = hash(key) & _MASK
            bucket = (buckets or self._buckets)[slot]
            if key not in bucket:
                continue
            if buckets is None:
                buckets = list(self._buckets)
            changed = bucket.copy()
            del changed[key]
            buckets[slot] = changed or _EMPTY_DICT
            size -= 1
        return self if buckets is None else PMap._make(tuple(buckets), size)


class PSet(_Frozen, Set[T], Generic[T]):
    """A read-only set; `add` and `discard` return new sets sharing untouched buckets."""

    __slots__ = ("_buckets", "_size")
    _buckets: tuple[frozenset[T], ...]
    _size: int

    def __init__(self, items: Iterable[T] = ()) -> None:
        buckets: list[set[T]] = [set() for _ in range(WIDTH)]
        for item in items:
            buckets[hash(item) & _MASK].add(item)
        _set_slot(self, "_buckets", tuple(frozenset(b) if b else _EMPTY_SET for b in buckets))
        _set_slot(self, "_size", sum(map(len, buckets)))

    @classmethod
    def _from_iterable(cls, it: Iterable[T]) -> PSet[T]:
        return cls(it)

    @classmethod
    def _make(cls, buckets: tuple[frozenset[T], ...], size: int) -> PSet[T]:
        new = object.__new__(cls)
        _set_slot(new, "_buckets", buckets)
        _set_slot(new, "_size", size)
        return new

    def __contains__(self, item: object) -> bool:
        return item in self._buckets[hash(item) & _MASK]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._buckets)

    def __repr__(self) -> str:
        return f"PSet({set(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PSet, (frozenset(self),))

    __hash__ = Set._hash

    def add(self, item: T) -> PSet[T]:
        """A set that also holds `item`."""
        slot = hash(item) & _MASK
        bucket = self._buckets[slot]
        if item in bucket:
            return self
        buckets = list(self._buckets)
        buckets[slot] = bucket | {item}
        new = _new(PSet)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", self._size + 1)
        return new

    def discard(self, item: T) -> PSet[T]:
        """A set without `item` (the same set if it was absent)."""
        slot = hash(item) & _MASK
        bucket = self._buckets[slot]
        if item not in bucket:
            return self
        buckets = list(self._buckets)
        buckets[slot] = bucket - {item}
        return PSet._make(tuple(buckets), self._size - 1)
