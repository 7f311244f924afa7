"""The Kata protocol on the serial transport (a pty standing in for a virtio port), and the
agent's shutdown with a Kata connection open."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path

from guestagent.kata.pb import health_pb2
from guestagent.kata.ttrpc import Code, Frame, TtrpcFramer, decode_response, encode_request
from guestagent.server.agent import Agent, AgentConfig


async def read_frame(master: int, framer: TtrpcFramer) -> Frame:
    loop = asyncio.get_running_loop()
    while True:
        readable = loop.create_future()
        loop.add_reader(master, readable.set_result, None)
        try:
            await readable
        finally:
            loop.remove_reader(master)
        frames = framer.feed(os.read(master, 65536))
        if frames:
            assert isinstance(frames[0], Frame)
            return frames[0]


def test_kata_over_a_serial_port_and_shutdown(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)

    async def main() -> None:
        agent = Agent(
            AgentConfig(
                listen=[f"unix://{tmp_path}/native.sock"],
                kata=[f"serial://{os.ttyname(slave)}"],
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
            )
        )
        serving = asyncio.create_task(agent.serve())
        # The host speaks first, before the agent has opened its end.
        os.write(master, encode_request(1, "grpc.Health", "Check", b""))
        frame = await asyncio.wait_for(read_frame(master, TtrpcFramer()), 20)
        response = decode_response(frame.payload)
        assert (frame.stream_id, response.status.code) == (1, Code.OK)
        checked = health_pb2.HealthCheckResponse()
        checked.ParseFromString(response.payload)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        assert len(agent.kata_connections) == 1
        agent.request_shutdown()
        await asyncio.wait_for(serving, 20)
        assert not agent.kata_connections

    try:
        asyncio.run(main())
    finally:
        os.close(master)
        os.close(slave)
