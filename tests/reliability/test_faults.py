"""Faults: each fails closed with a clear error, and the agent keeps serving afterwards.

Host disconnects mid-request and mid-stream, the runtime binary missing or crashing, a
container killed from outside, full disks, a damaged SNP simulator, a corrupted layer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from guestagent.client import Client, RemoteError
from guestagent.demo import assets
from guestagent.protocol.messages import encode_request
from tests.integration.agent_process import AgentProcess, running_agent
from tests.reliability.world import (
    FILL_COMMAND,
    FILL_MOUNT,
    SLEEP_COMMAND,
    ReliabilityWorld,
    agent_with_policy,
    copy_sim_state,
    prepare_overlay,
    spec,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime]


def assert_serving(agent: AgentProcess) -> dict[str, Any]:
    """The agent is alive and answers a fresh connection."""
    assert agent.process.poll() is None, agent.stderr_text()[-2000:]
    with Client.connect(agent.uri) as client:
        assert client.ping(b"still here") == {"payload": b"still here"}
        return client.status()


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def raw_connection(agent: AgentProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(agent.socket_path)
    Client(sock).hello()
    return sock


def send_request(sock: socket.socket, request_id: int, op: str, args: dict[str, Any]) -> None:
    payload = encode_request(request_id, op, args)
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def read_all(client: Client, cid: str) -> bytes:
    out = b""
    while True:
        chunk = client.call("read_output", {"container_id": cid, "timeout": 20})
        out += chunk["data"]
        if chunk["eof"]:
            return out


def bundles(agent: AgentProcess) -> list[str]:
    path = agent.workdir / "state" / "containers" / "bundles"
    return sorted(os.listdir(path)) if path.exists() else []


@pytest.fixture(scope="module")
def agent(world: ReliabilityWorld) -> Iterator[AgentProcess]:
    with agent_with_policy(world) as process, Client.connect(process.uri) as client:
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        yield process


@pytest.fixture
def client(agent: AgentProcess) -> Iterator[Client]:
    with Client.connect(agent.uri) as connection:
        yield connection


# -- the host goes away --------------------------------------------------------------------------
def test_disconnect_with_a_create_in_flight(agent: AgentProcess, client: Client) -> None:
    prepare_overlay(client, "inflight")
    sock = raw_connection(agent)
    send_request(sock, 7, "create_container", {"container_id": "inflight", "spec": spec()})
    sock.close()  # before the reply: the mutation still runs to completion
    created = eventually(
        lambda: [
            c
            for c in client.call("list_containers")["containers"]
            if c["container_id"] == "inflight"
        ]
    )
    assert created and created[0]["status"] == "created"
    assert client.status()["policy"]["engine_state"]["created"] == 1
    # Guest and policy agree: it can be started, waited for and deleted as usual.
    client.call("start_container", {"container_id": "inflight"})
    assert client.call("wait_process", {"container_id": "inflight", "timeout": 20}) == {
        "exit_code": 0
    }
    client.call("delete_container", {"container_id": "inflight"})
    assert client.status()["policy"]["engine_state"]["created"] == 0
    assert "inflight" not in bundles(agent)


def test_disconnect_while_reading_a_stream(agent: AgentProcess, client: Client) -> None:
    prepare_overlay(client, "stream")
    client.call(
        "create_container", {"container_id": "stream", "stdin": True, "spec": assets.host_spec()}
    )
    client.call("start_container", {"container_id": "stream"})
    connections = client.status()["connections"]
    first = client.call("read_output", {"container_id": "stream", "timeout": 20})
    assert first["data"] == b"hello from a verified layer\n"
    # A read that waits for output, then the host vanishes, twice, plus a half-sent frame.
    for _ in range(2):
        sock = raw_connection(agent)
        send_request(sock, 1, "read_output", {"container_id": "stream", "timeout": 30})
        send_request(sock, 2, "wait_process", {"container_id": "stream"})
        time.sleep(0.2)
        sock.close()
    sock = raw_connection(agent)
    sock.sendall(struct.pack(">I", 1000) + b"\x82partial")
    sock.close()
    assert eventually(lambda: client.status()["connections"] == connections)
    # The output that comes later is not lost to the abandoned reads.
    client.call("write_stdin", {"container_id": "stream", "data": b"later\n", "close": True})
    assert read_all(client, "stream") == b"bye later\n"
    assert client.call("wait_process", {"container_id": "stream", "timeout": 20}) == {
        "exit_code": 0
    }
    client.call("delete_container", {"container_id": "stream"})
    assert_serving(agent)


# -- the container is killed from outside --------------------------------------------------------
def test_sigkill_from_outside_is_exit_137(agent: AgentProcess, client: Client) -> None:
    prepare_overlay(client, "victim")
    client.call("create_container", {"container_id": "victim", "spec": spec(SLEEP_COMMAND)})
    state = client.call("start_container", {"container_id": "victim"})
    with pytest.raises(RemoteError) as still_running:  # found by the operation fuzzer
        client.call("wait_process", {"container_id": "victim", "timeout": 0.2})
    assert still_running.value.code == "agent.timeout"
    os.kill(state["pid"], signal.SIGKILL)
    assert client.call("wait_process", {"container_id": "victim", "timeout": 20}) == {
        "exit_code": 137
    }
    assert client.call("container_state", {"container_id": "victim"})["exit_code"] == 137
    with pytest.raises(RemoteError) as dead:
        client.call("signal_process", {"container_id": "victim", "signal": 15})
    assert dead.value.code == "state.invalid"
    client.call("delete_container", {"container_id": "victim"})
    assert "victim" not in bundles(agent)
    assert_serving(agent)


# -- full disks ----------------------------------------------------------------------------------
def test_container_filling_its_tmpfs_sees_enospc(agent: AgentProcess, client: Client) -> None:
    prepare_overlay(client, "filler")
    client.call(
        "create_container",
        {"container_id": "filler", "spec": spec(FILL_COMMAND, mounts=[FILL_MOUNT])},
    )
    client.call("start_container", {"container_id": "filler"})
    output = read_all(client, "filler")
    assert b"No space left on device" in output
    assert output.rstrip().endswith(b"exit=1")
    assert client.call("wait_process", {"container_id": "filler", "timeout": 20}) == {
        "exit_code": 0
    }
    client.call("delete_container", {"container_id": "filler"})
    assert_serving(agent)


@pytest.fixture
def tiny_state_dir(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "tiny"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_full_state_disk_fails_cleanly(world: ReliabilityWorld, tiny_state_dir: Path) -> None:
    with (
        agent_with_policy(world, "--state-dir", str(tiny_state_dir)) as agent,
        Client.connect(agent.uri) as client,
    ):
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(client, "late")
        errors = []
        for name in "abcdefghijklmnopqrstuvwxyz":
            try:
                copy = {"destination": f"/config/{name}", "data": os.urandom(60_000)}
                client.call("copy_file", copy)
            except RemoteError as exc:
                errors.append(exc)
                break
        assert errors, "the 512 KiB disk never filled"
        assert errors[0].code == "storage.failed"
        assert "No space left on device" in errors[0].message
        # The agent's own writes (bundle, runtime state) fail closed too.
        with pytest.raises(RemoteError) as full:
            client.call("create_container", {"container_id": "late", "spec": spec()})
        assert full.value.code in ("runtime.failed", "storage.failed"), full.value
        assert client.call("list_containers") == {"containers": []}
        assert_serving(agent)
        # Once space is freed, the same request succeeds: nothing was left half-made.
        for leftover in (tiny_state_dir / "shared" / "config").iterdir():
            leftover.unlink()
        client.call("create_container", {"container_id": "late", "spec": spec()})
        client.call("delete_container", {"container_id": "late"})


# -- the runtime -----------------------------------------------------------------------------------
def test_runtime_missing_from_the_start(world: ReliabilityWorld) -> None:
    with agent_with_policy(world, "--runtime", "/nonexistent/runc") as agent:
        with Client.connect(agent.uri) as client:
            client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
            prepare_overlay(client, "c1")
            with pytest.raises(RemoteError) as failed:
                client.call("create_container", {"container_id": "c1", "spec": spec()})
            assert failed.value.code == "runtime.failed"
            assert "/nonexistent/runc" in failed.value.message
            assert client.call("list_containers") == {"containers": []}
            assert client.status()["policy"]["engine_state"]["created"] == 0
        assert_serving(agent)


def test_runtime_removed_while_serving(world: ReliabilityWorld, tmp_path: Path) -> None:
    runtime = tmp_path / "runc"
    shutil.copy2(shutil.which("runc") or "runc", runtime)
    with agent_with_policy(world, "--runtime", str(runtime)) as agent:
        with Client.connect(agent.uri) as client:
            client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
            prepare_overlay(client, "c1")
            runtime.rename(tmp_path / "runc.away")
            with pytest.raises(RemoteError) as failed:
                client.call("create_container", {"container_id": "c1", "spec": spec()})
            assert failed.value.code == "runtime.failed"
            assert "No such file" in failed.value.message
            assert bundles(agent) == []
            # Back in place: the very same create now works (no half-made state blocks it).
            (tmp_path / "runc.away").rename(runtime)
            client.call("create_container", {"container_id": "c1", "spec": spec()})
            client.call("start_container", {"container_id": "c1"})
            assert client.call("wait_process", {"container_id": "c1", "timeout": 20}) == {
                "exit_code": 0
            }
            client.call("delete_container", {"container_id": "c1"})
        assert_serving(agent)


CRASHING_RUNTIMES = {
    "exits 1": "echo 'runtime exploded: cannot allocate' >&2\nexit 1\n",
    "segfaults": "kill -SEGV $$\n",
    "hangs up silently": "exit 3\n",
}


@pytest.mark.parametrize("body", CRASHING_RUNTIMES.values(), ids=CRASHING_RUNTIMES.keys())
def test_crashing_runtime(world: ReliabilityWorld, tmp_path: Path, body: str) -> None:
    fake = tmp_path / "fake-runc"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with agent_with_policy(world, "--runtime", str(fake)) as agent:
        with Client.connect(agent.uri) as client:
            client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
            prepare_overlay(client, "c1")
            for _ in range(2):  # the second attempt meets no leftover of the first
                with pytest.raises(RemoteError) as failed:
                    client.call("create_container", {"container_id": "c1", "spec": spec()})
                assert failed.value.code == "runtime.failed", failed.value
                assert "fake-runc create failed: exit code" in failed.value.message
                assert client.call("list_containers") == {"containers": []}
                assert bundles(agent) == []
            assert client.status()["policy"]["engine_state"]["created"] == 0
        assert_serving(agent)


def test_hanging_runtime_on_create_blocks_no_other_change(
    world: ReliabilityWorld, tmp_path: Path
) -> None:
    """`create` waits on the runtime without the mutation lock; its failure is reverted."""
    fake = tmp_path / "fake-runc"
    real = shutil.which("runc")
    fake.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = create ] && sleep 6 && exit 1; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with agent_with_policy(world, "--runtime", str(fake)) as agent:
        with Client.connect(agent.uri) as client, Client.connect(agent.uri) as other:
            client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
            prepare_overlay(client, "c1")
            client.send_raw(
                _frame(
                    encode_request(1000, "create_container", {"container_id": "c1", "spec": spec()})
                )
            )
            time.sleep(1.0)  # the runtime is hanging now
            began = time.monotonic()
            prepare_overlay(other, "c2")  # state-changing, under the lock
            assert time.monotonic() - began < 3
            assert other.status()["policy"]["engine_state"]["created"] == 1  # reserved
            failed = client.receive(1000)
            assert failed["ok"] is False and failed["error"]["code"] == "runtime.failed"
            assert other.status()["policy"]["engine_state"]["created"] == 0  # reverted
        assert_serving(agent)


def test_sigterm_answers_a_long_wait_process(world: ReliabilityWorld) -> None:
    with agent_with_policy(world) as agent, Client.connect(agent.uri) as client:
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(client, "c1")
        client.call("create_container", {"container_id": "c1", "spec": spec(SLEEP_COMMAND)})
        client.call("start_container", {"container_id": "c1"})
        request = encode_request(1000, "wait_process", {"container_id": "c1", "timeout": 60})
        client.send_raw(_frame(request))
        time.sleep(0.5)
        began = time.monotonic()
        agent.process.send_signal(signal.SIGTERM)
        reply = client.receive(1000)
        assert reply["ok"] is False and reply["error"]["code"] == "agent.shutting_down"
        assert time.monotonic() - began < 3  # at once, not after the 10 s grace
        assert agent.process.wait(timeout=20) == 0


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


# -- SNP -----------------------------------------------------------------------------------------
def _serve_once(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "guestagent",
            "serve",
            "--listen",
            f"unix://{tmp}/a.sock",
            "--state-dir",
            str(tmp / "state"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


SIM_DAMAGE: dict[str, Callable[[Path], None]] = {
    "world-readable": lambda d: d.chmod(0o755),
    "garbage chip.json": lambda d: (d / "chip.json").write_text("garbage"),
    "unknown product": lambda d: (d / "chip.json").write_text('{"product": "nope"}'),
    "root secret missing": lambda d: (d / "root_secret").unlink(),
    "certificate corrupted": lambda d: (d / "ark.pem").write_text("garbage"),
}


@pytest.mark.parametrize("damage", SIM_DAMAGE.values(), ids=SIM_DAMAGE.keys())
def test_damaged_snp_state_stops_start_up_with_a_reason(
    world: ReliabilityWorld, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    state = copy_sim_state(world, tmp_path / "chip")
    damage(state)
    args = world.agent_args(policy=True)
    args = tuple(a if a != str(world.sim_state) else str(state) for a in args)
    result = _serve_once(*args, tmp=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "guestagent serve: snp." in result.stderr
    assert not (tmp_path / "a.sock").exists()


def test_missing_snp_device_stops_start_up(tmp_path: Path) -> None:
    if os.path.exists("/dev/sev-guest"):
        pytest.skip("this machine has an SEV-SNP guest device")
    result = _serve_once("--snp", "sev-guest", "--no-containers", tmp=tmp_path)
    assert result.returncode == 1
    assert "snp.unavailable" in result.stderr and "Traceback" not in result.stderr


def test_without_snp_no_policy_is_adopted_and_all_is_denied(world: ReliabilityWorld) -> None:
    args = ("--snp", "none", "--policy", str(world.policy), "--layer-dir", str(world.layer_dir))
    with running_agent(*args) as agent:
        with Client.connect(agent.uri) as client:
            assert client.status()["policy"]["state"] != "enforcing"
            with pytest.raises(RemoteError) as refused:
                client.call("set_policy", {"policy": world.policy.read_bytes()})
            assert refused.value.code == "snp.unavailable"
            for op, args in [
                ("mount_layer", {"layer_id": "base", "source": str(world.layer)}),
                ("mount_scratch", {"container_id": "c1"}),
                ("list_containers", {}),
                ("stats", {}),
            ]:
                with pytest.raises(RemoteError) as denied:
                    client.call(op, args)
                assert denied.value.code == "policy.not_adopted", op
        assert_serving(agent)


# -- a corrupted layer -----------------------------------------------------------------------------
def test_corrupted_layer_never_mounts(agent: AgentProcess, world: ReliabilityWorld) -> None:
    tampered = world.layer_dir / "tampered.layer"
    shutil.copy(world.layer, tampered)
    with open(tampered, "r+b") as image:
        image.seek(4096 * 3 + 100)
        byte = image.read(1)
        image.seek(4096 * 3 + 100)
        image.write(bytes([byte[0] ^ 0xFF]))
    with Client.connect(agent.uri) as client:
        devices = client.status()["policy"]["engine_state"]["devices"]
        with pytest.raises(RemoteError) as corrupted:
            client.call("mount_layer", {"layer_id": "tampered", "source": str(tampered)})
        assert corrupted.value.code == "storage.integrity"
        assert client.status()["policy"]["engine_state"]["devices"] == devices
        assert "tampered" not in str(client.call("list_containers"))
    assert not os.path.ismount(agent.workdir / "state" / "storage" / "layers" / "tampered")
    assert_serving(agent)


def test_stats_uptime_is_the_agents(agent: AgentProcess) -> None:
    with Client.connect(agent.uri) as client:
        uptime = client.status()["uptime_seconds"]
        stats = client.call("stats")
    assert stats["pid"] == agent.process.pid
    assert 0 <= stats["uptime_s"] <= uptime + 5
