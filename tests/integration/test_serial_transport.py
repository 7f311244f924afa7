"""The serial transport on a real character device (a pty standing in for a virtio port),
including a host that speaks before the agent has opened the port."""

from __future__ import annotations

import asyncio
import os
import struct
import tty

import msgpack

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
