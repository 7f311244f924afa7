"""Declarative argument schemas: every operation states its fields; nothing else gets in.

A schema maps field names to `Field`s. Validation returns a new dict with defaults filled
in, and raises `InvalidArgumentError` (wrong type or value, naming the field) or an
`unknown_field` error. Bytes and str are distinct: a field typed bytes never accepts str.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from guestagent.errors import ErrorCode, InvalidArgumentError
from guestagent.records import record

__all__ = ["REQUIRED", "Field", "Schema", "identifier", "optional_identifier", "validate_args"]

REQUIRED: Any = object()
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _check_identifier(value: Any) -> str | None:
    if value is None or _IDENTIFIER.fullmatch(value):
        return None
    return "must be 1-128 characters of [A-Za-z0-9_.-], starting with a letter or digit"


@record
class Field:
    """One argument: its type(s), default (REQUIRED if none), and an optional value check."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None  # returns a complaint, or None
    items: type | None = None  # element type, for lists
    max_len: int | None = None  # for str, bytes and lists

    def validate(self, name: str, value: Any) -> Any:
        # bool is an int subclass: an int field must not silently take True.
        if type(value) is bool and bool not in self.types:
            raise _type_error(name, self.types, value)
        if not isinstance(value, self.types):
            raise _type_error(name, self.types, value)
        if self.max_len is not None and hasattr(value, "__len__") and len(value) > self.max_len:
            raise InvalidArgumentError(
                f"argument {name!r} is longer than {self.max_len}", details={"field": name}
            )
        if self.items is not None and isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, self.items) or (
                    type(item) is bool and self.items is not bool
                ):
                    raise InvalidArgumentError(
                        f"argument {name}[{index}] must be {self.items.__name__}, "
                        f"got {type(item).__name__}",
                        details={"field": f"{name}[{index}]"},
                    )
        if self.check is not None:
            complaint = self.check(value)
            if complaint:
                raise InvalidArgumentError(
                    f"argument {name!r}: {complaint}", details={"field": name}
                )
        return value


Schema = Mapping[str, Field]


def _type_error(name: str, types: tuple[type, ...], value: Any) -> InvalidArgumentError:
    wanted = " or ".join("nil" if t is type(None) else t.__name__ for t in types)
    return InvalidArgumentError(
        f"argument {name!r} must be {wanted}, got {type(value).__name__}",
        details={"field": name, "expected": wanted, "got": type(value).__name__},
    )


def validate_args(schema: Schema, args: Mapping[str, Any]) -> dict[str, Any]:
    unknown = [key for key in args if key not in schema]
    if unknown:
        raise InvalidArgumentError(
            f"unknown arguments: {sorted(unknown)}; accepted: {sorted(schema)}",
            code=ErrorCode.UNKNOWN_FIELD,
            details={"fields": sorted(unknown), "accepted": sorted(schema)},
        )
    validated: dict[str, Any] = {}
    for name, spec in schema.items():
        if name in args:
            validated[name] = spec.validate(name, args[name])
        elif spec.default is REQUIRED:
            raise InvalidArgumentError(
                f"missing required argument {name!r}", details={"field": name}
            )
        else:
            validated[name] = spec.default
    return validated


def identifier() -> Field:
    """A container, exec or layer id: safe as a path component and a device-mapper name."""
    return Field((str,), check=_check_identifier)


def optional_identifier() -> Field:
    return Field((str, type(None)), default=None, check=_check_identifier)
