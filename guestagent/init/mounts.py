"""The pseudo file systems every guest needs, mounted if not already there.

Under systemd (and after the initramfs moved /dev, /proc and /sys) most are mounted already:
an existing mount point is left alone, so the same code serves both boot paths.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from guestagent.init import syscalls
from guestagent.records import record

__all__ = ["EARLY_MOUNTS", "MountSpec", "mount_early"]

_SAFE = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


@record
class MountSpec:
    fstype: str
    target: str
    flags: int = 0
    data: str = ""
    source: str = ""


# Order matters: /dev before /dev/pts, /sys before /sys/fs/cgroup.
EARLY_MOUNTS: tuple[MountSpec, ...] = (
    MountSpec("proc", "/proc", _SAFE),
    MountSpec("sysfs", "/sys", _SAFE),
    MountSpec("devtmpfs", "/dev", syscalls.MS_NOSUID, "mode=0755"),
    MountSpec("devpts", "/dev/pts", syscalls.MS_NOSUID | syscalls.MS_NOEXEC, "mode=0620,gid=5"),
    MountSpec("tmpfs", "/dev/shm", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=1777"),
    MountSpec("tmpfs", "/run", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=0755"),
    MountSpec("cgroup2", "/sys/fs/cgroup", _SAFE, "nsdelegate"),
)

Mounter = Callable[[str, str, str, int, str], None]


def mount_early(
    specs: tuple[MountSpec, ...] = EARLY_MOUNTS,
    *,
    mounter: Mounter = syscalls.mount,
    is_mounted: Callable[[str], bool] = os.path.ismount,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Mount each spec not already mounted; return the targets mounted now. Errors propagate."""
    done: list[str] = []
    for spec in specs:
        if is_mounted(spec.target):
            continue
        os.makedirs(spec.target, exist_ok=True)
        try:
            mounter(spec.source or spec.fstype, spec.target, spec.fstype, spec.flags, spec.data)
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # EBUSY: mounted meanwhile (the systemd path)
                raise
            log(f"{spec.target} already mounted")
            continue
        done.append(spec.target)
    return done
