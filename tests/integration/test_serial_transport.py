"""The serial transport on a real character device (a pty standing in for a virtio port),
including a host that speaks before the agent has opened the port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty

import msgpack
import pytest

from guestagent.errors import AgentError
from guestagent.server.agent import Agent, AgentConfig


def frame(value: dict) -> bytes:
    payload = msgpack.packb(value)
    return struct.pack(">I", len(payload)) + payload


async def read_reply(master: int) -> dict:
    loop = asyncio.get_running_loop()
    buffer = b""
    while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]:
        readable = loop.create_future()
        loop.add_reader(master, readable.set_result, None)
        try:
            await readable
        finally:
            loop.remove_reader(master)
        buffer += os.read(master, 65536)
    size = struct.unpack(">I", buffer[:4])[0]
    return msgpack.unpackb(buffer[4 : 4 + size])


def open_fds() -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own fd, closed since
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return targets


def test_the_port_is_open_when_the_agent_says_it_is_listening(tmp_path) -> None:
    # The host may send as soon as it reads "listening": the port must be open by then, or
    # a virtio port would drop those bytes.
    master, slave = os.openpty()
    port = os.ttyname(slave)

    async def main() -> None:
        agent = Agent(
            AgentConfig(
                listen=[f"serial://{port}"],
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
            )
        )
        try:
            await agent.start()
            assert open_fds().count(port) == 1 + 2  # the test's slave; the agent's read and write
        finally:
            await agent.shutdown()
            await agent.release()

    try:
        asyncio.run(main())
    finally:
        os.close(master)
        os.close(slave)


def test_a_serial_port_name_that_does_not_exist_stops_start_up(tmp_path) -> None:
    agent = Agent(
        AgentConfig(
            listen=["serial://no-such-port.0"],
            snp="none",
            state_dir=str(tmp_path / "state"),
            manage_containers=False,
        )
    )

    async def main() -> None:
        try:
            await agent.start()
        finally:
            await agent.shutdown()
            await agent.release()

    with pytest.raises(AgentError, match=r"no virtio-serial port named 'no-such-port\.0'"):
        asyncio.run(main())


def test_host_that_speaks_first_is_answered(tmp_path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    port = os.ttyname(slave)

    async def main() -> None:
        # The host connects and sends before the agent opens its end.
        os.write(master, frame({"id": 1, "op": "hello", "args": {"protocol": 1}}))
        agent = Agent(
            AgentConfig(
                listen=[f"serial://{port}"],
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
            )
        )
        serving = asyncio.create_task(agent.serve())
        hello = await asyncio.wait_for(read_reply(master), 10)
        assert hello["id"] == 1 and hello["ok"] is True
        os.write(master, frame({"id": 2, "op": "ping", "args": {"payload": b"over serial"}}))
        ping = await asyncio.wait_for(read_reply(master), 10)
        assert ping == {"id": 2, "ok": True, "result": {"payload": b"over serial"}}
        agent.request_shutdown()
        await asyncio.wait_for(serving, 10)

    try:
        asyncio.run(main())
    finally:
        os.close(master)
        os.close(slave)
