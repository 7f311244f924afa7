"""UpdateInterface, UpdateRoutes, AddARPNeighbors, ListInterfaces, ListRoutes.

Each change is the native operation of the same kind (point network_change): set_link and
add_address for an interface, add_route per route, add_neighbor per neighbour. Interfaces are
named, never found by what the host says of them: a hardware address (`hwAddr`) and a PCI
path (`devicePath`) the host states are checked against the named link (read-only), never
used to pick one or set. `type` names the host side's endpoint kind (the guest sees a NIC
either way): one of Kata's names is accepted and changes nothing. `raw_flags` may only say
what an up link is (the agent brings it up itself); any other flag (NOARP, PROMISC, ...) has
no rule and is refused by name. Routes and neighbours are added, not replaced. Listing is the
native list_network (point get_properties).
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from guestagent.errors import InvalidArgumentError
from guestagent.kata.pb import agent_pb2, types_pb2
from guestagent.kata.registry import Rpc
from guestagent.kata.strict import allow_only

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

SERVICE = "grpc.AgentService"
NUD_PERMANENT = 0x80
# Kata's endpoint types (virtcontainers' EndpointType): the host side of the guest's NIC.
ENDPOINT_TYPES = frozenset(
    ("", "virtual", "physical", "veth", "tap", "tuntap", "macvtap", "ipvlan", "vhost-user",
     "vfio")
)  # fmt: skip
# net_device_flags that describe an up link and ask nothing the agent does not do anyway.
UP_FLAGS = {"IFF_UP": 0x1, "IFF_BROADCAST": 0x2, "IFF_RUNNING": 0x40, "IFF_MULTICAST": 0x1000,
            "IFF_LOWER_UP": 0x10000}  # fmt: skip
FLAG_NAMES = {
    0x4: "IFF_DEBUG", 0x8: "IFF_LOOPBACK", 0x10: "IFF_POINTOPOINT", 0x20: "IFF_NOTRAILERS",
    0x80: "IFF_NOARP", 0x100: "IFF_PROMISC", 0x200: "IFF_ALLMULTI", 0x400: "IFF_MASTER",
    0x800: "IFF_SLAVE", 0x2000: "IFF_PORTSEL", 0x4000: "IFF_AUTOMEDIA", 0x8000: "IFF_DYNAMIC",
    0x20000: "IFF_DORMANT", 0x40000: "IFF_ECHO",
}  # fmt: skip
_PCI_ADDRESS = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:([0-9a-f]{2})\.[0-7]")
SYS_NET = "/sys/class/net"


def pci_path(device_realpath: str) -> str:
    """Kata's PCI path (the slot at each bus level, "02/00") of a sysfs device path."""
    slots = [
        m.group(1) for part in device_realpath.split("/") if (m := _PCI_ADDRESS.fullmatch(part))
    ]
    return "/".join(slots)


def refused_flags(raw_flags: int) -> list[str]:
    """The flags in `raw_flags` that have no rule (by name, or as hex if the kernel has none)."""
    extra = raw_flags & ~sum(UP_FLAGS.values())
    return [FLAG_NAMES.get(1 << b, hex(1 << b)) for b in range(32) if extra & (1 << b)]


def _cidr(address: types_pb2.IPAddress, path: str) -> str:
    allow_only(address, {"family", "address", "mask"}, path)
    try:
        return str(ipaddress.ip_interface(f"{address.address}/{address.mask or 32}"))
    except ValueError:
        raise InvalidArgumentError(
            f"{path}: {address.address}/{address.mask} is no address"
        ) from None


async def _links(context: KataContext) -> list[dict[str, Any]]:
    return (await context.native("list_network"))["interfaces"]


async def update_interface(
    context: KataContext, request: agent_pb2.UpdateInterfaceRequest
) -> types_pb2.Interface:
    interface = request.interface
    path = "UpdateInterfaceRequest.interface"
    allow_only(
        interface,
        {"device", "name", "IPAddresses", "mtu", "hwAddr", "devicePath", "type", "raw_flags"},
        path,
    )
    name = interface.name or interface.device
    if not name or (interface.device and interface.device != name):
        raise InvalidArgumentError(f"{path}: name the interface (device, if set, must equal it)")
    if interface.type not in ENDPOINT_TYPES:
        raise InvalidArgumentError(
            f"{path}.type {interface.type!r} is none of Kata's endpoint types "
            f"{sorted(ENDPOINT_TYPES - {''})}"
        )
    if refused := refused_flags(interface.raw_flags):
        raise InvalidArgumentError(
            f"{path}.raw_flags: {', '.join(refused)} has no rule; only "
            f"{', '.join(UP_FLAGS)} (an up link, which the agent makes) may be given"
        )
    if interface.devicePath:
        _check_pci_path(name, interface.devicePath, f"{path}.devicePath")
    if interface.hwAddr:
        link = next((x for x in await _links(context) if x["ifname"] == name), None)
        if link is None or (link["mac"] or "").lower() != interface.hwAddr.lower():
            raise InvalidArgumentError(
                f"{path}.hwAddr {interface.hwAddr} is not the address of {name}: the agent "
                "checks the hardware address, it never sets it"
            )
    cidrs = [_cidr(a, f"{path}.IPAddresses[{i}]") for i, a in enumerate(interface.IPAddresses)]
    await context.native("set_link", {"interface": name, "up": True, "mtu": interface.mtu or None})
    for cidr in cidrs:
        await context.native("add_address", {"interface": name, "address": cidr})
    return interface


