"""Agent errors as ttrpc statuses: one mapping, so a denial reads the same on both protocols.

The status message starts with the agent's stable error code and carries the policy rule
that decided, so a Kata shim's log explains a denial as fully as the native reply does.
"""

from __future__ import annotations

import logging

from guestagent.errors import MAX_MESSAGE_LENGTH, AgentError, ErrorCode
from guestagent.kata.ttrpc import Code

__all__ = ["RpcError", "to_status"]

log = logging.getLogger("guestagent.kata")

_CODES = {
    ErrorCode.POLICY_DENIED: Code.PERMISSION_DENIED,
    ErrorCode.POLICY_NOT_ADOPTED: Code.PERMISSION_DENIED,
    ErrorCode.POLICY_MISMATCH: Code.PERMISSION_DENIED,
    ErrorCode.POLICY_INVALID: Code.INVALID_ARGUMENT,
    ErrorCode.POLICY_ALREADY_SET: Code.ALREADY_EXISTS,
    ErrorCode.INVALID_ARGUMENT: Code.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_FIELD: Code.INVALID_ARGUMENT,
    ErrorCode.BAD_MESSAGE: Code.INVALID_ARGUMENT,
    ErrorCode.UNKNOWN_OP: Code.UNIMPLEMENTED,
    ErrorCode.NOT_FOUND: Code.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: Code.ALREADY_EXISTS,
    ErrorCode.INVALID_STATE: Code.FAILED_PRECONDITION,
    ErrorCode.TAINTED: Code.FAILED_PRECONDITION,
    ErrorCode.SNP_UNAVAILABLE: Code.UNAVAILABLE,
    ErrorCode.SNP_BUSY: Code.UNAVAILABLE,
    ErrorCode.INTEGRITY: Code.DATA_LOSS,
    ErrorCode.SHUTTING_DOWN: Code.UNAVAILABLE,
    ErrorCode.TIMEOUT: Code.DEADLINE_EXCEEDED,
    ErrorCode.TOO_MANY_IN_FLIGHT: Code.RESOURCE_EXHAUSTED,
}


class RpcError(Exception):
    """A ttrpc status raised by the Kata layer itself (Unimplemented, bad envelope, ...)."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def to_status(exc: BaseException, method: str) -> tuple[Code, str]:
    if isinstance(exc, RpcError):
        return exc.code, exc.message[:MAX_MESSAGE_LENGTH]
    if isinstance(exc, AgentError):
        wire = exc.to_wire()
        message = f"{wire['code']}: {wire['message']}"
        if wire.get("rule"):
            message += f" (rule {wire['rule']})"
        return _CODES.get(exc.code, Code.INTERNAL), message[: MAX_MESSAGE_LENGTH + 128]
    log.error("internal error in %s", method, exc_info=exc)
    return Code.INTERNAL, f"internal: internal error while handling {method}; see the agent log"
