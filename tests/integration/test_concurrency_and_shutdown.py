"""Many clients at once, and SIGTERM with requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import struct

import msgpack
import pytest

from guestagent.client import AgentConnectionError, AsyncClient, Client
from guestagent.errors import ErrorCode
from guestagent.policy.gate import InsecureAllowAllGate
from guestagent.rpc.operation import Operation
from guestagent.server.agent import Agent, AgentConfig
from tests.integration.agent_process import running_agent


def test_hundred_concurrent_clients_each_get_their_own_replies() -> None:
    async def one_client(uri: str, index: int) -> list[bytes]:
        async with await AsyncClient.connect(uri) as client:
            payloads = [f"{index}:{n}".encode() for n in range(20)]
            replies = await asyncio.gather(*(client.ping(p) for p in payloads))
            return [r["payload"] for r in replies]

    async def main(uri: str) -> None:
        results = await asyncio.gather(*(one_client(uri, i) for i in range(100)))
        for index, payloads in enumerate(results):
            assert payloads == [f"{index}:{n}".encode() for n in range(20)]

    with running_agent() as agent:
        asyncio.run(main(agent.uri))
        with Client.connect(agent.uri) as client:
            assert client.status()["connections"] == 1  # the 100 are gone


def test_sigterm_answers_every_pipelined_request_then_exits_zero() -> None:
    with running_agent() as agent:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(20)
        sock.connect(agent.socket_path)
        client = Client(sock)
        client.hello()
        count = 20_000
        burst = b"".join(
            struct.pack(">I", len(p)) + p
            for p in (
                msgpack.packb({"id": i, "op": "ping", "args": {}}) for i in range(1, count + 1)
            )
        )
        sock.sendall(burst[: len(burst) // 2])
        agent.process.send_signal(signal.SIGTERM)
        # The agent may already have closed: what it read must still be answered.
        with contextlib.suppress(OSError):
            sock.sendall(burst[len(burst) // 2 :])
        seen: dict[int, str] = {}
        try:
            while True:
                reply = client.read_reply()
                seen[reply["id"]] = "ok" if reply["ok"] else reply["error"]["code"]
        except AgentConnectionError:
            pass
        assert agent.process.wait(timeout=15) == 0
        # Replies are for distinct requests, in order, with no gaps: nothing read was dropped.
        ids = sorted(seen)
        assert ids == list(range(1, len(ids) + 1))
        assert set(seen.values()) <= {"ok", ErrorCode.SHUTTING_DOWN.value}
        assert '"msg":"shutdown requested"' in agent.stderr_text()


def test_shutdown_waits_for_in_flight_operations(tmp_path) -> None:
    """In process: a slow operation in flight when shutdown starts still gets its reply."""

    started = asyncio.Event()

    async def slow(agent: Agent, call: object) -> str:
        started.set()
        await asyncio.sleep(0.5)
        return "finished"

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
        agent.dispatcher.table["slow"] = Operation("slow", slow, point="test", mutating=True)
        serving = asyncio.create_task(agent.serve())
        await asyncio.sleep(0.1)
        client = await AsyncClient.connect(uri)
        pending = asyncio.create_task(client.call("slow"))
        # Shut down only once the operation is running (a fixed sleep loses under load).
        await asyncio.wait_for(started.wait(), 10)
        agent.request_shutdown()
        assert await pending == "finished"
        with pytest.raises(Exception, match=r"shutting down|closed"):
            await client.call("status")
        await asyncio.wait_for(serving, 5)
        await client.close()
        assert isinstance(agent.gate, InsecureAllowAllGate)

    asyncio.run(main())
