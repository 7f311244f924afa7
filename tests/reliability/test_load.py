"""Load: 64 concurrent clients x 1,000 requests, some of them running real containers.

Most clients ask for ping/status/container_state/list_containers/stats; a few run
create/start/wait/delete cycles of `/bin/true` containers on overlays mounted up front (a
container id can only be created on its own overlay). Every reply must match its request
(ping payloads echo, states name the container asked about): nothing lost or mismatched.
After a warm-up run, a full run must not grow the agent's open fds, threads or RSS (psutil,
with a tolerance for the allocator). GUESTAGENT_LOAD_REQUESTS changes the per-client count.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from guestagent.client import AsyncClient, Client
from tests.integration.agent_process import AgentProcess
from tests.reliability.world import (
    SLEEP_COMMAND,
    ReliabilityWorld,
    agent_with_policy,
    prepare_overlay,
    spec,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime, pytest.mark.slow]

CLIENTS = 64
CONTAINER_CLIENTS = 4
REQUESTS = int(os.environ.get("GUESTAGENT_LOAD_REQUESTS", "1000"))
CYCLE_EVERY = 100  # a container client runs one create/start/wait/delete per this many requests
RSS_TOLERANCE = 24 * 1024 * 1024
STEADY = "steady"


@dataclass
class Tally:
    requests: int = 0
    containers_run: int = 0


async def checked(client: AsyncClient, tally: Tally, op: str, args: dict[str, Any]) -> Any:
    result = await client.call(op, args)
    tally.requests += 1
    return result


async def one_read(client: AsyncClient, tally: Tally, index: int, n: int) -> None:
    kind = n % 5
    if kind == 0:
        payload = f"{index}/{n}".encode()
        assert (await checked(client, tally, "ping", {"payload": payload}))["payload"] == payload
    elif kind == 1:
        assert (await checked(client, tally, "status", {}))["policy"]["state"] == "enforcing"
    elif kind == 2:
        state = await checked(client, tally, "container_state", {"container_id": STEADY})
        assert state["container_id"] == STEADY and state["status"] == "running"
    elif kind == 3:
        listed = await checked(client, tally, "list_containers", {})
        assert STEADY in [c["container_id"] for c in listed["containers"]]
    else:
        assert (await checked(client, tally, "stats", {}))["pid"] > 0


async def container_cycle(client: AsyncClient, tally: Tally, cid: str) -> None:
    created = await checked(
        client, tally, "create_container", {"container_id": cid, "spec": spec()}
    )
    assert created["container_id"] == cid
    await checked(client, tally, "start_container", {"container_id": cid})
    waited = await checked(client, tally, "wait_process", {"container_id": cid, "timeout": 60})
    assert waited == {"exit_code": 0}
    await checked(client, tally, "delete_container", {"container_id": cid})
    tally.containers_run += 1


async def one_client(uri: str, index: int, requests: int, tally: Tally) -> None:
    async with await AsyncClient.connect(uri) as client:
        runs_containers = index < CONTAINER_CLIENTS
        n = 0
        while n < requests:
            if runs_containers and n % CYCLE_EVERY == 0:
                await container_cycle(client, tally, f"load{index}")
                n += 4
            else:
                await one_read(client, tally, index, n)
                n += 1


def run_load(uri: str, requests: int) -> Tally:
    tally = Tally()

    async def main() -> None:
        await asyncio.gather(*(one_client(uri, i, requests, tally) for i in range(CLIENTS)))

    asyncio.run(main())
    return tally


@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int
    rss: int


def settled_usage(agent: AgentProcess) -> Usage:
    """Resource use once only our probe connection is left."""
    with Client.connect(agent.uri) as client:
        deadline = time.monotonic() + 20
        while client.status()["connections"] > 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the fixture's connection and this probe
        process = psutil.Process(agent.process.pid)
        time.sleep(0.2)
        return Usage(process.num_fds(), process.num_threads(), process.memory_info().rss)


@pytest.fixture(scope="module")
def agent(world: ReliabilityWorld) -> Iterator[AgentProcess]:
    with agent_with_policy(world) as process, Client.connect(process.uri) as client:
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        for cid in [STEADY, *(f"load{i}" for i in range(CONTAINER_CLIENTS))]:
            prepare_overlay(client, cid)
        client.call("create_container", {"container_id": STEADY, "spec": spec(SLEEP_COMMAND)})
        client.call("start_container", {"container_id": STEADY})
        yield process


def test_load_loses_nothing_and_leaks_nothing(agent: AgentProcess) -> None:
    warm = run_load(agent.uri, max(20, REQUESTS // 10))
    assert warm.containers_run >= CONTAINER_CLIENTS
    before = settled_usage(agent)

    started = time.monotonic()
    tally = run_load(agent.uri, REQUESTS)
    elapsed = time.monotonic() - started
    after = settled_usage(agent)

    expected_cycles = CONTAINER_CLIENTS * -(-REQUESTS // CYCLE_EVERY)
    assert tally.containers_run == expected_cycles
    assert tally.requests >= CLIENTS * REQUESTS
    print(f"{tally.requests} requests, {tally.containers_run} containers in {elapsed:.1f} s")
    print(f"warm {before}; after {after}")
    assert after.fds <= before.fds, (before, after)
    assert after.threads <= before.threads, (before, after)
    assert after.rss - before.rss < RSS_TOLERANCE, (before, after)
    with Client.connect(agent.uri) as client:
        listed = [c["container_id"] for c in client.call("list_containers")["containers"]]
        assert listed == [STEADY]
        engine = client.status()["policy"]["engine_state"]
        assert (engine["created"], engine["started"]) == (1, 1)
    assert agent.process.poll() is None
