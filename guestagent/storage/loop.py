"""Loop devices through /dev/loop-control and the loop ioctls (no losetup).

A device is configured read-only and AUTOCLEAR in one LOOP_CONFIGURE (LOOP_SET_FD +
LOOP_SET_STATUS64 on kernels without it). AUTOCLEAR detaches the device when its last user
goes away, so the caller must keep `LoopDevice.fd` open until the mount holds the device, then
close it; `detach` is still called on teardown for devices never mounted.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from guestagent.errors import AgentError, ErrorCode
from guestagent.records import record

__all__ = ["LoopDevice", "attach", "attach_fd", "backing_file", "detach", "pack_loop_config"]

LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
# struct loop_info64: device, inode, rdevice, offset, sizelimit, number, encrypt_type,
# encrypt_key_size, flags, file_name[64], crypt_name[64], encrypt_key[32], init[2]
LOOP_INFO64 = struct.Struct("<QQQQQIIII64s64s32s2Q")
LOOP_CONFIG = struct.Struct(f"<II{LOOP_INFO64.size}s64s")  # fd, block_size, info, reserved
assert LOOP_INFO64.size == 232 and LOOP_CONFIG.size == 304
_ATTEMPTS = 8


@record(mutable=True)
class LoopDevice:
    path: str
    number: int
    fd: int | None  # keep open until mounted (AUTOCLEAR), then close_fd()
    backing: str = ""  # absolute path of the backing file

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def pack_loop_info(path: str, *, offset: int, sizelimit: int, flags: int) -> bytes:
    name = os.fsencode(path)[:63]
    return LOOP_INFO64.pack(0, 0, 0, offset, sizelimit, 0, 0, 0, flags, name, b"", b"", 0, 0)


def pack_loop_config(
    backing_fd: int, path: str, *, offset: int = 0, sizelimit: int = 0, read_only: bool = True
) -> bytes:
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if read_only else 0)
    info = pack_loop_info(path, offset=offset, sizelimit=sizelimit, flags=flags)
    return LOOP_CONFIG.pack(backing_fd, 0, info, bytes(64))


def _configure(
    loop_fd: int, backing_fd: int, path: str, offset: int, sizelimit: int, ro: bool
) -> None:
    config = pack_loop_config(backing_fd, path, offset=offset, sizelimit=sizelimit, read_only=ro)
    try:
        fcntl.ioctl(loop_fd, LOOP_CONFIGURE, config)
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):
            raise
    fcntl.ioctl(loop_fd, LOOP_SET_FD, backing_fd)  # kernels before 5.8
    try:
        info = LOOP_CONFIG.unpack(config)[2]
        fcntl.ioctl(loop_fd, LOOP_SET_STATUS64, info)
    except OSError:
        fcntl.ioctl(loop_fd, LOOP_CLR_FD, 0)
        raise


def attach(path: str, *, read_only: bool = True, offset: int = 0, sizelimit: int = 0) -> LoopDevice:
    """Attach `path` to a free loop device; retries when another process wins the race."""
    try:
        backing = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
    except OSError as exc:
        raise AgentError(f"loop attach of {path} failed: {exc}", code=ErrorCode.STORAGE) from exc
    try:
        device = attach_fd(backing, path, read_only=read_only, offset=offset, sizelimit=sizelimit)
    finally:
        os.close(backing)
    device.backing = os.path.realpath(path)
    return device


def attach_fd(
    backing: int, name: str, *, read_only: bool = True, offset: int = 0, sizelimit: int = 0
) -> LoopDevice:
    """Attach the open file `backing` (the very file the caller checked) to a free loop device."""
    try:
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(_ATTEMPTS):
                number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
                device = f"/dev/loop{number}"
                loop_fd = os.open(device, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
                try:
                    _configure(loop_fd, backing, name, offset, sizelimit, read_only)
                except OSError as exc:
                    os.close(loop_fd)
                    if exc.errno == errno.EBUSY:
                        continue
                    raise
                return LoopDevice(device, number, loop_fd, backing_file(number) or "")
        finally:
            os.close(control)
    except OSError as exc:
        raise AgentError(f"loop attach of {name} failed: {exc}", code=ErrorCode.STORAGE) from exc
    raise AgentError(f"no free loop device for {name}", code=ErrorCode.STORAGE)


def detach(device: LoopDevice) -> None:
    """Detach (idempotent: an already cleared device is fine).

    Once our fd is closed an AUTOCLEAR device may already be gone and its number reused by
    someone else: then it is left alone.
    """
    fd = device.fd
    if fd is None and backing_file(device.number) != device.backing:
        return
    opened_here = fd is None
    try:
        if fd is None:
            fd = os.open(device.path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.ENOENT):
            raise AgentError(
                f"loop detach of {device.path} failed: {exc}", code=ErrorCode.STORAGE
            ) from exc
    finally:
        if opened_here and fd is not None:
            os.close(fd)
        device.close_fd()


def backing_file(number: int) -> str | None:
    """The file behind /dev/loopN, or None when it is not attached."""
    try:
        with open(f"/sys/block/loop{number}/loop/backing_file") as fh:
            return fh.read().strip()
    except OSError:
        return None
