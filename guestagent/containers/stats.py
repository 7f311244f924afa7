"""Per-container statistics from the container's cgroup, and the agent's own health.

cgroup v2 (the guest's layout) is read from the unified files: cpu.stat, memory.current,
memory.max, pids.current, io.stat. On a v1 or hybrid host (some development machines) the same
figures come from the v1 controllers, so the numbers keep their meaning either way.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

__all__ = [
    "agent_health",
    "cgroup_dirs",
    "cgroup_mounts",
    "container_stats",
    "remove_cgroup",
]

_MOUNT_OPTIONS = frozenset(("rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime"))


def cgroup_mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, Path]:
    """Mounted cgroup hierarchies: {"unified": path} for v2, {controller: path} for v1
    (a v1 hierarchy with several controllers, like cpu,cpuacct, is listed under each). A mount
    hidden by a later one on the same mount point is not visible there, so it is not listed."""
    visible: dict[Path, tuple[str, str]] = {}
    with open(mountinfo) as info:
        for line in info:
            pre, _, post = line.partition(" - ")
            fstype, _source, options = [*post.split(), "", "", ""][:3]
            visible[Path(pre.split()[4])] = (fstype, options)  # later mounts hide earlier
    mounts: dict[str, Path] = {}
    for mount_point, (fstype, options) in visible.items():
        if fstype == "cgroup2":
            mounts.setdefault("unified", mount_point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option not in _MOUNT_OPTIONS:
                    mounts.setdefault(option, mount_point)
    return mounts


def cgroup_dirs(cgroups_path: str) -> list[Path]:
    """Existing directories of `cgroups_path` (absolute, as in config.json) in each hierarchy."""
    relative = cgroups_path.lstrip("/")
    found = {root / relative for root in cgroup_mounts().values()}
    return sorted(path for path in found if path.is_dir())


def remove_cgroup(cgroups_path: str) -> list[str]:
    """rmdir every leftover directory of `cgroups_path`, deepest first; returns what was left."""
    left = []
    for path in cgroup_dirs(cgroups_path):
        for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if sub.is_dir():
                with contextlib.suppress(OSError):
                    sub.rmdir()
        try:
            path.rmdir()
        except OSError:
            left.append(str(path))
    return left


def _read_int(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    if raw == "max":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


def _io_v2(path: Path) -> dict[str, int]:
    totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key in totals:
                    totals[key] += int(value)
    return totals


def _stats_v2(root: Path) -> dict[str, Any]:
    cpu = _read_keyed(root / "cpu.stat")
    return {
        "cgroup_version": 2,
        "cpu_usage_usec": cpu.get("usage_usec"),
        "memory_current": _read_int(root / "memory.current"),
        "memory_max": _read_int(root / "memory.max"),
        "pids_current": _read_int(root / "pids.current"),
        "io": _io_v2(root / "io.stat"),
    }


def _stats_v1(mounts: dict[str, Path], relative: str) -> dict[str, Any]:
    def at(controller: str, name: str) -> Path:
        return mounts.get(controller, Path("/nonexistent")) / relative / name

    usage_ns = _read_int(at("cpuacct", "cpuacct.usage"))
    limit = _read_int(at("memory", "memory.limit_in_bytes"))
    io = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
    for file, (read_key, write_key) in (
        ("blkio.throttle.io_service_bytes", ("rbytes", "wbytes")),
        ("blkio.throttle.io_serviced", ("rios", "wios")),
    ):
        with contextlib.suppress(OSError):
            for line in at("blkio", file).read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in ("Read", "Write"):
                    io[read_key if parts[1] == "Read" else write_key] += int(parts[2])
    return {
        "cgroup_version": 1,
        "cpu_usage_usec": None if usage_ns is None else usage_ns // 1000,
        "memory_current": _read_int(at("memory", "memory.usage_in_bytes")),
        # v1 reports "no limit" as a huge page-aligned number
        "memory_max": None if limit is None or limit >= 1 << 62 else limit,
        "pids_current": _read_int(at("pids", "pids.current")),
        "io": io,
    }


def container_stats(cgroups_path: str) -> dict[str, Any]:
    """cpu, memory, pids and io figures of the container whose cgroupsPath is given."""
    mounts = cgroup_mounts()
    relative = cgroups_path.lstrip("/")
    unified = mounts.get("unified")
    # v2 only where the unified hierarchy has the controllers (not on a hybrid host)
    if unified is not None and "cpuacct" not in mounts and (unified / relative).is_dir():
        return _stats_v2(unified / relative)
    return _stats_v1(mounts, relative)


def agent_health(started_at: float | None = None) -> dict[str, Any]:
    """The agent's own process: rss, open fds, threads, cpu times, uptime."""
    import psutil  # 10 MiB and 20 ms at start-up for a request that may never come

    process = psutil.Process(os.getpid())
    with process.oneshot():
        cpu = process.cpu_times()
        created = process.create_time()
        return {
            "pid": process.pid,
            "rss_bytes": process.memory_info().rss,
            "fds": process.num_fds(),
            "threads": process.num_threads(),
            "cpu_user_s": cpu.user,
            "cpu_system_s": cpu.system,
            "uptime_s": time.time() - (started_at if started_at is not None else created),
        }
