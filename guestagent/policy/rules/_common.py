"""Shared pieces of the rules: input shape checks, decision builders, bounded explanations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.errors import ErrorCode
from guestagent.policy.decision import Decision
from guestagent.policy.state import PolicyState, Transition

__all__ = [
    "BadInput",
    "allow",
    "bounded",
    "check_input",
    "deny",
    "is_bool",
    "is_caps",
    "is_int",
    "is_opt_str",
    "is_str",
    "is_str_list",
    "is_u64",
    "is_user",
]

MAX_TEXT = 200  # characters of any one string in an explanation
MAX_ITEMS = 8  # items of any one list in an explanation
MAX_NAMES = 64  # items of a list of short names (all capabilities fit)
MAX_REASON = 600
MAX_FIELD_TEXT = 65536  # characters of any one input string
MAX_LIST = 4096  # items of any one input list

CAP_SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")


class BadInput(Exception):
    """The enforcement input is malformed: the request is denied, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


Checker = Callable[[Any, str], None]
_STR_ONLY = frozenset({str})


def is_str(value: Any, name: str) -> None:
    if type(value) is not str or len(value) > MAX_FIELD_TEXT or "\x00" in value:
        raise BadInput(name, "expected a string without NUL")


def is_opt_str(value: Any, name: str) -> None:
    if value is not None:
        is_str(value, name)


def is_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise BadInput(name, "expected a boolean")


def is_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise BadInput(name, "expected an integer in [0, 2**32)")


def is_u64(value: Any, name: str) -> None:
    if type(value) is not int or not 0 <= value < 2**64:
        raise BadInput(name, "expected an integer in [0, 2**64)")


def is_str_list(value: Any, name: str) -> None:
    # C-level passes instead of a call per item: this is the hot path of create_container.
    if type(value) not in (list, tuple) or len(value) > MAX_LIST:
        raise BadInput(name, "expected a list of strings")
    if value and (
        not set(map(type, value)) <= _STR_ONLY
        or max(map(len, value)) > MAX_FIELD_TEXT
        or "\x00" in "".join(value)
    ):
        raise BadInput(name, "expected a list of strings without NUL")


def is_user(value: Any, name: str) -> None:
    check_input(value, {"uid": is_int, "gid": is_int, "additional_gids": _int_list}, name)


def _int_list(value: Any, name: str) -> None:
    if not isinstance(value, list | tuple) or len(value) > MAX_LIST:
        raise BadInput(name, "expected a list of integers")
    for item in value:
        is_int(item, name)


def is_caps(value: Any, name: str) -> None:
    check_input(value, dict.fromkeys(CAP_SET_NAMES, is_str_list), name)


def check_input(request: Any, schema: Mapping[str, Checker], prefix: str = "") -> None:
    """Every schema key present with the right shape, and no other key."""
    if type(request) is not dict and not isinstance(request, Mapping):  # dict: skip the ABC
        raise BadInput(prefix or "input", "expected a map")
    if request.keys() != schema.keys():
        where = f"{prefix}." if prefix else ""
        unknown = sorted(str(k) for k in request if k not in schema)
        missing = sorted(k for k in schema if k not in request)
        if unknown:
            raise BadInput(f"{where}{unknown[0]}", "unknown field")
        raise BadInput(f"{where}{missing[0]}", "required field is missing")
    try:
        for key, checker in schema.items():
            checker(request[key], key)
    except BadInput as exc:  # names are built only on failure: this runs per request
        raise BadInput(f"{prefix}.{exc.field}" if prefix else exc.field, exc.message) from None


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
        limit = MAX_NAMES if all(_is_name(v) for v in items[:MAX_NAMES + 1]) else MAX_ITEMS
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
