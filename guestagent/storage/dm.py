"""A device-mapper client speaking the DM ioctl ABI on /dev/mapper/control (no dmsetup).

Layouts follow include/uapi/linux/dm-ioctl.h: `struct dm_ioctl` (312 bytes) then, for
TABLE_LOAD, `struct dm_target_spec` (40 bytes) + NUL-terminated params, each padded to 8 bytes.
On input `next` is relative to the previous spec; on output (TABLE_STATUS) it is relative to
the start of the data area: the kernel is asymmetric here. Without udev in the guest we create
/dev/mapper/<name> ourselves from the dev number DEV_CREATE returns. The ioctl call is an
injectable seam so tests check exact request bytes and feed crafted replies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError
from guestagent.records import record

if TYPE_CHECKING:  # a verity table is built with the first layer, not at start-up
    from guestagent.storage.verity_params import VerityParams

__all__ = [
    "DM_IOCTL",
    "DM_TARGET_SPEC",
    "DmClient",
    "DmCommand",
    "Target",
    "crypt_table",
    "decode_dev",
    "integrity_table",
    "pack_dm_ioctl",
    "pack_table",
    "verity_table",
]

DM_IOCTL = struct.Struct("<3IIIIiIIIQ128s129s7s")
DM_TARGET_SPEC = struct.Struct("<QQiI16s")
assert DM_IOCTL.size == 312 and DM_TARGET_SPEC.size == 40
DM_VERSION = (4, 0, 0)
IOCTL_BASE = 0xC138FD00  # _IOWR(0xFD, cmd, struct dm_ioctl)

READONLY_FLAG = 1 << 0
SUSPEND_FLAG = 1 << 1
BUFFER_FULL_FLAG = 1 << 8
SECURE_DATA_FLAG = 1 << 15
STATUS_BUFFER = 16 << 10

CORRUPTION_MODES = {
    "error": (),
    "restart": ("restart_on_corruption",),
    "panic": ("panic_on_corruption",),
}


class DmCommand:
    VERSION = 0
    DEV_CREATE = 3
    DEV_REMOVE = 4
    DEV_SUSPEND = 6
    DEV_STATUS = 7
    TABLE_LOAD = 9
    TABLE_STATUS = 12


@record
class Target:
    start: int  # sectors
    length: int  # sectors
    target_type: str
    params: str

    def line(self) -> str:
        return f"{self.start} {self.length} {self.target_type} {self.params}"


def pack_dm_ioctl(
    name: str,
    *,
    data_size: int,
    data_start: int = DM_IOCTL.size,
    flags: int = 0,
    target_count: int = 0,
    uuid: str = "",
) -> bytes:
    raw_name, raw_uuid = name.encode(), uuid.encode()
    if len(raw_name) >= 128 or len(raw_uuid) >= 129:
        raise InvalidArgumentError("device-mapper name or uuid too long")
    return DM_IOCTL.pack(
        *DM_VERSION,
        data_size,
        data_start,
        target_count,
        0,
        flags,
        0,
        0,
        0,
        raw_name,
        raw_uuid,
        bytes(7),
    )


def pack_table(targets: Sequence[Target]) -> bytes:
    """Target specs as TABLE_LOAD wants them: each `next` = distance to the following spec."""
    out = bytearray()
    for target in targets:
        params = target.params.encode() + b"\0"
        size = DM_TARGET_SPEC.size + len(params)
        size += -size % 8
        spec = DM_TARGET_SPEC.pack(
            target.start, target.length, 0, size, target.target_type.encode()
        )
        out += (spec + params).ljust(size, b"\0")
    return bytes(out)


def decode_dev(dev: int) -> tuple[int, int]:
    """Kernel huge_encode_dev -> (major, minor)."""
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def verity_table(
    data_dev: str,
    hash_dev: str,
    params: VerityParams,
    root_hash: str,
    on_corruption: str = "error",
    extra_options: Sequence[str] = (),
) -> Target:
    """The `verity` target line; corruption handling is the caller's (policy's) choice."""
    if on_corruption not in CORRUPTION_MODES:
        raise InvalidArgumentError(f"on_corruption must be one of {sorted(CORRUPTION_MODES)}")
    allowed = {"ignore_zero_blocks", "check_at_most_once"}
    if not set(extra_options) <= allowed:
        raise InvalidArgumentError(f"verity options limited to {sorted(allowed)}")
    try:
        digest = bytes.fromhex(root_hash)  # never pass anything but hex to the kernel
    except ValueError as exc:
        raise InvalidArgumentError("root hash must be hex") from exc
    if len(digest) != params.digest_size:
        raise InvalidArgumentError("root hash length does not match the algorithm")
    options = [*CORRUPTION_MODES[on_corruption], *extra_options]
    args = [
        "1",
        data_dev,
        hash_dev,
        str(params.data_block_size),
        str(params.hash_block_size),
        str(params.data_blocks),
        str(params.geometry().tree_start),
        params.hash_name,
        root_hash.lower(),
        params.salt.hex() or "-",
    ]
    if options:
        args += [str(len(options)), *options]
    return Target(0, params.data_size // 512, "verity", " ".join(args))


def crypt_table(
    device: str,
    sectors: int,
    key_hex: str,
    cipher: str = "aes-xts-plain64",
    sector_size: int = 512,
) -> Target:
    """A dm-crypt target over the whole device (scratch: the key is ephemeral, in-guest)."""
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as exc:
        raise InvalidArgumentError("crypt key must be hex") from exc
    if cipher == "aes-xts-plain64" and len(key) not in (32, 64):
        raise InvalidArgumentError("aes-xts needs a 256- or 512-bit key")
    if sectors <= 0 or sector_size not in (512, 4096) or sectors % (sector_size // 512):
        raise InvalidArgumentError("crypt target needs a positive size in whole crypt sectors")
    options = "" if sector_size == 512 else f" 1 sector_size:{sector_size}"
    return Target(0, sectors, "crypt", f"{cipher} {key.hex()} 0 {device} 0{options}")


def integrity_table(device: str, sectors: int, key: bytes, block_size: int = 4096) -> Target:
    """A standalone dm-integrity target, tags HMAC-SHA256 under `key`, direct writes (no
    journal: scratch is ephemeral, so a crash may leave a mismatch that reads as EIO).
    4 KiB blocks: one tag per filesystem block, an eighth of the tags of 512 B sectors."""
    if len(key) != 32:
        raise InvalidArgumentError("integrity key must be 32 bytes")
    if sectors <= 0:
        raise InvalidArgumentError("integrity target needs a positive size")
    options = f"internal_hash:hmac(sha256):{key.hex()} block_size:{block_size}"
    return Target(0, sectors, "integrity", f"{device} 0 32 D 2 {options}")


IoctlFn = Callable[[int, int, bytearray], None]


def _real_ioctl(fd: int, request: int, buf: bytearray) -> None:
    fcntl.ioctl(fd, request, buf, True)


class DmClient:
    """One device-mapper control connection. Every call is a single ioctl."""

    def __init__(
        self,
        control: str = "/dev/mapper/control",
        *,
        ioctl: IoctlFn = _real_ioctl,
        open_control: Callable[[str], int] | None = None,
        dev_dir: str = "/dev/mapper",
        mknod: Callable[[str, int, int], None] = os.mknod,
    ) -> None:
        self.control, self.dev_dir = control, dev_dir
        self._ioctl, self._mknod = ioctl, mknod
        self._open = open_control or (lambda path: os.open(path, os.O_RDWR | os.O_CLOEXEC))
        self._fd: int | None = None

    def _call(
        self,
        command: int,
        name: str,
        *,
        flags: int = 0,
        payload: bytes = b"",
        target_count: int = 0,
        size: int = 0,
    ) -> bytearray:
        if self._fd is None:
            try:
                self._fd = self._open(self.control)
            except OSError as exc:
                raise AgentError(
                    f"device-mapper unavailable ({self.control}: {exc.strerror})",
                    code=ErrorCode.STORAGE,
                ) from exc
        total = max(size, DM_IOCTL.size + len(payload))
        head = pack_dm_ioctl(name, data_size=total, flags=flags, target_count=target_count)
        buf = bytearray(head + payload)
        buf += bytes(total - len(buf))
        try:
            self._ioctl(self._fd, IOCTL_BASE | command, buf)
        except OSError as exc:
            raise AgentError(
                f"device-mapper command {command} on {name!r} failed: {exc.strerror}",
                code=ErrorCode.STORAGE,
                details={"errno": exc.errno, "command": command},
            ) from exc
        return buf

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def version(self) -> tuple[int, int, int]:
        reply = self._call(DmCommand.VERSION, "")
        major, minor, patch = DM_IOCTL.unpack_from(reply)[:3]
        return major, minor, patch

    def create(self, name: str) -> tuple[int, int]:
        reply = self._call(DmCommand.DEV_CREATE, name)
        return decode_dev(DM_IOCTL.unpack_from(reply)[10])

    def load_table(
        self, name: str, targets: Sequence[Target], *, readonly: bool, secure: bool = False
    ) -> None:
        flags = (READONLY_FLAG if readonly else 0) | (SECURE_DATA_FLAG if secure else 0)
        self._call(
            DmCommand.TABLE_LOAD,
            name,
            flags=flags,
            payload=pack_table(targets),
            target_count=len(targets),
        )

    def resume(self, name: str) -> None:
        self._call(DmCommand.DEV_SUSPEND, name)  # no SUSPEND flag: resume

    def remove(self, name: str) -> None:
        """Remove the mapping and its node; a missing device is not an error."""
        try:
            self._call(DmCommand.DEV_REMOVE, name)
        except AgentError as exc:
            if exc.details.get("errno") != errno.ENXIO:
                raise
        node = os.path.join(self.dev_dir, name)
        if os.path.lexists(node):
            os.unlink(node)

    def table_status(self, name: str) -> list[Target]:
        size = STATUS_BUFFER
        while True:
            reply = self._call(DmCommand.TABLE_STATUS, name, size=size)
            fields = DM_IOCTL.unpack_from(reply)
            if not fields[7] & BUFFER_FULL_FLAG:
                return _parse_targets(reply, data_start=fields[4], count=fields[5])
            size *= 4

    def open_table(
        self, name: str, targets: Sequence[Target], *, readonly: bool, secure: bool = False
    ) -> str:
        """Create, load, resume, mknod: the hcsshim sequence. Removes the device on failure."""
        self.version()
        major, minor = self.create(name)
        try:
            self.load_table(name, targets, readonly=readonly, secure=secure)
            self.resume(name)
            return self._make_node(name, major, minor)
        except BaseException:
            self.remove(name)
            raise

    def open_verity(
        self,
        name: str,
        data_dev: str,
        hash_dev: str,
        params: VerityParams,
        root_hash: str,
        on_corruption: str = "error",
    ) -> str:
        table = verity_table(data_dev, hash_dev, params, root_hash, on_corruption)
        return self.open_table(name, [table], readonly=True)

    def open_crypt(
        self, name: str, device: str, sectors: int, key_hex: str, sector_size: int = 512
    ) -> str:
        table = crypt_table(device, sectors, key_hex, sector_size=sector_size)
        return self.open_table(name, [table], readonly=False, secure=True)

    def _make_node(self, name: str, major: int, minor: int) -> str:
        path = os.path.join(self.dev_dir, name)
        if os.path.lexists(path):
            os.unlink(path)
        self._mknod(path, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        return path


def _parse_targets(reply: bytes | bytearray, data_start: int, count: int) -> list[Target]:
    targets, offset = [], 0
    for _ in range(count):
        at = data_start + offset
        if at + DM_TARGET_SPEC.size > len(reply):
            raise AgentError("device-mapper status reply truncated", code=ErrorCode.STORAGE)
        start, length, _status, next_offset, raw_type = DM_TARGET_SPEC.unpack_from(reply, at)
        text_at = at + DM_TARGET_SPEC.size
        end = reply.find(b"\0", text_at)
        if end < 0:
            raise AgentError("device-mapper status string unterminated", code=ErrorCode.STORAGE)
        text = bytes(reply[text_at:end]).decode(errors="replace")
        targets.append(Target(start, length, raw_type.rstrip(b"\0").decode(), text))
        offset = next_offset
    return targets
