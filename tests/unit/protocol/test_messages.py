from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guestagent.errors import ErrorCode, ProtocolError
from guestagent.protocol.messages import (
    MAX_DEPTH,
    MAX_ERROR_REPLY,
    decode_reply,
    decode_request,
    encode_error,
    encode_request,
    encode_result,
)

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    request_id=st.integers(0, 2**63 - 1),
    op=st.text(min_size=1, max_size=30),
    args=st.dictionaries(st.text(max_size=10), plain, max_size=5),
)
def test_request_round_trip(request_id: int, op: str, args: dict) -> None:
    request = decode_request(encode_request(request_id, op, args))
    assert (request.id, request.op, request.args) == (request_id, op, args)


@given(request_id=st.integers(0, 2**63 - 1) | st.none(), result=plain)
def test_result_reply_round_trip(request_id: int | None, result: object) -> None:
    reply = decode_reply(encode_result(request_id, result))
    assert reply == {"id": request_id, "ok": True, "result": result}


def test_error_reply_round_trip() -> None:
    error = {"code": "policy.denied", "message": "no", "rule": "create_container.env"}
    assert decode_reply(encode_error(7, error)) == {"id": 7, "ok": False, "error": error}


def _pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


@pytest.mark.parametrize(
    ("payload", "code", "request_id"),
    [
        (b"\xc1", ErrorCode.BAD_MESSAGE, None),  # never-used msgpack byte
        (_pack([1, 2]), ErrorCode.BAD_MESSAGE, None),  # not a map
        (_pack("text"), ErrorCode.BAD_MESSAGE, None),
        (_pack({"op": "ping"}), ErrorCode.BAD_MESSAGE, None),  # no id
        (_pack({"id": -1, "op": "ping"}), ErrorCode.BAD_MESSAGE, None),
        (_pack({"id": True, "op": "ping"}), ErrorCode.BAD_MESSAGE, None),
        (_pack({"id": 3, "op": ""}), ErrorCode.BAD_MESSAGE, 3),
        (_pack({"id": 3, "op": 5}), ErrorCode.BAD_MESSAGE, 3),
        (_pack({"id": 4, "op": "ping", "args": [1]}), ErrorCode.INVALID_ARGUMENT, 4),
        (_pack({"id": 5, "op": "ping", "extra": 1}), ErrorCode.UNKNOWN_FIELD, 5),
        (_pack({1: 2}), ErrorCode.BAD_MESSAGE, None),  # non-string key
        (_pack({"id": 1, "op": "ping"}) + b"\xc0", ErrorCode.BAD_MESSAGE, None),  # trailing
        (b"\x91" * 100_000 + b"\xc0", ErrorCode.BAD_MESSAGE, None),  # nesting bomb
        (b"\xdd\xff\xff\xff\xff", ErrorCode.BAD_MESSAGE, None),  # array claims 4 G items
        (b"\xdb\xff\xff\xff\xff", ErrorCode.BAD_MESSAGE, None),  # string claims 4 GiB
    ],
)
def test_malformed_requests_are_refused_with_their_code(
    payload: bytes, code: ErrorCode, request_id: int | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(payload)
    assert caught.value.code is code
    assert caught.value.request_id == request_id


def test_nesting_beyond_the_limit_is_refused_within_msgpack_limits() -> None:
    nested: object = None
    for _ in range(MAX_DEPTH + 2):
        nested = [nested]
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_request(_pack({"id": 1, "op": "x", "args": {"a": nested}}))


def test_extension_types_are_refused() -> None:
    timestamp = b"\xd6\xff\x00\x00\x00\x01"
    payload = b"\x83" + _pack("id") + _pack(2) + _pack("op") + _pack("x") + _pack("args")
    payload += b"\x81" + _pack("t") + timestamp
    with pytest.raises(ProtocolError, match="unsupported msgpack type"):
        decode_request(payload)


@pytest.mark.parametrize(
    "message",
    [
        {"id": 3, "op": "ping", "args": {"payload": b"x", b"payload": b"y"}},  # mixed keys
        {"id": 3, "op": "ping", "args": {"nested": [{b"k": 1}]}},
        {"id": 3, "op": "ping", b"args": {}},
    ],
)
def test_map_keys_that_are_not_strings_are_bad_messages(message: dict) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_request(_pack(message))
    assert caught.value.code is ErrorCode.BAD_MESSAGE
    assert caught.value.request_id == 3


def test_error_details_are_capped_and_say_so() -> None:
    error = {
        "code": "protocol.unknown_field",
        "message": "m",
        "rule": None,
        "details": {"fields": ["f" * 100] * 1000},
    }
    payload = encode_error(5, error)
    assert len(payload) <= MAX_ERROR_REPLY
    reply = decode_reply(payload)
    assert reply["error"]["code"] == "protocol.unknown_field"
    assert reply["error"]["details"]["truncated"] is True
    small = {**error, "details": {"fields": ["a"]}}
    assert decode_reply(encode_error(5, small))["error"] == small