def _check_pci_path(name: str, stated: str, path: str) -> None:
    try:
        actual = pci_path(os.path.realpath(os.path.join(SYS_NET, name, "device"), strict=True))
    except (OSError, ValueError):
        actual = ""
    if not actual or actual != stated:
        raise InvalidArgumentError(
            f"{path} {stated} is not the PCI path of {name} ({actual or 'none'}): the agent "
            "checks it, it never finds an interface by the host's PCI path"
        )


async def update_routes(
    context: KataContext, request: agent_pb2.UpdateRoutesRequest
) -> agent_pb2.Routes:
    for index, route in enumerate(request.routes.Routes):
        allow_only(route, {"dest", "gateway", "device", "family"},
                   f"UpdateRoutesRequest.routes.Routes[{index}]")  # fmt: skip
        await context.native(
            "add_route",
            {
                "destination": route.dest or "default",
                "gateway": route.gateway or None,
                "interface": route.device or None,
            },
        )
    return request.routes


async def add_arp_neighbors(
    context: KataContext, request: agent_pb2.AddARPNeighborsRequest
) -> empty_pb2.Empty:
    for index, neighbor in enumerate(request.neighbors.ARPNeighbors):
        path = f"AddARPNeighborsRequest.neighbors.ARPNeighbors[{index}]"
        allow_only(neighbor, {"toIPAddress", "device", "lladdr", "state"}, path)
        if neighbor.state not in (0, NUD_PERMANENT):
            raise InvalidArgumentError(f"{path}.state: only permanent neighbours are added")
        allow_only(neighbor.toIPAddress, {"family", "address"}, f"{path}.toIPAddress")
        await context.native(
            "add_neighbor",
            {
                "interface": neighbor.device,
                "address": neighbor.toIPAddress.address,
                "lladdr": neighbor.lladdr,
            },
        )
    return empty_pb2.Empty()


async def list_interfaces(
    context: KataContext, request: agent_pb2.ListInterfacesRequest
) -> agent_pb2.Interfaces:
    response = agent_pb2.Interfaces()
    for link in await _links(context):
        interface = response.Interfaces.add(
            name=link["ifname"] or "", device=link["ifname"] or "", mtu=link["mtu"] or 0,
            hwAddr=link["mac"] or "",
        )  # fmt: skip
        for cidr in link["addresses"]:
            parsed = ipaddress.ip_interface(cidr)
            interface.IPAddresses.add(
                family=types_pb2.v6 if parsed.version == 6 else types_pb2.v4,
                address=str(parsed.ip),
                mask=str(parsed.network.prefixlen),
            )
    return response


async def list_routes(
    context: KataContext, request: agent_pb2.ListRoutesRequest
) -> agent_pb2.Routes:
    response = agent_pb2.Routes()
    for route in (await context.native("list_network"))["routes"]:
        destination = route["destination"]
        response.Routes.add(
            dest="" if destination == "default" else destination,
            gateway=route["gateway"] or "",
            device=route["ifname"] or "",
            family=types_pb2.v6 if ":" in destination + (route["gateway"] or "") else types_pb2.v4,
        )
    return response


RPCS = [
    Rpc(SERVICE, "UpdateInterface", agent_pb2.UpdateInterfaceRequest, types_pb2.Interface,
        update_interface, mutating=True),
    Rpc(SERVICE, "UpdateRoutes", agent_pb2.UpdateRoutesRequest, agent_pb2.Routes,
        update_routes, mutating=True),
    Rpc(SERVICE, "AddARPNeighbors", agent_pb2.AddARPNeighborsRequest, empty_pb2.Empty,
        add_arp_neighbors, mutating=True),
    Rpc(SERVICE, "ListInterfaces", agent_pb2.ListInterfacesRequest, agent_pb2.Interfaces,
        list_interfaces),
    Rpc(SERVICE, "ListRoutes", agent_pb2.ListRoutesRequest, agent_pb2.Routes, list_routes),
]  # fmt: skip
