"""guestagent.records: the edge cases, each against what dataclasses does where it has an
answer (the package-wide comparison is test_record_twins.py)."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import pickle
import subprocess
import sys
import typing
from typing import ClassVar

import pytest

from guestagent.records import FrozenRecordError, field, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list, compare=False)
    secret: str = field(default="s", repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class PointTwin:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list, compare=False)
    secret: str = dataclasses.field(default="s", repr=False)


@record(kw_only=True)
class Options:
    level: int
    name: str = "n"


@record
class Normalised:
    values: tuple[int, ...]
    total: int = field(init=False, repr=False, compare=False)
    seen: frozenset[int] = field(init=False, default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(self.values)))
        object.__setattr__(self, "total", sum(self.values))


@record(mutable=True)
class Counter:
    count: int = 0
    items: dict[str, int] = field(default_factory=dict)


@record
class Single:
    value: float


@record
class Empty:
    pass


@record(slots=False)
class Loose:
    a: int
    b: int = 2


def test_frozen_assignment_raises_an_attribute_error_with_the_dataclass_message() -> None:
    point, twin = Point(1), PointTwin(1)
    for action in (lambda o: setattr(o, "x", 2), lambda o: delattr(o, "y")):
        with pytest.raises(FrozenRecordError) as mine:
            action(point)
        with pytest.raises(dataclasses.FrozenInstanceError) as theirs:
            action(twin)
        assert str(mine.value) == str(theirs.value)
    assert issubclass(FrozenRecordError, AttributeError)
    with pytest.raises(AttributeError):
        point.unknown = 1  # type: ignore[attr-defined]
    assert point.x == 1 and not hasattr(point, "__dict__")


def test_init_errors_read_as_the_dataclass_ones() -> None:
    for call in (lambda c: c(), lambda c: c(1, 2, [], "s", 5), lambda c: c(1, z=3)):
        with pytest.raises(TypeError) as mine:
            call(Point)
        with pytest.raises(TypeError) as theirs:
            call(PointTwin)
        assert str(mine.value).replace("Point", "X") == str(theirs.value).replace("PointTwin", "X")


def test_keyword_only_records_take_no_positional_argument() -> None:
    assert Options(level=1) == Options(level=1, name="n")
    with pytest.raises(TypeError, match="positional"):
        Options(1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="level"):
        Options()  # type: ignore[call-arg]
    kinds = {p.kind for p in inspect.signature(Options).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}
    assert Options.__match_args__ == ()


def test_a_default_factory_runs_per_instance_and_shows_as_the_dataclass_marker() -> None:
    first, second = Point(1), Point(1)
    assert first.tags == [] and first.tags is not second.tags
    assert str(inspect.signature(Point)) == str(inspect.signature(PointTwin))
    given = ["t"]
    assert Point(1, tags=given).tags is given


def test_post_init_normalises_and_init_false_fields_are_set_or_defaulted() -> None:
    made = Normalised((3, 1, 2))
    assert made.values == (1, 2, 3) and made.total == 6 and made.seen == frozenset()
    assert "total" not in inspect.signature(Normalised).parameters
    assert repr(made) == "Normalised(values=(1, 2, 3), seen=frozenset())"
    assert pickle.loads(pickle.dumps(made)).total == 6
    with pytest.raises(ValueError, match="init=False"):
        replace(made, total=1)
    assert replace(made, values=(5, 4)).values == (4, 5)


def test_replace_keeps_the_other_fields_and_refuses_unknown_names() -> None:
    point = Point(1, 2, ["a"], "k")
    moved = replace(point, y=5)
    assert (moved.x, moved.y, moved.tags, moved.secret) == (1, 5, ["a"], "k")
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        replace(point, z=1)
    with pytest.raises(TypeError, match="record instances"):
        replace(object())


def test_fields_are_in_definition_order_with_their_settings() -> None:
    got = [(f.name, f.type, f.init, f.repr, f.compare) for f in fields(Point)]
    assert got == [
        ("x", "int", True, True, True),
        ("y", "int", True, True, True),
        ("tags", "list[str]", True, True, False),
        ("secret", "str", True, False, True),
    ]
    assert fields(Point(1)) == fields(Point)
    with pytest.raises(TypeError):
        fields(PointTwin)


def test_equality_is_by_class_and_compared_fields_and_hash_follows_it() -> None:
    assert Point(1, tags=["a"]) == Point(1, tags=["b"])  # tags are not compared
    assert Point(1) != Point(2) and Point(1) != Point(1, secret="t")
    assert hash(Point(1, tags=["a"])) == hash(Point(1, tags=["b"]))
    assert hash(Point(1, 2)) == hash(PointTwin(1, 2))
    assert Point(1).__eq__(PointTwin(1)) is NotImplemented
    assert Point(1) != (1, 0, "s")
    assert Empty() == Empty() and hash(Empty()) == hash(())


def test_a_single_field_compares_as_a_one_tuple_like_the_dataclass() -> None:
    nan = math.nan
    assert Single(nan) == Single(nan)  # the same object: equal inside a tuple
    assert Single(float("nan")) != Single(float("nan"))
    assert hash(Single(1.0)) == hash((1.0,))


def test_mutable_records_assign_compare_and_are_unhashable() -> None:
    counter = Counter()
    counter.count += 1
    counter.items["a"] = 1
    assert counter == Counter(1, {"a": 1}) and Counter.__hash__ is None
    with pytest.raises(TypeError, match="unhashable"):
        hash(counter)
    with pytest.raises(AttributeError):
        counter.other = 1  # type: ignore[attr-defined]
    assert copy.deepcopy(counter) == counter and pickle.loads(pickle.dumps(counter)) == counter


def test_copies_and_pickles_of_frozen_slotted_records_round_trip() -> None:
    point = Point(1, 2, ["a"], "k")
    for made in (copy.copy(point), copy.deepcopy(point), pickle.loads(pickle.dumps(point))):
        assert made == point and made.tags == ["a"] and made.secret == "k"
    assert copy.deepcopy(point).tags is not point.tags


def test_without_slots_the_instance_dict_and_class_defaults_stay() -> None:
    loose = Loose(1)
    assert loose.__dict__ == {"a": 1, "b": 2} and Loose.b == 2
    with pytest.raises(FrozenRecordError):
        loose.a = 3
    assert copy.copy(loose) == loose and pickle.loads(pickle.dumps(loose)) == loose


def test_what_the_class_body_defines_is_kept() -> None:
    @record
    class Custom:
        a: int
        b: int = 1

        def __init__(self, a: int) -> None:
            object.__setattr__(self, "a", a)
            object.__setattr__(self, "b", a * 2)

        def __repr__(self) -> str:
            return f"custom {self.a}"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Custom) and other.a == self.a

        def __hash__(self) -> int:
            return self.a

    assert Custom(2).b == 4 and repr(Custom(2)) == "custom 2"
    assert Custom(3) == Custom(3) and hash(Custom(3)) == 3


def test_class_vars_are_not_fields_and_super_still_works_in_slotted_methods() -> None:
    @record
    class WithClassVar:
        limit: ClassVar[int] = 5
        value: int

        def describe(self) -> str:
            return super().__repr__().split(" object")[0] + f" {self.limit}"

    assert [f.name for f in fields(WithClassVar)] == ["value"]

    class ClassVarLike:  # a type whose name only starts like the marker
        pass

    @record
    class NamedLikeOne:
        value: ClassVarLike
        limit: typing.ClassVar[int] = 1

    assert [f.name for f in fields(NamedLikeOne)] == ["value"]
    with pytest.raises(TypeError, match="InitVar"):

        @record
        class WithInitVar:
            seed: dataclasses.InitVar[int]

    assert WithClassVar(1).describe().endswith("WithClassVar 5")


def test_shapes_shared_between_classes_keep_each_classes_own_names() -> None:
    @record
    class First:
        a: int
        b: str = "x"

    @record
    class Second:
        left: int
        right: str = "y"

    assert Second(right="r", left=1) == Second(1, "r")
    assert repr(Second(1)).endswith("<locals>.Second(left=1, right='y')")
    assert First(b="q", a=2).b == "q"
    assert list(inspect.signature(Second).parameters) == ["left", "right"]
    with pytest.raises(TypeError, match="'a'"):
        Second(a=1)  # type: ignore[call-arg]


def test_a_record_that_contains_itself_repr_shows_the_recursion() -> None:
    box = Counter()
    box.items = {"me": box}  # type: ignore[dict-item]
    assert repr(box) == "Counter(count=0, items={'me': ...})"


def test_match_statements_use_the_init_fields() -> None:
    match Point(3, 4):
        case Point(x, y):
            assert (x, y) == (3, 4)
        case _:
            pytest.fail("no match")


def test_definitions_the_dataclass_refuses_are_refused() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class MutableDefault:
            items: list[int] = []  # the mistake under test

    with pytest.raises(TypeError, match="non-default argument 'b' follows default"):

        @record
        class Order:
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="no type annotation"):

        @record
        class Unannotated:
            a = field(default=1)

    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=list)
    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Point):
            z: int = 0


def test_init_eq_and_hash_are_made_at_first_use_and_look_real_before() -> None:
    @record
    class Late:
        a: int
        b: tuple[int, ...] = ()

    assert type(Late.__dict__["__init__"]).__name__ == "LazyInit"
    assert str(inspect.signature(Late)) == "(a: 'int', b: 'tuple[int, ...]' = ()) -> None"
    assert inspect.isfunction(Late.__dict__["__init__"])  # the lookup put the real one there

    @record
    class Later:
        a: int

    first = Later(1)  # an instance being made compiles it too
    assert inspect.isfunction(Later.__dict__["__init__"]) and first.a == 1
    stub_eq, stub_hash = Later.__dict__["__eq__"], Later.__dict__["__hash__"]
    assert first == Later(1) and hash(first) == hash((1,))
    assert Later.__dict__["__eq__"] is not stub_eq and Later.__dict__["__hash__"] is not stub_hash
    assert first != Later(2) and Later(1) == first


def test_records_loads_neither_dataclasses_nor_inspect() -> None:
    code = (
        "import sys, guestagent.records as r\n"
        "@r.record\nclass A:\n    x: int\n"
        "print(sorted(m for m in ('dataclasses', 'inspect') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
