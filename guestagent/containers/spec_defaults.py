"""The agent's defaults for every container: runc's `runc spec` values, minus what we forbid."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.runtime_defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_OOM_SCORE_ADJ,
    DEFAULT_READONLY_PATHS,
    DEFAULT_UMASK,
    RLIMIT_TYPES,
)

__all__ = [
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_OOM_SCORE_ADJ",
    "DEFAULT_READONLY_PATHS",
    "DEFAULT_UMASK",
    "OCI_VERSION",
    "RLIMIT_TYPES",
    "agent_hostname",
    "default_mounts",
    "default_namespaces",
]

OCI_VERSION = "1.0.2"
HOST_NAME_MAX = 64

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]


def agent_hostname(container_id: str) -> str:
    """The hostname a container gets when its spec names none: its id, cut to what
    sethostname(2) takes."""
    return container_id[: HOST_NAME_MAX - 1]


def default_mounts() -> list[dict[str, Any]]:
    """proc, dev, devpts, shm, mqueue, sysfs (ro) and cgroup (ro), as `runc spec` has them,
    with proc hardened as the policy demands of a host's proc mount."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": list(_NOSUID_NOEXEC_NODEV)},
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


NAMESPACE_ORDER = ("pid", "network", "ipc", "uts", "mount", "cgroup", "time")
MANDATORY_NAMESPACES = frozenset(("pid", "ipc", "uts", "mount", "cgroup"))


def default_namespaces(
    netns_path: str | None = None,
    requested: frozenset[str] | set[str] | None = None,
    joined: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """Fresh pid, ipc, uts, mount and cgroup namespaces always; network unless `requested`
    (the types the decision allowed) lacks it (a host_network container); time if requested.
    The network namespace is the agent's at `netns_path` when it made one (a pod's); `joined`
    (type -> path the agent computed, pod_namespaces.py) replaces a fresh one by another
    container's."""
    wanted = MANDATORY_NAMESPACES | {"network"} if requested is None else requested
    types = [t for t in NAMESPACE_ORDER if t in MANDATORY_NAMESPACES or t in wanted]
    paths = dict(joined or {})
    if netns_path:
        paths.setdefault("network", netns_path)
    return [{"type": t, "path": paths[t]} if t in paths else {"type": t} for t in types]
