"""Kata (ttrpc) connections live in the same connection pool as native ones: a cap of their
own (`--max-connections kata=N`), a first-request deadline (ttrpc has no hello), eviction
of connections that never sent a request, the fd limit, and answers at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestagent.client import Client
from guestagent.kata import service
from guestagent.kata.pb import health_pb2
from guestagent.kata.registry import Rpc, RpcTable
from guestagent.kata.ttrpc import (
    Code,
    MessageType,
    TtrpcFramer,
    decode_response,
    encode_request,
)
from guestagent.server.agent import Agent, AgentConfig
from tests.kata.kata_agent import KataAgent, kata_agent

CHECK = encode_request(1, "grpc.Health", "Check", b"")


def kata_socket(agent: KataAgent) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        try:
            sock.connect(agent.kata_path)
            return sock
        except BlockingIOError:  # the backlog is full: the agent accepts in turn
            sock.close()
            assert time.monotonic() < deadline
            time.sleep(0.01)


def health_check(sock: socket.socket, stream_id: int = 1) -> int:
    """The status code of one Health/Check on `sock`."""
    sock.sendall(encode_request(stream_id, "grpc.Health", "Check", b""))
    framer, frames = TtrpcFramer(), []
    while not frames:
        data = sock.recv(65536)
        assert data, "the agent closed the connection"
        frames = framer.feed(data)
    assert frames[0].type == MessageType.RESPONSE and frames[0].stream_id == stream_id
    return decode_response(frames[0].payload).status.code


def closed_by_agent(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


@contextlib.contextmanager
def kata_sockets(agent: KataAgent, count: int) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        opened.extend(kata_socket(agent) for _ in range(count))
        yield opened
    finally:
        for sock in opened:
            sock.close()


def native_clients_served(agent: KataAgent, count: int) -> None:
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(Client.connect(agent.process.uri)) for _ in range(count)]
        for client in clients:
            assert client.ping(b"x") == {"payload": b"x"}


def test_the_kata_listener_has_its_own_cap() -> None:
    caps = ("--max-connections", "kata=3", "--max-connections", "unix=40")
    with kata_agent(*caps) as agent, kata_sockets(agent, 3) as busy:
        for sock in busy:  # past the "handshake": each has made a call
            assert health_check(sock) == Code.OK
        with kata_socket(agent) as refused:
            assert closed_by_agent(refused)  # all three past their first request: no room
        native_clients_served(agent, 10)  # the native listener's cap is not kata's
        assert all(health_check(sock, 3) == Code.OK for sock in busy)
        busy.pop(0).close()
        time.sleep(0.2)
        with kata_socket(agent) as late:
            assert health_check(late) == Code.OK


def test_kata_connections_without_a_request_make_room_and_time_out() -> None:
    limits = ("--max-connections", "kata=3", "--handshake-timeout", "3")
    with (
        kata_agent(*limits) as agent,
        kata_sockets(agent, 3) as idle,
        kata_socket(agent) as good,
    ):
        assert health_check(good) == Code.OK  # evicts the oldest idle one
        assert closed_by_agent(idle[0])
        assert not select.select(idle[1:], [], [], 0.2)[0]  # the others are still open
        # The first-request deadline (--handshake-timeout) closes them; a connection that
        # has made a call stays, however long it is quiet.
        assert closed_by_agent(idle[1]) and closed_by_agent(idle[2])
        time.sleep(1)
        assert health_check(good, 3) == Code.OK


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_at_the_fd_limit_the_kata_and_native_listeners_stay_open_to_good_clients() -> None:
    # Two listeners asking 100,000 each under a hard limit of 1024: 512 fds stay spare and
    # the other 512 are shared, 256 per listener.
    with (
        kata_agent("--max-connections", "100000", preexec=_limit_fds) as agent,
        kata_sockets(agent, 400),
    ):
        with kata_socket(agent) as good:
            assert health_check(good) == Code.OK
        native_clients_served(agent, 3)
        stderr = agent.process.stderr_text()
        assert "connection cap lowered to fit the fd limit" in stderr
        assert '"max_connections":[256,256]' in stderr


def test_shutdown_answers_kata_calls_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read (a long poll, as WaitProcess is) is answered at once; a mutation gets the
    grace, then is answered the same way."""

    async def never_answers(context: object, request: object) -> health_pb2.HealthCheckResponse:
        await asyncio.sleep(600)
        return health_pb2.HealthCheckResponse()

    real_table = service.rpc_table

    def table() -> RpcTable:
        types = (health_pb2.CheckRequest, health_pb2.HealthCheckResponse, never_answers)
        read = Rpc("test.Slow", "Wait", *types)
        mutation = Rpc("test.Slow", "Change", *types, mutating=True)
        return RpcTable([*real_table().by_name.values(), read, mutation])

    monkeypatch.setattr(service, "rpc_table", table)
    kata_path = f"{tmp_path}/kata.sock"

    async def main() -> None:
        agent = Agent(
            AgentConfig(
                listen=[f"unix://{tmp_path}/native.sock"],
                kata=[f"unix://{kata_path}"],
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
                shutdown_grace=1.0,
            )
        )
        serving = asyncio.create_task(agent.serve())
        while len(agent.listeners) < 2:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_unix_connection(kata_path)
        writer.write(encode_request(1, "test.Slow", "Change", b""))
        writer.write(encode_request(3, "test.Slow", "Wait", b""))
        while sum(len(c.requests) for c in agent.kata_connections) < 2:
            await asyncio.sleep(0.01)
        agent.request_shutdown()
        framer, frames = TtrpcFramer(), []
        while len(frames) < 2:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, f"closed after {len(frames)} answers"
            frames += framer.feed(data)
        assert [frame.stream_id for frame in frames] == [3, 1]  # the read first
        for frame in frames:
            status = decode_response(frame.payload).status
            assert status.code == Code.UNAVAILABLE
            assert "agent.shutting_down" in status.message
        await asyncio.wait_for(serving, 10)
        assert not agent.kata_connections
        writer.close()

    asyncio.run(main())
