"""UpdateInterface, UpdateRoutes, AddARPNeighbors, ListInterfaces, ListRoutes.

Each change is the native operation of the same kind (point network_change): set_link and
add_address for an interface, add_route per route, add_neighbor per neighbour. Interfaces are
named, never found by the host's PCI path; a hardware address the host states is checked
against the link (read-only), never set. Routes and neighbours are added, not replaced.
Listing is the native list_network (point get_properties).
"""

from __future__ import annotations

import ipaddress
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
    allow_only(interface, {"device", "name", "IPAddresses", "mtu", "hwAddr"}, path)
    name = interface.name or interface.device
    if not name or (interface.device and interface.device != name):
        raise InvalidArgumentError(f"{path}: name the interface (device, if set, must equal it)")
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
