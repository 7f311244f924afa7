"""Records: the package's value classes, defined in a fraction of a dataclass's cost.

`@record` makes a class frozen, slotted, comparable and hashable from its annotations, as
`@dataclass(frozen=True, slots=True)` does; `@record(mutable=True)` leaves it assignable and
unhashable (`@dataclass(slots=True)`); `kw_only=True` makes every parameter keyword-only;
`slots=False` keeps the instance dict (for classes whose hand-written `__init__` writes it).
`field()`, `fields()`, `replace()` and `__post_init__` behave as in `dataclasses`, and repr
text, equality, hashing, copying and pickling match what the dataclass twin gives (the
tests check that for every record in the package).

Why not `dataclasses`: on CPython 3.11 (the guest's) it compiles about six methods per
class with `exec` and, for slots, builds the class twice, about 1 ms a frozen class; the
agent defines dozens before it is ready, and the guest runs under software emulation. Here
`__repr__`, the frozen `__setattr__`/`__delattr__` and the pickling state are shared
functions driven by per-class tuples of names; `__init__`, `__eq__` and `__hash__` (which
must be as fast as the dataclass's, on the policy's hot paths) are compiled once per shape
and renamed per class (record_code.py), each at its first use, and `__init__` keeps its
real signature. A slotted record's class is still built twice: slots are only taken at
class creation.

What is not supported is refused: inheritance between records, `InitVar`, field-level
`kw_only`, ordering. A `ClassVar` annotation is not a field, as in `dataclasses`.
"""

from __future__ import annotations

from _thread import get_ident
from collections.abc import Callable
from typing import Any, TypeVar

from guestagent.record_code import MISSING, LazyInit, make_eq, make_hash

__all__ = ["MISSING", "Field", "FrozenRecordError", "field", "fields", "record", "replace"]

T = TypeVar("T")

_object_setattr = object.__setattr__


class FrozenRecordError(AttributeError):
    """Assigning to or deleting a field of a frozen record (dataclasses' FrozenInstanceError)."""


class Field:
    """One field: its name, annotation (a string here) and how the generated methods use it."""

    __slots__ = ("compare", "default", "default_factory", "init", "name", "repr", "type")

    def __init__(
        self,
        default: Any,
        default_factory: Any,
        init: bool,
        repr: bool,
        compare: bool,
    ) -> None:
        self.name: str = ""
        self.type: Any = None
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return (
            f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, "
            f"default_factory={self.default_factory!r}, init={self.init!r}, "
            f"repr={self.repr!r}, compare={self.compare!r})"
        )


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | Any = MISSING,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field with a default, a default factory, or left out of init, repr or comparison."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory, init, repr, compare)


