"""The guest boots through the initramfs into the verity root, `guestagent init` supervises the
agent command, the host channel works, and every failure powers the VM off (fail closed)."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest
from qemu_guest import Disk, Guest

pytestmark = [pytest.mark.vm, pytest.mark.slow]

# A stand-in agent, run by busybox sh straight from a raw disk (/dev/vdb): it reports what init
# set up, then serves the virtio-serial port `agent.0` line by line until told to exit.
STANDIN = r"""
port=
for f in /sys/class/virtio-ports/*; do
    [ "$(cat "$f/name")" = agent.0 ] && port=/dev/${f##*/}
done
echo "standin: pid1=$(cat /proc/1/comm) ppid=$PPID hostname=$(hostname)"
echo "standin: mounts=$(awk '{print $3":"$2}' /proc/mounts | sort | tr '\n' ' ')"
echo "standin: modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
echo "standin: port=$port"
(sleep 1; echo "orphan-exited") &
exec 3<>"$port"
while :; do
    if ! read -r cmd arg <&3; then sleep 0.2; continue; fi
    case "$cmd" in
        ping) echo "pong $(uname -r)" >&3 ;;
        cat) echo "$(head -c 64 "$arg" 2>&1 | tr -dc 'a-z0-9 :')" >&3 ;;
        exit) echo "bye" >&3; exit "$arg" ;;
    esac
done
exit 99
"""


def standin_disk(tmp_path: Path) -> Disk:
    path = tmp_path / "standin.img"
    path.write_text(STANDIN)
    with open(path, "r+b") as handle:
        handle.truncate(1 << 20)
    return Disk(path, serial="standin")


def ask(sock: socket.socket, line: str, timeout: float = 30.0) -> str:
    sock.settimeout(timeout)
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "channel closed"
        data += chunk
    return data.decode().strip()


def test_boots_into_verity_root_and_supervises_the_agent(make_guest, tmp_path: Path) -> None:
    guest: Guest = make_guest(
        cmdline='guestagent.agent="busybox sh /dev/vdb" guestagent.hostname=vmtest',
        disks=[standin_disk(tmp_path)],
    )
    guest.wait_for_console(r"guestagent-initramfs: root filesystem verified")
    started = guest.wait_for_console(r"guestagent-init: agent started: pid (\d+)")
    ready_s = time.monotonic() - guest.started_at
    facts = guest.wait_for_console(r"standin: port=(\S*)")
    assert facts.group(1).startswith("/dev/vport"), guest.tail()
    console = guest.console()
    assert re.search(r"standin: pid1=python3 ppid=1 hostname=vmtest", console), console
    mounts = re.search(r"standin: mounts=(.*)", console).group(1).split()
    for fs in (
        "proc:/proc",
        "sysfs:/sys",
        "devtmpfs:/dev",
        "tmpfs:/run",
        "cgroup2:/sys/fs/cgroup",
        "overlay:/",
        "devpts:/dev/pts",
    ):
        assert fs in mounts, mounts
    modules = re.search(r"standin: modules=(.*)", console).group(1).split()
    for module in ("dm_verity", "overlay", "erofs", "vsock_loopback", "virtio_console"):
        assert module in modules, modules

    with guest.connect_channel() as sock:
        assert ask(sock, "ping").startswith("pong 6.1"), guest.tail()
        guest.wait_for_console("orphan-exited")
        assert ask(sock, "exit 3") == "bye"
    # The agent ended: init must power the VM off, not leave an unmediated guest.
    assert guest.wait_exit(60) == 0
    assert re.search(
        rf"powering off: agent \(pid {started.group(1)}\) ended unexpectedly: exit status 3",
        guest.console(),
    ), guest.tail()
    assert "reboot: Power down" in guest.console()
    print(f"\nboot to agent started: {ready_s:.1f}s")


def flip_bit(source: Path, target: Path, offset: int) -> None:
    target.write_bytes(source.read_bytes())
    with open(target, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))


def assert_failed_closed(guest: Guest, message: str) -> str:
    assert guest.wait_exit(120) == 0, guest.tail()
    console = guest.console()
    assert f"guestagent-initramfs: FATAL: {message}" in console, guest.tail()
    assert "guestagent-init:" not in console, guest.tail()  # nothing from the root ever ran
    assert "reboot: Power down" in console, guest.tail()
    return console


def test_tampered_rootfs_is_rejected_and_the_vm_powers_off(make_guest, vm_images, tmp_path) -> None:
    tampered = tmp_path / "rootfs-tampered.img"
    flip_bit(vm_images.rootfs, tampered, 1024 + 16)  # inside the erofs superblock (block 0)
    guest = make_guest(images=replace(vm_images, rootfs=tampered))
    console = assert_failed_closed(guest, "cannot mount the verified root filesystem")
    assert re.search(r"device-mapper: verity: .*data block 0 is corrupted", console), console


def test_wrong_root_hash_is_rejected(make_guest, vm_images) -> None:
    wrong = vm_images.root_env["ROOT_HASH"][:-1] + (
        "0" if vm_images.root_env["ROOT_HASH"][-1] != "0" else "1"
    )
    guest = make_guest(
        images=replace(vm_images, root_env={**vm_images.root_env, "ROOT_HASH": wrong})
    )
    console = assert_failed_closed(guest, "cannot mount the verified root filesystem")
    assert "is corrupted" in console, console


def test_missing_root_hash_is_rejected(make_guest, vm_images) -> None:
    env = {k: v for k, v in vm_images.root_env.items() if k != "ROOT_HASH"}
    guest = make_guest(images=replace(vm_images, root_env=env))
    assert_failed_closed(guest, "guestagent.root_hash missing")
