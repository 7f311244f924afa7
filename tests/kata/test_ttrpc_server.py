"""The agent's ttrpc server behaves as containerd's reference server does."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator

import pytest

from guestagent.kata.client import AGENT, HEALTH, KataClient, KataRpcError
from guestagent.kata.pb import agent_pb2, health_pb2, ttrpc_pb2
from guestagent.kata.ttrpc import (
    MAX_MESSAGE,
    Code,
    MessageType,
    TtrpcFramer,
    decode_response,
    encode_frame,
    encode_request,
)
from tests.kata.kata_agent import KataAgent, kata_agent


@pytest.fixture(scope="module")
def agent() -> Iterator[KataAgent]:
    with kata_agent() as running:
        yield running


def call(agent: KataAgent, *args: object, **kwargs: object) -> object:
    async def go() -> object:
        async with await KataClient.connect(agent.kata_uri) as client:
            return await client.call(*args, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


class Raw:
    """A bare socket, for what a well-behaved client never sends."""

    def __init__(self, agent: KataAgent) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(agent.kata_path)
        self.framer = TtrpcFramer()
        self.frames: list = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, int, str]:
        while not self.frames:
            data = self.sock.recv(1 << 16)
            assert data, "the agent closed the connection"
            self.frames += self.framer.feed(data)
        frame = self.frames.pop(0)
        assert frame.type == MessageType.RESPONSE
        status = decode_response(frame.payload).status
        return frame.stream_id, status.code, status.message

    def close(self) -> None:
        self.sock.close()


def test_health_check_and_version(agent: KataAgent) -> None:
    checked = call(
        agent, HEALTH, "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse
    )
    assert checked.status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[attr-defined]
    version = call(
        agent, HEALTH, "Version", health_pb2.CheckRequest(), health_pb2.VersionCheckResponse
    )
    assert version.agent_version.startswith("guestagent ")  # type: ignore[attr-defined]


def test_unknown_service_method_and_not_offered_are_unimplemented(agent: KataAgent) -> None:
    for service, method, expected in [
        ("grpc.Nope", "Check", "service grpc.Nope"),
        (HEALTH, "Nope", "method Nope"),
        (AGENT, "SetIPTables", "method SetIPTables: not offered by this agent: packet filtering"),
    ]:
        with pytest.raises(KataRpcError) as failed:
            call(agent, service, method, health_pb2.CheckRequest(), health_pb2.CheckRequest)
        assert failed.value.code == Code.UNIMPLEMENTED
        assert failed.value.message.startswith(expected)


def test_even_and_reused_stream_ids_are_invalid_and_the_connection_lives(agent: KataAgent) -> None:
    raw = Raw(agent)
    try:
        raw.send(encode_request(2, HEALTH, "Check", b""))
        assert raw.response()[:2] == (2, Code.INVALID_ARGUMENT)
        raw.send(encode_request(5, HEALTH, "Check", b""))
        assert raw.response() == (5, Code.OK, "")
        raw.send(encode_request(5, HEALTH, "Check", b""))
        stream, code, message = raw.response()
        assert (stream, code) == (5, Code.INVALID_ARGUMENT) and "re-used" in message
        raw.send(encode_request(7, HEALTH, "Check", b""))
        assert raw.response() == (7, Code.OK, "")
    finally:
        raw.close()


def test_oversized_request_is_answered_resource_exhausted_and_the_stream_resumes(
    agent: KataAgent,
) -> None:
    raw = Raw(agent)
    try:
        length = MAX_MESSAGE + 10
        raw.send(struct.pack(">IIBB", length, 1, MessageType.REQUEST, 0))
        raw.send(b"\0" * length)
        stream, code, message = raw.response()
        assert (stream, code) == (1, Code.RESOURCE_EXHAUSTED) and str(MAX_MESSAGE) in message
        raw.send(encode_request(3, HEALTH, "Check", b""))
        assert raw.response() == (3, Code.OK, "")
    finally:
        raw.close()


def test_metadata_is_ignored(agent: KataAgent) -> None:
    request = ttrpc_pb2.Request(service=HEALTH, method="Check", timeout_nano=10**9)
    request.metadata.add(key="traceparent", value="00-abc-def-01")
    raw = Raw(agent)
    try:
        raw.send(encode_frame(1, MessageType.REQUEST, request.SerializeToString()))
        assert raw.response() == (1, Code.OK, "")
    finally:
        raw.close()


def test_non_request_frames_are_ignored(agent: KataAgent) -> None:
    raw = Raw(agent)
    try:
        raw.send(encode_frame(1, MessageType.DATA, b"junk") + encode_frame(3, 2, b"junk"))
        raw.send(encode_request(5, HEALTH, "Check", b""))
        assert raw.response() == (5, Code.OK, "")
    finally:
        raw.close()


def test_bad_envelope_and_bad_payload(agent: KataAgent) -> None:
    raw = Raw(agent)
    try:
        raw.send(encode_frame(1, MessageType.REQUEST, b"\xff\xff\xff"))
        assert raw.response()[:2] == (1, Code.INVALID_ARGUMENT)
        raw.send(encode_request(3, HEALTH, "Check", b"\x0a\xff"))  # truncated string
        assert raw.response()[:2] == (3, Code.INTERNAL)
    finally:
        raw.close()


def test_a_field_this_agent_does_not_know_is_refused(agent: KataAgent) -> None:
    unknown_field = health_pb2.CheckRequest(service="x").SerializeToString() + b"\x78\x01"
    raw = Raw(agent)
    try:
        raw.send(encode_request(1, HEALTH, "Check", unknown_field))
        _, code, message = raw.response()
        assert code == Code.INVALID_ARGUMENT and "protocol.unknown_field" in message
    finally:
        raw.close()


def test_policy_gated_rpcs_are_denied_without_a_policy(agent: KataAgent) -> None:
    with pytest.raises(KataRpcError) as denied:
        call(
            agent,
            AGENT,
            "StartContainer",
            agent_pb2.StartContainerRequest(container_id="c1"),
            agent_pb2.StartContainerRequest,
        )
    assert denied.value.code == Code.PERMISSION_DENIED
    assert "policy.not_adopted" in denied.value.message
