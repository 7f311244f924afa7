"""Interfaces, addresses, routes and neighbours, through pyroute2's asyncio netlink client.

`Network` is an async context manager over one namespace. Each operation validates its
arguments, acts, and returns a dict saying what it did; each `add`/`up` has its undo
(`remove_*`/`link_down`) so the handler can register it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from typing import TYPE_CHECKING, Any

from guestagent.errors import InvalidArgumentError, NotFoundError
from guestagent.network.netns import NetworkFailedError, open_route_socket

if TYPE_CHECKING:
    from pyroute2 import AsyncIPRoute

__all__ = ["Network"]

_IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
NUD_PERMANENT = 0x80


def _ifname(value: str) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise InvalidArgumentError(f"invalid interface name {value!r}")
    return value


def _interface(value: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        raise InvalidArgumentError(f"invalid address {value!r} (want ADDR/PREFIX)") from None


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidArgumentError(f"invalid IP address {value!r}") from None


def _mtu(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 65535:
        raise InvalidArgumentError(f"invalid MTU {value!r} (68..65535)")
    return value


async def _drain(result: Any) -> list[Any]:
    if hasattr(result, "__aiter__"):
        return [item async for item in result]
    return list(result or [])


class Network:
    """Network configuration of one namespace (`netns`: a name or path; None: the agent's)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: AsyncIPRoute | None = None

    async def __aenter__(self) -> Network:
        # pyroute2 takes ~0.1 s to import: only pay it when the network is first touched.
        from pyroute2 import AsyncIPRoute

        sock = await asyncio.to_thread(open_route_socket, self.netns)
        self._ipr = AsyncIPRoute(use_socket=sock)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        if self._ipr is None:
            raise NetworkFailedError("network namespace is not open")
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return await _drain(await getattr(self._ipr, method)(*args, **kwargs))
        except NetlinkError as exc:
            raise NetworkFailedError(f"{what}: {exc.args[-1] if exc.args else exc}") from None

    async def _index(self, ifname: str) -> int:
        found = await self._call("lookup", "link_lookup", ifname=_ifname(ifname))
        if not found:
            raise NotFoundError(f"no interface {ifname!r}")
        return int(found[0])

    async def link_up(self, ifname: str, *, mtu: int | None = None) -> dict[str, Any]:
        index = await self._index(ifname)
        extra = {} if mtu is None else {"mtu": _mtu(mtu)}
        await self._call(f"bring up {ifname}", "link", "set", index=index, state="up", **extra)
        return {"op": "link_up", "ifname": ifname, "index": index, **extra}

    async def link_down(self, ifname: str) -> dict[str, Any]:
        index = await self._index(ifname)
        await self._call(f"bring down {ifname}", "link", "set", index=index, state="down")
        return {"op": "link_down", "ifname": ifname, "index": index}

    async def set_mtu(self, ifname: str, mtu: int) -> dict[str, Any]:
        index = await self._index(ifname)
        await self._call(f"set mtu of {ifname}", "link", "set", index=index, mtu=_mtu(mtu))
        return {"op": "set_mtu", "ifname": ifname, "mtu": mtu}

    async def _address(self, command: str, ifname: str, address: str) -> dict[str, Any]:
        iface = _interface(address)
        index = await self._index(ifname)
        await self._call(
            f"{command} address {iface} on {ifname}",
            "addr",
            command,
            index=index,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
        )
        return {"op": f"{command}_address", "ifname": ifname, "address": str(iface)}

    async def add_address(self, ifname: str, address: str) -> dict[str, Any]:
        return await self._address("add", ifname, address)

    async def remove_address(self, ifname: str, address: str) -> dict[str, Any]:
        return await self._address("del", ifname, address)

    async def _route(
        self,
        command: str,
        destination: str,
        gateway: str | None,
        ifname: str | None,
        metric: int | None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if destination != "default":
            try:
                spec["dst"] = str(ipaddress.ip_network(destination))
            except ValueError:
                raise InvalidArgumentError(f"invalid route destination {destination!r}") from None
        if gateway is not None:
            spec["gateway"] = str(_ip(gateway))
        if ifname is not None:
            spec["oif"] = await self._index(ifname)
        if metric is not None:
            spec["priority"] = int(metric)
        if "gateway" not in spec and "oif" not in spec:
            raise InvalidArgumentError("a route needs a gateway or an interface")
        family = _family(spec.get("gateway") or spec.get("dst") or "0.0.0.0")
        if destination == "default":
            spec["dst"] = "0.0.0.0/0" if family == socket.AF_INET else "::/0"
        await self._call(f"{command} route {destination}", "route", command, family=family, **spec)
        return {
            "op": f"{command}_route",
            "destination": destination,
            "gateway": gateway,
            "ifname": ifname,
            "metric": metric,
        }

    async def egress_interface(self, gateway: str | None) -> str | None:
        """The interface the kernel reaches `gateway` through (a route lookup, as
        `ip route get`); None without a gateway or when no route reaches it."""
        if gateway is None:
            return None
        ip = _ip(gateway)
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        try:
            found = await self._call(f"look up {ip}", "route", "get", dst=str(ip), family=family)
            oif = found[0].get("RTA_OIF") if found else None
            if oif is None:
                return None
            links = await self._call(f"look up interface {oif}", "link", "get", index=oif)
        except NetworkFailedError:
            return None
        return links[0].get("IFLA_IFNAME") if links else None

    async def add_route(
        self,
        destination: str,
        *,
        gateway: str | None = None,
        ifname: str | None = None,
        metric: int | None = None,
    ) -> dict[str, Any]:
        """`destination` is a network (10.0.0.0/8) or "default"."""
        return await self._route("add", destination, gateway, ifname, metric)

    async def remove_route(
        self,
        destination: str,
        *,
        gateway: str | None = None,
        ifname: str | None = None,
        metric: int | None = None,
    ) -> dict[str, Any]:
        return await self._route("del", destination, gateway, ifname, metric)

    async def add_neighbour(self, ifname: str, address: str, lladdr: str) -> dict[str, Any]:
        """A permanent neighbour (ARP/NDP) entry."""
        if not _MAC.fullmatch(lladdr):
            raise InvalidArgumentError(f"invalid link-layer address {lladdr!r}")
        ip = _ip(address)
        index = await self._index(ifname)
        await self._call(
            f"add neighbour {ip}",
            "neigh",
            "add",
            dst=str(ip),
            lladdr=lladdr.lower(),
            ifindex=index,
            state=NUD_PERMANENT,
        )
        return {"op": "add_neighbour", "ifname": ifname, "address": str(ip), "lladdr": lladdr}

    async def remove_neighbour(self, ifname: str, address: str) -> dict[str, Any]:
        ip = _ip(address)
        index = await self._index(ifname)
        await self._call(f"remove neighbour {ip}", "neigh", "del", dst=str(ip), ifindex=index)
        return {"op": "remove_neighbour", "ifname": ifname, "address": str(ip)}

    async def list_interfaces(self) -> list[dict[str, Any]]:
        addresses: dict[int, list[str]] = {}
        for msg in await self._call("list addresses", "addr", "dump"):
            addresses.setdefault(msg["index"], []).append(
                f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"
            )
        return [
            {
                "ifname": link.get("IFLA_IFNAME"),
                "index": link["index"],
                "up": bool(link["flags"] & 1),
                "mtu": link.get("IFLA_MTU"),
                "mac": link.get("IFLA_ADDRESS"),
                "addresses": addresses.get(link["index"], []),
            }
            for link in await self._call("list interfaces", "link", "dump")
        ]

    async def list_routes(self) -> list[dict[str, Any]]:
        names = {i["index"]: i["ifname"] for i in await self.list_interfaces()}
        routes = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in await self._call("list routes", "route", "dump", family=family):
                if msg.get("RTA_TABLE") != 254:  # the main table only
                    continue
                dst = msg.get("RTA_DST")
                routes.append(
                    {
                        "destination": f"{dst}/{msg['dst_len']}" if dst else "default",
                        "gateway": msg.get("RTA_GATEWAY"),
                        "ifname": names.get(msg.get("RTA_OIF")),
                        "metric": msg.get("RTA_PRIORITY"),
                    }
                )
        return routes

    async def list_neighbours(self) -> list[dict[str, Any]]:
        names = {i["index"]: i["ifname"] for i in await self.list_interfaces()}
        return [
            {
                "ifname": names.get(msg["ifindex"]),
                "address": msg.get("NDA_DST"),
                "lladdr": msg.get("NDA_LLADDR"),
                "state": msg["state"],
            }
            for msg in await self._call("list neighbours", "neigh", "dump")
        ]


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
