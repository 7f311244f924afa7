"""Immutable maps and sets whose updates stay cheap however large the engine state grows.

The engine state changes on every allowed decision. Copying a whole dict per change makes a
decision's cost grow with the number of devices and containers already known. Two shapes:

- Small (up to SMALL entries): `SmallMap` / `SmallSet`, read-only subclasses of dict and
  frozenset. Reads are plain C lookups; an update copies the whole thing, which at this size
  costs less than any cleverness.
- Large: `BucketMap` / `BucketSet` spread the entries over WIDTH hash buckets (plain dicts and
  frozensets nobody else holds), so an update copies the tuple of buckets and one bucket.

`set`/`delete` (maps) and `add`/`discard` (sets) return a new collection of whichever shape
fits its size. Iteration order is not part of the contract: nothing in the engine may depend
on it (denials sort what they list).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Set
from itertools import chain
from typing import Any, NoReturn, TypeVar

__all__ = [
    "SMALL",
    "WIDTH",
    "BucketMap",
    "BucketSet",
    "PMap",
    "PSet",
    "SmallMap",
    "SmallSet",
    "pmap",
    "pset",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=Hashable)

SMALL = 32  # above this many entries, a collection is bucketed
WIDTH = 32  # buckets of a large collection
_MASK = WIDTH - 1
_set_slot = object.__setattr__
_new = object.__new__
_dict_setitem = dict.__setitem__
_dict_pop = dict.pop


def _immutable(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is immutable")


class SmallMap(dict[K, V]):
    """A read-only dict; `set` and `delete` return changed copies."""

    __slots__ = ()
    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (SmallMap, (dict(self),))

    def __repr__(self) -> str:
        return f"SmallMap({dict.__repr__(self)})"

    def set(self, key: K, value: V) -> PMap[K, V]:
        """A map with `key` bound to `value`."""
        if len(self) >= SMALL and key not in self:
            return BucketMap(self).set(key, value)
        new = SmallMap(self)
        _dict_setitem(new, key, value)
        return new

    def set_many(self, pairs: Iterable[tuple[K, V]]) -> PMap[K, V]:
        """A map with each (key, value) of `pairs` bound, in order."""
        new = SmallMap(self)
        for key, value in pairs:
            _dict_setitem(new, key, value)
        return new if len(new) <= SMALL else BucketMap(new)

    def delete(self, *keys: K) -> PMap[K, V]:
        """A map without `keys` (the same map if none was present)."""
        new = None
        for key in keys:
            if key in self:
                if new is None:
                    new = SmallMap(self)
                _dict_pop(new, key, None)
        return self if new is None else new


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class BucketMap(_Frozen, Mapping[K, V]):
    """A read-only mapping in WIDTH buckets; `set`/`delete` share the untouched buckets."""

    __slots__ = ("_buckets", "_size")
    _buckets: tuple[dict[K, V], ...]
    _size: int

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        buckets: list[dict[K, V]] = [{} for _ in range(WIDTH)]
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            buckets[hash(key) & _MASK][key] = value
        _set_slot(self, "_buckets", tuple(buckets))
        _set_slot(self, "_size", sum(map(len, buckets)))

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
        return f"BucketMap({dict(self.items())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BucketMap, (dict(self.items()),))

    def _with(self, slot: int, bucket: dict[K, V], size: int) -> BucketMap[K, V]:
        buckets = list(self._buckets)
        buckets[slot] = bucket
        new = _new(BucketMap)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", size)
        return new

    def set(self, key: K, value: V) -> PMap[K, V]:
        """A map with `key` bound to `value`."""
        slot = hash(key) & _MASK
        buckets = list(self._buckets)
        bucket = buckets[slot]
        size = self._size if key in bucket else self._size + 1
        buckets[slot] = changed = bucket.copy()
        changed[key] = value
        new = _new(BucketMap)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", size)
        return new

    def set_many(self, pairs: Iterable[tuple[K, V]]) -> PMap[K, V]:
        """A map with each (key, value) of `pairs` bound, in order."""
        buckets = list(self._buckets)
        copied: set[int] = set()
        size = self._size
        for key, value in pairs:
            slot = hash(key) & _MASK
            if slot not in copied:
                buckets[slot] = buckets[slot].copy()
                copied.add(slot)
            bucket = buckets[slot]
            size += key not in bucket
            bucket[key] = value
        new = _new(BucketMap)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", size)
        return new

    def delete(self, *keys: K) -> PMap[K, V]:
        """A map without `keys` (small again once at most SMALL // 2 entries are left)."""
        new: BucketMap[K, V] = self
        for key in keys:
            slot = hash(key) & _MASK
            bucket = new._buckets[slot]
            if key in bucket:
                changed = bucket.copy()
                del changed[key]
                new = new._with(slot, changed, new._size - 1)
        return SmallMap(new.items()) if new._size <= SMALL // 2 else new


class SmallSet(frozenset[T]):
    """A frozenset whose `add` and `discard` return changed copies."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (SmallSet, (frozenset(self),))

    def __repr__(self) -> str:
        return f"SmallSet({set(self)!r})"

    def add(self, item: T) -> PSet[T]:
        """A set that also holds `item` (the same set if it did)."""
        if item in self:
            return self
        if len(self) >= SMALL:
            return BucketSet(self).add(item)
        return SmallSet(chain(self, (item,)))

    def discard(self, item: T) -> PSet[T]:
        """A set without `item` (the same set if it was absent)."""
        return SmallSet(self - {item}) if item in self else self


class BucketSet(_Frozen, Set[T]):
    """A read-only set in WIDTH buckets; `add`/`discard` share the untouched buckets."""

    __slots__ = ("_buckets", "_size")
    _buckets: tuple[frozenset[T], ...]
    _size: int

    def __init__(self, items: Iterable[T] = ()) -> None:
        buckets: list[set[T]] = [set() for _ in range(WIDTH)]
        for item in items:
            buckets[hash(item) & _MASK].add(item)
        _set_slot(self, "_buckets", tuple(map(frozenset, buckets)))
        _set_slot(self, "_size", sum(map(len, buckets)))

    @classmethod
    def _from_iterable(cls, it: Iterable[T]) -> PSet[T]:
        return pset(it)

    def __contains__(self, item: object) -> bool:
        return item in self._buckets[hash(item) & _MASK]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[T]:
        return chain.from_iterable(self._buckets)

    def __repr__(self) -> str:
        return f"BucketSet({set(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BucketSet, (frozenset(self),))

    __hash__ = Set._hash

    def _with(self, slot: int, bucket: frozenset[T], size: int) -> BucketSet[T]:
        buckets = list(self._buckets)
        buckets[slot] = bucket
        new = _new(BucketSet)
        _set_slot(new, "_buckets", tuple(buckets))
        _set_slot(new, "_size", size)
        return new

    def add(self, item: T) -> PSet[T]:
        """A set that also holds `item` (the same set if it did)."""
        slot = hash(item) & _MASK
        bucket = self._buckets[slot]
        if item in bucket:
            return self
        return self._with(slot, bucket | {item}, self._size + 1)

    def discard(self, item: T) -> PSet[T]:
        """A set without `item` (small again once at most SMALL // 2 items are left)."""
        slot = hash(item) & _MASK
        bucket = self._buckets[slot]
        if item not in bucket:
            return self
        new = self._with(slot, bucket - {item}, self._size - 1)
        return SmallSet(new) if new._size <= SMALL // 2 else new


PMap = SmallMap[K, V] | BucketMap[K, V]
PSet = SmallSet[T] | BucketSet[T]


def pmap(items: Mapping[K, V] | None = None) -> PMap[K, V]:
    """`items` as a persistent map (itself if it already is one)."""
    if type(items) is SmallMap or type(items) is BucketMap:
        return items
    items = {} if items is None else items
    return SmallMap(items) if len(items) <= SMALL else BucketMap(items)


def pset(items: Iterable[T] = ()) -> PSet[T]:
    """`items` as a persistent set (itself if it already is one)."""
    if type(items) is SmallSet or type(items) is BucketSet:
        return items
    frozen = frozenset(items)
    return SmallSet(frozen) if len(frozen) <= SMALL else BucketSet(frozen)
