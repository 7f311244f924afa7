"""Guards in a running agent: a failed undo taints it; an id in flight cannot be reused."""

from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from guestagent.client import AsyncClient, RemoteStateError
from guestagent.errors import TaintedError
from guestagent.rpc.operation import Operation
from guestagent.server.agent import Agent, AgentConfig


def test_failed_undo_taints_the_agent(tmp_path) -> None:
    calls: list[str] = []

    def broken_teardown(agent: Agent, call: object) -> None:
        calls.append("broken")
        raise TaintedError("umount /run/x failed: device busy")

    def change(agent: Agent, call: object) -> str:
        calls.append("change")
        return "changed"

    async def main() -> None:
        uri = f"unix://{tmp_path}/a.sock"
        agent = Agent(
            AgentConfig(
                listen=[uri],
                insecure_allow_all=True,
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
            )
        )
        agent.dispatcher.table["broken"] = Operation(
            "broken", broken_teardown, point="t", mutating=True
        )
        agent.dispatcher.table["change"] = Operation("change", change, point="t", mutating=True)
        serving = asyncio.create_task(agent.serve())
        await asyncio.sleep(0.1)
        async with await AsyncClient.connect(uri) as client:
            assert await client.call("change") == "changed"
            with pytest.raises(RemoteStateError) as first:
                await client.call("broken")
            assert first.value.code == "state.tainted"
            with pytest.raises(RemoteStateError) as later:
                await client.call("change")
            assert later.value.code == "state.tainted"
            assert "device busy" in later.value.message
            status = await client.status()
            assert "broken: umount /run/x failed" in status["tainted"]
        agent.request_shutdown()
        await asyncio.wait_for(serving, 10)

    asyncio.run(main())
    assert calls == ["change", "broken"]


def test_an_id_already_in_flight_is_refused(tmp_path) -> None:
    release = asyncio.Event()

    async def slow(agent: Agent, call: object) -> str:
        await release.wait()
        return "done"

    async def main() -> None:
        uri = f"unix://{tmp_path}/a.sock"
        agent = Agent(
            AgentConfig(
                listen=[uri],
                insecure_allow_all=True,
                snp="none",
                state_dir=str(tmp_path / "state"),
                manage_containers=False,
            )
        )
        agent.dispatcher.table["slow"] = Operation("slow", slow, point="t")
        serving = asyncio.create_task(agent.serve())
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_unix_connection(f"{tmp_path}/a.sock")
        for request_id, op in [(1, "hello"), (7, "slow"), (7, "slow")]:
            payload = msgpack.packb(
                {"id": request_id, "op": op, "args": {"protocol": 1} if op == "hello" else {}}
            )
            writer.write(struct.pack(">I", len(payload)) + payload)
        replies = []
        for _ in range(2):  # bounded: without the check the second reply would never come
            size = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 10))[0]
            replies.append(msgpack.unpackb(await reader.readexactly(size)))
        assert replies[0]["ok"] is True  # hello
        assert replies[1]["id"] == 7 and replies[1]["error"]["code"] == "protocol.duplicate_id"
        release.set()
        size = struct.unpack(">I", await reader.readexactly(4))[0]
        assert msgpack.unpackb(await reader.readexactly(size)) == {
            "id": 7,
            "ok": True,
            "result": "done",
        }
        writer.close()
        agent.request_shutdown()
        await asyncio.wait_for(serving, 10)

    asyncio.run(main())
