"""Shared pieces of the rules: the input error, decision builders, bounded explanations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.errors import ErrorCode
from guestagent.policy.decision import Decision
from guestagent.policy.state import PolicyState, Transition

__all__ = ["BadInput", "allow", "bounded", "deny"]

MAX_TEXT = 200  # characters of any one string in an explanation
MAX_ITEMS = 8  # items of any one list in an explanation
MAX_NAMES = 64  # items of a list of short names (all capabilities fit)
MAX_REASON = 600


class BadInput(Exception):
    """The enforcement input is malformed: the request is denied, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _is_name(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= 32) or type(value) is int


def bounded(value: Any, depth: int = 0) -> Any:
    """A copy of `value` small enough for a reply: strings clipped, lists cut, depth capped."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
    if depth >= 6:
        return "..."
    if isinstance(value, Mapping):
        return {str(k)[:MAX_TEXT]: bounded(v, depth + 1) for k, v in list(value.items())[:16]}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        # Lists of short names (capabilities, options, signals) are shown whole: a denial
        # must name the entire required set. Anything else is cut.
        limit = MAX_NAMES if all(_is_name(v) for v in items[: MAX_NAMES + 1]) else MAX_ITEMS
        cut = [bounded(v, depth + 1) for v in items[:limit]]
        if len(items) > limit:
            cut.append(f"... {len(items) - limit} more")
        return cut
    return value


def deny(
    point: str,
    field: str,
    reason: str,
    *,
    code: ErrorCode = ErrorCode.POLICY_DENIED,
    **details: Any,
) -> Decision:
    """A denial naming the enforcement point, the field and the nearest allowed values."""
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    info = {"point": point, "field": field, **details}
    return Decision(False, point, f"{point}.{field}", reason, bounded(info), code=code)


def allow(
    point: str,
    reason: str,
    before: PolicyState,
    after: PolicyState | None = None,
    data: Mapping[str, Any] | None = None,
) -> Decision:
    transition = Transition(before, before if after is None else after)
    return Decision(True, point, f"{point}.allowed", reason, {}, data or {}, transition)
