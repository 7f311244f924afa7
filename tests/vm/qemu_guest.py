"""One QEMU guest (TCG): the kernel + initramfs + verity rootfs, a virtio-serial host channel,
the serial console in a log file, QMP for hot-adding disks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guest_images import GuestImages
from launch_image import image_cmdline

__all__ = ["Disk", "Guest", "GuestExited", "qemu_binary"]

CHANNEL_NAME = "agent.0"


def qemu_binary() -> str | None:
    return shutil.which("qemu-system-x86_64")


class GuestExited(AssertionError):
    """The guest powered off (or QEMU died) while a test waited for something else."""


@dataclass(frozen=True)
class Disk:
    path: Path
    readonly: bool = True
    serial: str = ""  # visible in the guest as /sys/block/vdX/serial


@dataclass
class Guest:
    images: GuestImages
    workdir: Path
    cmdline: str = ""  # extra kernel parameters
    disks: list[Disk] = field(default_factory=list)  # after the rootfs: /dev/vdb, /dev/vdc...
    # fw_cfg files QEMU hands the guest (/sys/firmware/qemu_fw_cfg/by_name/<name>/raw).
    fw_cfg: dict[str, Path] = field(default_factory=dict)
    ports: tuple[str, ...] = ()  # more virtio-serial ports beside agent.0 (see port_path)
    memory_mb: int = 1024
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    client: Any = None  # set by the booted_guest fixture
    ready_seconds: float = 0.0
    _hotplugged: int = 0

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def channel_path(self) -> Path:
        """The host end of the virtio-serial port `agent.0` (a unix socket QEMU listens on)."""
        return self.workdir / "channel.sock"

    def port_path(self, name: str) -> Path:
        """The host end of the extra virtio-serial port `name`."""
        return self.workdir / f"port-{name}.sock"

    @property
    def append(self) -> str:
        """The kernel command line, exactly as QEMU gets it (and a measured launch hashes)."""
        return image_cmdline(self.images.root_env, self.cmdline)

    @property
    def qmp_path(self) -> Path:
        return self.workdir / "qmp.sock"

    def argv(self) -> list[str]:
        binary = qemu_binary() or "qemu-system-x86_64"
        argv = [binary, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(self.memory_mb)]
        argv += ["-nodefaults", "-no-reboot", "-display", "none", "-vga", "none"]
        argv += [
            "-serial",
            f"file:{self.console_log}",
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
        ]
        argv += ["-kernel", str(self.images.kernel), "-initrd", str(self.images.initramfs)]
        argv += ["-append", self.append]
        # -device order is PCI order is /dev/vdX order: the root filesystem is /dev/vda.
        argv += self._disk_args(Disk(self.images.rootfs, serial="rootfs"), "rootfs")
        for number, disk in enumerate(self.disks, start=1):
            argv += self._disk_args(disk, f"disk{number}")
        argv += ["-device", "virtio-serial-pci"]
        argv += ["-chardev", f"socket,path={self.channel_path},server=on,wait=off,id=ch0"]
        argv += ["-device", f"virtserialport,chardev=ch0,name={CHANNEL_NAME}"]
        for number, name in enumerate(self.ports, start=1):
            chardev = f"socket,path={self.port_path(name)},server=on,wait=off,id=ch{number}"
            argv += [
                "-chardev",
                chardev,
                "-device",
                f"virtserialport,chardev=ch{number},name={name}",
            ]
        for name, path in self.fw_cfg.items():
            argv += ["-fw_cfg", f"name={name},file={path}"]
        return argv

    @staticmethod
    def _disk_args(disk: Disk, node: str) -> list[str]:
        readonly = "on" if disk.readonly else "off"
        blockdev = f"driver=raw,node-name={node},read-only={readonly},file.driver=file"
        blockdev += f",file.filename={disk.path}"
        device = f"virtio-blk-pci,drive={node}" + (f",serial={disk.serial}" if disk.serial else "")
        return ["-blockdev", blockdev, "-device", device]

    def start(self) -> Guest:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console_log.write_bytes(b"")
        self.started_at = time.monotonic()
        stderr = open(self.workdir / "qemu.stderr", "wb")  # noqa: SIM115 (lives with the process)
        self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stderr=stderr)
        return self

    def console(self) -> str:
        return self.console_log.read_text(errors="replace")

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def wait_for_console(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """Wait until the console log matches `pattern` (a regex); GuestExited if QEMU ends."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.console())
            if match:
                return match
            if self.exited():
                raise GuestExited(f"guest ended before {pattern!r}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} after {timeout}s:\n{self.tail()}")
            time.sleep(0.2)

    def wait_exit(self, timeout: float = 120.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"guest still running after {timeout}s:\n{self.tail()}") from exc

    def tail(self, lines: int = 40) -> str:
        text = "\n".join(self.console().splitlines()[-lines:])
        stderr = self.workdir / "qemu.stderr"
        if stderr.exists() and stderr.stat().st_size:
            text += "\nqemu stderr: " + stderr.read_text(errors="replace")[-2000:]
        return text

    def connect_channel(self, timeout: float = 30.0, port: str = CHANNEL_NAME) -> socket.socket:
        """A connected stream socket to the guest's `agent.0` port (or another of `ports`)."""
        path = self.channel_path if port == CHANNEL_NAME else self.port_path(port)
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except OSError:
                sock.close()
                if time.monotonic() > deadline or self.exited():
                    raise
                time.sleep(0.1)

    def qmp(self, command: str, **arguments: object) -> dict:
        """Run one QMP command on a fresh connection; raise on an error reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(self.qmp_path))
            stream = sock.makefile("rwb")
            json.loads(stream.readline())  # greeting
            for execute, args in (("qmp_capabilities", {}), (command, arguments)):
                stream.write(json.dumps({"execute": execute, "arguments": args}).encode() + b"\n")
                stream.flush()
                while True:
                    reply = json.loads(stream.readline())
                    if "event" not in reply:
                        break
                if "error" in reply:
                    raise RuntimeError(f"QMP {execute}: {reply['error']}")
            return reply["return"]

    def add_disk(self, path: Path, *, readonly: bool = True, serial: str = "") -> str:
        """Hot-add a virtio disk to the running guest; returns its serial (found in the guest as
        /sys/block/vd*/serial; no udev, so the node is /dev/vdX created by devtmpfs)."""
        self._hotplugged += 1
        node = f"hot{self._hotplugged}"
        serial = serial or node
        self.qmp(
            "blockdev-add",
            driver="raw",
            **{"node-name": node, "read-only": readonly},
            file={"driver": "file", "filename": str(path), "read-only": readonly},
        )
        self.qmp("device_add", driver="virtio-blk-pci", drive=node, id=f"dev-{node}", serial=serial)
        return serial

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.qmp("quit")
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in (self.channel_path, self.qmp_path, *map(self.port_path, self.ports)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
