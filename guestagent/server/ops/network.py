"""Network changes in the guest: links, addresses, routes, neighbours, resolv.conf, hosts;
and reading the guest's interfaces and routes (a property read, point get_properties).

Every change is a `network_change` the policy must allow (by kind, and by interface name where
the policy constrains names). resolv.conf and hosts are written under the agent's shared
directory, from where containers mount them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from guestagent.protocol.schema import Field, identifier
from guestagent.rpc.operation import Call, Operation, Prepared

if TYPE_CHECKING:
    from guestagent.network.links import Network
    from guestagent.server.agent import Agent

__all__ = ["OPERATIONS"]

NAME = Field((str,), max_len=15)
TEXT = Field((str,), max_len=256)
TEXTS = Field((list,), default=[], items=str, max_len=64)


def _network() -> Network:
    """The netlink session of one request; the network package loads with the first."""
    from guestagent.network.links import Network

    return Network()


def _facts(kind: str, interface: str | None = None) -> Any:
    def prepare(agent: Agent, args: dict[str, Any]) -> Prepared:
        facts: dict[str, Any] = {"kind": kind, **args}
        if interface is not None:
            facts["interface"] = args[interface]
        return Prepared(facts)

    return prepare


async def prepare_route(agent: Agent, args: dict[str, Any]) -> Prepared:
    """A route without an interface is ruled on the interface the kernel would use: the one
    that reaches its gateway in the guest. That interface is then named when the route is
    added, so the route takes the interface the policy allowed. None (unresolved) is denied
    wherever the policy constrains interface names."""
    facts: dict[str, Any] = {"kind": "route", **args}
    if args["interface"] is None:
        async with _network() as net:
            facts["interface"] = await net.egress_interface(args["gateway"])
    return Prepared(facts)


async def set_link(agent: Agent, call: Call) -> dict[str, Any]:
    args = call.args
    async with _network() as net:
        if args["up"] is False:
            return await net.link_down(args["interface"])
        return await net.link_up(args["interface"], mtu=args["mtu"])


async def add_address(agent: Agent, call: Call) -> dict[str, Any]:
    async with _network() as net:
        return await net.add_address(call.args["interface"], call.args["address"])


async def add_route(agent: Agent, call: Call) -> dict[str, Any]:
    args = call.args
    async with _network() as net:
        return await net.add_route(
            args["destination"],
            gateway=args["gateway"],
            ifname=call.facts["interface"],  # the one the decision saw (prepare_route)
            metric=args["metric"],
        )


async def add_neighbor(agent: Agent, call: Call) -> dict[str, Any]:
    args = call.args
    async with _network() as net:
        return await net.add_neighbour(args["interface"], args["address"], args["lladdr"])


async def list_network(agent: Agent, call: Call) -> dict[str, Any]:
    async with _network() as net:
        return {"interfaces": await net.list_interfaces(), "routes": await net.list_routes()}


def shared_dir(agent: Agent) -> str:
    path = agent.state_dir / "shared"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


# The file writes fsync: they run in a thread, never on the event loop.
async def write_resolv_conf(agent: Agent, call: Call) -> dict[str, Any]:
    from guestagent.network.files import write_resolv_conf as write_resolv_file

    args = call.args
    return await asyncio.to_thread(
        write_resolv_file,
        shared_dir(agent),
        args["container_id"],
        args["nameservers"],
        args["search"],
        args["options"],
    )


async def write_hosts(agent: Agent, call: Call) -> dict[str, Any]:
    from guestagent.network.files import write_hosts as write_hosts_file

    entries = [(e["address"], e["names"]) for e in call.args["entries"]]
    return await asyncio.to_thread(
        write_hosts_file, shared_dir(agent), call.args["container_id"], entries
    )


def _entries(value: list[Any]) -> str | None:
    for entry in value:
        if not (
            isinstance(entry, dict)
            and set(entry) == {"address", "names"}
            and isinstance(entry["address"], str)
            and isinstance(entry["names"], list)
            and all(isinstance(n, str) for n in entry["names"])
        ):
            return "each entry must be {address: str, names: [str]}"
    return None


OPTIONAL_NAME = Field((str, type(None)), default=None, max_len=15)
OPTIONAL_INT = Field((int, type(None)), default=None)

OPERATIONS = [
    Operation(
        "list_network",
        list_network,
        point="get_properties",
        prepare=lambda agent, args: Prepared({}),
        summary="the guest's interfaces (addresses, mtu, mac) and main-table routes",
    ),
    Operation(
        "set_link",
        set_link,
        point="network_change",
        mutating=True,
        prepare=_facts("interface", "interface"),
        args={"interface": NAME, "up": Field((bool,), default=True), "mtu": OPTIONAL_INT},
    ),
    Operation(
        "add_address",
        add_address,
        point="network_change",
        mutating=True,
        prepare=_facts("address", "interface"),
        args={"interface": NAME, "address": TEXT},
    ),
    Operation(
        "add_route",
        add_route,
        point="network_change",
        mutating=True,
        prepare=prepare_route,
        args={
            "destination": TEXT,
            "gateway": Field((str, type(None)), default=None),
            "interface": OPTIONAL_NAME,
            "metric": OPTIONAL_INT,
        },
    ),
    Operation(
        "add_neighbor",
        add_neighbor,
        point="network_change",
        mutating=True,
        prepare=_facts("neighbor", "interface"),
        args={"interface": NAME, "address": TEXT, "lladdr": TEXT},
    ),
    Operation(
        "write_resolv_conf",
        write_resolv_conf,
        point="network_change",
        mutating=True,
        prepare=_facts("dns"),
        args={
            "container_id": identifier(),
            "nameservers": TEXTS,
            "search": TEXTS,
            "options": TEXTS,
        },
    ),
    Operation(
        "write_hosts",
        write_hosts,
        point="network_change",
        mutating=True,
        prepare=_facts("hosts"),
        args={"container_id": identifier(), "entries": Field((list,), max_len=256, check=_entries)},
    ),
]
