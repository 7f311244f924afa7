"""The whole flow against a real agent: simulated SNP, policy adopted through HOST_DATA,
a verified busybox layer, an overlay, a real runc container, exec, denials, and cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guestagent.client import Client, RemoteEffectError, RemotePolicyDenied
from guestagent.demo import assets
from guestagent.errors import AgentError
from guestagent.policy.measure import measure
from tests.integration.agent_process import AgentProcess, running_agent

pytestmark = [pytest.mark.root, pytest.mark.runtime]


@dataclass
class World:
    layer: Path
    root_hash: str
    policy: Path
    host_data: str
    sim_state: Path
    layer_dir: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices, mounts and runc")
    if shutil.which("runc") is None or shutil.which("mkfs.erofs") is None:
        pytest.skip("needs runc and mkfs.erofs (.ci/run installs them)")
    base = tmp_path_factory.mktemp("e2e")
    try:
        image = assets.build_busybox_layer(base)
    except AgentError as exc:
        pytest.skip(exc.message)
    policy = base / "policy.json"
    policy.write_bytes(assets.demo_policy([image.root_hash]))
    sim_state = base / "sim"
    sim_state.mkdir(mode=0o700)
    return World(
        Path(image.path),
        image.root_hash,
        policy,
        measure(policy.read_bytes()).host_data_hex,
        sim_state,
        base,
    )


def agent_args(world: World, *extra: str, host_data: str | None = None) -> tuple[str, ...]:
    return (
        "--snp",
        "sim",
        "--sim-state",
        str(world.sim_state),
        "--sim-host-data",
        host_data or world.host_data,
        "--layer-dir",
        str(world.layer_dir),
        *extra,
    )


@pytest.fixture
def agent(world: World) -> Iterator[AgentProcess]:
    with running_agent(*agent_args(world, "--policy", str(world.policy))) as process:
        yield process


def read_all(client: Client, cid: str, exec_id: str | None = None) -> bytes:
    out = b""
    while True:
        chunk = client.call("read_output", {"container_id": cid, "exec_id": exec_id, "timeout": 20})
        out += chunk["data"]
        if chunk["eof"]:
            return out


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return [line.split()[4] for line in info if line.split()[4].startswith(path)]


def test_full_flow_with_denials_and_clean_teardown(world: World, agent: AgentProcess) -> None:
    state_dir = str(agent.workdir / "state")
    with Client.connect(agent.uri) as client:
        status = client.status()
        assert status["policy"]["state"] == "enforcing"
        assert status["policy"]["digest"] == world.host_data
        assert status["snp"]["simulated"] is True

        layer = client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        assert layer["root_hash"] == world.root_hash
        client.call("mount_scratch", {"container_id": "c1"})
        client.call("mount_overlay", {"container_id": "c1", "layer_ids": ["base"]})

        # The host may not change the command the policy measured.
        with pytest.raises(RemotePolicyDenied) as denied:
            client.call(
                "create_container", {"container_id": "c1", "spec": assets.host_spec(["/bin/sh"])}
            )
        assert denied.value.rule == "create_container.argv"
        # Nor inject an environment variable the policy has no rule for.
        with pytest.raises(RemotePolicyDenied) as denied:
            client.call(
                "create_container",
                {
                    "container_id": "c1",
                    "spec": assets.host_spec(env=[assets.PATH, "LD_PRELOAD=/tmp/evil.so"]),
                },
            )
        assert denied.value.rule == "create_container.env"
        assert "LD_PRELOAD" in denied.value.message

        created = client.call(
            "create_container", {"container_id": "c1", "stdin": True, "spec": assets.host_spec()}
        )
        assert created["status"] == "created"
        assert created["policy_containers"] == ["busybox-demo"]
        client.call("start_container", {"container_id": "c1"})

        started = client.call(
            "exec_process", {"container_id": "c1", "process": assets.exec_process()}
        )
        motd = read_all(client, "c1", started["exec_id"])
        assert motd == b"this file was read through dm-verity-checked data\n"
        assert client.call(
            "wait_process", {"container_id": "c1", "exec_id": started["exec_id"]}
        ) == {"exit_code": 0}

        with pytest.raises(RemotePolicyDenied) as denied:
            client.call(
                "exec_process", {"container_id": "c1", "process": assets.exec_process(["/bin/sh"])}
            )
        assert denied.value.rule == "exec_in_container.argv"
        assert denied.value.details  # the nearest allowed command is explained

        client.call("write_stdin", {"container_id": "c1", "data": b"now\n", "close": True})
        output = read_all(client, "c1")
        assert output == b"hello from a verified layer\nbye now\n"
        assert client.call("wait_process", {"container_id": "c1"}) == {"exit_code": 0}

        for op, args in [
            ("delete_container", {"container_id": "c1"}),
            ("unmount_overlay", {"container_id": "c1"}),
            ("unmount_scratch", {"container_id": "c1"}),
            ("unmount_layer", {"layer_id": "base"}),
        ]:
            client.call(op, args)
        assert client.call("list_containers") == {"containers": []}
    assert mounts_under(state_dir) == []
    agent.process.send_signal(signal.SIGTERM)
    assert agent.process.wait(timeout=30) == 0


def test_layers_are_measured_not_trusted(world: World, agent: AgentProcess, tmp_path: Path) -> None:
    # A layer whose data and tree were both rebuilt has a new root: the policy refuses it.
    other_dir = world.layer_dir / "other"
    other_root = assets.build_busybox_rootfs(other_dir / "rootfs")
    (other_root / "etc" / "motd").write_text("attacker's file\n")
    from guestagent.storage.layer import build_layer

    other = build_layer(
        str(other_root), str(world.layer_dir / "other.layer"), work_dir=str(other_dir)
    )
    # A layer whose data was changed under its old tree keeps its root, but never mounts.
    tampered = world.layer_dir / "tampered.layer"
    shutil.copy(world.layer, tampered)
    with open(tampered, "r+b") as image:
        image.seek(4096 * 3 + 100)
        byte = image.read(1)
        image.seek(4096 * 3 + 100)
        image.write(bytes([byte[0] ^ 0xFF]))
    with Client.connect(agent.uri) as client:
        with pytest.raises(RemotePolicyDenied) as denied:
            client.call("mount_layer", {"layer_id": "other", "source": other.path})
        assert denied.value.rule == "mount_device.device_hash"
        assert other.root_hash in denied.value.message + str(denied.value.details)
        with pytest.raises(RemoteEffectError) as corrupted:
            client.call("mount_layer", {"layer_id": "tampered", "source": str(tampered)})
        assert corrupted.value.code == "storage.integrity"
        # Outside the configured layer directories nothing is read at all.
        with pytest.raises(Exception, match="must be a file under"):
            client.call("mount_layer", {"layer_id": "etc", "source": "/etc/hostname"})
        assert client.status()["policy"]["engine_state"]["devices"] == 0


def test_policy_mismatch_locks_the_agent_down(world: World) -> None:
    wrong = "ab" * 32
    args = agent_args(world, "--policy", str(world.policy), host_data=wrong)
    with running_agent(*args) as a, Client.connect(a.uri) as client:
        status = client.status()
        assert status["policy"]["state"] == "mismatch"
        assert wrong in status["policy"]["reason"]
        assert world.host_data in status["policy"]["reason"]
        with pytest.raises(RemotePolicyDenied) as denied:
            client.call("mount_scratch", {"container_id": "c1"})
        assert denied.value.code == "policy.mismatch"
        # And no later delivery can fix it.
        with pytest.raises(RemotePolicyDenied) as again:
            client.call("set_policy", {"policy": world.policy.read_bytes()})
        assert again.value.code == "policy.mismatch"


def test_policy_delivered_over_the_protocol(world: World) -> None:
    with running_agent(*agent_args(world)) as a, Client.connect(a.uri) as client:
        assert client.status()["policy"]["state"] == "none"
        with pytest.raises(RemotePolicyDenied) as before:
            client.call("stats")
        assert before.value.code == "policy.not_adopted"
        adopted = client.call("set_policy", {"policy": world.policy.read_bytes()})
        assert adopted["digest"] == world.host_data
        assert client.call("stats")["pid"] == a.process.pid
        with pytest.raises(RemotePolicyDenied) as twice:
            client.call("set_policy", {"policy": world.policy.read_bytes()})
        assert twice.value.code == "policy.already_set"


def test_auto_backend_refuses_to_start_without_a_device(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "guestagent",
            "serve",
            "--listen",
            f"unix://{tmp_path}/a.sock",
            "--state-dir",
            str(tmp_path / "s"),
            "--no-containers",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "snp.unavailable" in result.stderr
