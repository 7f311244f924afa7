"""Build a busybox root filesystem and OCI specs for real-runtime tests (shared helper).

The lead's integration tests reuse this: `build_busybox_rootfs(dir)` gives a directory a runtime
can use as a container's rootfs, `host_spec(args)` a config.json as a host would send it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

__all__ = ["build_busybox_rootfs", "find_static_busybox", "host_spec"]


def find_static_busybox() -> str:
    """The busybox binary (busybox-static: it must run without the host's libraries)."""
    path = shutil.which("busybox")
    if path is None:
        pytest.skip("busybox is not installed (.ci/run installs busybox-static)")
    with open(path, "rb") as elf:
        if b"ld-linux" in elf.read(4096):
            pytest.skip(f"{path} is dynamically linked: install busybox-static")
    return path


def build_busybox_rootfs(target: Path) -> Path:
    """`target`/bin/busybox plus a symlink per applet, and the usual empty mount points."""
    busybox = find_static_busybox()
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, target / "bin" / "busybox")
    applets = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = target / "bin" / applet
        if applet != "busybox" and not link.exists():
            os.symlink("busybox", link)
    (target / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (target / "etc" / "group").write_text("root:x:0:\n")
    return target


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
