from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guestagent.errors import ErrorCode
from guestagent.protocol.framing import Framer, FrameTooLargeError, encode_frame


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    framer = Framer()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += framer.feed(stream[start:end])
    assert out == payloads
    assert framer.pending == 0


def test_truncated_frame_stays_pending() -> None:
    framer = Framer()
    frame = encode_frame(b"hello")
    assert framer.feed(frame[:-1]) == []
    assert framer.pending == len(frame) - 1
    assert framer.feed(frame[-1:]) == [b"hello"]


def test_oversized_length_is_refused_before_buffering() -> None:
    framer = Framer(max_frame=1024)
    with pytest.raises(FrameTooLargeError) as caught:
        framer.feed(struct.pack(">I", 1025))
    assert caught.value.code is ErrorCode.FRAME_TOO_LARGE
    assert caught.value.details == {"size": 1025, "limit": 1024}
    assert framer.pending == 0


def test_frame_of_exactly_the_limit_is_accepted() -> None:
    framer = Framer(max_frame=16)
    assert framer.feed(encode_frame(b"x" * 16, max_frame=16)) == [b"x" * 16]


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(FrameTooLargeError):
        encode_frame(b"x" * 17, max_frame=16)


def test_empty_payload_round_trips() -> None:
    assert Framer().feed(encode_frame(b"")) == [b""]