def fields(class_or_instance: Any) -> tuple[Field, ...]:
    """The record's fields in definition order."""
    try:
        return class_or_instance.__record_fields__  # type: ignore[no-any-return]
    except AttributeError:
        raise TypeError("must be called with a record type or instance") from None


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record `obj` with `changes` applied, through its `__init__` (as
    dataclasses.replace: unknown names raise TypeError, init=False fields ValueError)."""
    try:
        record_fields = obj.__record_fields__  # type: ignore[attr-defined]
    except AttributeError:
        raise TypeError("replace() should be called on record instances") from None
    for f in record_fields:
        if not f.init:
            if f.name in changes:
                raise ValueError(
                    f"field {f.name} is declared with init=False, it cannot be specified "
                    "with replace()"
                )
            continue
        if f.name not in changes:
            changes[f.name] = getattr(obj, f.name)
    return obj.__class__(**changes)


# The shared methods. `__eq__` and `__hash__` start as stubs that make the class's own
# (record_code.py: as fast as the dataclass's) at their first call and hand over to it.


def _owner(cls: type, name: str, stub: Any) -> type:
    return next(klass for klass in cls.__mro__ if klass.__dict__.get(name) is stub)


def _first_eq(self: Any, other: Any) -> Any:
    cls = _owner(self.__class__, "__eq__", _first_eq)
    eq = make_eq(cls, cls.__record_compared__)  # type: ignore[attr-defined]
    cls.__eq__ = eq  # type: ignore[method-assign]
    return eq(self, other)


def _first_hash(self: Any) -> int:
    cls = _owner(self.__class__, "__hash__", _first_hash)
    hash_ = make_hash(cls, cls.__record_compared__)  # type: ignore[attr-defined]
    cls.__hash__ = hash_  # type: ignore[method-assign]
    return hash_(self)


_repr_running: set[tuple[int, int]] = set()


def _repr(self: Any) -> str:
    key = (id(self), get_ident())
    if key in _repr_running:
        return "..."  # a record that contains itself (reprlib.recursive_repr's answer)
    _repr_running.add(key)
    try:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_repr__)
    finally:
        _repr_running.discard(key)
    return f"{self.__class__.__qualname__}({shown})"


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenRecordError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in self.__record_names__]


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(self.__record_names__, state, strict=True):
        _object_setattr(self, name, value)


def record(
    cls: type[T] | None = None,
    /,
    *,
    mutable: bool = False,
    kw_only: bool = False,
    slots: bool = True,
) -> Any:
    """Make `cls` a record (see the module docstring); usable bare or with keywords."""

    def wrap(cls: type[T]) -> type[T]:
        return _build(cls, frozen=not mutable, kw_only=kw_only, slots=slots)

    return wrap if cls is None else wrap(cls)


def _build(cls: type[T], *, frozen: bool, kw_only: bool, slots: bool) -> type[T]:
    body = cls.__dict__
    if any(hasattr(base, "__record_fields__") for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__name__}: a record cannot inherit from a record")
    if slots and "__slots__" in body:
        raise TypeError(f"{cls.__name__} already specifies __slots__")
    record_fields = _collect(cls, body)
    for f in record_fields:
        if f.name == "self":
            raise TypeError(f"{cls.__name__}: a field cannot be named 'self'")
    _check_defaults(record_fields, kw_only)

    names = tuple(f.name for f in record_fields)
    namespace = dict(body)
    for f in record_fields:
        namespace.pop(f.name, None)
        if not slots and f.default is not MISSING:
            namespace[f.name] = f.default  # the class attribute holds it, as in dataclasses
    if slots:
        namespace.pop("__dict__", None)
        namespace.pop("__weakref__", None)
        namespace["__slots__"] = names
        namespace["__qualname__"] = cls.__qualname__
    namespace["__record_fields__"] = record_fields
    namespace["__record_params__"] = {"frozen": frozen, "kw_only": kw_only, "slots": slots}
    namespace["__record_names__"] = names
    namespace["__record_repr__"] = tuple(f.name for f in record_fields if f.repr)
    _add_comparison(namespace, frozen)
    namespace.setdefault("__repr__", _repr)
    namespace.setdefault(
        "__match_args__", () if kw_only else tuple(f.name for f in record_fields if f.init)
    )
    lazy_init = None
    if "__init__" not in body:
        namespace["__init__"] = lazy_init = LazyInit(
            record_fields, frozen=frozen, slots=slots, kw_only=kw_only
        )
    if frozen:
        for name, method in (("__setattr__", _frozen_setattr), ("__delattr__", _frozen_delattr)):
            if name in body:
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
            namespace[name] = method
        if slots:
            namespace.setdefault("__getstate__", _getstate)
            namespace.setdefault("__setstate__", _setstate)

    if slots:
        new = type(cls)(cls.__name__, cls.__bases__, namespace)
        _rebind_class_cells(namespace, cls, new)
    else:
        new = cls
        for name in names:
            if name in body and name not in namespace:
                delattr(new, name)  # a Field without a default (factory or none)
        for name, value in namespace.items():
            if body.get(name, MISSING) is not value:
                setattr(new, name, value)
    if lazy_init is not None:
        lazy_init.owner = new
    return new


def _collect(cls: type, body: Any) -> tuple[Field, ...]:
    annotations = body.get("__annotations__", {})
    collected = []
    for name, annotation in annotations.items():
        value = body.get(name, MISSING)
        marker = _marker(annotation)
        if marker == "ClassVar":
            if isinstance(value, Field):
                raise TypeError(f"field {name} is a ClassVar but specifies a record field")
            continue
        if marker == "InitVar":
            raise TypeError(f"{cls.__name__}.{name}: InitVar is not supported by records")
        f = value if isinstance(value, Field) else Field(value, MISSING, True, True, True)
        f.name = name
        f.type = annotation
        if f.default is not MISSING and f.default.__class__.__hash__ is None:
            raise ValueError(
                f"mutable default {type(f.default)} for field {name} is not allowed: "
                "use default_factory"
            )
        collected.append(f)
    for name, value in body.items():
        if isinstance(value, Field) and name not in annotations:
            raise TypeError(f"{name!r} is a field but has no type annotation")
    return tuple(collected)


def _marker(annotation: Any) -> str:
    """ "ClassVar" or "InitVar" if the annotation is one (`ClassVar[int]`, `typing.ClassVar`,
    `dataclasses.InitVar[str]`, as a string or not), else ""."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    name = text.split("[", 1)[0].strip().rsplit(".", 1)[-1]
    return name if name in ("ClassVar", "InitVar") else ""


def _check_defaults(record_fields: tuple[Field, ...], kw_only: bool) -> None:
    if kw_only:
        return
    seen_default = False
    for f in record_fields:
        if not f.init:
            continue
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")


def _add_comparison(namespace: dict[str, Any], frozen: bool) -> None:
    """`__eq__` over the compared fields; `__hash__` too if frozen, else None (dataclasses'
    rule with eq=True; an `__eq__` or `__hash__` the class body defines is kept)."""
    namespace["__record_compared__"] = tuple(
        f.name for f in namespace["__record_fields__"] if f.compare
    )
    had_eq = "__eq__" in namespace
    explicit_hash = namespace.get("__hash__", MISSING)
    has_explicit_hash = not (explicit_hash is MISSING or (explicit_hash is None and had_eq))
    if not had_eq:
        namespace["__eq__"] = _first_eq
    if not has_explicit_hash:
        namespace["__hash__"] = _first_hash if frozen else None


def _rebind_class_cells(namespace: dict[str, Any], old: type, new: type) -> None:
    """Point the `__class__` cells (zero-argument super()) of the methods at the new class."""
    for value in namespace.values():
        if isinstance(value, (classmethod, staticmethod)):
            value = value.__func__
        functions = (
            (value.fget, value.fset, value.fdel) if isinstance(value, property) else (value,)
        )
        for function in functions:
            code = getattr(function, "__code__", None)
            if code is None or "__class__" not in code.co_freevars:
                continue
            cell = function.__closure__[code.co_freevars.index("__class__")]
            if cell.cell_contents is old:
                cell.cell_contents = new
