"""Strict readers for OCI runtime spec fields: each failure names the JSON path it is about."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from guestagent.capabilities import ALL_CAPABILITIES
from guestagent.errors import InvalidArgumentError

__all__ = [
    "KNOWN_CAPABILITIES",
    "NAMESPACE_TYPES",
    "check_keys",
    "has_hooks",
    "optional_paths",
    "read_bool",
    "read_capabilities",
    "read_devices",
    "read_env",
    "read_int",
    "read_list",
    "read_map",
    "read_mounts",
    "read_namespaces",
    "read_str",
    "read_str_list",
    "read_sysctl",
    "read_user",
]

# Linux capabilities 0..40, in number order.
KNOWN_CAPABILITIES = ALL_CAPABILITIES
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
NAMESPACE_TYPES = frozenset(("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"))
_ENV_NAME = re.compile(r"[^=\x00]+")
MAX_ID = 2**32 - 2
USER_FIELDS = frozenset(("uid", "gid", "umask", "additionalGids", "username"))
MOUNT_FIELDS = frozenset(("destination", "source", "type", "options", "uidMappings", "gidMappings"))
DEVICE_FIELDS = frozenset(("path", "type", "major", "minor", "fileMode", "uid", "gid"))


def _fail(path: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid OCI spec: {path}: {problem}", details={"path": path})


def read_map(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _fail(path, "must be an object")
    return value


def read_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "must be an array")
    return value


def read_str(value: Any, path: str, *, absolute: bool = False, nonempty: bool = False) -> str:
    if not isinstance(value, str) or "\x00" in value:
        raise _fail(path, "must be a string without NUL")
    if nonempty and not value:
        raise _fail(path, "must not be empty")
    if absolute and not value.startswith("/"):
        raise _fail(path, "must be an absolute path")
    return value


def read_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "must be a boolean")
    return value


def read_int(value: Any, path: str, *, low: int = 0, high: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(path, f"must be an integer in [{low}, {high}]")
    return value


def read_str_list(value: Any, path: str) -> list[str]:
    return [read_str(item, f"{path}[{i}]") for i, item in enumerate(read_list(value, path))]


def read_env(value: Any, path: str) -> list[str]:
    env = read_str_list(value, path)
    for i, item in enumerate(env):
        name, sep, _ = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise _fail(f"{path}[{i}]", "must be NAME=VALUE")
    return env


def read_capabilities(value: Any, path: str) -> dict[str, list[str]]:
    caps = read_map(value, path)
    unknown = sorted(set(caps) - set(CAPABILITY_SETS))
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", "unknown capability set")
    result: dict[str, list[str]] = {}
    for name in CAPABILITY_SETS:
        items = read_str_list(caps.get(name, []), f"{path}.{name}")
        for i, cap in enumerate(items):
            if cap not in KNOWN_CAPABILITIES:
                raise _fail(f"{path}.{name}[{i}]", f"unknown capability {cap!r}")
        result[name] = items
    return result


def check_keys(obj: Mapping[str, Any], path: str, known: frozenset[str]) -> list[str]:
    """JSON paths of keys we do not know (reported to the engine, never applied)."""
    return [f"{path}.{key}" if path else key for key in sorted(set(obj) - known)]


def read_user(value: Any) -> tuple[dict[str, Any], list[str]]:
    user = read_map(value, "process.user")
    unsupported = check_keys(user, "process.user", USER_FIELDS)
    if user.get("username"):
        unsupported.append("process.user.username")
    gids = read_list(user.get("additionalGids", []), "process.user.additionalGids")
    parsed = {
        "uid": read_int(user.get("uid", 0), "process.user.uid"),
        "gid": read_int(user.get("gid", 0), "process.user.gid"),
        "additional_gids": [
            read_int(g, f"process.user.additionalGids[{i}]") for i, g in enumerate(gids)
        ],
    }
    if "umask" in user:
        parsed["umask"] = read_int(user["umask"], "process.user.umask", high=0o777)
    return parsed, unsupported


def read_mounts(value: Any, unsupported: list[str]) -> list[dict[str, Any]]:
    mounts = []
    for i, raw in enumerate(read_list(value, "mounts")):
        path = f"mounts[{i}]"
        mount = read_map(raw, path)
        unsupported += check_keys(mount, path, MOUNT_FIELDS)
        unsupported += [f"{path}.{k}" for k in ("uidMappings", "gidMappings") if mount.get(k)]
        mounts.append(
            {
                "destination": read_str(
                    mount.get("destination"), f"{path}.destination", absolute=True
                ),
                "source": read_str(mount.get("source", ""), f"{path}.source"),
                "type": read_str(mount.get("type", ""), f"{path}.type"),
                "options": read_str_list(mount.get("options", []), f"{path}.options"),
            }
        )
    return mounts


def read_namespaces(value: Any) -> list[dict[str, str]]:
    namespaces = []
    for i, raw in enumerate(read_list(value, "linux.namespaces")):
        path = f"linux.namespaces[{i}]"
        ns = read_map(raw, path)
        kind = read_str(ns.get("type"), f"{path}.type")
        if kind not in NAMESPACE_TYPES or set(ns) - {"type", "path"}:
            raise InvalidArgumentError(
                f"invalid OCI spec: {path}: unknown namespace {kind!r} or field",
                details={"path": path},
            )
        entry = {"type": kind}
        if "path" in ns:
            entry["path"] = read_str(ns["path"], f"{path}.path")
        namespaces.append(entry)
    return namespaces


def has_hooks(value: Any) -> bool:
    if value is None:
        return False
    hooks = read_map(value, "hooks")
    return any(bool(entries) for entries in hooks.values())


def read_devices(value: Any) -> list[dict[str, Any]]:
    devices = []
    for i, raw in enumerate(read_list(value, "linux.devices")):
        path = f"linux.devices[{i}]"
        dev = read_map(raw, path)
        if set(dev) - DEVICE_FIELDS:
            raise InvalidArgumentError(
                f"invalid OCI spec: {path}: unknown field", details={"path": path}
            )
        device = {
            "path": read_str(dev.get("path"), f"{path}.path", absolute=True),
            "type": read_str(dev.get("type"), f"{path}.type", nonempty=True),
        }
        for key in ("major", "minor", "fileMode", "uid", "gid"):
            if key in dev:
                device[key] = read_int(dev[key], f"{path}.{key}")
        devices.append(device)
    return devices


def read_sysctl(value: Any) -> dict[str, str]:
    sysctl = read_map(value, "linux.sysctl")
    return {key: read_str(val, f"linux.sysctl.{key}") for key, val in sysctl.items()}


def optional_paths(linux: Mapping[str, Any], key: str) -> list[str] | None:
    if key not in linux:
        return None
    return read_str_list(linux[key], f"linux.{key}")
