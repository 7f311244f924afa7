"""Length-prefixed frames, sans I/O: feed bytes in any chunking, get whole payloads out."""

from __future__ import annotations

import struct

from guestagent.errors import ErrorCode, ProtocolError

__all__ = ["DEFAULT_MAX_FRAME", "HEADER_SIZE", "FrameTooLargeError", "Framer", "encode_frame"]

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
# Big enough for a generous OCI spec or a file chunk, small enough that a hostile length
# cannot make the agent allocate much. Configurable with `serve --max-frame`.
DEFAULT_MAX_FRAME = 4 * 1024 * 1024


class FrameTooLargeError(ProtocolError):
    code = ErrorCode.FRAME_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds the limit of {limit} bytes",
            details={"size": size, "limit": limit},
        )
        self.size = size
        self.limit = limit


def encode_frame(payload: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    if len(payload) > max_frame:
        raise FrameTooLargeError(len(payload), max_frame)
    return HEADER.pack(len(payload)) + payload


class Framer:
    """Accumulates a byte stream and yields complete frame payloads.

    A header that declares more than `max_frame` bytes raises `FrameTooLargeError` at once,
    before any of the body is buffered: the stream cannot be resynchronised after that, so
    the caller replies once and closes.
    """

    __slots__ = ("_buffer", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    @property
    def expected(self) -> int:
        """Bytes the frame in progress takes in all (header and body); 0 when there is none."""
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return len(buffer) and HEADER_SIZE
        return HEADER_SIZE + HEADER.unpack_from(buffer)[0]

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        # With nothing pending (the usual case) frames are cut straight from `data`: one copy
        # per frame instead of two, and none of the data is buffered unless a frame is split.
        source: bytes | bytearray = data
        if buffer:
            buffer += data
            source = buffer
        frames: list[bytes] = []
        offset = 0
        available = len(source)
        while available - offset >= HEADER_SIZE:
            (size,) = HEADER.unpack_from(source, offset)
            if size > self.max_frame:
                del buffer[:]
                raise FrameTooLargeError(size, self.max_frame)
            end = offset + HEADER_SIZE + size
            if end > available:
                break
            frames.append(bytes(source[offset + HEADER_SIZE : end]))
            offset = end
        if source is buffer:
            if offset:
                del buffer[:offset]
        elif offset < available:
            buffer += memoryview(data)[offset:]
        return frames
