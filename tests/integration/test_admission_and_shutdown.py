"""In process: the in-flight cap holds at admission, shutdown answers every request in
flight, and only operations that change the policy state take the mutation lock."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from pathlib import Path
from typing import Any

import msgpack

from guestagent.client import AsyncClient, RemoteError
from guestagent.errors import ErrorCode
from guestagent.rpc.operation import Operation
from guestagent.server.agent import Agent, AgentConfig


def make_agent(tmp_path: Path, **config: Any) -> tuple[Agent, str]:
    uri = f"unix://{tmp_path}/a.sock"
    agent = Agent(
        AgentConfig(
            listen=[uri],
            insecure_allow_all=True,
            snp="none",
            state_dir=str(tmp_path / "state"),
            manage_containers=False,
            **config,
        )
    )
    return agent, uri


async def started(agent: Agent) -> asyncio.Task[None]:
    serving = asyncio.create_task(agent.serve())
    while not agent.listeners:
        await asyncio.sleep(0.01)
    return serving


def frame(message: dict) -> bytes:
    payload = msgpack.packb(message)
    return struct.pack(">I", len(payload)) + payload


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[dict]:
    replies = []
    for _ in range(count):
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        replies.append(msgpack.unpackb(await reader.readexactly(size)))
    return replies


def test_two_thousand_requests_in_one_write_run_at_most_max_in_flight(tmp_path: Path) -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def hold(agent: Agent, call: object) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1
        return "released"

    async def main() -> None:
        agent, uri = make_agent(tmp_path, max_in_flight=8)
        agent.dispatcher.table["hold"] = Operation("hold", hold, point="test")
        serving = await started(agent)
        reader, writer = await asyncio.open_unix_connection(f"{tmp_path}/a.sock")
        writer.write(frame({"id": 0, "op": "hello", "args": {"protocol": 1}}))
        writer.write(b"".join(frame({"id": i, "op": "hold", "args": {}}) for i in range(1, 2001)))
        await writer.drain()
        assert (await read_replies(reader, 1))[0]["ok"] is True
        await asyncio.sleep(0.3)
        assert running == 8 and most == 8  # not 2,000 tasks: the rest wait, unread or queued
        async with await AsyncClient.connect(uri) as other:  # other connections are served
            assert await other.ping(b"x") == {"payload": b"x"}
        release.set()
        replies = await asyncio.wait_for(read_replies(reader, 2000), 30)
        assert sorted(r["id"] for r in replies) == list(range(1, 2001))
        assert all(r["ok"] and r["result"] == "released" for r in replies)
        assert most == 8
        writer.close()
        agent.request_shutdown()
        await asyncio.wait_for(serving, 10)

    asyncio.run(main())


def test_shutdown_answers_long_polls_at_once_and_mutations_after_the_grace(
    tmp_path: Path,
) -> None:
    async def poll(agent: Agent, call: object) -> str:
        await asyncio.sleep(60)  # a wait_process / read_output with a long timeout
        return "never"

    async def quick_change(agent: Agent, call: object) -> str:
        await asyncio.sleep(0.3)
        return "changed"

    async def stuck_change(agent: Agent, call: object) -> str:
        await asyncio.sleep(60)
        return "never"

    async def main() -> None:
        agent, uri = make_agent(tmp_path, shutdown_grace=1.0)
        table = agent.dispatcher.table
        table["poll"] = Operation("poll", poll, point="test")
        table["quick"] = Operation("quick", quick_change, point="test", mutating=True)
        table["stuck"] = Operation("stuck", stuck_change, point="test", mutating=True)
        serving = await started(agent)
        client = await AsyncClient.connect(uri)
        calls = {op: asyncio.create_task(client.call(op)) for op in ("poll", "quick", "stuck")}
        await asyncio.sleep(0.1)
        began = time.monotonic()
        agent.request_shutdown()
        for op in ("poll", "stuck"):
            try:
                await asyncio.wait_for(calls[op], 5)
            except RemoteError as exc:
                assert exc.code == ErrorCode.SHUTTING_DOWN, op
                assert f"{op} was stopped" in str(exc)
            else:
                raise AssertionError(f"{op} was not stopped")
            if op == "poll":  # reads are answered at once, not after the grace
                assert time.monotonic() - began < 0.5
        assert await calls["quick"] == "changed"
        await asyncio.wait_for(serving, 5)
        assert time.monotonic() - began < 4  # the grace, the flush, and out
        await client.close()

    asyncio.run(main())


def test_exec_external_does_not_hold_the_mutation_lock(tmp_path: Path) -> None:
    async def mount(agent: Agent, call: object) -> str:
        return "mounted"

    async def main() -> None:
        agent, uri = make_agent(tmp_path)
        # A state-changing point: it takes the lock.
        agent.dispatcher.table["mount"] = Operation(
            "mount", mount, point="mount_scratch", mutating=True
        )
        serving = await started(agent)
        async with await AsyncClient.connect(uri) as client:
            long = asyncio.create_task(
                client.call("exec_external", {"argv": ["sleep", "30"], "timeout": 60})
            )
            await asyncio.sleep(0.3)
            assert not agent.mutation_lock.locked()
            assert await asyncio.wait_for(client.call("mount"), 2) == "mounted"
            long.cancel()
        agent.request_shutdown()
        await asyncio.wait_for(serving, 15)

    asyncio.run(main())


def test_a_hanging_runtime_on_create_does_not_hold_the_lock(tmp_path: Path) -> None:
    async def hanging_create(agent: Agent, call: object) -> str:
        await asyncio.sleep(30)  # a runtime that never answers `create`
        return "created"

    async def mount(agent: Agent, call: object) -> str:
        return "mounted"

    async def main() -> None:
        agent, uri = make_agent(tmp_path)
        table = agent.dispatcher.table
        assert table["create_container"].reserves  # the real one is decided, then run
        table["hang"] = Operation(
            "hang",
            hanging_create,
            point="create_container",
            mutating=True,
            reserves=True,
            keys=lambda args: ("container:hung",),
        )
        table["mount"] = Operation("mount", mount, point="mount_scratch", mutating=True)
        serving = await started(agent)
        async with await AsyncClient.connect(uri) as client:
            hang = asyncio.create_task(client.call("hang"))
            await asyncio.sleep(0.3)
            assert not agent.mutation_lock.locked()
            assert await asyncio.wait_for(client.call("mount"), 2) == "mounted"
            agent.request_shutdown()
            with contextlib.suppress(RemoteError):
                await asyncio.wait_for(hang, 15)
        await asyncio.wait_for(serving, 15)

    asyncio.run(main())
