"""Bad input against a running agent: each gets its exact error code, and a second,
well-behaved client is still served afterwards."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import msgpack
import pytest

from guestagent.client import Client, RemoteProtocolError, RemoteStateError
from tests.integration.agent_process import AgentProcess, running_agent


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    with running_agent("--max-frame", "65536") as process:
        yield process


def raw_connection(agent: AgentProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(agent.socket_path)
    return sock


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def pack(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def read_reply(sock: socket.socket) -> dict:
    client = Client(sock)
    return client.read_reply()


def hello_frame(request_id: int = 0) -> bytes:
    return frame(pack({"id": request_id, "op": "hello", "args": {"protocol": 1}}))


def assert_still_serving(agent: AgentProcess) -> None:
    with Client.connect(agent.uri) as other:
        assert other.ping(b"still here") == {"payload": b"still here"}


CASES = [
    ("not msgpack", frame(b"\xc1"), "protocol.bad_message", None),
    ("not a map", frame(pack([1, 2, 3])), "protocol.bad_message", None),
    ("no id", frame(pack({"op": "ping"})), "protocol.bad_message", None),
    (
        "unknown op",
        frame(pack({"id": 9, "op": "format_disk", "args": {}})),
        "protocol.unknown_op",
        9,
    ),
    (
        "wrong arg type",
        frame(pack({"id": 10, "op": "ping", "args": {"payload": "str"}})),
        "protocol.invalid_argument",
        10,
    ),
    (
        "unknown arg",
        frame(pack({"id": 11, "op": "ping", "args": {"payload": b"", "x": 1}})),
        "protocol.unknown_field",
        11,
    ),
    (
        "unknown request field",
        frame(pack({"id": 12, "op": "ping", "sudo": True})),
        "protocol.unknown_field",
        12,
    ),
    ("nesting bomb", frame(b"\x91" * 60_000 + b"\xc0"), "protocol.bad_message", None),
    ("declared 4 GiB string", frame(b"\xdb\xff\xff\xff\xff"), "protocol.bad_message", None),
    ("declared 4 G array", frame(b"\xdd\xff\xff\xff\xff"), "protocol.bad_message", None),
    (
        "args not a map",
        frame(pack({"id": 13, "op": "ping", "args": "x"})),
        "protocol.invalid_argument",
        13,
    ),
]


@pytest.mark.parametrize(("name", "data", "code", "request_id"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_error_and_others_are_served(
    agent: AgentProcess, name: str, data: bytes, code: str, request_id: int | None
) -> None:
    with raw_connection(agent) as sock:
        sock.sendall(hello_frame())
        assert read_reply(sock)["ok"] is True
        sock.sendall(data)
        reply = read_reply(sock)
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
        assert reply["id"] == request_id
        # The same connection still works after a bad frame.
        sock.sendall(frame(pack({"id": 99, "op": "ping", "args": {}})))
        assert read_reply(sock) == {"id": 99, "ok": True, "result": {"payload": b""}}
    assert_still_serving(agent)


def test_oversized_length_gets_a_reply_then_a_clean_close(agent: AgentProcess) -> None:
    with raw_connection(agent) as sock:
        sock.sendall(struct.pack(">I", 65537))
        reply = read_reply(sock)
        assert reply["error"]["code"] == "protocol.frame_too_large"
        assert reply["error"]["details"] == {"size": 65537, "limit": 65536}
        assert sock.recv(1) == b""  # closed
    assert_still_serving(agent)


def test_truncated_frame_then_disconnect_does_not_disturb_others(agent: AgentProcess) -> None:
    with raw_connection(agent) as sock:
        sock.sendall(hello_frame() + struct.pack(">I", 100) + b"only part")
    assert_still_serving(agent)


def test_stalled_client_does_not_block_others(agent: AgentProcess) -> None:
    with raw_connection(agent) as stalled:
        stalled.sendall(struct.pack(">I", 1000) + b"x" * 10)  # never completes
        assert_still_serving(agent)


def test_operations_before_hello_are_refused(agent: AgentProcess) -> None:
    with Client.connect(agent.uri, hello=False) as client:
        with pytest.raises(RemoteProtocolError) as caught:
            client.status()
        assert caught.value.code == "protocol.handshake_required"
        client.hello()
        assert client.status()["pid"] == agent.process.pid


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unsupported_protocol_versions_are_refused(agent: AgentProcess, version: object) -> None:
    with Client.connect(agent.uri, hello=False) as client:
        with pytest.raises(RemoteProtocolError) as caught:
            client.call("hello", {"protocol": version})
        assert caught.value.code == "protocol.unsupported_version"
        assert caught.value.details == {"supported": [1]}


def test_second_hello_is_an_error(agent: AgentProcess) -> None:
    with Client.connect(agent.uri) as client, pytest.raises(RemoteStateError) as caught:
        client.hello()
    assert caught.value.code == "state.invalid"


def test_status_reports_the_policy_state_and_pid(agent: AgentProcess) -> None:
    with Client.connect(agent.uri) as client:
        status = client.status()
    assert status["pid"] == agent.process.pid
    assert status["policy"]["state"] == "none"
    assert status["insecure"] is False
    assert status["uptime_seconds"] >= 0


def test_hello_lists_the_operations(agent: AgentProcess) -> None:
    with Client.connect(agent.uri, hello=False) as client:
        result = client.hello()
    assert result["protocol"] == 1
    assert {"ping", "status"} <= set(result["ops"])


def test_pipelined_requests_all_answered_by_id(agent: AgentProcess) -> None:
    with Client.connect(agent.uri) as client:
        requests = [("ping", {"payload": str(i).encode()}) for i in range(500)]
        replies = client.call_many(requests)
    assert [r["result"]["payload"] for r in replies] == [str(i).encode() for i in range(500)]


def test_an_id_may_be_reused_once_answered(agent: AgentProcess) -> None:
    # ping is answered before the next frame is read, so each reuse follows a reply; every
    # request still gets exactly one reply. (A clash while in flight: test_taint.py.)
    with raw_connection(agent) as sock:
        sock.sendall(hello_frame())
        read_reply(sock)
        sock.sendall(frame(pack({"id": 5, "op": "ping"})) * 3)
        replies = [read_reply(sock) for _ in range(3)]
    assert all(r == {"id": 5, "ok": True, "result": {"payload": b""}} for r in replies)
