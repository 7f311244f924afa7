"""The whole flow inside a booted guest, through the real protocol on virtio-serial.

Policy adoption against HOST_DATA (the simulated SNP backend, launched with the policy's
digest), dm-verity layers opened by the agent's own device-mapper code, an overlay, a runc
container, exec, denials, the vsock transport over the guest's loopback, and tampered layer
blocks that surface as integrity errors, never as data.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from qemu_guest import Disk, Guest

from guestagent.client import Client, RemoteEffectError, RemotePolicyDenied
from guestagent.demo import assets
from guestagent.errors import AgentError
from guestagent.policy.measure import measure
from guestagent.storage.layer import build_layer

MOTD = b"this file was read through dm-verity-checked data\n"
BIG = b"A" * 16384  # whole data blocks of its own, away from any metadata
BIG_EXEC = ["/bin/cat", "/etc/big"]
VSOCK_CTL = [
    "/usr/bin/python3",
    "-m",
    "guestagent",
    "ctl",
    "--connect",
    "vsock://local:1024",
    "ping",
    "payload@=/proc/sys/kernel/hostname",
]


def flip_byte(image: Path, offset: int) -> None:
    with open(image, "r+b") as handle:
        handle.seek(offset)
        value = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([value ^ 0xFF]))


def policy_for(root_hash: str) -> bytes:
    document = json.loads(assets.demo_policy([root_hash]))
    document["containers"][0]["exec_processes"].append({"command": BIG_EXEC, "signals": []})
    document["external_processes"] = [
        {
            "command": VSOCK_CTL,
            "env_rules": [
                {"pattern": "PATH=/usr/bin:/bin", "strategy": "string", "required": True}
            ],
            "working_dir": "/",
            "allow_stdio_access": True,
        }
    ]
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    base = tmp_path_factory.mktemp("vm-layers")
    try:
        rootfs = assets.build_busybox_rootfs(base / "rootfs")
    except AgentError as exc:
        pytest.skip(exc.message)
    (rootfs / "etc" / "big").write_bytes(BIG)
    image = build_layer(str(rootfs), str(base / "busybox.layer"), work_dir=str(base))
    good = Path(image.path)
    data = good.read_bytes()[: image.fs_size]
    # Same tree, one flipped byte in /etc/big's data: mounts, but reading that block fails.
    bad_file = base / "bad-file.layer"
    shutil.copy(good, bad_file)
    block = data.index(b"A" * 4096)
    flip_byte(bad_file, block + 4096 + 100)
    # One flipped byte in the filesystem's superblock block: the mount itself fails.
    bad_super = base / "bad-super.layer"
    shutil.copy(good, bad_super)
    flip_byte(bad_super, 1024 + 8)
    return {"good": good, "bad_file": bad_file, "bad_super": bad_super, "root": image.root_hash}


def output(client: Client, cid: str, exec_id: str | None = None, stream: str = "stdout") -> bytes:
    out = b""
    while True:
        chunk = client.call(
            "read_output",
            {"container_id": cid, "exec_id": exec_id, "stream": stream, "timeout": 120},
        )
        out += chunk["data"]
        if chunk["eof"]:
            return out


def test_the_whole_flow_in_a_guest(make_guest, layers) -> None:
    policy = policy_for(str(layers["root"]))
    host_data = measure(policy).host_data_hex
    serve_args = (
        f"--snp sim --sim-state /run/guestagent-sim --sim-host-data {host_data} "
        "--listen vsock://any:1024 --runtime /usr/sbin/runc"  # crun: test_boot_timeline
    )
    guest: Guest = make_guest(
        cmdline=f'guestagent.serve_args="{serve_args}"',
        disks=[
            Disk(layers["good"], serial="layer0"),
            Disk(layers["bad_file"], serial="bad1"),
            Disk(layers["bad_super"], serial="bad2"),
        ],
    )
    started = time.monotonic()
    try:
        run_flow(guest, layers, policy, host_data)
    except BaseException:
        print(guest.console()[-8000:])  # the agent's log is on the guest's console
        raise
    print(f"\nwhole flow in the guest: {time.monotonic() - started:.1f}s")


def run_flow(guest: Guest, layers: dict[str, Path | str], policy: bytes, host_data: str) -> None:
    sock = guest.connect_channel()
    guest.wait_for_console(r'"msg":"listening"', timeout=300)
    sock.settimeout(300)
    with Client(sock) as client:
        client.hello()
        with pytest.raises(RemotePolicyDenied) as before:
            client.call("mount_scratch", {"container_id": "c1"})
        assert before.value.code == "policy.not_adopted"
        adopted = client.call("set_policy", {"policy": policy})
        assert adopted["digest"] == host_data
        status = client.status()
        assert status["storage_mode"] == "dm-verity"
        assert status["snp"]["simulated"] is True
        assert status["runtime"] == "runc"

        # /dev/vda is the root filesystem; the layers follow in the order given to QEMU.
        layer = client.call("mount_layer", {"layer_id": "base", "source": "/dev/vdb"})
        assert layer["mode"] == "dm-verity" and layer["root_hash"] == layers["root"]
        client.call("mount_scratch", {"container_id": "c1"})
        client.call("mount_overlay", {"container_id": "c1", "layer_ids": ["base"]})
        with pytest.raises(RemotePolicyDenied) as denied:
            client.call(
                "create_container",
                {
                    "container_id": "c1",
                    "spec": assets.host_spec(env=[assets.PATH, "LD_PRELOAD=/x.so"]),
                },
            )
        assert denied.value.rule == "create_container.env"
        client.call(
            "create_container", {"container_id": "c1", "spec": assets.host_spec(), "stdin": True}
        )
        client.call("start_container", {"container_id": "c1"})
        run = client.call("exec_process", {"container_id": "c1", "process": assets.exec_process()})
        assert output(client, "c1", run["exec_id"]) == MOTD
        with pytest.raises(RemotePolicyDenied) as shell:
            client.call(
                "exec_process", {"container_id": "c1", "process": assets.exec_process(["/bin/sh"])}
            )
        assert shell.value.rule == "exec_in_container.argv"
        client.call("write_stdin", {"container_id": "c1", "data": b"vm\n", "close": True})
        assert output(client, "c1") == b"hello from a verified layer\nbye vm\n"
        assert client.call("wait_process", {"container_id": "c1"}) == {"exit_code": 0}

        # vsock inside the guest, over the loopback transport, to the same agent.
        vsock = client.call(
            "exec_external", {"argv": VSOCK_CTL, "env": ["PATH=/usr/bin:/bin"], "timeout": 300}
        )
        assert vsock["exit_code"] == 0, vsock
        assert json.loads(vsock["stdout"]) == {"payload": "guestagent\n"}

        # A tampered data block: the layer mounts (same tree), the read fails, never data.
        client.call("mount_layer", {"layer_id": "bad1", "source": "/dev/vdc"})
        client.call("mount_scratch", {"container_id": "c2"})
        client.call("mount_overlay", {"container_id": "c2", "layer_ids": ["bad1"]})
        client.call(
            "create_container", {"container_id": "c2", "spec": assets.host_spec(), "stdin": True}
        )
        client.call("start_container", {"container_id": "c2"})
        intact = client.call(
            "exec_process", {"container_id": "c2", "process": assets.exec_process()}
        )
        assert output(client, "c2", intact["exec_id"]) == MOTD  # other blocks still read
        bad = client.call(
            "exec_process", {"container_id": "c2", "process": assets.exec_process(BIG_EXEC)}
        )
        read = output(client, "c2", bad["exec_id"])
        assert len(read) < len(BIG) and set(read) <= {ord("A")}  # the tampered byte: never
        assert b"Input/output error" in output(client, "c2", bad["exec_id"], "stderr")
        assert (
            client.call("wait_process", {"container_id": "c2", "exec_id": bad["exec_id"]})[
                "exit_code"
            ]
            != 0
        )
        assert "verity" in guest.console() and "is corrupted" in guest.console()

        # A tampered superblock block: the mount itself is refused as an integrity error.
        with pytest.raises(RemoteEffectError) as corrupted:
            client.call("mount_layer", {"layer_id": "bad2", "source": "/dev/vdd"})
        assert corrupted.value.code == "storage.integrity"

        for cid in ("c1", "c2"):
            client.call("delete_container", {"container_id": cid})
            client.call("unmount_overlay", {"container_id": cid})
            client.call("unmount_scratch", {"container_id": cid})
        for layer_id in ("base", "bad1"):
            client.call("unmount_layer", {"layer_id": layer_id})
        assert client.call("stats")["containers"] == 0
