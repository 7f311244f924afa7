"""Device nodes for a container, taken from the guest's own /dev, never from the host's spec.

The policy names devices by path. What a path means (block or character device, major and
minor numbers, mode, owner) is read here from the guest's node with lstat: the host's spec may
state those values, and a spec that states different ones is refused naming the field, so a
host cannot allow `/dev/fuse` and declare it as `c 1:1` (/dev/mem).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

__all__ = ["DEVICE_KEYS", "guest_devices"]

# The facts of one device, in the order the bundle writes them.
DEVICE_KEYS = ("path", "type", "major", "minor", "file_mode", "uid", "gid")
_SPEC_KEYS = {"fileMode": "file_mode"}  # spec name -> fact name, where they differ


def _node(path: str) -> dict[str, Any] | str:
    """The guest's device node at `path`, or why there is none."""
    if os.path.normpath(path) != path or not path.startswith("/dev/"):
        return "must be a normalised path under /dev"
    try:
        info = os.lstat(path)  # a symlink is not followed: it is not a device node
    except OSError as exc:
        return f"the guest has no device node {path} ({exc.strerror})"
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    else:
        return f"{path} in the guest is not a character or block device"
    return {
        "path": path,
        "type": kind,
        "major": os.major(info.st_rdev),
        "minor": os.minor(info.st_rdev),
        "file_mode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
    }


def guest_devices(spec_devices: list[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(device facts from the guest's nodes, conflicts naming spec fields).

    `spec_devices` are the spec's linux.devices as read (path, type and the numbers it states).
    A conflict is a field the spec states differently from the guest's node, or a path with
    no usable node; the engine refuses the request when there is any.
    """
    nodes: list[dict[str, Any]] = []
    conflicts: list[str] = []
    for i, stated in enumerate(spec_devices):
        at = f"linux.devices[{i}]"
        node = _node(stated["path"])
        if isinstance(node, str):
            conflicts.append(f"{at}.path: {node}")
            continue
        for key, value in stated.items():
            fact = _SPEC_KEYS.get(key, key)
            if key == "type" and value == "u":
                value = "c"  # "u", an unbuffered character device, names the same node
            if key != "path" and value != node[fact]:
                conflicts.append(
                    f"{at}.{key}: the spec states {value!r}, the guest's {node['path']} has "
                    f"{node[fact]!r}"
                )
        nodes.append(node)
    return nodes, conflicts
