"""The attestation socket's wire format, free of I/O: one JSON object per line each way.

Requests::

    {"op": "report", "report_data": "<128 hex digits>"}
    {"op": "derived_key", "purpose": "<1..64 chars, no '/'>", "fields": ["measurement", ...]}

Replies are one JSON object: the result, or {"error": {"code": ..., "message": ...}}.
Anything else (unknown ops or fields, wrong types, oversized lines) is refused with a reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError, ProtocolError
from guestagent.records import record

__all__ = [
    "DEFAULT_KEY_FIELDS",
    "KEY_FIELDS",
    "MAX_LINE",
    "MAX_PURPOSE",
    "KeyRequest",
    "ReportRequest",
    "encode_error",
    "encode_reply",
    "parse_request",
]

MAX_LINE = 4096  # the longest request is ~200 bytes; refuse anything much larger
MAX_PURPOSE = 64
REPORT_DATA_SIZE = 64
# Guest fields a workload may mix into its key (MSG_KEY_REQ GUEST_FIELD_SELECT names).
KEY_FIELDS = ("measurement", "policy", "image_id", "family_id", "guest_svn", "tcb_version")
DEFAULT_KEY_FIELDS = ("measurement", "policy")
# Printable ASCII without '/': the key's HKDF info "guestagent/v1/<entry>/<purpose>" then
# splits at its last '/' one way only, so no (entry, purpose) pair can pose as another.
_PURPOSE = re.compile(rf"[\x20-\x2e\x30-\x7e]{{1,{MAX_PURPOSE}}}")
_OPS = {"report": {"op", "report_data"}, "derived_key": {"op", "purpose", "fields"}}


@record
class ReportRequest:
    report_data: bytes


@record
class KeyRequest:
    purpose: str
    fields: tuple[str, ...]


def parse_request(line: bytes) -> ReportRequest | KeyRequest:
    """One request line -> a validated request; raises ProtocolError/InvalidArgumentError."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"request longer than {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"request is not one JSON object: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("request must be a JSON object")
    op = message.get("op")
    if not isinstance(op, str) or op not in _OPS:
        raise AgentError(
            f"unknown op {str(op)[:32]!r}; this service answers {sorted(_OPS)}",
            code=ErrorCode.UNKNOWN_OP,
        )
    unknown = sorted(set(message) - _OPS[op])
    if unknown:
        raise InvalidArgumentError(
            f"unknown fields for {op}: {unknown[:8]}", code=ErrorCode.UNKNOWN_FIELD
        )
    if op == "report":
        return ReportRequest(_report_data(message.get("report_data")))
    return KeyRequest(_purpose(message.get("purpose")), _fields(message.get("fields")))


def _report_data(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * REPORT_DATA_SIZE:
        raise InvalidArgumentError("report_data must be 128 hex digits (64 bytes)")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidArgumentError("report_data must be 128 hex digits (64 bytes)") from None


def _purpose(value: Any) -> str:
    if not isinstance(value, str) or not _PURPOSE.fullmatch(value):
        raise InvalidArgumentError(
            f"purpose must be 1..{MAX_PURPOSE} printable ASCII characters without '/'"
        )
    return value


def _fields(value: Any) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_KEY_FIELDS
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise InvalidArgumentError(f"fields must be a list of names from {list(KEY_FIELDS)}")
    unknown = sorted(set(value) - set(KEY_FIELDS))
    if unknown:
        raise InvalidArgumentError(f"unknown key fields {unknown[:8]}; choose from {KEY_FIELDS}")
    if "measurement" not in value:
        # A key not bound to the launch measurement would outlive a change of guest image.
        raise InvalidArgumentError("fields must include measurement")
    return tuple(f for f in KEY_FIELDS if f in value)  # canonical order: same key either way


def encode_reply(result: dict[str, Any]) -> bytes:
    return json.dumps(result, separators=(",", ":")).encode() + b"\n"


def encode_error(exc: AgentError) -> bytes:
    wire = exc.to_wire()
    return encode_reply({"error": {"code": wire["code"], "message": wire["message"]}})
