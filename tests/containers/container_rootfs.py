"""Build a busybox root filesystem and OCI specs for real-runtime tests (shared helper).

The lead's integration tests reuse this: `build_busybox_rootfs(dir)` gives a directory a runtime
can use as a container's rootfs, `host_spec(args)` a config.json as a host would send it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.spec import read_create
from guestagent.demo import assets
from guestagent.errors import AgentError

__all__ = ["build_busybox_rootfs", "bundle_for", "find_static_busybox", "host_spec"]


def find_static_busybox() -> str:
    """The busybox binary (busybox-static: it must run without the host's libraries)."""
    try:
        return assets.find_static_busybox()
    except AgentError as exc:
        pytest.skip(exc.message)


def build_busybox_rootfs(target: Path) -> Path:
    """`target`/bin/busybox plus a symlink per applet, and the usual empty mount points."""
    find_static_busybox()
    return assets.build_busybox_rootfs(target)


def host_spec(args: list[str], **process: Any) -> dict[str, Any]:
    """A runtime spec like `runc spec` writes (what a host sends), running `args`."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
            **process,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "test",
        "mounts": [],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


def bundle_for(
    spec: dict[str, Any],
    rootfs: str,
    cgroups_path: str,
    data: dict[str, Any] | None = None,
    container_id: str = "c1",
) -> dict[str, Any]:
    """config.json for `spec` as the agent writes it: the spec read into facts, and the
    bundle built from those (with `data` as the decision's)."""
    facts, seccomp = read_create(container_id, spec, rootfs)
    return build_bundle_config(facts, data or {}, cgroups_path=cgroups_path, seccomp=seccomp)
