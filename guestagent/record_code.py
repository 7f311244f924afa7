"""The generated methods of a record (records.py): compiled once per shape, renamed per class.

A record's `__init__` must keep its real signature (parameter names, defaults, keyword-only
marks: callers and tests rely on them, and dataclass-like TypeErrors for missing or
unexpected arguments come with it) and be as fast as a dataclass's. Compiling one per class
is what makes a dataclass costly to define, so the code is compiled per *shape* (what each
field does: required, default, factory, not in init; keyword-only; `__post_init__`) with
placeholder names, and each class gets a copy of that code object with its own parameter
names (`CodeType.replace`), its own defaults, and a globals dict holding its slot setters
and factories. The body refers to parameters by position and to helpers by shape-local
names, so the renamed code behaves exactly as if it had been compiled for the class.

`__eq__` and `__hash__` are made the same way (keyed by the number of compared fields,
attribute names renamed in `co_names`), at their first call (records.py): they are on the
policy's hot paths, and the interpreter's attribute caches make
`(self.a, self.b) == (other.a, other.b)` faster than any shared function reading the fields
by name, but most records are never compared or hashed before the agent is ready.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import CodeType, FunctionType
from typing import Any

__all__ = ["FACTORY", "MISSING", "LazyInit", "make_eq", "make_hash", "make_init"]


class _Sentinel:
    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


MISSING: Any = _Sentinel("MISSING")
# The default an __init__ signature shows for a default_factory field (as in dataclasses).
FACTORY: Any = _Sentinel("<factory>")

_object_setattr = object.__setattr__
_templates: dict[tuple[Any, ...], CodeType] = {}
_compared: dict[tuple[str, int], CodeType] = {}


class LazyInit:
    """A record's `__init__` until its first use: the first lookup (an instance being made,
    `cls.__init__`, `inspect.signature(cls)`) compiles it, puts it on the class in this
    stand-in's place and returns it, so nothing but that first lookup sees the stand-in. Most
    records the agent defines are not instantiated before it is ready."""

    __slots__ = ("fields", "frozen", "kw_only", "owner", "slots")

    def __init__(self, fields: Sequence[Any], *, frozen: bool, slots: bool, kw_only: bool):
        self.fields = fields
        self.frozen = frozen
        self.slots = slots
        self.kw_only = kw_only
        self.owner: type | None = None  # the record class, once built

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        owner = self.owner
        assert owner is not None, "a record's __init__ looked up before its class was built"
        init = make_init(
            owner, self.fields, frozen=self.frozen, slots=self.slots, kw_only=self.kw_only
        )
        type.__setattr__(owner, "__init__", init)
        return init if obj is None else init.__get__(obj, objtype)


def make_init(
    cls: type, fields: Sequence[Any], *, frozen: bool, slots: bool, kw_only: bool
) -> Callable[..., None]:
    """The `__init__` for record class `cls` (already built, with its slots if any)."""
    scope: dict[str, Any] = {"__name__": cls.__module__, "_F": FACTORY}
    kinds: list[str] = []
    params: list[str] = []
    defaults: list[Any] = []
    assigned: list[str] = []  # the names set by the body, in order
    for index, f in enumerate(fields):
        if f.default_factory is not MISSING:
            kind = "f" if f.init else "F"
            scope[f"_f{index}"] = f.default_factory
        elif f.default is not MISSING:
            kind = "d" if f.init else "D"
            scope[f"_d{index}"] = f.default
            if not f.init and not slots:
                kind = "n"  # the class attribute holds it, as in dataclasses
        else:
            kind = "p" if f.init else "n"
        if f.init:
            params.append(f.name)
            if kind != "p":
                defaults.append(FACTORY if kind == "f" else f.default)
        if kind != "n":
            assigned.append(f.name)
            if slots:
                scope[f"_s{index}"] = cls.__dict__[f.name].__set__  # the slot's own setter
        kinds.append(kind)
    post_init = "__post_init__" in cls.__dict__
    mode = "slot" if slots else ("object" if frozen else "attribute")
    # Without slots the body names the attributes itself: the names are part of the shape.
    names = () if slots else tuple(assigned)
    # A default is the function's, not the code's: required and defaulted share a shape.
    key = ("".join(kinds).replace("d", "p"), kw_only, post_init, mode, names)
    template = _templates.get(key)
    if template is None:
        template = _templates[key] = _compile(kinds, kw_only, post_init, mode, names)
    if not slots:
        scope["_object_setattr"] = _object_setattr
    code = template.replace(
        co_varnames=("self", *params), co_qualname=f"{cls.__qualname__}.__init__"
    )
    if kw_only:
        init = FunctionType(code, scope, "__init__", None, None)
        init.__kwdefaults__ = {
            f.name: FACTORY if f.default_factory is not MISSING else f.default
            for f in fields
            if f.init and (f.default is not MISSING or f.default_factory is not MISSING)
        } or None
    else:
        init = FunctionType(code, scope, "__init__", tuple(defaults) or None, None)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = {f.name: f.type for f in fields if f.init} | {"return": None}
    return init


def _compile(
    kinds: str, kw_only: bool, post_init: bool, mode: str, names: tuple[str, ...]
) -> CodeType:
    params: list[str] = []
    lines: list[str] = []
    assigned = iter(names)
    for index, kind in enumerate(kinds):
        arg = f"a{index}"
        if kind in "pdf":
            params.append(arg)
        if kind == "n":
            continue
        value = {
            "p": arg,
            "d": arg,
            "f": f"_f{index}() if {arg} is _F else {arg}",
            "D": f"_d{index}",
            "F": f"_f{index}()",
        }[kind]
        if mode == "slot":
            lines.append(f" _s{index}(self, {value})")
        elif mode == "object":
            lines.append(f" _object_setattr(self, {next(assigned)!r}, {value})")
        else:
            lines.append(f" self.{next(assigned)} = {value}")
    if post_init:
        lines.append(" self.__post_init__()")
    signature = ", ".join(["self", *(["*"] if kw_only and params else []), *params])
    source = f"def __init__({signature}):\n" + ("\n".join(lines) or " pass") + "\n"
    scope: dict[str, Any] = {}
    exec(compile(source, "<record __init__>", "exec"), scope)
    return scope["__init__"].__code__  # type: ignore[no-any-return]


def make_eq(cls: type, names: Sequence[str]) -> Callable[[Any, Any], Any]:
    """`__eq__` as the dataclass's: same class only, then the compared fields as tuples."""
    return _compared_function(cls, "__eq__", names, _EQ_SOURCE)


