"""Issue 12's route attack, in a real network namespace: `add_route` without an interface is
ruled on the interface the kernel reaches the gateway through, and `ip route` shows that a
route the policy forbids is never installed, and an allowed one goes out where it was ruled.

The agent's own code runs inside the namespace (as it runs inside the guest's): its prepare
step for add_route, the policy engine, and the add_route effect, in `ip netns exec`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.network.test_network import ip, ip_json, needs_netns, veth_pair  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
AGENT_SIDE = """
import asyncio, json, sys
from guestagent.network.links import Network
from guestagent.policy.document import parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE
from guestagent.rpc.operation import Call
from guestagent.server.ops.network import add_route, prepare_route

network = {"allow_network_changes": True, "interface_patterns": [sys.argv[1]]}
policy = parse_policy(json.dumps({"version": 1, "containers": [], "network": network}).encode())
args = {"destination": "default", "gateway": "10.77.0.2", "interface": None, "metric": None}

async def main():
    async with Network() as net:
        await net.link_up("ga0")
        await net.add_address("ga0", "10.77.0.1/24")
    prepared = await prepare_route(None, args)
    decision = decide(policy, EMPTY_STATE, "network_change", prepared.facts)
    if decision.allowed:
        await add_route(None, Call(args, prepared.facts, None, decision))
    print(json.dumps({"interface": prepared.facts["interface"], "rule": decision.rule}))

asyncio.run(main())
"""


def _agent_side(netns: str, pattern: str) -> dict:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", AGENT_SIDE, pattern],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@needs_netns
def test_a_route_through_a_forbidden_interface_is_never_installed(veth_pair):  # noqa: F811
    ns_a, _ = veth_pair
    result = _agent_side(ns_a, "eth[0-9]+")
    assert result == {"interface": "ga0", "rule": "network_change.interface"}
    assert ip_json(ns_a, "route", "show", "default") == []


@needs_netns
def test_an_allowed_route_goes_out_the_interface_it_was_ruled_on(veth_pair):  # noqa: F811
    ns_a, _ = veth_pair
    result = _agent_side(ns_a, "ga[0-9]+")
    assert result == {"interface": "ga0", "rule": "network_change.allowed"}
    (default,) = ip_json(ns_a, "route", "show", "default")
    assert (default["gateway"], default["dev"]) == ("10.77.0.2", "ga0")
