"""A failed undo taints the agent: every later change is refused, reads still work."""

from __future__ import annotations

import asyncio

import pytest

from guestagent.client import AsyncClient, RemoteStateError
from guestagent.errors import TaintedError
from guestagent.server.agent import Agent, AgentConfig
from guestagent.server.operation import Operation


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
