"""Nothing in a Kata request passes unruled: unknown fields and unhandled fields are refused.

Protobuf keeps fields it does not know as "unknown fields" and proto3 hides unset scalars, so
both are checked explicitly: a request carrying a field number this agent has no definition
for, or setting a field that no rule here handles, is refused naming the field, as the native
protocol refuses an unknown argument.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message

from guestagent.errors import ErrorCode, InvalidArgumentError

__all__ = ["allow_only", "reject_unknown_fields", "set_fields"]


def reject_unknown_fields(message: Message) -> None:
    """Refuse a message that carries field numbers this agent's definitions do not have."""
    size = message.ByteSize()
    message.DiscardUnknownFields()
    if message.ByteSize() != size:
        raise InvalidArgumentError(
            f"{message.DESCRIPTOR.name} carries fields this agent does not know; "
            "nothing is ignored",
            code=ErrorCode.UNKNOWN_FIELD,
        )


def set_fields(message: Message) -> list[str]:
    """Names of the fields that are set (non-default scalars, present messages, non-empty)."""
    return [descriptor.name for descriptor, _ in message.ListFields()]


def allow_only(message: Message, allowed: Iterable[str], path: str = "") -> None:
    """Refuse `message` if it sets a field outside `allowed`, naming the first such field."""
    permitted = frozenset(allowed)
    for name in set_fields(message):
        if name not in permitted:
            where = f"{path}.{name}" if path else f"{message.DESCRIPTOR.name}.{name}"
            raise InvalidArgumentError(
                f"{where} is set, but this agent has no rule for it; the request is refused "
                "rather than the field dropped",
                code=ErrorCode.UNKNOWN_FIELD,
                details={"field": where},
            )
