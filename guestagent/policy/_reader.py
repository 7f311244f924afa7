"""Strict reading of decoded JSON: unknown fields and wrong types are errors naming the path.

Every accessor takes the JSON path of the value it reads (`$.containers[0].command`), so a
policy author is told exactly where the document is wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from guestagent.errors import AgentError, ErrorCode
from guestagent.printable import ARGV_CONTROLS, first_control

__all__ = ["ARGV_CONTROLS", "REQUIRED", "Obj", "PolicyFormatError", "expect_int", "expect_str"]

REQUIRED: Any = object()


class PolicyFormatError(AgentError):
    """The policy document is malformed; `path` is the JSON path of the offending value."""

    code = ErrorCode.POLICY_INVALID

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}", details={"path": path})
        self.path = path


def _type_name(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def expect_str(
    value: Any,
    path: str,
    *,
    max_len: int = 4096,
    allow_empty: bool = True,
    controls: str = "",
) -> str:
    """A string; control characters are refused except those in `controls`."""
    if not isinstance(value, str):
        raise PolicyFormatError(path, f"expected a string, got {_type_name(value)}")
    if len(value) > max_len:
        raise PolicyFormatError(path, f"string longer than {max_len} characters")
    if not allow_empty and not value:
        raise PolicyFormatError(path, "must not be empty")
    where = first_control(value, controls)
    if where is not None:
        raise PolicyFormatError(path, f"must not contain control characters ({where})")
    return value


def expect_int(value: Any, path: str, *, lo: int = 0, hi: int = 2**32 - 1) -> int:
    # bool is an int subclass in Python: `true` must never pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyFormatError(path, f"expected an integer, got {_type_name(value)}")
    if not lo <= value <= hi:
        raise PolicyFormatError(path, f"{value} is outside [{lo}, {hi}]")
    return value


class Obj:
    """A JSON object whose keys must all be in `known`."""

    def __init__(self, value: Any, path: str, known: frozenset[str] | set[str]) -> None:
        if not isinstance(value, dict):
            raise PolicyFormatError(path, f"expected an object, got {_type_name(value)}")
        for key in value:
            if key not in known:
                raise PolicyFormatError(f"{path}.{key}", "unknown field")
        self.value = value
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def _get(self, key: str, default: Any) -> Any:
        if key in self.value:
            return self.value[key]
        if default is REQUIRED:
            raise PolicyFormatError(self.at(key), "required field is missing")
        return default

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        return self._get(key, default)

    def str(self, key: str, default: Any = REQUIRED, **limits: Any) -> Any:
        value = self._get(key, default)
        return value if value is default else expect_str(value, self.at(key), **limits)

    def bool(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise PolicyFormatError(self.at(key), f"expected a boolean, got {_type_name(value)}")
        return value

    def int(self, key: str, default: Any = REQUIRED, **bounds: Any) -> Any:
        value = self._get(key, default)
        return value if value is default else expect_int(value, self.at(key), **bounds)

    def list(
        self, key: str, default: Any = REQUIRED, *, max_items: int = 1024
    ) -> Iterator[tuple[Any, str]]:
        """Yield (item, path) pairs; a missing optional list yields `default`'s items."""
        value = self._get(key, default)
        if value is None and default is None:
            return iter(())
        if not isinstance(value, list):
            raise PolicyFormatError(self.at(key), f"expected an array, got {_type_name(value)}")
        if len(value) > max_items:
            raise PolicyFormatError(self.at(key), f"more than {max_items} items")
        return ((item, f"{self.at(key)}[{i}]") for i, item in enumerate(value))

    def str_list(self, key: str, default: Any = REQUIRED, **limits: Any) -> tuple[str, ...]:
        max_items = limits.pop("max_items", 1024)
        items = self.list(key, default, max_items=max_items)
        return tuple(expect_str(item, path, **limits) for item, path in items)
