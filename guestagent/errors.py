"""Every failure the agent can report, with its stable wire code.

`ErrorCode` is append-only: a value once shipped is never renamed or reused, so that clients
written against it keep working. Codes are grouped by prefix: `protocol.` (the request was
malformed), `policy.` (the policy ruled against it), `state.` (the request does not fit the
current state), `snp.` (the secure processor), `storage.`, `runtime.`, `network.` (an effect
failed), `agent.` (the agent itself), and `internal` (a bug: logged with its traceback).

`dispatch` is the only place that turns these exceptions into wire replies.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "AgentError",
    "AlreadyExistsError",
    "ErrorCode",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidStateError",
    "NotFoundError",
    "PolicyDenied",
    "ProtocolError",
    "TaintedError",
]

# Messages going to the host are capped (hcsshim caps its denials at 3 KiB): the host gets
# enough to act on, never an unbounded dump of guest state.
MAX_MESSAGE_LENGTH = 3072


class ErrorCode(StrEnum):
    # protocol.*: the request itself is malformed
    BAD_FRAME = "protocol.bad_frame"
    FRAME_TOO_LARGE = "protocol.frame_too_large"
    BAD_MESSAGE = "protocol.bad_message"
    HANDSHAKE_REQUIRED = "protocol.handshake_required"
    UNSUPPORTED_VERSION = "protocol.unsupported_version"
    UNKNOWN_OP = "protocol.unknown_op"
    INVALID_ARGUMENT = "protocol.invalid_argument"
    UNKNOWN_FIELD = "protocol.unknown_field"
    DUPLICATE_ID = "protocol.duplicate_id"
    TOO_MANY_IN_FLIGHT = "protocol.too_many_in_flight"
    # policy.*: the policy ruled against it, or no policy is in force
    POLICY_DENIED = "policy.denied"
    POLICY_NOT_ADOPTED = "policy.not_adopted"
    POLICY_INVALID = "policy.invalid"
    POLICY_MISMATCH = "policy.mismatch"
    POLICY_ALREADY_SET = "policy.already_set"
    # state.*: the request does not fit the current state
    NOT_FOUND = "state.not_found"
    ALREADY_EXISTS = "state.already_exists"
    INVALID_STATE = "state.invalid"
    TAINTED = "state.tainted"
    # snp.*: the secure processor and attestation
    SNP_UNAVAILABLE = "snp.unavailable"
    SNP_FIRMWARE = "snp.firmware_error"
    SNP_BAD_REPORT = "snp.bad_report"
    SNP_VERIFY_FAILED = "snp.verify_failed"
    SNP_BUSY = "snp.busy"
    # effects
    INTEGRITY = "storage.integrity"
    STORAGE = "storage.failed"
    RUNTIME = "runtime.failed"
    NETWORK = "network.failed"
    # the agent itself
    SHUTTING_DOWN = "agent.shutting_down"
    MODE_REFUSED = "agent.mode_refused"
    TIMEOUT = "agent.timeout"
    TOO_MANY_CONNECTIONS = "agent.too_many_connections"
    INTERNAL = "internal"


class AgentError(Exception):
    """Base of every error the agent reports. Subclasses fix `code`; details are structured."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        rule: Any = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.rule = rule
        self.details = details or {}

    def to_wire(self) -> dict[str, Any]:
        """The `error` map of a reply: code, capped message, rule and details."""
        message = self.message
        if len(message) > MAX_MESSAGE_LENGTH:
            message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
        wire: dict[str, Any] = {"code": self.code.value, "message": message, "rule": self.rule}
        if self.details:
            wire["details"] = self.details
        return wire


class ProtocolError(AgentError):
    code = ErrorCode.BAD_MESSAGE
    # Set by the decoder when the malformed message still carried a usable id.
    request_id: int | None = None


class InvalidArgumentError(AgentError):
    code = ErrorCode.INVALID_ARGUMENT


class PolicyDenied(AgentError):
    """The policy engine ruled against the request; `rule` names the rule that denied it."""

    code = ErrorCode.POLICY_DENIED


class NotFoundError(AgentError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(AgentError):
    code = ErrorCode.ALREADY_EXISTS


class InvalidStateError(AgentError):
    code = ErrorCode.INVALID_STATE


class TaintedError(AgentError):
    """An undo failed: the guest may not match the policy state, so mutations are refused."""

    code = ErrorCode.TAINTED


class IntegrityError(AgentError):
    """Data did not match its verity tree: never returned as data."""

    code = ErrorCode.INTEGRITY
