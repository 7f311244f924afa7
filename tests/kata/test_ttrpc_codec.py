"""The sans-I/O ttrpc framer and envelopes."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from guestagent.kata.pb import ttrpc_pb2
from guestagent.kata.ttrpc import (
    HEADER_SIZE,
    MAX_MESSAGE,
    Code,
    Frame,
    MessageType,
    Oversized,
    TtrpcFramer,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
)


def test_header_layout_is_length_stream_type_flags_big_endian() -> None:
    frame = encode_frame(7, MessageType.REQUEST, b"abc", flags=0x2)
    assert HEADER_SIZE == 10
    assert frame[:10] == struct.pack(">IIBB", 3, 7, 1, 2)
    assert frame[10:] == b"abc"


def test_request_envelope_fields() -> None:
    frame = encode_request(3, "grpc.Health", "Check", b"\x0a\x01x", timeout_nano=5)
    (events,) = [TtrpcFramer().feed(frame)]
    assert len(events) == 1 and isinstance(events[0], Frame)
    request = ttrpc_pb2.Request()
    request.ParseFromString(events[0].payload)
    assert (request.service, request.method, request.payload, request.timeout_nano) == (
        "grpc.Health",
        "Check",
        b"\x0a\x01x",
        5,
    )


def test_response_carries_status() -> None:
    frame = encode_response(9, Code.PERMISSION_DENIED, "no", b"")
    event = TtrpcFramer().feed(frame)[0]
    assert isinstance(event, Frame) and event.type == MessageType.RESPONSE
    response = decode_response(event.payload)
    assert response.status.code == 7 and response.status.message == "no"


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.integers(1, 50))
def test_any_chunking_gives_the_same_frames(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(
        encode_frame(2 * i + 1, MessageType.REQUEST, p) for i, p in enumerate(payloads)
    )
    framer = TtrpcFramer()
    events = []
    for start in range(0, len(stream), chunk):
        events += framer.feed(stream[start : start + chunk])
    assert [e.payload for e in events] == payloads  # type: ignore[union-attr]
    assert [e.stream_id for e in events] == [2 * i + 1 for i in range(len(payloads))]
    assert framer.pending == 0


def test_oversized_body_is_skipped_not_buffered_and_the_stream_resumes() -> None:
    framer = TtrpcFramer()
    length = MAX_MESSAGE + 1
    events = framer.feed(struct.pack(">IIBB", length, 5, 1, 0) + b"x" * 1000)
    assert events == [Oversized(5, 1, length)]
    assert framer.pending == length - 1000  # only a count, no buffered bytes
    remaining = length - 1000
    while remaining:
        step = min(remaining, 1 << 20)
        assert framer.feed(b"y" * step) == []
        remaining -= step
    after = framer.feed(encode_frame(7, MessageType.REQUEST, b"ok"))
    assert after == [Frame(7, 1, 0, b"ok")]


def test_frames_after_a_whole_oversized_one_in_the_same_read_are_kept() -> None:
    framer = TtrpcFramer(max_message=8)
    data = struct.pack(">IIBB", 9, 1, 1, 0) + b"z" * 9 + encode_frame(3, 1, b"ok")
    assert framer.feed(data) == [Oversized(1, 1, 9), Frame(3, 1, 0, b"ok")]