def make_hash(cls: type, names: Sequence[str]) -> Callable[[Any], int]:
    """`__hash__` as the dataclass's (frozen, eq): the hash of the compared fields' tuple."""
    return _compared_function(cls, "__hash__", names, _HASH_SOURCE)


_EQ_SOURCE = """def __eq__(self, other):
 if other.__class__ is self.__class__:
  return ({mine}) == ({theirs})
 return NotImplemented
"""
_HASH_SOURCE = """def __hash__(self):
 return hash(({mine}))
"""


def _compared_function(
    cls: type, name: str, fields: Sequence[str], source: str
) -> Callable[..., Any]:
    template = _compared.get((name, len(fields)))
    if template is None:
        placeholders = [_placeholder(i) for i in range(len(fields))]
        mine = "".join(f"self.{p}," for p in placeholders)
        theirs = "".join(f"other.{p}," for p in placeholders)
        scope: dict[str, Any] = {}
        text = source.format(mine=mine, theirs=theirs)
        exec(compile(text, "<record method>", "exec"), scope)
        template = _compared[(name, len(fields))] = scope[name].__code__
    rename = {_placeholder(i): field for i, field in enumerate(fields)}
    code = template.replace(
        co_names=tuple(rename.get(n, n) for n in template.co_names),
        co_qualname=f"{cls.__qualname__}.{name}",
    )
    function = FunctionType(code, {"__name__": cls.__module__}, name, None, None)
    function.__qualname__ = f"{cls.__qualname__}.{name}"
    return function


def _placeholder(index: int) -> str:
    return f"__record_field_{index}__"
