"""Enforcement inputs: one schema per point, each kind of field checked once, places named.

A Schema lists an input's fields and the kind of each. It is written out once, at its first use,
as one function (rules/_codegen.py): nested maps inline, one line or two per field, the
string fields fetched by one C call. Checking walks the input once, and every string of the
input is gathered into one list that is checked once at the end (exact str, no NUL, at
most MAX_FIELD_TEXT characters).

A structural check raises where it fails, naming the field (names of nested places are
built only then). Only when the bulk string check fails are the strings checked again, one
field then one item at a time, to name the first bad one: the same check, on less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import countOf, itemgetter
from typing import Any

from guestagent.policy.rules._codegen import Code, place
from guestagent.policy.rules._common import BadInput

__all__ = [
    "BOOL",
    "CAPS",
    "CAP_SET_NAMES",
    "EMPTY",
    "MAX_FIELD_TEXT",
    "MAX_LIST",
    "STR",
    "STR_LIST",
    "U32",
    "U64",
    "USER",
    "IntIn",
    "ListOf",
    "OptionalStr",
    "OptionalU32",
    "Schema",
    "StrMap",
    "U32List",
    "check_input",
    "check_str",
    "texts_ok",
]

MAX_FIELD_TEXT = 65536  # characters of any one input string
MAX_LIST = 4096  # items of any one input list
CAP_SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")
_U32 = 2**32
_U64 = 2**64
_TEXT = f"expected a string without NUL of at most {MAX_FIELD_TEXT} characters"


def texts_ok(texts: list[Any]) -> bool:
    """Every item an exact str, without NUL, of at most MAX_FIELD_TEXT characters."""
    if countOf(map(type, texts), str) != len(texts):
        return False
    joined = "".join(texts)
    if "\x00" in joined:
        return False
    return len(joined) <= MAX_FIELD_TEXT or max(map(len, texts)) <= MAX_FIELD_TEXT


class Kind:
    """A plain field kind (a string, a list of strings, a boolean, an integer)."""

    __slots__ = ("_lines", "expected")

    def __init__(self, expected: str, lines: Callable[[Code, str, str, str], None]) -> None:
        self.expected = expected
        self._lines = lines

    def emit(self, code: Code, item: str, where: str, field: str) -> None:
        self._lines(code, item, where, field)


def _str_lines(code: Code, item: str, where: str, field: str) -> None:
    code.line(f"texts.append({item})")  # checked with every other string, at the end


def _str_list_lines(code: Code, item: str, where: str, field: str) -> None:
    x = code.var()
    code.line(f"{x} = {item}")
    code.line(f"if type({x}) is not list or len({x}) > {MAX_LIST}:")
    code.fail(where, field, STR_LIST.expected)
    code.line(f"texts += {x}")


def _bool_lines(code: Code, item: str, where: str, field: str) -> None:
    code.line(f"if type({item}) is not bool:")
    code.fail(where, field, BOOL.expected)


def _int_lines(bound: int) -> Callable[[Code, str, str, str], None]:
    def lines(code: Code, item: str, where: str, field: str) -> None:
        x = code.var()
        code.line(f"{x} = {item}")
        code.line(f"if type({x}) is not int or not 0 <= {x} < {bound}:")
        code.fail(where, field, U32.expected if bound == _U32 else U64.expected)

    return lines


STR = Kind(_TEXT, _str_lines)  # its strings join the bulk text check
STR_LIST = Kind(f"expected a list of at most {MAX_LIST} strings", _str_list_lines)
BOOL = Kind("expected a boolean", _bool_lines)
U32 = Kind("expected an integer in [0, 2**32)", _int_lines(_U32))
U64 = Kind("expected an integer in [0, 2**64)", _int_lines(_U64))


class Schema:
    """A map with exactly these fields. `check(value, texts)` raises BadInput naming the
    place relative to the map ("" for the map itself) and adds the strings it holds to
    `texts`. It is this declaration written out as code once (rules/_codegen.py): nested
    maps inline, the string fields fetched by one C call."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)
        # Written out and compiled at its first use, not at import: a schema inlined into
        # another is never called itself, and the agent starts before it checks a request.
        self.check: Callable[[Any, list[Any]], None] = _CompiledOnFirstUse(self)

    def emit(self, code: Code, item: str, where: str, field: str) -> None:
        value = item
        if not item.isidentifier():
            value = code.var()
            code.line(f"{value} = {item}")
        here = f"_place({where}, {field!r})" if field else where
        code.line(f"if type({value}) is not dict and not isinstance({value}, Mapping):")
        code.fail(where, field, "expected a map")
        # A dict's keys are the fields when there are as many and each is one: one C call
        # on a frozenset, half the cost of comparing keys views (kept for other mappings).
        count, names = len(self.fields), code.constant(frozenset(self.fields))
        same = f"len({value}) == {count} and {names}.issuperset({value})"
        keys = code.constant(self.fields.keys())
        code.line(f"if not ({same} if type({value}) is dict else {value}.keys() == {keys}):")
        code.line(f"    raise {code.constant(self._wrong_keys)}({value}, {here})")
        strs = tuple(k for k, f in self.fields.items() if f is STR)
        if len(strs) > 1:  # one C call fetches them all
            code.line(f"texts += {code.constant(itemgetter(*strs))}({value})")
        for key, kind in self.fields.items():
            if kind is not STR or len(strs) == 1:
                kind.emit(code, f"{value}[{key!r}]", here, key)

    def _wrong_keys(self, value: Mapping[Any, Any], prefix: str) -> BadInput:
        unknown = sorted(str(k) for k in value if k not in self.fields)
        if unknown:
            return BadInput(place(prefix, unknown[0]), "unknown field")
        missing = min(k for k in self.fields if k not in value)
        return BadInput(place(prefix, missing), "required field is missing")

    def strings(self, value: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
        """(field, the strings it holds) for each field, for naming a bad string: the
        schema's own check run on one field at a time."""
        found = []
        for key, kind in self.fields.items():
            texts: list[Any] = []
            Schema({key: kind}).check({key: value[key]}, texts)
            found.append((key, texts))
        return found


class _CompiledOnFirstUse:
    """A schema's `check` until it is first used (called, or its source read): then the
    schema's checker is compiled and takes its place, a plain attribute on the hot path."""

    __slots__ = ("schema",)

    def __init__(self, schema: Schema) -> None:
        self.schema = schema

    def __call__(self, value: Any, texts: list[Any]) -> None:
        self.compiled()(value, texts)

    @property
    def source(self) -> str:
        return self.compiled().source  # type: ignore[attr-defined]

    def compiled(self) -> Callable[[Any, list[Any]], None]:
        if self.schema.check is self:
            code = Code()
            self.schema.emit(code, "value", "''", "")
            self.schema.check = code.build()
        return self.schema.check


class ListOf:
    """A list of at most `max_items` maps of `schema`."""

    def __init__(self, schema: Schema, max_items: int = MAX_LIST) -> None:
        self.schema = schema
        self.max_items = max_items

    def emit(self, code: Code, item: str, where: str, field: str) -> None:
        items, each = code.var(), code.var()
        code.line(f"{items} = {item}")
        code.line(f"if type({items}) is not list or len({items}) > {self.max_items}:")
        code.fail(where, field, f"expected a list of at most {self.max_items} maps")
        code.line(f"for {each} in {items}:")
        code.indent += 1
        self.schema.emit(code, each, f"_place({where}, {field!r} + _index({items}, {each}))", "")
        code.indent -= 1


class StrMap:
    """A map of strings to strings."""

    @staticmethod
    def emit(code: Code, item: str, where: str, field: str) -> None:
        x = code.var()
        code.line(f"{x} = {item}")
        code.line(f"if type({x}) is not dict or len({x}) > {MAX_LIST}:")
        code.fail(where, field, f"expected a map of at most {MAX_LIST} strings")
        code.line(f"texts += {x}")
        code.line(f"texts += {x}.values()")


class U32List:
    """A list of integers in [0, 2**32)."""

    @staticmethod
    def emit(code: Code, item: str, where: str, field: str) -> None:
        x, number = code.var(), code.var()
        expected = "expected a list of integers in [0, 2**32)"
        code.line(f"{x} = {item}")
        code.line(f"if type({x}) is not list or len({x}) > {MAX_LIST}:")
        code.fail(where, field, expected)
        code.line(f"for {number} in {x}:")
        code.line(f"    if type({number}) is not int or not 0 <= {number} < {_U32}:")
        code.indent += 1
        code.fail(where, field, expected)
        code.indent -= 1


class IntIn:
    """An integer in [lo, hi], or null when `optional`."""

    def __init__(self, lo: int, hi: int, optional: bool = False) -> None:
        self.lo, self.hi, self.optional = lo, hi, optional
        self.expected = f"expected {'null or ' if optional else ''}an integer in [{lo}, {hi}]"

    def emit(self, code: Code, item: str, where: str, field: str) -> None:
        x = code.var()
        code.line(f"{x} = {item}")
        wrong = f"type({x}) is not int or not {self.lo} <= {x} <= {self.hi}"
        code.line(f"if {x} is not None and ({wrong}):" if self.optional else f"if {wrong}:")
        code.fail(where, field, self.expected)


OptionalU32 = IntIn(0, _U32 - 1, optional=True)  # null or an integer in [0, 2**32)
OptionalU32.expected = U32.expected


class OptionalStr:
    """null or a string."""

    @staticmethod
    def emit(code: Code, item: str, where: str, field: str) -> None:
        x = code.var()
        code.line(f"{x} = {item}")
        code.line(f"if {x} is not None:")
        code.line(f"    texts.append({x})")


USER = Schema({"uid": U32, "gid": U32, "additional_gids": U32List})
CAPS = Schema(dict.fromkeys(CAP_SET_NAMES, STR_LIST))
EMPTY = Schema({})


def check_str(value: Any, name: str) -> None:
    """One string on its own: the bulk check of a single item."""
    if not texts_ok([value]):
        raise BadInput(name, _TEXT)


def check_input(request: Any, schema: Schema) -> None:
    """Raise BadInput naming the place unless `request` has exactly the schema's shape."""
    texts: list[Any] = []
    try:
        schema.check(request, texts)
    except BadInput as exc:
        raise BadInput(exc.field or "input", exc.message) from None
    if not texts_ok(texts):  # name the first field, then item, holding a bad string
        for key, held in schema.strings(request):
            if not texts_ok(held):
                flat = type(request[key]) is list and len(held) == len(request[key])
                bad = next(i for i, text in enumerate(held) if not texts_ok([text]))
                raise BadInput(f"{key}[{bad}]" if flat else key, _TEXT)
        raise BadInput("input", _TEXT)  # not reached: some field holds the bad string
