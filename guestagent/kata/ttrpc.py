"""ttrpc framing and envelopes, sans I/O (containerd/ttrpc PROTOCOL.md).

A frame is a 10-byte header (payload length u32 big-endian, stream id u32 big-endian,
message type u8, flags u8) and the payload. A unary call is one Request frame on an odd
client stream id and one Response frame on the same id; the payloads are the protobuf
envelopes of ttrpc.proto. Nothing here touches a socket: `TtrpcFramer.feed` turns bytes (in
any chunking) into events, and the encoders turn replies into bytes.

Like containerd's server, a frame longer than the 4 MiB cap is not fatal: its body is
skipped as it arrives (never buffered) and the stream is answered ResourceExhausted.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from google.protobuf.message import DecodeError

from guestagent.kata.pb import ttrpc_pb2
from guestagent.records import record

__all__ = [
    "HEADER_SIZE",
    "MAX_MESSAGE",
    "Code",
    "Frame",
    "MessageType",
    "Oversized",
    "TtrpcFramer",
    "decode_request",
    "decode_response",
    "encode_frame",
    "encode_request",
    "encode_response",
]

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size
MAX_MESSAGE = 4 << 20  # containerd/ttrpc messageLengthMax


class MessageType(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    DATA = 3


class Code(IntEnum):
    """google.rpc.Code, the status codes ttrpc carries."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@record
class Frame:
    stream_id: int
    type: int
    flags: int
    payload: bytes


@record
class Oversized:
    """A frame over the cap: its body was skipped; the stream deserves ResourceExhausted."""

    stream_id: int
    type: int
    length: int


class TtrpcFramer:
    """Cuts a byte stream into frames. Oversized bodies are skipped as they stream in."""

    __slots__ = ("_buffer", "_skip", "max_message")

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data: bytes) -> list[Frame | Oversized]:
        events: list[Frame | Oversized] = []
        view = memoryview(data)
        if self._skip:
            skipped = min(self._skip, len(view))
            self._skip -= skipped
            view = view[skipped:]
        buffer = self._buffer
        buffer += view
        offset = 0
        while len(buffer) - offset >= HEADER_SIZE:
            length, stream_id, kind, flags = HEADER.unpack_from(buffer, offset)
            if length > self.max_message:
                events.append(Oversized(stream_id, kind, length))
                available = len(buffer) - offset - HEADER_SIZE
                skipped = min(length, available)
                offset += HEADER_SIZE + skipped
                self._skip = length - skipped
                if self._skip:
                    break  # everything buffered was part of the skipped body
                continue
            end = offset + HEADER_SIZE + length
            if len(buffer) < end:
                break
            events.append(Frame(stream_id, kind, flags, bytes(buffer[offset + HEADER_SIZE : end])))
            offset = end
        del buffer[:offset]
        return events

    @property
    def pending(self) -> int:
        return len(self._buffer) + self._skip

    @property
    def expected(self) -> int:
        """Bytes the frame in progress will hold once whole (0 until its header is in)."""
        if len(self._buffer) < HEADER_SIZE:
            return 0
        length = HEADER.unpack_from(self._buffer, 0)[0]
        return HEADER_SIZE + length if length <= self.max_message else 0


def encode_frame(stream_id: int, kind: int, payload: bytes, flags: int = 0) -> bytes:
    if len(payload) > MAX_MESSAGE:
        raise ValueError(f"ttrpc message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return HEADER.pack(len(payload), stream_id, kind, flags) + payload


def decode_request(payload: bytes) -> ttrpc_pb2.Request:
    request = ttrpc_pb2.Request()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        raise ValueError(f"undecodable ttrpc request: {exc}") from None
    return request


def encode_request(
    stream_id: int, service: str, method: str, payload: bytes, timeout_nano: int = 0
) -> bytes:
    request = ttrpc_pb2.Request(
        service=service, method=method, payload=payload, timeout_nano=timeout_nano
    )
    return encode_frame(stream_id, MessageType.REQUEST, request.SerializeToString())


def encode_response(
    stream_id: int, code: int = Code.OK, message: str = "", payload: bytes = b""
) -> bytes:
    response = ttrpc_pb2.Response(payload=payload)
    response.status.code = code
    response.status.message = message
    return encode_frame(stream_id, MessageType.RESPONSE, response.SerializeToString())


def decode_response(payload: bytes) -> ttrpc_pb2.Response:
    response = ttrpc_pb2.Response()
    response.ParseFromString(payload)
    return response
