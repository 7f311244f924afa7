"""The persistent map and set behave as a dict and a set that every update copies, across
the small/bucketed boundary, and no update ever changes an earlier version."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestagent.policy.persistent import SMALL, BucketMap, BucketSet, SmallMap, pmap, pset

KEYS = st.integers(0, SMALL * 3)
MAP_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers()),
        st.tuples(st.just("set_many"), st.lists(st.tuples(KEYS, st.integers()), max_size=40)),
        st.tuples(st.just("delete"), st.lists(KEYS, max_size=40)),
    ),
    max_size=60,
)
SET_OPS = st.lists(st.tuples(st.sampled_from(["add", "discard"]), KEYS), max_size=300)


def _check_map(got: Any, want: dict[Any, Any]) -> None:
    assert len(got) == len(want) and dict(got.items()) == want and got == want
    assert set(got) == set(want) and set(got.keys()) == set(want)
    for key in range(SMALL * 3 + 1):
        assert (key in got) == (key in want)
        assert got.get(key, "absent") == want.get(key, "absent")


@settings(max_examples=150, deadline=None)
@given(start=st.dictionaries(KEYS, st.integers(), max_size=SMALL * 2), ops=MAP_OPS)
def test_map_updates_are_copies(start: dict[int, int], ops: list[Any]) -> None:
    versions = [(pmap(start), dict(start))]
    for op in ops:
        current, model = versions[-1]
        model = dict(model)
        if op[0] == "set":
            current = current.set(op[1], op[2])
            model[op[1]] = op[2]
        elif op[0] == "set_many":
            current = current.set_many(op[1])
            model.update(op[1])
        else:
            current = current.delete(*op[1])
            for key in op[1]:
                model.pop(key, None)
        versions.append((current, model))
    for current, model in versions:  # every earlier version is untouched
        _check_map(current, model)


@settings(max_examples=150, deadline=None)
@given(start=st.sets(KEYS, max_size=SMALL * 2), ops=SET_OPS)
def test_set_updates_are_copies(start: set[int], ops: list[Any]) -> None:
    versions = [(pset(start), set(start))]
    for name, item in ops:
        current, model = versions[-1]
        current = getattr(current, name)(item)
        model = model | {item} if name == "add" else model - {item}
        versions.append((current, model))
    for current, model in versions:
        assert len(current) == len(model) and set(current) == model and current == model
        assert all((k in current) == (k in model) for k in range(SMALL * 3 + 1))
        assert set(range(10)) - current == set(range(10)) - model  # set algebra, as the tests use


def test_large_collections_are_bucketed_and_small_ones_plain() -> None:
    assert type(pmap({1: 1})) is SmallMap
    assert type(pmap({i: i for i in range(SMALL + 1)})) is BucketMap
    grown = pmap({i: i for i in range(SMALL)}).set(SMALL, 0)
    assert type(grown) is BucketMap and len(grown) == SMALL + 1
    assert type(pset(range(SMALL)).add(-1)) is BucketSet
    shrunk = grown.delete(*range(SMALL))
    assert type(shrunk) is SmallMap and shrunk == {SMALL: 0}


@pytest.mark.parametrize("size", [3, SMALL * 2])
def test_collections_refuse_changes_in_place(size: int) -> None:
    mapping, items = pmap({i: i for i in range(size)}), pset(range(size))
    for change in (
        lambda: mapping.__setitem__(0, 1),
        lambda: mapping.__delitem__(0),
        lambda: mapping.update({0: 1}),
        lambda: mapping.pop(0),
        lambda: mapping.clear(),
        lambda: mapping.setdefault(-1, 0),
    ):
        with pytest.raises((TypeError, AttributeError)):
            change()
    assert mapping == {i: i for i in range(size)}
    with pytest.raises((TypeError, AttributeError)):
        items.add_in_place = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [3, SMALL * 2])
def test_collections_copy_and_pickle(size: int) -> None:
    mapping, items = pmap({str(i): i for i in range(size)}), pset(range(size))
    for value in (mapping, items):
        for clone in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
            assert clone == value and type(clone) is type(value)
