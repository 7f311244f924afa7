"""Strict readers for OCI runtime spec fields: each failure names the JSON path it is about."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from guestagent.capabilities import ALL_CAPABILITIES
from guestagent.containers.spec_defaults import HOST_NAME_MAX
from guestagent.errors import InvalidArgumentError
from guestagent.printable import ARGV_CONTROLS, first_control
from guestagent.runtime_defaults import OOM_SCORE_ADJ_RANGE, RLIMIT_TYPES

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
    "read_oom_score_adj",
    "read_resources",
    "read_rlimits",
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


def read_args(value: Any, path: str) -> list[str]:
    """A process's argv: not empty, and no control character but tab and newline. A policy
    command can hold no other (policy/_reader.py), so an argument with one could match no
    rule: refused here, naming it; tab and newline match only where the command has them."""
    args = read_str_list(value, path)
    if not args or not args[0]:
        raise _fail(path, "must not be empty")
    for i, arg in enumerate(args):
        where = first_control(arg, ARGV_CONTROLS)
        if where is not None:
            raise _fail(f"{path}[{i}]", f"control character {where}: only tab and newline")
    return args


def read_hostname(value: Any, path: str) -> str:
    """A hostname sethostname(2) takes (at most HOST_NAME_MAX bytes), without controls."""
    name = read_str(value, path)
    if len(name.encode("utf-8", "surrogatepass")) > HOST_NAME_MAX:
        raise _fail(path, f"longer than {HOST_NAME_MAX} bytes")
    where = first_control(name)
    if where is not None:
        raise _fail(path, f"control character {where}")
    return name


def read_env(value: Any, path: str) -> list[str]:
    """NAME=VALUE strings, each name once: with two values for one name, which one the
    program sees depends on its libc, so a policy could not say what it allows."""
    env = read_str_list(value, path)
    seen: dict[str, int] = {}
    for i, item in enumerate(env):
        name, sep, _ = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise _fail(f"{path}[{i}]", "must be NAME=VALUE")
        if name in seen:
            raise _fail(f"{path}[{i}]", f"duplicate variable {name} (also {path}[{seen[name]}])")
        seen[name] = i
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


U64 = 2**64 - 1
I64 = 2**63 - 1


def read_rlimits(value: Any, path: str) -> list[dict[str, Any]]:
    """[{type, soft, hard}], each type once, soft <= hard (setrlimit refuses the rest)."""
    rlimits: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(read_list(value, path)):
        at = f"{path}[{i}]"
        item = read_map(raw, at)
        if set(item) - {"type", "soft", "hard"}:
            raise _fail(at, "unknown field (want type, soft, hard)")
        kind = read_str(item.get("type"), f"{at}.type")
        if kind not in RLIMIT_TYPES:
            raise _fail(f"{at}.type", f"unknown rlimit {kind!r}")
        if kind in seen:
            raise _fail(f"{at}.type", f"{kind} is given twice")
        seen.add(kind)
        soft = read_int(item.get("soft"), f"{at}.soft", high=U64)
        hard = read_int(item.get("hard"), f"{at}.hard", high=U64)
        if soft > hard:
            raise _fail(f"{at}.soft", "must not exceed hard")
        rlimits.append({"type": kind, "soft": soft, "hard": hard})
    return rlimits


def read_oom_score_adj(value: Any, path: str) -> int | None:
    if value is None:
        return None
    low, high = OOM_SCORE_ADJ_RANGE
    return read_int(value, path, low=low, high=high)


# linux.resources: the limits the bundle applies: (group, key) -> the integer range.
_LIMIT_INT = {
    ("memory", "limit"): (-1, I64),
    ("memory", "reservation"): (-1, I64),
    ("memory", "swap"): (-1, I64),
    ("cpu", "shares"): (0, U64),
    ("cpu", "quota"): (-1, I64),
    ("cpu", "period"): (0, U64),
    ("pids", "limit"): (-1, I64),
}
_LIMIT_TEXT = frozenset({("cpu", "cpus"), ("cpu", "mems")})
_CPU_LIST = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
_PAGE_SIZE = re.compile(r"[0-9]{1,4}[KMG]B")
# Groups read only to judge privilege (devices: the agent writes its own device rules).
_RESOURCE_GROUPS = frozenset({"memory", "cpu", "pids", "hugepageLimits", "devices"})


def _empty(value: Any) -> bool:
    """An unruled field that asks for nothing (null, false, [] or {})."""
    return value is None or value is False or value == [] or value == {}


def read_resources(value: Any, unsupported: list[str]) -> dict[str, int | str]:
    """The limits of linux.resources as flat facts ("memory.limit": N, "cpu.cpus": "0-1",
    "hugepage.2MB": N); any other non-empty field goes to `unsupported`."""
    resources = read_map(value, "linux.resources")
    facts: dict[str, int | str] = {}
    for group, body in resources.items():
        at = f"linux.resources.{group}"
        if group not in _RESOURCE_GROUPS:
            if not _empty(body):
                unsupported.append(at)
            continue
        if group in ("devices", "hugepageLimits"):
            continue
        for key, item in read_map(body, at).items():
            if (group, key) in _LIMIT_INT:
                if item is not None:
                    low, high = _LIMIT_INT[group, key]
                    facts[f"{group}.{key}"] = read_int(item, f"{at}.{key}", low=low, high=high)
            elif (group, key) in _LIMIT_TEXT:
                text = read_str(item, f"{at}.{key}")
                if text and not _CPU_LIST.fullmatch(text):
                    raise _fail(f"{at}.{key}", "must be a CPU or node list such as 0-3,6")
                if text:
                    facts[f"{group}.{key}"] = text
            elif not _empty(item):
                unsupported.append(f"{at}.{key}")
    pages = resources.get("hugepageLimits") or []
    for i, raw in enumerate(read_list(pages, "linux.resources.hugepageLimits")):
        at = f"linux.resources.hugepageLimits[{i}]"
        item = read_map(raw, at)
        if set(item) - {"pageSize", "limit"}:
            raise _fail(at, "unknown field (want pageSize, limit)")
        size = read_str(item.get("pageSize"), f"{at}.pageSize")
        if not _PAGE_SIZE.fullmatch(size) or f"hugepage.{size}" in facts:
            raise _fail(f"{at}.pageSize", "must be a page size such as 2MB, each once")
        facts[f"hugepage.{size}"] = read_int(item.get("limit"), f"{at}.limit", high=U64)
    return facts
