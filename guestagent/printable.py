"""Text that is safe on a terminal: every unprintable character shown as an escape.

One implementation for every place that prints what someone else wrote (policy audits, the
console's tables, CLI error lines): C0/C1 controls, escape sequences, bidi overrides and
zero-width characters become `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`.
"""

from __future__ import annotations

__all__ = ["printable"]


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
