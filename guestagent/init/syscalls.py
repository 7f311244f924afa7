"""The few system calls init needs that Python's os module lacks, through ctypes.

Each wrapper raises OSError with the errno on failure, like os functions do.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "LINUX_REBOOT_CMD_HALT",
    "LINUX_REBOOT_CMD_POWER_OFF",
    "MODULE_INIT_COMPRESSED_FILE",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "finit_module",
    "mount",
    "reboot",
    "set_child_subreaper",
]

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
PR_SET_CHILD_SUBREAPER = 36
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
LINUX_REBOOT_CMD_HALT = 0xCDEF0123
MODULE_INIT_COMPRESSED_FILE = 4
SYS_FINIT_MODULE = 313  # x86_64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.reboot.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    result = _libc.mount(
        source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None
    )
    _check(result, f"mount {fstype} on {target}")


def set_child_subreaper() -> None:
    """Orphaned descendants are re-parented to us, so we reap them (not just as PID 1)."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def reboot(command: int) -> None:
    """reboot(2): with POWER_OFF it does not return on success."""
    _check(_libc.reboot(ctypes.c_int(command & 0xFFFFFFFF).value), "reboot")


def finit_module(path: str, params: str = "") -> None:
    flags = MODULE_INIT_COMPRESSED_FILE if path.endswith((".xz", ".zst", ".gz")) else 0
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        result = _libc.syscall(
            ctypes.c_long(SYS_FINIT_MODULE), ctypes.c_int(fd), params.encode(), ctypes.c_int(flags)
        )
        _check(0 if result == 0 else -1, f"finit_module {path}")
    finally:
        os.close(fd)
