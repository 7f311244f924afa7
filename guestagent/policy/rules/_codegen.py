"""Writing an input schema out as one Python function (rules/_input.py declares the schemas).

Checking a request's shape is the first cost of every decision, and a schema is fixed at
import: so each one is turned, once, into a straight-line function with its nested maps
inlined, no loop over the declaration and no call per field. Each field kind writes its own
lines (the `emit` methods in rules/_input.py); this module holds the text, names the
constants the text uses, and compiles it. A failure raises BadInput naming the place; the
place's text is built only then (`place` arguments are expressions evaluated on failure).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.policy.rules._common import BadInput

__all__ = ["Code", "index_of", "place"]


def place(prefix: str, field: str) -> str:
    """`field` inside `prefix`: "user" + "uid" -> "user.uid", "mounts" + "[2]" -> "mounts[2]"."""
    if not field:
        return prefix
    if not prefix:
        return field
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def index_of(items: list[Any], item: Any) -> str:
    """ "[i]" for the item (by identity) of a list, for naming a failure inside it."""
    return f"[{next(i for i, x in enumerate(items) if x is item)}]"


def _bad(prefix: str, field: str, message: str) -> BadInput:
    return BadInput(place(prefix, field), message)


class Code:
    """The text of one check function `check(value, texts)` being written."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "BadInput": BadInput,
            "Mapping": Mapping,
            "_bad": _bad,
            "_place": place,
            "_index": index_of,
        }
        self.indent = 1
        self._count = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def fail(self, where: str, field: str, message: str) -> None:
        """The raise under an `if` just written: BadInput at place(where, field)."""
        raise_it = f"raise _bad({where}, {field!r}, {message!r})"
        self.lines.append("    " * (self.indent + 1) + raise_it)

    def var(self) -> str:
        self._count += 1
        return f"v{self._count}"

    def constant(self, value: Any) -> str:
        """A name for `value` in the function's globals."""
        self._count += 1
        name = f"c{self._count}"
        self.names[name] = value
        return name

    def build(self) -> Callable[[Any, list[Any]], None]:
        source = "def check(value, texts):\n" + "\n".join(self.lines or ["    pass"]) + "\n"
        namespace = dict(self.names)
        exec(compile(source, "<input schema>", "exec"), namespace)
        check = namespace["check"]
        check.source = source  # for reading what a schema became
        return check
