"""Scratch disks in a booted guest: dm-crypt over dm-integrity, built by the agent.

The host offers a raw disk file; the agent formats it only because its configuration names it,
never the root disk. A sector the host flips afterwards (from outside the guest, in the disk
file) reaches the container as EIO, never as data.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from qemu_guest import Disk, Guest
from test_full_flow import layers, output  # noqa: F401 - the module fixture is shared

from guestagent.client import Client, RemoteError
from guestagent.demo import assets
from guestagent.policy.measure import measure

CHUNK = 4096
WRITE = ["/bin/sh", "-c", "dd if=/dev/urandom of=/data bs=65536 count=32 && sync"]
READ = ["/bin/cat", "/data"]
DROP_CACHES = ["/bin/sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"]


def scratch_policy(root_hash: str) -> bytes:
    document = json.loads(assets.demo_policy([root_hash]))
    execs = document["containers"][0]["exec_processes"]
    execs += [{"command": WRITE, "signals": []}, {"command": READ, "signals": []}]
    document["external_processes"] = [
        {
            "command": DROP_CACHES,
            "env_rules": [
                {"pattern": "PATH=/usr/bin:/bin", "strategy": "string", "required": True}
            ],
            "working_dir": "/",
            "allow_stdio_access": True,
        }
    ]
    return json.dumps(document).encode()


def largest_changed_run(before: bytes, after: bytes) -> tuple[int, int]:
    """(first chunk, length) of the longest run of 4 KiB chunks that differ."""
    best, start = (0, 0), None
    for index in range(len(after) // CHUNK + 1):
        at = index * CHUNK
        changed = at < len(after) and before[at : at + CHUNK] != after[at : at + CHUNK]
        if changed and start is None:
            start = index
        elif not changed and start is not None:
            best = max(best, (start, index - start), key=lambda run: run[1])
            start = None
    return best


def exec_in(client: Client, argv: list[str]) -> tuple[int, bytes, bytes]:
    started = client.call(
        "exec_process", {"container_id": "c1", "process": assets.exec_process(argv)}
    )
    out = output(client, "c1", started["exec_id"])
    err = output(client, "c1", started["exec_id"], "stderr")
    code = client.call("wait_process", {"container_id": "c1", "exec_id": started["exec_id"]})
    return code["exit_code"], out, err


def test_scratch_disk_is_authenticated_and_never_the_root_disk(make_guest, layers, tmp_path):  # noqa: F811
    policy = scratch_policy(str(layers["root"]))
    host_data = measure(policy).host_data_hex
    scratch = tmp_path / "scratch.img"
    scratch.write_bytes(bytes(32 << 20))
    # vda: root filesystem, vdb: the layer, vdc: the scratch disk. The configuration also
    # names vda, as a careless (or hostile) launch might: the root check still refuses it.
    serve_args = (
        f"--snp sim --sim-state /run/guestagent-sim --sim-host-data {host_data} "
        "--scratch-device /dev/vdc --scratch-device /dev/vda"
    )
    guest: Guest = make_guest(
        cmdline=f'guestagent.serve_args="{serve_args}"',
        disks=[Disk(layers["good"], serial="layer0"), Disk(scratch, readonly=False)],
    )
    started = time.monotonic()
    try:
        run_scratch_flow(guest, policy, scratch)
    except BaseException:
        print(guest.console()[-8000:])
        raise
    print(f"\nscratch flow in the guest: {time.monotonic() - started:.1f}s")


def run_scratch_flow(guest: Guest, policy: bytes, scratch: Path) -> None:
    sock = guest.connect_channel()
    guest.wait_for_console(r'"msg":"listening"', timeout=300)
    sock.settimeout(300)
    with Client(sock) as client:
        client.hello()
        client.call("set_policy", {"policy": policy})
        for device, why in [
            ("/dev/vda", "holds the root filesystem"),
            ("/dev/vdb", "configuration names"),
        ]:
            with pytest.raises(RemoteError) as refused:
                client.call("mount_scratch", {"container_id": "c1", "device": device})
            assert why in refused.value.message, refused.value.message
        client.call("mount_layer", {"layer_id": "base", "source": "/dev/vdb"})
        made = client.call("mount_scratch", {"container_id": "c1", "device": "/dev/vdc"})
        assert made == {"container_id": "c1", "encrypted": True, "kind": "dm-crypt+integrity"}
        before = scratch.read_bytes()
        client.call("mount_overlay", {"container_id": "c1", "layer_ids": ["base"]})
        spec = assets.host_spec()
        spec["root"]["readonly"] = False  # the container writes its scratch through the overlay
        client.call("create_container", {"container_id": "c1", "spec": spec, "stdin": True})
        client.call("start_container", {"container_id": "c1"})
        code, _, err = exec_in(client, WRITE)
        assert code == 0, err
        good_code, good, _ = exec_in(client, READ)
        assert good_code == 0 and len(good) == 2 << 20
        # The host flips one byte in the middle of what the write changed on the disk.
        first, count = largest_changed_run(before, scratch.read_bytes())
        assert count >= 256, "the 2 MiB file should have changed a long run of the disk"
        victim = (first + count // 2) * CHUNK + 1000
        with open(scratch, "r+b") as disk:
            disk.seek(victim)
            value = disk.read(1)[0]
            disk.seek(victim)
            disk.write(bytes([value ^ 0x01]))
        dropped = client.call(
            "exec_external", {"argv": DROP_CACHES, "env": ["PATH=/usr/bin:/bin"], "timeout": 120}
        )
        assert dropped["exit_code"] == 0, dropped
        bad_code, read, err = exec_in(client, READ)
        assert bad_code != 0 and len(read) < len(good), "a forged sector was returned as data"
        assert read == good[: len(read)]  # everything before it is the data written
        assert b"I/O error" in err or b"Input/output error" in err, err
        assert "integrity" in guest.console()
        client.call("write_stdin", {"container_id": "c1", "data": b"vm\n", "close": True})
        client.call("wait_process", {"container_id": "c1"})
        for op, args in [
            ("delete_container", {"container_id": "c1"}),
            ("unmount_overlay", {"container_id": "c1"}),
            ("unmount_scratch", {"container_id": "c1"}),
            ("unmount_layer", {"layer_id": "base"}),
        ]:
            client.call(op, args)
