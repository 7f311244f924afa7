"""Hostile load at every connection limit, against the real agent process.

Each case leaves the agent serving a good client, with its memory under a stated bound:
1,000 idle connections, slowloris frames, 32 partial 4 MiB frames, the fd limit, and a host
that writes and never reads. The bounds are those docs/protocol.md ("Limits") states.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import struct
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import psutil

from guestagent.client import Client
from guestagent.errors import ErrorCode
from tests.integration.agent_process import AgentProcess, running_agent

MiB = 1 << 20


def rss(agent: AgentProcess) -> int:
    return psutil.Process(agent.process.pid).memory_info().rss


def raw(agent: AgentProcess, timeout: float = 10.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        try:
            sock.connect(agent.socket_path)
            return sock
        except BlockingIOError:  # the listen backlog is full: the agent accepts in turn
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def good_client_is_served(agent: AgentProcess) -> None:
    with Client(raw(agent)) as client:
        client.hello()
        assert client.ping(b"still here") == {"payload": b"still here"}


def frame(message: dict) -> bytes:
    payload = msgpack.packb(message)
    return struct.pack(">I", len(payload)) + payload


def read_error(sock: socket.socket) -> dict:
    """The one reply a closed connection got (its error map), then EOF."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    (size,) = struct.unpack(">I", data[:4])
    reply = msgpack.unpackb(data[4 : 4 + size])
    assert reply["ok"] is False and reply["id"] is None
    return reply["error"]


def connections(agent: AgentProcess) -> int:
    with Client.connect(agent.uri) as client:
        return client.status()["connections"] - 1


@contextlib.contextmanager
def sockets(count: int, agent: AgentProcess, hello: bool = False) -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for index in range(count):
            sock = raw(agent)
            if hello:
                sock.sendall(frame({"id": index, "op": "hello", "args": {"protocol": 1}}))
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_thousand_idle_connections_are_closed_at_the_handshake_deadline() -> None:
    with running_agent("--handshake-timeout", "2") as agent:
        before = rss(agent)
        with sockets(1000, agent) as idle:
            good_client_is_served(agent)
            grown = rss(agent) - before
            assert grown < 64 * MiB, f"1,000 idle connections cost {grown / MiB:.1f} MiB"
            deadline = time.monotonic() + 15
            while connections(agent) > 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert connections(agent) == 0
            error = read_error(idle[0])
            assert error["code"] == ErrorCode.HANDSHAKE_REQUIRED
            assert "no hello within 2 s" in error["message"]
        good_client_is_served(agent)


def test_slowloris_frame_is_closed_at_the_frame_deadline() -> None:
    with running_agent("--frame-timeout", "1.5") as agent, raw(agent) as slow:
        slow.sendall(frame({"id": 0, "op": "hello", "args": {"protocol": 1}}))
        whole = frame({"id": 1, "op": "ping", "args": {"payload": b"x" * 100}})
        began = time.monotonic()
        with contextlib.suppress(OSError):
            for byte in whole[:-1]:  # one byte at a time, never the last
                slow.sendall(bytes([byte]))
                good_client_is_served(agent)
                time.sleep(0.05)
                if time.monotonic() - began > 6:
                    break
        data = b""
        while chunk := slow.recv(65536):
            data += chunk
        replies = []
        while data:
            (size,) = struct.unpack(">I", data[:4])
            replies.append(msgpack.unpackb(data[4 : 4 + size]))
            data = data[4 + size :]
        assert replies[0]["ok"] is True  # hello
        assert replies[-1]["error"]["code"] == ErrorCode.BAD_FRAME
        assert "did not arrive within 1.5 s" in replies[-1]["error"]["message"]
        assert time.monotonic() - began < 6
        good_client_is_served(agent)


