"""Replies shown as JSON: what `ctl`, the console shell and the demo print."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["decoded", "to_json"]


def to_json(value: Any) -> Any:
    """Results may hold bytes: show them as hex (short) or base64 (long)."""
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 64 else {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def decoded(value: Any) -> Any:
    """JSON-ready for `ctl`: bytes as text when printable UTF-8, else {"base64": ...}; the
    same form whatever the size, and never a raw control character."""
    if isinstance(value, bytes):
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and all(ch.isprintable() or ch in "\n\t\r" for ch in text):
            return text
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): decoded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [decoded(v) for v in value]
    return value
