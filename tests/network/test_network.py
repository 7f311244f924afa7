"""Network operations in namespaces the tests create, checked with iproute2 and a ping."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest

from guestagent.errors import InvalidArgumentError, NotFoundError
from guestagent.network.files import write_hosts, write_resolv_conf
from guestagent.network.links import Network
from guestagent.network.netns import NetworkFailedError

NETNS_MARKS = (
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 (ip) is not installed"),
)


def needs_netns(test):
    for mark in NETNS_MARKS:
        test = mark(test)
    return test


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


def ip_json(netns: str, *args: str) -> list[dict]:
    return json.loads(ip("-n", netns, "-j", *args) or "[]")


@pytest.fixture
def veth_pair():
    """Two fresh namespaces joined by a veth pair (ga0 in the first, ga1 in the second)."""
    names = (f"ga-a-{os.getpid()}", f"ga-b-{os.getpid()}")
    for name in names:
        ip("netns", "add", name)
    try:
        ip(
            "-n",
            names[0],
            "link",
            "add",
            "ga0",
            "type",
            "veth",
            "peer",
            "name",
            "ga1",
            "netns",
            names[1],
        )
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
    assert not any(name in ip("netns", "list") for name in names)


def run(coro):
    return asyncio.run(coro)


@needs_netns
def test_interfaces_addresses_routes_and_neighbours_appear(veth_pair):
    ns_a, ns_b = veth_pair
    mac_b = ip_json(ns_b, "link", "show", "ga1")[0]["address"]

    async def configure():
        async with Network(ns_a) as net:
            done = [
                await net.link_up("lo"),
                await net.link_up("ga0", mtu=1400),
                await net.add_address("ga0", "10.77.0.1/24"),
                await net.add_route("10.88.0.0/16", gateway="10.77.0.2"),
                await net.add_neighbour("ga0", "10.77.0.2", mac_b),
            ]
            return (
                done,
                await net.list_interfaces(),
                await net.list_routes(),
                await net.list_neighbours(),
            )

    done, interfaces, routes, neighbours = run(configure())
    assert [d["op"] for d in done] == [
        "link_up",
        "link_up",
        "add_address",
        "add_route",
        "add_neighbour",
    ]
    # iproute2 is the oracle: the kernel really has what we configured
    link = ip_json(ns_a, "addr", "show", "ga0")[0]
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    assert {(a["local"], a["prefixlen"]) for a in link["addr_info"]} >= {("10.77.0.1", 24)}
    kernel_routes = ip_json(ns_a, "route", "show")
    assert {"dst": "10.88.0.0/16", "gateway": "10.77.0.2"}.items() <= next(
        r for r in kernel_routes if r["dst"] == "10.88.0.0/16"
    ).items()
    neigh = next(n for n in ip_json(ns_a, "neigh", "show") if n["dst"] == "10.77.0.2")
    assert neigh["lladdr"] == mac_b and "PERMANENT" in neigh["state"]
    # and our listing reports the same
    ga0 = next(i for i in interfaces if i["ifname"] == "ga0")
    assert ga0["up"] and ga0["mtu"] == 1400 and "10.77.0.1/24" in ga0["addresses"]
    assert any(r["destination"] == "10.88.0.0/16" and r["gateway"] == "10.77.0.2" for r in routes)
    assert any(n["address"] == "10.77.0.2" and n["lladdr"] == mac_b for n in neighbours)


@needs_netns
def test_a_route_without_interface_takes_the_one_the_kernel_resolves(veth_pair):
    """The agent rules on, and then names, the interface that reaches the gateway."""
    ns_a, _ = veth_pair

    async def configure():
        async with Network(ns_a) as net:
            await net.link_up("ga0")
            await net.add_address("ga0", "10.77.0.1/24")
            resolved = await net.egress_interface("10.77.0.2")
            unreachable = await net.egress_interface("192.0.2.1")  # no route: no default
            none = await net.egress_interface(None)
            await net.add_route("default", gateway="10.77.0.2", ifname=resolved)
            return resolved, unreachable, none

    assert run(configure()) == ("ga0", None, None)
    default = ip_json(ns_a, "route", "show", "default")[0]
    assert (default["gateway"], default["dev"]) == ("10.77.0.2", "ga0")


@needs_netns
def test_configured_pair_really_carries_traffic_and_undo_works(veth_pair):
    ns_a, ns_b = veth_pair

    async def configure():
        for ns, ifname, address in ((ns_a, "ga0", "10.77.0.1/24"), (ns_b, "ga1", "10.77.0.2/24")):
            async with Network(ns) as net:
                await net.link_up(ifname)
                await net.add_address(ifname, address)
        async with Network(ns_b) as net:
            await net.add_route("default", gateway="10.77.0.1")

    run(configure())
    ping = subprocess.run(
        ["ip", "netns", "exec", ns_a, "busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2"],
        capture_output=True,
        text=True,
    )
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert ip_json(ns_b, "route", "show", "default")[0]["gateway"] == "10.77.0.1"

    async def undo():
        async with Network(ns_b) as net:
            await net.remove_route("default", gateway="10.77.0.1")
            await net.remove_address("ga1", "10.77.0.2/24")
            await net.link_down("ga1")

    run(undo())
    assert ip_json(ns_b, "route", "show", "default") == []
    assert ip_json(ns_b, "addr", "show", "ga1")[0]["addr_info"] == []


@needs_netns
def test_errors_are_agent_errors(veth_pair):
    async def scenario():
        async with Network(veth_pair[0]) as net:
            with pytest.raises(NotFoundError):
                await net.link_up("nosuch0")
            with pytest.raises(InvalidArgumentError):
                await net.add_address("ga0", "10.0.0.300/24")
            with pytest.raises(InvalidArgumentError):
                await net.set_mtu("ga0", 10)
            with pytest.raises(NetworkFailedError):  # no route to that gateway
                await net.add_route("10.99.0.0/16", gateway="192.0.2.1")
        with pytest.raises(NetworkFailedError):
            async with Network("ga-missing-namespace"):
                pass

    run(scenario())


def test_resolv_conf_and_hosts_are_validated_and_written_atomically(tmp_path):
    done = write_resolv_conf(
        str(tmp_path), "c1", ["10.0.0.53", "fd00::53"], ["svc.local"], ["ndots:2"]
    )
    assert (tmp_path / "c1" / "resolv.conf").read_text() == (
        "nameserver 10.0.0.53\nnameserver fd00::53\nsearch svc.local\noptions ndots:2\n"
    )
    assert done["path"] == str(tmp_path / "c1" / "resolv.conf")
    write_hosts(
        str(tmp_path), "c1", [("127.0.0.1", ["localhost"]), ("10.0.0.2", ["web", "web.svc"])]
    )
    assert (
        tmp_path / "c1" / "hosts"
    ).read_text() == "127.0.0.1\tlocalhost\n10.0.0.2\tweb\tweb.svc\n"
    assert sorted(os.listdir(tmp_path / "c1")) == ["hosts", "resolv.conf"]  # no temp files left


@pytest.mark.parametrize(
    "call",
    [
        lambda base: write_resolv_conf(base, "../escape", ["10.0.0.1"]),
        lambda base: write_resolv_conf(base, "c1", ["not-an-ip"]),
        lambda base: write_resolv_conf(
            base, "c1", ["10.0.0.1"], ["bad domain\nnameserver 1.2.3.4"]
        ),
        lambda base: write_resolv_conf(base, "c1", ["10.0.0.1"], options=["x\ny"]),
        lambda base: write_resolv_conf(base, "c1", []),
        lambda base: write_hosts(base, "c1", [("10.0.0.1", ["ok", "evil\n1.2.3.4 bank"])]),
        lambda base: write_hosts(base, "c1", [("10.0.0.1", [])]),
    ],
)
def test_bad_dns_input_is_refused(tmp_path, call):
    with pytest.raises(InvalidArgumentError):
        call(str(tmp_path))
    assert not (tmp_path / "c1" / "resolv.conf").exists()


def test_symlinked_container_directory_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "base").mkdir()
    os.symlink(elsewhere, tmp_path / "base" / "c1")
    with pytest.raises(OSError):
        write_hosts(str(tmp_path / "base"), "c1", [("10.0.0.1", ["a"])])
    assert list(elsewhere.iterdir()) == []
