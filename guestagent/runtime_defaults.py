"""Runtime defaults shared by the spec reader, the bundle builder and the policy (pure data).

The agent's masked and read-only paths apply to every container (the policy may add to them,
never remove any); containerd's and kubelet's defaults are among them.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_OOM_RANGE",
    "DEFAULT_OOM_SCORE_ADJ",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_UMASK",
    "OOM_SCORE_ADJ_RANGE",
    "RLIMIT_TYPES",
    "SHARED_NAMESPACES",
]

DEFAULT_UMASK = 0o022
# The namespaces one container of a pod may join of another (the policy's `joins`).
SHARED_NAMESPACES = ("ipc", "uts", "network")
OOM_SCORE_ADJ_RANGE = (-1000, 1000)
# A container may make itself likelier to be OOM-killed, never less likely than the agent's.
DEFAULT_OOM_RANGE = (0, 1000)
# runc leaves oom_score_adj alone when the spec has none, and the container would inherit
# the agent's (-1000 under systemd: never OOM-killed). Containers start from 0 (moved into
# the policy's range when it excludes 0).
DEFAULT_OOM_SCORE_ADJ = 0
_RLIMITS = "AS CORE CPU DATA FSIZE LOCKS MEMLOCK MSGQUEUE NICE NOFILE NPROC RSS RTPRIO RTTIME"
RLIMIT_TYPES = frozenset(f"RLIMIT_{name}" for name in f"{_RLIMITS} SIGPENDING STACK".split())
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
    "/sys/devices/virtual/powercap",
    "/proc/interrupts",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)
