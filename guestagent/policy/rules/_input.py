"""Enforcement inputs: one schema per point, each kind of field checked once, places named.

A Schema lists an input's fields and the kind of each. Checking walks the input once: the
fields of each plain kind (strings, string lists, booleans, integers) in one loop, nested
fields (user, capability sets, mounts, maps) by their own check, and every string of the
input is gathered into one list that is
checked once at the end (exact str, no NUL, at most MAX_FIELD_TEXT characters).

A structural check raises where it fails, naming the field (names of nested places are
built only then). Only when the bulk string check fails are the strings checked again, one
field then one item at a time, to name the first bad one: the same check, on less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import countOf, itemgetter
from typing import Any

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


def is_u32(value: Any) -> bool:
    return type(value) is int and 0 <= value < _U32


def is_u64(value: Any) -> bool:
    return type(value) is int and 0 <= value < _U64


class Kind:
    """A plain field kind: its fields are checked together, in Schema.check."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        self.expected = expected


STR = Kind(_TEXT)  # its strings join the bulk text check
STR_LIST = Kind(f"expected a list of at most {MAX_LIST} strings")
BOOL = Kind("expected a boolean")
U32 = Kind("expected an integer in [0, 2**32)")
U64 = Kind("expected an integer in [0, 2**64)")


def _join(prefix: str, field: str) -> str:
    if not field:
        return prefix
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def _values(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]] | None:
    """A C-level getter of these fields' values as one tuple (None when there are none)."""
    if not keys:
        return None
    if len(keys) == 1:
        key = keys[0]
        return lambda value: (value[key],)
    return itemgetter(*keys)


class Schema:
    """A map with exactly these fields. `check` raises BadInput naming the place relative to
    the map ("" for the map itself) and adds the strings it holds to `texts`.

    The declaration is compiled once, here, into one check specialised to it: a getter per
    plain kind (one C call fetches all its fields), the nested checks in a tuple, and no
    loop over a kind the schema does not use. The place of a failure is found only then.
    """

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)
        self.check = self._compile()

    def _compile(self) -> Callable[[Any, list[Any]], None]:
        keys = self.fields.keys()
        of_kind = {
            kind: tuple(k for k, f in self.fields.items() if f is kind)
            for kind in (STR, STR_LIST, BOOL, U32, U64)
        }
        strs = _values(of_kind[STR])
        lists = of_kind[STR_LIST]
        bools, n_bools = _values(of_kind[BOOL]), len(of_kind[BOOL])
        u32s, u64s = _values(of_kind[U32]), _values(of_kind[U64])
        nested = tuple((k, f.check) for k, f in self.fields.items() if not isinstance(f, Kind))
        wrong_keys, wrong = self._wrong_keys, self._wrong_field

        def check(value: Any, texts: list[Any]) -> None:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise BadInput("", "expected a map")
            if value.keys() != keys:
                raise wrong_keys(value)
            if strs is not None:
                texts += strs(value)  # checked with every other string, at the end
            for key in lists:
                items = value[key]
                if type(items) is not list or len(items) > MAX_LIST:
                    raise wrong(value)
                texts += items
            if bools is not None and countOf(map(type, bools(value)), bool) != n_bools:
                raise wrong(value)
            if u32s is not None:
                for number in u32s(value):
                    if type(number) is not int or not 0 <= number < _U32:
                        raise wrong(value)
            if u64s is not None:
                for number in u64s(value):
                    if type(number) is not int or not 0 <= number < _U64:
                        raise wrong(value)
            for key, nested_check in nested:
                try:
                    nested_check(value[key], texts)
                except BadInput as exc:  # the name is built only for a refusal
                    raise BadInput(_join(key, exc.field), exc.message) from None

        return check

    def _wrong_keys(self, value: Mapping[Any, Any]) -> BadInput:
        unknown = sorted(str(k) for k in value if k not in self.fields)
        if unknown:
            return BadInput(unknown[0], "unknown field")
        missing = min(k for k in self.fields if k not in value)
        return BadInput(missing, "required field is missing")

    def _wrong_field(self, value: Mapping[str, Any]) -> BadInput:
        """The first plain field of `value` that is not of its kind (for a refusal)."""
        fits = {
            STR_LIST: lambda v: type(v) is list and len(v) <= MAX_LIST,
            BOOL: lambda v: type(v) is bool,
            U32: is_u32,
            U64: is_u64,
        }
        for key, field in self.fields.items():
            if field in fits and not fits[field](value[key]):
                return BadInput(key, field.expected)
        return BadInput("", "expected a map")  # not reached: the check found a bad field

    def strings(self, value: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
        """(field, the strings it holds) for each field, for naming a bad string."""
        found = []
        for key, field in self.fields.items():
            texts: list[Any] = []
            if field is STR:
                texts.append(value[key])
            elif field is STR_LIST:
                texts += value[key]
            elif not isinstance(field, Kind):
                field.check(value[key], texts)
            found.append((key, texts))
        return found


class ListOf:
    """A list of at most `max_items` maps of `schema`."""

    def __init__(self, schema: Schema, max_items: int = MAX_LIST) -> None:
        self.schema = schema
        self.max_items = max_items

    def check(self, value: Any, texts: list[Any]) -> None:
        if type(value) is not list or len(value) > self.max_items:
            raise BadInput("", f"expected a list of at most {self.max_items} maps")
        if not value:
            return
        check = self.schema.check
        for i, item in enumerate(value):
            try:
                check(item, texts)
            except BadInput as exc:
                raise BadInput(_join(f"[{i}]", exc.field), exc.message) from None


class StrMap:
    """A map of strings to strings."""

    @staticmethod
    def check(value: Any, texts: list[Any]) -> None:
        if type(value) is not dict or len(value) > MAX_LIST:
            raise BadInput("", f"expected a map of at most {MAX_LIST} strings")
        texts += value
        texts += value.values()


class U32List:
    """A list of integers in [0, 2**32)."""

    @staticmethod
    def check(value: Any, texts: list[Any]) -> None:
        if type(value) is not list or len(value) > MAX_LIST or not all(map(is_u32, value)):
            raise BadInput("", "expected a list of integers in [0, 2**32)")


class OptionalU32:
    """null or an integer in [0, 2**32)."""

    @staticmethod
    def check(value: Any, texts: list[Any]) -> None:
        if value is not None and not is_u32(value):
            raise BadInput("", U32.expected)


class IntIn:
    """An integer in [lo, hi], or null when `optional`."""

    def __init__(self, lo: int, hi: int, optional: bool = False) -> None:
        self.lo, self.hi, self.optional = lo, hi, optional
        self.expected = f"expected {'null or ' if optional else ''}an integer in [{lo}, {hi}]"

    def check(self, value: Any, texts: list[Any]) -> None:
        if value is None and self.optional:
            return
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise BadInput("", self.expected)


class OptionalStr:
    """null or a string."""

    @staticmethod
    def check(value: Any, texts: list[Any]) -> None:
        if value is not None:
            texts.append(value)


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
