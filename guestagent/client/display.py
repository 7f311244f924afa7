"""Replies shown as JSON: what `ctl`, the console shell and the demo print."""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["to_json"]


def to_json(value: Any) -> Any:
    """Results may hold bytes: show them as hex (short) or base64 (long)."""
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 64 else {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value
