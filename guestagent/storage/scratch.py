"""Scratch disks: which block device may hold a container's writable layer, and how.

The host offers disks; it does not choose which one the agent formats. A scratch device must
be one the agent's configuration names (`serve --scratch-device`, from the measured image),
checked by device number on the very open file (not by name), and it must be a whole disk that
nothing uses: not a partition, not a device-mapper or loop device, no partitions, no holders,
not mounted (the exclusive open fails then), and not the disk the root filesystem lives on.

What the agent builds on it: dm-integrity (HMAC-SHA256 tags under a random key) under
dm-crypt (aes-xts-plain64, another random key). Both keys are made for this mount, live only in
guest memory (SEV-SNP encrypted) and the kernel's tables, and die with the mapping. A sector
the host flips or forges fails its tag and reads as EIO; what it cannot detect is the host
replaying an older version of the same sector during this mount (no freshness counter).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import struct
from pathlib import Path

from guestagent.errors import (
    AgentError,
    ErrorCode,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from guestagent.records import record
from guestagent.storage.dm import DmClient, Target, integrity_table

__all__ = ["ScratchDisk", "check_scratch_device", "open_integrity"]

SYS_DEV_BLOCK = Path("/sys/dev/block")
ROOT_MAPPING = "guestagent-root"  # the dm-verity root device initramfs/init creates
_SB_MAGIC = b"integrt"
_FORMAT_SECTORS = 8
BLKFLSBUF = 0x1261


@record
class ScratchDisk:
    path: str  # the host's name, for messages
    rdev: int
    sectors: int

    @property
    def dev(self) -> str:
        """ "major:minor": how dm tables name it, so the checked device is the one used."""
        return f"{os.major(self.rdev)}:{os.minor(self.rdev)}"


def _refuse(disk: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"scratch device {disk!r} refused: {why}", details={"device": disk})


def _named_rdevs(allowed: list[str]) -> set[int]:
    rdevs = set()
    for path in allowed:
        try:
            st = os.stat(path)
        except OSError:
            continue  # a configured disk the host did not attach
        if stat.S_ISBLK(st.st_mode):
            rdevs.add(st.st_rdev)
    return rdevs


def root_disks(sys_block: Path = SYS_DEV_BLOCK) -> set[int]:
    """Device numbers the root filesystem is built from, and their whole disks.

    Whatever is mounted on "/" (a plain root), and the initramfs's verity root mapping: after
    switch_root its erofs is no longer visible in mountinfo, only the overlay on top.
    """
    found: set[int] = set()
    pending = [os.stat("/").st_dev, *_devices_mounted_on_root()]
    for name_file in sys_block.glob("*/dm/name"):
        with contextlib.suppress(OSError):
            if name_file.read_text().strip() == ROOT_MAPPING:
                pending.append(_parse_dev((name_file.parent.parent / "dev").read_text()))
    while pending:
        rdev = pending.pop()
        if rdev in found or os.major(rdev) == 0:
            continue
        found.add(rdev)
        node = (sys_block / f"{os.major(rdev)}:{os.minor(rdev)}").resolve()
        for lower in (node / "slaves").glob("*/dev"):
            pending.append(_parse_dev(lower.read_text()))
        if (node / "partition").exists():
            pending.append(_parse_dev((node.parent / "dev").read_text()))
    return found


def _devices_mounted_on_root() -> list[int]:
    with open("/proc/self/mountinfo") as info:
        return [_parse_dev(f[2]) for f in (line.split() for line in info) if f[4] == "/"]


def _parse_dev(text: str) -> int:
    major, minor = text.strip().split(":")
    return os.makedev(int(major), int(minor))


def check_scratch_device(
    device: str, allowed: list[str], sys_block: Path = SYS_DEV_BLOCK
) -> ScratchDisk:
    """The checks of the module docstring, on the opened device; raise naming the one failed."""
    if not allowed:
        raise InvalidStateError(
            "no scratch disk is configured for this agent (serve --scratch-device); omit the "
            "device to use guest memory"
        )
    try:
        st = os.stat(device)
    except FileNotFoundError:
        raise NotFoundError(f"scratch device {device!r} does not exist") from None
    if not stat.S_ISBLK(st.st_mode):
        raise _refuse(device, "not a block device")
    if st.st_rdev not in _named_rdevs(allowed):
        raise _refuse(device, f"not a scratch disk this agent's configuration names {allowed}")
    if st.st_rdev in root_disks(sys_block):
        raise _refuse(device, "it holds the root filesystem")
    node = sys_block / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    for marker, why in (
        ("partition", "a partition, not a whole disk"),
        ("dm", "a device-mapper device"),
        ("loop", "a loop device"),
    ):
        if (node / marker).exists():
            raise _refuse(device, why)
    if (node / "holders").is_dir() and any((node / "holders").iterdir()):
        raise _refuse(device, "another device is built on it")
    if any((child / "partition").exists() for child in node.iterdir() if child.is_dir()):
        raise _refuse(device, "it has partitions")
    # Exclusive open: fails while anything has it mounted or claimed. Checked by number again,
    # so a disk swapped under the same name since the stat is not taken for the checked one.
    try:
        fd = os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise _refuse(device, "it is in use (mounted or held by another device)") from None
        raise _refuse(device, exc.strerror or str(exc)) from None
    try:
        if os.fstat(fd).st_rdev != st.st_rdev:
            raise _refuse(device, "it changed while being checked")
        sectors = os.lseek(fd, 0, os.SEEK_END) // 512
    finally:
        os.close(fd)
    if sectors < 4096:
        raise _refuse(device, f"too small ({sectors} sectors)")
    return ScratchDisk(device, st.st_rdev, sectors)


def _open_rdev(disk: ScratchDisk, flags: int) -> int:
    """Open the checked device again by name, and make sure it is still the same device."""
    fd = os.open(disk.path, flags | os.O_CLOEXEC)
    if os.fstat(fd).st_rdev != disk.rdev:
        os.close(fd)
        raise _refuse(disk.path, "it changed while being set up")
    return fd


def open_integrity(disk: ScratchDisk, dm: DmClient, name: str) -> tuple[str, int]:
    """Format and open dm-integrity over `disk` with a fresh key; returns (node, data sectors).

    The kernel formats a device whose superblock is zero when the target is first loaded;
    then the real size (provided_data_sectors) is read back and the target loaded again.
    """
    key = secrets.token_bytes(32)
    fd = _open_rdev(disk, os.O_RDWR)
    try:
        os.pwrite(fd, bytes(4096), 0)
        os.fsync(fd)
        dm.open_table(name, [integrity_table(disk.dev, _FORMAT_SECTORS, key)], readonly=False,
                      secure=True)  # fmt: skip
        dm.remove(name)
        fcntl.ioctl(fd, BLKFLSBUF)  # our cached zeros are stale: the kernel wrote the superblock
        superblock = os.pread(fd, 512, 0)
    finally:
        os.close(fd)
    if not superblock.startswith(_SB_MAGIC):
        raise AgentError(f"dm-integrity did not format {disk.path}", code=ErrorCode.STORAGE)
    (provided,) = struct.unpack_from("<Q", superblock, 16)
    if not 0 < provided < disk.sectors:
        raise AgentError(
            f"dm-integrity superblock on {disk.path} claims {provided} data sectors",
            code=ErrorCode.STORAGE,
        )
    table: Target = integrity_table(disk.dev, provided, key)
    return dm.open_table(name, [table], readonly=False, secure=True), provided
