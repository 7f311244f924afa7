"""Every console command against a real agent with an adopted policy, checked against what
is really there: our own process, the loopback interface, the simulator's report."""

from __future__ import annotations

import asyncio
import hashlib
import os

import psutil
from console_harness import (
    LAYER_APP,
    LAYER_BASE,
    adopt_policy,
    console_client,
    new_agent,
    policy_bytes,
    record_mounts,
)

from guestagent import __version__
from guestagent.policy.measure import measure
from guestagent.snp.report import parse_report


def _adopted(tmp_path, sim_state, raw=None):
    agent = new_agent(tmp_path)
    adopt_policy(agent, raw or policy_bytes(), sim_state)
    return agent


def test_hello_lists_only_console_commands(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (console, client):
            hello = await client.request("hello", {"protocol": 1})
            assert "already completed" in hello["error"]["message"]  # the client said hello
            assert console.hello_result()["ops"] == sorted(
                [
                    "containers",
                    "decisions",
                    "metrics",
                    "mounts",
                    "network",
                    "policy",
                    "processes",
                    "report",
                    "status",
                    "trace",
                ]
            )
            assert "read-only" in console.hello_result()["agent"]

    asyncio.run(scenario())


def test_status_reports_digest_and_host_data_match(tmp_path, sim_state):
    raw = policy_bytes()

    async def scenario():
        agent = _adopted(tmp_path, sim_state, raw)
        async with console_client(agent) as (_, client):
            status = await client.call("status")
            assert status["version"] == __version__ and status["pid"] == os.getpid()
            assert status["snp"] == {
                "backend": "sim",
                "simulated": True,
                "warning": "SIMULATED secure processor: reports do not chain to AMD",
            }
            policy = status["policy"]
            assert policy["state"] == "enforcing"
            assert policy["digest"] == measure(raw).host_data_hex == policy["host_data"]
            assert policy["matches_host_data"] is True
            # A gate whose digest is not HOST_DATA (as if adoption had been bypassed) shows.
            agent.gate.digest = hashlib.sha256(b"another policy").hexdigest()
            assert (await client.call("status"))["policy"]["matches_host_data"] is False

    asyncio.run(scenario())


def test_policy_is_the_audit_summary(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            summary = await client.call("policy")
            assert [c["name"] for c in summary["containers"]] == ["app", "base-only"]
            assert summary["containers"][0]["layers"] == [LAYER_BASE, LAYER_APP]
            assert summary["host_data"] == measure(policy_bytes()).host_data_hex
            assert any("debug console enabled" in risk for risk in summary["risks"])

    asyncio.run(scenario())


def test_report_is_fresh_over_console_data(tmp_path, sim_state):
    data = hashlib.sha512(b"operator nonce").digest()

    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            first = await client.call("report", {"report_data": data})
            second = await client.call("report", {"report_data": data})
            report = parse_report(first["raw"])
            assert report.report_data == data
            assert first["report"]["report_data"] == data.hex()
            assert first["report"]["host_data"] == measure(policy_bytes()).host_data_hex
            assert first["snp"]["simulated"] is True
            # signed afresh each time: ECDSA signatures are randomised
            assert first["raw"][:0x2A0] == second["raw"][:0x2A0]
            assert first["raw"] != second["raw"]
            default = await client.call("report")
            assert parse_report(default["raw"]).report_data == bytes(64)

    asyncio.run(scenario())


def test_report_data_must_be_64_bytes(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            reply = await client.request("report", {"report_data": b"short"})
            assert reply["error"]["code"] == "protocol.invalid_argument"
            assert "64 bytes" in reply["error"]["message"]

    asyncio.run(scenario())


def test_mounts_show_root_hashes_and_allowing_entries(tmp_path, sim_state):
    async def scenario():
        agent = _adopted(tmp_path, sim_state)
        record_mounts(agent)
        agent.layers.append({"target": "/stray", "root_hash": "ab" * 32, "mode": "dm-verity"})
        async with console_client(agent) as (_, client):
            result = await client.call("mounts")
        layers = {m["target"]: m for m in result["layers"]}
        base, app = layers["/run/guestagent/layers/0"], layers["/run/guestagent/layers/1"]
        assert base["root_hash"] == base["policy_root_hash"] == LAYER_BASE
        assert base["allowed_by"] == ["app", "base-only"]
        assert app["allowed_by"] == ["app"] and app["source"] == "/dev/loop91"
        # listed by storage but never allowed by the engine: shown, not hidden
        assert layers["/stray"]["policy_root_hash"] is None
        assert layers["/stray"]["allowed_by"] == []
        assert result["overlays"] == [
            {
                "target": "/run/guestagent/containers/c1/rootfs",
                "container_id": "c1",
                "layers": [LAYER_BASE, LAYER_APP],
            }
        ]

    asyncio.run(scenario())


def test_containers_include_prepared_ones_with_their_entries(tmp_path, sim_state):
    async def scenario():
        agent = _adopted(tmp_path, sim_state)
        record_mounts(agent, "web")
        async with console_client(agent) as (_, client):
            result = await client.call("containers")
        assert result["containers"] == [
            {
                "container_id": "web",
                "status": "prepared",
                "pid": None,
                "exit_code": None,
                "execs": 0,
                "policy_entries": ["app"],
            }
        ]

    asyncio.run(scenario())


def test_processes_tree_has_this_process_with_cpu_and_memory(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            child = await asyncio.create_subprocess_exec("sleep", "30")
            try:
                me = os.getpid()
                tree = await client.call("processes", {"pid": me})
                full = await client.call("processes")
            finally:
                child.kill()
                await child.wait()
        assert tree["root"] == me and full["root"] == 1
        rows = {p["pid"]: p for p in tree["processes"]}
        assert tree["processes"][0]["pid"] == me and rows[me]["depth"] == 0
        assert rows[child.pid]["ppid"] == me and rows[child.pid]["depth"] == 1
        assert rows[child.pid]["command"] == "sleep 30"
        rss = psutil.Process(me).memory_info().rss  # moves a little between the readings
        assert rss / 2 < rows[me]["rss_bytes"] < rss * 2
        assert 0 < rows[me]["memory_percent"] < 100
        assert rows[me]["cpu_seconds"] > 0 and rows[me]["cpu_percent"] is not None
        assert me in {p["pid"] for p in full["processes"]}

    asyncio.run(scenario())


def test_processes_unknown_pid_is_not_found(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            reply = await client.request("processes", {"pid": 2**22 + 12345})
            assert reply["error"]["code"] == "state.not_found"

    asyncio.run(scenario())


def test_network_lists_loopback_and_routes(tmp_path, sim_state):
    async def scenario():
        async with console_client(_adopted(tmp_path, sim_state)) as (_, client):
            return await client.call("network")

    result = asyncio.run(scenario())
    interfaces = {i["ifname"]: i for i in result["interfaces"]}
    assert "127.0.0.1/8" in interfaces["lo"]["addresses"] and interfaces["lo"]["up"]
    assert set(interfaces) == set(psutil.net_if_stats())
    assert all({"destination", "gateway", "ifname", "metric"} <= set(r) for r in result["routes"])


def test_decisions_filter_and_limit(tmp_path, sim_state):
    async def scenario():
        agent = _adopted(tmp_path, sim_state)
        agent.decide("mount_device", {"target": "/x", "device_hash": "00" * 32})  # denied
        async with console_client(agent) as (_, client):
            await client.call("status")
            denied = await client.call("decisions", {"filter": "denied"})
            allowed = await client.call("decisions", {"filter": "allowed", "limit": 1})
            everything = await client.call("decisions")
        assert [(e["point"], e["rule"]) for e in denied["entries"]] == [
            ("mount_device", "mount_device.device_hash")
        ]
        assert "is not a layer of any policy container" in denied["entries"][0]["reason"]
        assert [e["point"] for e in allowed["entries"]] == ["console_decisions"]
        points = [e["point"] for e in everything["entries"]]
        assert points == [
            "mount_device",
            "console_status",
            "console_decisions",
            "console_decisions",
            "console_decisions",
        ]
        assert everything["counters"]["denied"] == 1

    asyncio.run(scenario())


def test_metrics_count_requests_decisions_and_connections(tmp_path, sim_state):
    async def scenario():
        agent = _adopted(tmp_path, sim_state)
        async with console_client(agent) as (_, client):
            first = await client.call("metrics")
            await client.request("no_such_op")
            second = await client.call("metrics")
        assert second["console"]["requests"] == first["console"]["requests"] + 2
        assert first["console"]["connections"] == 1
        assert second["decisions"]["allowed"] == first["decisions"]["allowed"] + 1
        assert second["process"]["pid"] == os.getpid()
        assert second["process"]["rss_bytes"] > 1 << 20
        assert second["uptime_seconds"] >= first["uptime_seconds"] > 0

    asyncio.run(scenario())
