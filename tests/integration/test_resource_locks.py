"""Requests about the same resource run one after another; about others, side by side.

In process, through the agent's real dispatcher (development gate), with operations that
record when they run: the order is asserted, never a duration.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from guestagent.rpc.operation import Operation
from guestagent.rpc.resources import ResourceLocks
from guestagent.server.agent import Agent, AgentConfig


def make_agent(tmp_path: Path) -> Agent:
    return Agent(
        AgentConfig(
            listen=[f"unix://{tmp_path}/a.sock"],
            insecure_allow_all=True,
            snp="none",
            state_dir=str(tmp_path / "state"),
            manage_containers=False,
        )
    )


def test_same_keys_wait_other_keys_do_not_and_crossed_orders_never_deadlock() -> None:
    async def main() -> None:
        locks = ResourceLocks()
        events: list[str] = []
        gate = asyncio.Event()

        async def hold(name: str, keys: list[str], wait: bool = False) -> None:
            async with locks.hold(keys):
                events.append(f"{name} in")
                if wait:
                    await gate.wait()
                events.append(f"{name} out")

        first = asyncio.create_task(hold("first", ["container:a", "layer:x"], wait=True))
        await asyncio.sleep(0)
        same = asyncio.create_task(hold("same", ["layer:x", "container:a"]))  # crossed order
        other = asyncio.create_task(hold("other", ["container:b"]))
        await asyncio.wait_for(other, 2)
        assert events == ["first in", "other in", "other out"]
        assert locks.busy() == ["container:a", "layer:x"]
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, same), 2)
        assert events[3:] == ["first out", "same in", "same out"]
        assert locks.busy() == [] and not locks._entries  # nothing kept for host-chosen names

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_nothing_held() -> None:
    async def main() -> None:
        locks = ResourceLocks()
        async with locks.hold(["container:a"]):
            waiter = asyncio.create_task(_enter(locks, ["container:a"]))
            await asyncio.sleep(0)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        assert not locks._entries
        await asyncio.wait_for(_enter(locks, ["container:a"]), 1)

    asyncio.run(main())


async def _enter(locks: ResourceLocks, keys: list[str]) -> None:
    async with locks.hold(keys):
        pass


def test_the_dispatcher_orders_requests_by_their_resources(tmp_path: Path) -> None:
    async def main() -> None:
        agent = make_agent(tmp_path)
        events: list[str] = []
        release = asyncio.Event()

        async def slow(agent: Agent, call: Any) -> str:
            events.append(f"slow {call.args['container_id']}")
            await release.wait()
            return "done"

        async def quick(agent: Agent, call: Any) -> str:
            events.append(f"quick {call.args['container_id']}")
            return "done"

        def key(args: dict[str, Any]) -> tuple[str, ...]:
            return (f"container:{args['container_id']}",)

        table = agent.dispatcher.table
        common = {"mutating": True, "reserves": True, "keys": key}
        table["slow"] = Operation("slow", slow, point="start_container", **common)
        table["quick"] = Operation("quick", quick, point="start_container", **common)
        run = agent.dispatcher.run
        held = asyncio.create_task(run(table["slow"], {"container_id": "c1"}))
        await asyncio.sleep(0.05)
        assert not agent.mutation_lock.locked()  # the effect runs without it
        same = asyncio.create_task(run(table["quick"], {"container_id": "c1"}))
        await asyncio.wait_for(run(table["quick"], {"container_id": "c2"}), 2)
        assert events == ["slow c1", "quick c2"]
        assert agent.status()["busy"] == ["container:c1"]
        release.set()
        await asyncio.wait_for(asyncio.gather(held, same), 2)
        assert events == ["slow c1", "quick c2", "quick c1"]

    asyncio.run(main())


def test_a_create_holds_the_containers_whose_namespaces_it_joins(tmp_path: Path) -> None:
    keys = make_agent(tmp_path).dispatcher.table["create_container"].keys
    assert keys is not None
    joins = {"ipc": "pause", "uts": "pause", "network": "pause"}
    assert sorted(set(keys({"container_id": "app", "joins": joins}))) == [
        "container:app",
        "container:pause",
    ]
    assert tuple(keys({"container_id": "app", "joins": None})) == ("container:app",)
