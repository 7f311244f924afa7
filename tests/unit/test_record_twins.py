"""Every record class in the package against its stdlib-dataclass twin.

The twin is the same class body (methods, annotations, field settings) decorated with
`dataclasses.dataclass(frozen=, slots=, kw_only=)` as the record was made: the two must agree
on the `__init__` signature, the fields, `__match_args__`, repr text, equality and hashing,
immutability (and its error messages), `replace`, and copy/pickle round trips. Instances are
filled field by field (bypassing `__post_init__` checks that synthetic values would fail),
so the generated methods are compared on arbitrary values; `__init__` itself is compared on
the same arguments, failures included.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guestagent
from guestagent import records
from guestagent.record_code import FACTORY, MISSING

_set = object.__setattr__


def record_classes() -> list[type]:
    found = {}
    for info in pkgutil.walk_packages(guestagent.__path__, "guestagent."):
        if info.name.endswith("__main__"):  # importing it runs the command line
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            made_here = isinstance(value, type) and value.__module__ == module.__name__
            if made_here and "__record_fields__" in value.__dict__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


RECORDS = record_classes()
GENERATED = {
    "__slots__", "__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__",
    "__getstate__", "__setstate__", "__match_args__", "__record_fields__",
    "__record_names__", "__record_repr__", "__record_params__", "__record_compared__",
    "__dict__", "__weakref__",
}  # fmt: skip


def generated_init(cls: type) -> bool:
    return cls.__init__.__code__.co_filename == "<record __init__>"


def twin_of(cls: type) -> type:
    """The dataclass the record would have been: same body, same options."""
    params = cls.__record_params__
    names = set(cls.__record_names__)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in GENERATED and k not in names}
    if generated_init(cls):
        del namespace["__init__"]
    for f in records.fields(cls):
        namespace[f.name] = dataclasses.field(
            default=dataclasses.MISSING if f.default is MISSING else f.default,
            default_factory=(
                dataclasses.MISSING if f.default_factory is MISSING else f.default_factory
            ),
            init=f.init,
            repr=f.repr,
            compare=f.compare,
        )
    namespace["__qualname__"] = cls.__qualname__
    twin = type(cls.__name__, (), namespace)
    return dataclasses.dataclass(
        frozen=params["frozen"], slots=params["slots"], kw_only=params["kw_only"]
    )(twin)


TWINS = {cls: twin_of(cls) for cls in RECORDS}
IDS = [f"{cls.__module__.removeprefix('guestagent.')}.{cls.__qualname__}" for cls in RECORDS]


def test_every_record_class_is_found_and_no_dataclass_is_left() -> None:
    assert len(RECORDS) >= 89
    leftovers = [
        f"{value.__module__}.{value.__qualname__}"
        for info in pkgutil.walk_packages(guestagent.__path__, "guestagent.")
        if not info.name.endswith("__main__")
        for value in vars(importlib.import_module(info.name)).values()
        if dataclasses.is_dataclass(value) and value.__module__.startswith("guestagent")
    ]
    assert leftovers == []


def parameters(function: Any) -> list[tuple[str, Any, Any]]:
    def default(value: Any) -> Any:
        if value is FACTORY or repr(value) == "<factory>":
            return "<factory>"
        return value

    return [
        (p.name, p.kind, default(p.default))
        for p in inspect.signature(function).parameters.values()
    ]


@pytest.mark.parametrize("cls", RECORDS, ids=IDS)
def test_the_shape_matches_the_dataclass(cls: type) -> None:
    twin = TWINS[cls]
    assert parameters(cls.__init__) == parameters(twin.__init__)
    assert [f.name for f in records.fields(cls)] == [f.name for f in dataclasses.fields(twin)]
    for mine, theirs in zip(records.fields(cls), dataclasses.fields(twin), strict=True):
        assert (mine.type, mine.init, mine.repr, mine.compare) == (
            theirs.type, theirs.init, theirs.repr, theirs.compare,
        )  # fmt: skip
    assert cls.__match_args__ == twin.__match_args__
    assert (cls.__hash__ is None) == (twin.__hash__ is None)
    assert hasattr(cls, "__dict__") and ("__dict__" in dir(cls)) == ("__dict__" in dir(twin))
    assert ("__slots__" in cls.__dict__) == ("__slots__" in twin.__dict__)


# Hashable, picklable, comparable values with readable reprs; a few equal-but-distinct.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "a", "b", "a b"]),
    st.tuples(st.integers(0, 2), st.sampled_from(["x", "y"])),
    st.frozensets(st.integers(0, 3), max_size=2),
    st.binary(max_size=3),
)


def filled(cls: type, values: dict[str, Any]) -> Any:
    obj = object.__new__(cls)
    for name, value in values.items():
        _set(obj, name, value)
    return obj


def state(obj: Any, names: tuple[str, ...]) -> list[Any]:
    return [getattr(obj, name, "<unset>") for name in names]


def check_pair(cls: type, first: dict[str, Any], second: dict[str, Any]) -> None:
    twin = TWINS[cls]
    a, b = filled(cls, first), filled(cls, second)
    ta, tb = filled(twin, first), filled(twin, second)
    assert repr(a) == repr(ta)
    assert (a == b) == (ta == tb) and (a != b) == (ta != tb)
    assert a.__eq__(filled(cls, first)) is True and a.__ne__(filled(cls, first)) is False
    assert a.__eq__(ta) is NotImplemented  # a record equals only its own class
    if cls.__hash__ is not None:
        assert hash(a) == hash(ta)  # the same tuple of the same fields
        if a == b:
            assert hash(a) == hash(b)


def check_frozen(cls: type, values: dict[str, Any]) -> None:
    twin = TWINS[cls]
    obj, tobj = filled(cls, values), filled(twin, values)
    name = cls.__record_names__[0]
    if not cls.__record_params__["frozen"]:
        setattr(obj, name, "changed")
        assert getattr(obj, name) == "changed"
        return
    for action in (lambda o: setattr(o, name, 1), lambda o: delattr(o, name)):
        with pytest.raises(AttributeError) as mine:
            action(obj)
        with pytest.raises(dataclasses.FrozenInstanceError) as theirs:
            action(tobj)
        assert isinstance(mine.value, records.FrozenRecordError)
        assert str(mine.value) == str(theirs.value)
    assert state(obj, cls.__record_names__) == state(tobj, cls.__record_names__)


def check_copies(cls: type, values: dict[str, Any]) -> None:
    obj = filled(cls, values)
    names = cls.__record_names__
    for made in (copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        assert type(made) is cls and made is not obj
        assert state(made, names) == state(obj, names)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # compared with the twin's, whatever it is
        return type(exc).__name__, str(exc).replace(".__init__", "")


def check_init_and_replace(cls: type, values: dict[str, Any]) -> None:
    twin = TWINS[cls]
    names = cls.__record_names__
    kwargs = {f.name: values[f.name] for f in records.fields(cls) if f.init}
    mine, theirs = outcome(lambda: cls(**kwargs)), outcome(lambda: twin(**kwargs))
    assert mine[0] == theirs[0], (mine, theirs)
    if mine[0] != "ok":
        assert mine[1] == theirs[1]
        return
    assert state(mine[1], names) == state(theirs[1], names)
    positional = [kwargs[n] for n in cls.__match_args__]
    if not cls.__record_params__["kw_only"] and generated_init(cls):
        rest = {k: v for k, v in kwargs.items() if k not in cls.__match_args__}
        again = outcome(lambda: cls(*positional, **rest))
        assert again[0] == "ok" and state(again[1], names) == state(mine[1], names)
    if kwargs:
        change = {next(iter(kwargs)): values[next(iter(kwargs))]}
        replaced = outcome(lambda: records.replace(mine[1], **change))
        expected = outcome(lambda: dataclasses.replace(theirs[1], **change))
        assert replaced[0] == expected[0]
        if replaced[0] == "ok":
            assert state(replaced[1], names) == state(expected[1], names)
    unknown = outcome(lambda: records.replace(mine[1], not_a_field=1))
    assert unknown[0] == outcome(lambda: dataclasses.replace(theirs[1], not_a_field=1))[0]
    for f in records.fields(cls):
        if not f.init:
            with pytest.raises(ValueError, match="init=False"):
                records.replace(mine[1], **{f.name: 1})


def field_values(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: VALUES for name in cls.__record_names__})


@pytest.mark.parametrize("cls", RECORDS, ids=IDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_methods_agree_with_the_dataclass(cls: type, data: st.DataObject) -> None:
    first = data.draw(field_values(cls))
    # Often equal to the first, or differing in one field only: equality is exercised.
    second = dict(first)
    if cls.__record_names__ and data.draw(st.booleans()):
        name = data.draw(st.sampled_from(cls.__record_names__))
        second[name] = data.draw(VALUES)
    check_pair(cls, first, second)
    check_pair(cls, second, first)
    if cls.__record_names__:
        check_frozen(cls, first)
    check_copies(cls, first)
    check_init_and_replace(cls, first)
