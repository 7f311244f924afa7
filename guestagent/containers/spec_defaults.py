"""The agent's defaults for every container: runc's `runc spec` values, minus what we forbid."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "default_mounts",
    "default_namespaces",
]

DEFAULT_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def default_mounts() -> list[dict[str, Any]]:
    """proc, dev, devpts, shm, mqueue, sysfs (ro) and cgroup (ro), as `runc spec` has them."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": list(_NOSUID_NOEXEC_NODEV)},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": [*_NOSUID_NOEXEC_NODEV, "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": [*_NOSUID_NOEXEC_NODEV, "relatime", "ro"]},
    ]  # fmt: skip


def default_namespaces(netns_path: str | None = None) -> list[dict[str, str]]:
    """Fresh pid, ipc, uts, mount and cgroup namespaces; the network namespace is the
    container's own unless the agent created one for it (a pod's) at `netns_path`."""
    network: dict[str, str] = {"type": "network"}
    if netns_path:
        network["path"] = netns_path
    return [
        {"type": "pid"},
        network,
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "cgroup"},
    ]
