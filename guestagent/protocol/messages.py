"""Requests and replies: msgpack payload <-> validated messages.

Every decoding failure raises a `ProtocolError` subclass with a stable code; nothing
malformed gets past this module. Dicts from the wire are checked for shape (only the plain
msgpack types, bounded nesting, string keys) before any handler sees them.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import msgpack

from guestagent.errors import ErrorCode, ProtocolError

__all__ = [
    "MAX_DEPTH",
    "MAX_ERROR_REPLY",
    "PROTOCOL_VERSION",
    "Request",
    "decode_reply",
    "decode_request",
    "encode_error",
    "encode_request",
    "encode_result",
]

PROTOCOL_VERSION = 1
# Arguments are shallow records: an OCI spec nests about 6 deep. 32 leaves room and stops
# stack-exhaustion payloads long before msgpack's own limit.
MAX_DEPTH = 32
MAX_ID = 2**63 - 1
REQUEST_KEYS = frozenset({"id", "op", "args"})
# An error reply carries a message capped at 3 KiB and details: the whole reply stays under
# this, so an error can never be a way to make the agent send (or the host buffer) much.
MAX_ERROR_REPLY = 8192
_PLAIN_SCALARS = (str, bytes, bool, int, float, type(None))


class Request(NamedTuple):
    """One decoded request (a tuple: built once per request on the hot path)."""

    id: int
    op: str
    args: dict[str, Any]


def _unpack(payload: bytes) -> Any:
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:  # msgpack raises ValueError, StackError, ExtraData, ...
        raise ProtocolError(
            f"payload is not a single valid msgpack value: {type(exc).__name__}: {exc}",
            code=ErrorCode.BAD_MESSAGE,
        ) from None


def check_plain(value: Any, depth: int = 0, path: str = "args") -> None:
    """Reject anything but plain msgpack types (no ext/timestamps) and deep nesting."""
    if depth > MAX_DEPTH:
        raise ProtocolError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, _PLAIN_SCALARS):
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, _PLAIN_SCALARS):
                check_plain(item, depth + 1, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                # msgpack lets bin keys through; every handler indexes by str, so say so here.
                raise ProtocolError(f"{path}: map keys must be strings, got {type(key).__name__}")
            if not isinstance(item, _PLAIN_SCALARS):
                check_plain(item, depth + 1, f"{path}.{key}")
        return
    raise ProtocolError(f"{path}: unsupported msgpack type {type(value).__name__}")


def request_id_of(message: Any) -> int | None:
    """The id to answer with, if the message carries a usable one."""
    if isinstance(message, dict):
        value = message.get("id")
        if type(value) is int and 0 <= value <= MAX_ID:
            return value
    return None


def decode_request(payload: bytes) -> Request:
    """Payload -> Request. On failure the raised error carries `.request_id` when known."""
    message = _unpack(payload)
    try:
        return _validate_request(message)
    except ProtocolError as exc:
        exc.request_id = request_id_of(message)
        raise


def _validate_request(message: Any) -> Request:
    if type(message) is dict and len(message) == 3 and REQUEST_KEYS.issuperset(message):
        # The common shape: {id, op, args} with the right types; everything else takes the
        # long way below, which names what is wrong.
        request_id, op, args = message["id"], message["op"], message["args"]
        if (
            type(request_id) is int
            and 0 <= request_id <= MAX_ID
            and type(op) is str
            and op
            and type(args) is dict
        ):
            if args:
                check_plain(args)
            return Request(request_id, op, args)
    if not isinstance(message, dict):
        raise ProtocolError(f"a request must be a map, got {type(message).__name__}")
    if any(type(key) is not str for key in message):
        raise ProtocolError("request map keys must be strings")
    unknown = message.keys() - REQUEST_KEYS
    if unknown:
        raise ProtocolError(
            f"unknown request fields: {sorted(map(str, unknown))}",
            code=ErrorCode.UNKNOWN_FIELD,
            details={"fields": sorted(map(str, unknown))},
        )
    request_id = message.get("id")
    if type(request_id) is not int or not 0 <= request_id <= MAX_ID:
        raise ProtocolError(f"request id must be an integer in [0, 2^63), got {request_id!r:.40}")
    op = message.get("op")
    if type(op) is not str or not op:
        raise ProtocolError(f"op must be a non-empty string, got {op!r:.40}")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise ProtocolError(
            f"args must be a map, got {type(args).__name__}", code=ErrorCode.INVALID_ARGUMENT
        )
    check_plain(args)
    return Request(request_id, op, args)


def encode_request(request_id: int, op: str, args: dict[str, Any] | None = None) -> bytes:
    return msgpack.packb({"id": request_id, "op": op, "args": args or {}}, use_bin_type=True)


_local = threading.local()


def _packer() -> msgpack.Packer:
    """A Packer per thread: making one per message costs as much as packing a small reply."""
    try:
        return _local.packer
    except AttributeError:
        _local.packer = msgpack.Packer(use_bin_type=True)
        return _local.packer


def encode_result(request_id: int | None, result: Any) -> bytes:
    try:
        return _packer().pack({"id": request_id, "ok": True, "result": result})
    except BaseException:
        _local.__dict__.pop("packer", None)  # never reuse a packer a failure interrupted
        raise


def encode_error(request_id: int | None, error: dict[str, Any]) -> bytes:
    try:
        payload = _packer().pack({"id": request_id, "ok": False, "error": error})
    except BaseException:
        _local.__dict__.pop("packer", None)
        raise
    if len(payload) > MAX_ERROR_REPLY and "details" in error:
        # The message is capped where it is made; details are structured facts of any size
        # (a list of fields, a path): past the cap the host is told they were cut, not sent.
        cut = {**error, "details": {"truncated": True, "size": len(payload)}}
        payload = _packer().pack({"id": request_id, "ok": False, "error": cut})
    return payload


def decode_reply(payload: bytes) -> dict[str, Any]:
    """Client side: a reply map with id, ok, and result or error."""
    message = _unpack(payload)
    if not isinstance(message, dict) or "ok" not in message or "id" not in message:
        raise ProtocolError(f"malformed reply: {message!r:.80}")
    return message
