"""Text that is safe on a terminal: every unprintable character shown as an escape.

One implementation for every place that prints what someone else wrote (policy audits, the
console's tables, CLI error lines): C0/C1 controls, escape sequences, bidi overrides and
zero-width characters become `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`.
"""

from __future__ import annotations

import re

__all__ = ["ARGV_CONTROLS", "first_control", "printable"]

# C0, DEL and C1: nothing a name, path, argument or rule needs, and what makes text read
# differently on a terminal or in a log than what it says. One definition for the policy's
# reader and the spec's.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The controls an argument may hold: multi-line shell scripts in argv (`sh -c`) are common
# in pod specs. A policy's command may hold them; a spec's argv only where the command does.
ARGV_CONTROLS = "\t\n"


def first_control(text: str, allowed: str = "") -> str | None:
    """ "U+XXXX at offset N" for the first control character of `text` not in `allowed`."""
    for found in _CONTROL.finditer(text):
        if found.group() not in allowed:
            return f"U+{ord(found.group()):04X} at offset {found.start()}"
    return None


def printable(text: str) -> str:
    """`text` with every unprintable character escaped (printable text comes back as is)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
