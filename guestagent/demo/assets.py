"""Demo inputs made on the spot: a busybox root filesystem layer, its policy, host specs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from guestagent.capabilities import DEFAULT_UNPRIVILEGED_CAPABILITIES as DEFAULT_UNPRIVILEGED_CAPS
from guestagent.errors import AgentError, ErrorCode
from guestagent.storage.layer import LayerImage, build_layer

__all__ = [
    "DEMO_EXEC",
    "DEMO_INIT",
    "build_busybox_layer",
    "build_busybox_rootfs",
    "demo_policy",
    "exec_process",
    "find_static_busybox",
    "host_spec",
]

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
# The container's init waits for a line on stdin, so the demo can exec into it meanwhile.
DEMO_INIT = ["/bin/sh", "-c", "echo hello from a verified layer; read line; echo bye $line"]
DEMO_EXEC = ["/bin/cat", "/etc/motd"]
CAPS = sorted(DEFAULT_UNPRIVILEGED_CAPS)


def find_static_busybox() -> str:
    """A statically linked busybox (it must run without the host's libraries)."""
    path = shutil.which("busybox")
    if path is None:
        raise AgentError(
            "busybox is not installed (apt-get install busybox-static)", code=ErrorCode.NOT_FOUND
        )
    with open(path, "rb") as elf:
        if b"ld-linux" in elf.read(4096):
            raise AgentError(
                f"{path} is dynamically linked: install busybox-static", code=ErrorCode.NOT_FOUND
            )
    return path


def build_busybox_rootfs(target: Path) -> Path:
    """`target`/bin/busybox plus a symlink per applet, and the usual empty mount points."""
    busybox = find_static_busybox()
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "run"):
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
    (target / "etc" / "motd").write_text("this file was read through dm-verity-checked data\n")
    return target


def build_busybox_layer(workdir: Path) -> LayerImage:
    """A reproducible erofs layer image of the busybox root filesystem, verity tree appended."""
    source = build_busybox_rootfs(workdir / "busybox-rootfs")
    return build_layer(str(source), str(workdir / "busybox.layer"), work_dir=str(workdir))


def demo_policy(layer_hashes: list[str], **flags: Any) -> bytes:
    """The policy a relying party would audit: one busybox container, one exec, SIGTERM."""
    policy = {
        "version": 1,
        "containers": [
            {
                "name": "busybox-demo",
                "layers": layer_hashes,
                "command": DEMO_INIT,
                "env_rules": [
                    {"pattern": PATH, "strategy": "string", "required": True},
                    {"pattern": "GREETING=[a-z ]{1,32}", "strategy": "re2", "required": False},
                ],
                "working_dir": "/",
                "user": {"uid": 0, "gid": 0, "additional_gids": []},
                "capabilities": None,
                "no_new_privileges": True,
                "exec_processes": [{"command": DEMO_EXEC, "signals": [15]}],
                "signals": [15, 9],
                "allow_stdio_access": True,
                "attestation_socket": True,
                "hostname": "demo",
            }
        ],
        "allow_properties_access": True,
        "debug_console": {"enabled": True, "commands": ["status", "containers", "mounts"]},
        **flags,
    }
    return (json.dumps(policy, indent=2) + "\n").encode()


def _process(args: list[str], env: list[str]) -> dict[str, Any]:
    return {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": env,
        "cwd": "/",
        "capabilities": {k: list(CAPS) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
    }


def host_spec(args: list[str] | None = None, env: list[str] | None = None) -> dict[str, Any]:
    """An OCI runtime spec as a host sends it (its rootfs path is ignored by the agent)."""
    return {
        "ociVersion": "1.0.2",
        "process": _process(args or DEMO_INIT, env or [PATH, "GREETING=hi"]),
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "demo",
        "mounts": [],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        },
    }


def exec_process(args: list[str] | None = None, env: list[str] | None = None) -> dict[str, Any]:
    return _process(args or DEMO_EXEC, env or [PATH])
