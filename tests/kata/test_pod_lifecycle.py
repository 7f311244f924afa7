"""A Python ttrpc client drives a whole pod through the Kata protocol against the real agent:
simulated SNP, the policy adopted through HOST_DATA, a verified busybox layer, real runc."""

from __future__ import annotations

import asyncio

import pytest

from guestagent.kata.client import KataClient
from tests.kata.conftest import World
from tests.kata.kata_agent import KataAgent
from tests.kata.pod_sequence import lifecycle

pytestmark = [pytest.mark.root, pytest.mark.runtime]


def test_pod_lifecycle_over_ttrpc(world: World, pod_agent: KataAgent) -> None:
    agent = pod_agent

    async def go() -> None:
        async with await KataClient.connect(agent.kata_uri) as client:
            await asyncio.wait_for(
                lifecycle(client, world.policy, str(world.layer), str(world.base / "state")),
                180,
            )

    try:
        asyncio.run(go())
    except BaseException:
        print(agent.process.stderr_text()[-6000:])  # shown by pytest on failure
        raise