def test_partial_large_frames_stay_within_the_buffer_budget() -> None:
    budget = 8 * MiB
    with running_agent("--buffer-budget", str(budget)) as agent:
        before = rss(agent)
        with sockets(32, agent, hello=True) as holders:
            for sock in holders:
                sock.setblocking(False)
                sent = 0
                # 4 MiB - 1 declared, all but the last byte offered: the agent takes what fits.
                body = struct.pack(">I", 4 * MiB - 1) + b"\x00" * (4 * MiB - 2)
                with contextlib.suppress(BlockingIOError):
                    while sent < len(body):
                        sent += sock.send(body[sent : sent + 256 * 1024])
            time.sleep(1.0)
            good_client_is_served(agent)
            grown = rss(agent) - before
            # The budget, plus one read (256 KiB) per connection before it stopped being read.
            bound = budget + 32 * 256 * 1024 + 16 * MiB
            assert grown < bound, f"RSS grew {grown / MiB:.1f} MiB (bound {bound / MiB:.0f})"
        good_client_is_served(agent)


def _limit_fds(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def test_at_the_fd_limit_never_hello_connections_make_room() -> None:
    # Hard limit 1024: the cap becomes 1024 - 512 spare (256 + the accept backlog) = 512.
    with running_agent("--max-connections", "100000", preexec=lambda: _limit_fds(1024)) as agent:
        with sockets(800, agent) as idle:
            good_client_is_served(agent)
            assert connections(agent) <= 512
            assert read_error(idle[0])["code"] == ErrorCode.TOO_MANY_CONNECTIONS
        good_client_is_served(agent)
        assert "connection cap lowered to fit the fd limit" in agent.stderr_text()


def test_at_the_cap_with_every_connection_past_hello_new_ones_are_told() -> None:
    # The unix listener's own cap (50) holds, not the default for every listener (10).
    with running_agent("--max-connections", "10", "--max-connections", "unix=50") as agent:
        with sockets(49, agent, hello=True) as busy:
            time.sleep(0.5)
            with Client(raw(agent)) as client:  # the 50th: the cap is 50
                client.hello()
                assert client.ping() == {"payload": b""}
                refused = raw(agent)
                error = read_error(refused)
                assert error["code"] == ErrorCode.TOO_MANY_CONNECTIONS
                assert error["details"] == {"limit": 50}
                refused.close()
                busy[0].sendall(frame({"id": 7, "op": "ping", "args": {}}))
                assert client.ping(b"after") == {"payload": b"after"}
        good_client_is_served(agent)


def flood_until_refused(write: Callable[[bytes], int], seconds: float) -> int:
    """Write pings without reading a reply until `seconds` pass; bytes the agent took."""
    pings = b"".join(
        frame({"id": i, "op": "ping", "args": {"payload": b"p" * 512}}) for i in range(1, 201)
    )
    taken = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        offset = taken % len(pings)  # a short write resumes mid-frame: the stream stays whole
        try:
            taken += write(pings[offset:])
        except BlockingIOError:
            time.sleep(0.02)
    return taken


def test_host_that_never_reads_cannot_grow_the_agent() -> None:
    with running_agent() as agent, raw(agent) as flood:
        flood.sendall(frame({"id": 0, "op": "hello", "args": {"protocol": 1}}))
        flood.setblocking(False)
        before = rss(agent)
        taken = flood_until_refused(flood.send, 5)
        good_client_is_served(agent)
        grown = rss(agent) - before
        # What the socket buffers hold, the high-water mark and one read: then it stops reading.
        assert 0 < taken < 2 * MiB, f"the agent took {taken / MiB:.1f} MiB of requests"
        assert grown < 8 * MiB, f"RSS grew {grown / MiB:.1f} MiB"


def test_serial_host_that_never_reads_cannot_grow_the_agent(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    try:
        with running_agent("--listen", f"serial://{os.ttyname(slave)}") as agent:
            os.write(master, frame({"id": 0, "op": "hello", "args": {"protocol": 1}}))
            before = rss(agent)
            taken = flood_until_refused(lambda data: os.write(master, data), 5)
            good_client_is_served(agent)  # on the agent's other listener
            grown = rss(agent) - before
            assert agent.process.poll() is None
            # Without flow control on the port's write side the agent read on (2.6 MiB in these
            # 5 s over a pty, and every reply buffered): now it stops at the high-water mark.
            assert 0 < taken < 1 * MiB, f"the agent took {taken / MiB:.1f} MiB of requests"
            assert grown < 8 * MiB, f"RSS grew {grown / MiB:.1f} MiB"
    finally:
        os.close(master)
        os.close(slave)
