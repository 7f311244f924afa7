"""The host's OCI runtime spec: enforcement input for the policy, and the bundle we write.

Pure: no I/O. Two halves, applied on either side of the policy decision:

* `enforcement_input` reads the host's config.json strictly and turns it into the
  `create_container` input. Malformed fields raise `InvalidArgumentError` naming the JSON path.
  Fields that could grant privilege and that we do not translate (uid mappings, rlimits,
  intelRdt, ...) or do not know at all are listed in `unsupported_fields`, so the engine can
  deny with an explanation.
* `build_bundle_config` writes the config.json the agent hands to the runtime. It is built from
  scratch, field by field: nothing the host sent reaches the runtime unless it is copied here on
  purpose. The rootfs is always the overlay the agent assembled, hooks never survive, env and
  capabilities come from the decision data, and namespaces, cgroup, masked paths and default
  mounts are the agent's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guestagent.containers._specfields import (
    KNOWN_CAPABILITIES,
    check_keys,
    has_hooks,
    optional_paths,
    read_bool,
    read_capabilities,
    read_devices,
    read_env,
    read_list,
    read_map,
    read_mounts,
    read_namespaces,
    read_str,
    read_str_list,
    read_sysctl,
    read_user,
)
from guestagent.containers.spec_defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    default_mounts,
    default_namespaces,
)
from guestagent.errors import InvalidArgumentError

__all__ = ["ParsedSpec", "build_bundle_config", "enforcement_input", "parse_spec", "seccomp_sha256"]

TOP_LEVEL = frozenset(
    (
        "ociVersion",
        "process",
        "root",
        "hostname",
        "domainname",
        "mounts",
        "hooks",
        "annotations",
        "linux",
    )
)
PROCESS_FIELDS = frozenset(
    (
        "terminal",
        "consoleSize",
        "cwd",
        "env",
        "args",
        "capabilities",
        "noNewPrivileges",
        "user",
        "rlimits",
        "apparmorProfile",
        "selinuxLabel",
        "oomScoreAdj",
        "ioPriority",
        "scheduler",
        "execCPUAffinity",
        "commandLine",
    )
)
# Process fields we never apply: present and non-empty means the engine should deny.
PROCESS_UNSUPPORTED = (
    "rlimits",
    "apparmorProfile",
    "selinuxLabel",
    "oomScoreAdj",
    "ioPriority",
    "scheduler",
    "execCPUAffinity",
    "commandLine",
)
LINUX_FIELDS = frozenset(
    (
        "namespaces",
        "uidMappings",
        "gidMappings",
        "timeOffsets",
        "devices",
        "cgroupsPath",
        "resources",
        "rootfsPropagation",
        "seccomp",
        "sysctl",
        "maskedPaths",
        "readonlyPaths",
        "mountLabel",
        "intelRdt",
        "personality",
        "memoryPolicy",
        "netDevices",
    )
)
LINUX_UNSUPPORTED = (
    "uidMappings",
    "gidMappings",
    "timeOffsets",
    "mountLabel",
    "intelRdt",
    "personality",
    "memoryPolicy",
    "netDevices",
)
SAFE_PROPAGATION = frozenset(("", "private", "rprivate", "slave", "rslave"))


@dataclass(slots=True)
class ParsedSpec:
    """The validated fields of a host spec that the agent understands."""

    argv: list[str]
    env: list[str]
    working_dir: str
    user: dict[str, Any]
    capabilities: dict[str, list[str]]
    no_new_privileges: bool
    terminal: bool
    hostname: str
    mounts: list[dict[str, Any]]
    namespaces: list[dict[str, str]]
    hooks: bool
    devices: list[dict[str, Any]]
    sysctl: dict[str, str]
    seccomp: Mapping[str, Any] | None
    resources: Mapping[str, Any]
    masked_paths: list[str] | None
    readonly_paths: list[str] | None
    unsupported: list[str] = field(default_factory=list)


def seccomp_sha256(seccomp: Mapping[str, Any] | None) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of linux.seccomp, "" if none."""
    if not seccomp:
        return ""
    canonical = json.dumps(seccomp, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_spec(spec: Any) -> ParsedSpec:
    """Validate `spec` strictly; raise InvalidArgumentError naming the offending JSON path."""
    spec = read_map(spec, "$")
    unsupported = check_keys(spec, "", TOP_LEVEL)
    process = read_map(spec.get("process"), "process")
    unsupported += check_keys(process, "process", PROCESS_FIELDS)
    unsupported += [f"process.{k}" for k in PROCESS_UNSUPPORTED if process.get(k)]
    linux = read_map(spec.get("linux", {}), "linux")
    unsupported += check_keys(linux, "linux", LINUX_FIELDS)
    unsupported += [f"linux.{k}" for k in LINUX_UNSUPPORTED if linux.get(k)]
    propagation = read_str(linux.get("rootfsPropagation", ""), "linux.rootfsPropagation")
    if propagation not in SAFE_PROPAGATION:
        unsupported.append("linux.rootfsPropagation")
    if "root" in spec:
        read_map(spec["root"], "root")  # the host's rootfs is never used, but must be sane
    for key in ("hostname", "domainname", "ociVersion"):
        read_str(spec.get(key, ""), key)
    for key, value in read_map(spec.get("annotations", {}), "annotations").items():
        read_str(value, f"annotations.{key}")
    user, user_unsupported = read_user(process.get("user", {}))
    args = read_str_list(process.get("args"), "process.args")
    if not args or not args[0]:
        raise InvalidArgumentError(
            "invalid OCI spec: process.args: must not be empty", details={"path": "process.args"}
        )
    return ParsedSpec(
        argv=args,
        env=read_env(process.get("env", []), "process.env"),
        working_dir=read_str(process.get("cwd", "/"), "process.cwd", absolute=True),
        user=user,
        capabilities=read_capabilities(process.get("capabilities", {}), "process.capabilities"),
        no_new_privileges=read_bool(
            process.get("noNewPrivileges", False), "process.noNewPrivileges"
        ),
        terminal=read_bool(process.get("terminal", False), "process.terminal"),
        hostname=spec.get("hostname", ""),
        mounts=read_mounts(spec.get("mounts", []), unsupported),
        namespaces=read_namespaces(linux.get("namespaces", [])),
        hooks=has_hooks(spec.get("hooks")),
        devices=read_devices(linux.get("devices", [])),
        sysctl=read_sysctl(linux.get("sysctl", {})),
        seccomp=read_map(linux["seccomp"], "linux.seccomp") if linux.get("seccomp") else None,
        resources=read_map(linux.get("resources", {}), "linux.resources"),
        masked_paths=optional_paths(linux, "maskedPaths"),
        readonly_paths=optional_paths(linux, "readonlyPaths"),
        unsupported=unsupported + user_unsupported,
    )


def privileged_reasons(parsed: ParsedSpec) -> list[str]:
    """Why this spec amounts to a privileged container (empty if it does not)."""
    reasons = []
    all_caps = set().union(*parsed.capabilities.values())
    if "CAP_SYS_ADMIN" in all_caps:
        reasons.append("CAP_SYS_ADMIN requested")
    if set(parsed.capabilities["bounding"]) >= KNOWN_CAPABILITIES:
        reasons.append("every capability in the bounding set")
    for rule in read_list(parsed.resources.get("devices", []), "linux.resources.devices"):
        rule = read_map(rule, "linux.resources.devices[]")
        if rule.get("allow") is True and rule.get("type", "a") == "a" and "major" not in rule:
            reasons.append("device cgroup allows all devices")
    for mount in parsed.mounts:
        if mount["type"] in ("sysfs", "cgroup", "cgroup2") and "ro" not in mount["options"]:
            reasons.append(f"writable {mount['type']} at {mount['destination']}")
    if parsed.masked_paths == [] and parsed.readonly_paths == []:
        reasons.append("no masked or read-only paths")
    return reasons


def enforcement_input(
    container_id: str, host_spec: Mapping[str, Any], rootfs_target: str
) -> dict[str, Any]:
    """The `create_container` enforcement input for the host's spec."""
    parsed = parse_spec(host_spec)
    reasons = privileged_reasons(parsed)
    return {
        "container_id": container_id,
        "argv": parsed.argv,
        "env": parsed.env,
        "working_dir": parsed.working_dir,
        "user": {k: parsed.user[k] for k in ("uid", "gid", "additional_gids")},
        "umask": parsed.user.get("umask"),
        "capabilities": parsed.capabilities,
        "no_new_privileges": parsed.no_new_privileges,
        "seccomp_profile_sha256": seccomp_sha256(parsed.seccomp),
        "mounts": parsed.mounts,
        "namespaces": [ns["type"] for ns in parsed.namespaces],
        "host_namespaces": [ns["type"] for ns in parsed.namespaces if "path" in ns],
        "hooks": parsed.hooks,
        "devices": [dev["path"] for dev in parsed.devices],
        "sysctl": parsed.sysctl,
        "terminal": parsed.terminal,
        "rootfs": rootfs_target,
        "privileged": bool(reasons),
        "privileged_reasons": reasons,
        "unsupported_fields": sorted(set(parsed.unsupported)),
    }


def build_bundle_config(
    host_spec: Mapping[str, Any],
    decision_data: Mapping[str, Any],
    rootfs_path: str,
    *,
    cgroups_path: str,
    netns_path: str | None = None,
) -> dict[str, Any]:
    """The config.json the agent writes, built only from vetted parts.

    `decision_data` is the allowed decision's data: `env` and `capabilities` replace the
    host's when present (None or absent means the engine did not narrow them, hcsshim's
    `env_list: null`). `netns_path` joins a network namespace the agent created (a pod's);
    None gives the container its own.
    """
    parsed = parse_spec(host_spec)
    read_str(rootfs_path, "rootfs", absolute=True)
    read_str(cgroups_path, "cgroupsPath", absolute=True)
    env = decision_data.get("env")
    caps = decision_data.get("capabilities")
    process: dict[str, Any] = {
        "terminal": parsed.terminal,
        "user": {
            "uid": parsed.user["uid"],
            "gid": parsed.user["gid"],
            "additionalGids": parsed.user["additional_gids"],
        },
        "args": parsed.argv,
        "env": parsed.env if env is None else read_env(env, "decision.env"),
        "cwd": parsed.working_dir,
        "capabilities": parsed.capabilities
        if caps is None
        else read_capabilities(caps, "decision.capabilities"),
        "noNewPrivileges": parsed.no_new_privileges,
    }
    if "umask" in parsed.user:
        process["user"]["umask"] = parsed.user["umask"]
    linux: dict[str, Any] = {
        "namespaces": default_namespaces(netns_path),
        "cgroupsPath": cgroups_path,
        "resources": _resources(parsed),
        "maskedPaths": _union(DEFAULT_MASKED_PATHS, parsed.masked_paths),
        "readonlyPaths": _union(DEFAULT_READONLY_PATHS, parsed.readonly_paths),
    }
    if parsed.devices:
        linux["devices"] = parsed.devices
    if parsed.sysctl:
        linux["sysctl"] = parsed.sysctl
    if parsed.seccomp:
        linux["seccomp"] = dict(parsed.seccomp)
    config = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs_path, "readonly": False},
        "mounts": _merge_mounts(default_mounts(), parsed.mounts),
        "linux": linux,
    }
    if parsed.hostname:
        config["hostname"] = parsed.hostname
    return config


def _union(defaults: tuple[str, ...], extra: list[str] | None) -> list[str]:
    """Defaults always apply; the host may add paths, never remove them."""
    return list(dict.fromkeys([*defaults, *(extra or [])]))


def _merge_mounts(defaults: list[dict[str, Any]], host: list[dict[str, Any]]) -> list[dict]:
    """The host's (policy-approved) mounts replace defaults at the same destination."""
    by_destination = {m["destination"]: m for m in defaults}
    for mount in host:
        by_destination[mount["destination"]] = {
            key: mount[key] for key in ("destination", "type", "source", "options")
        }
    return list(by_destination.values())


def _resources(parsed: ParsedSpec) -> dict[str, Any]:
    """Deny every device but the approved ones; keep limits (they only restrict)."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for dev in parsed.devices:
        if "major" in dev and "minor" in dev:
            rules.append(
                {
                    "allow": True,
                    "type": dev["type"],
                    "major": dev["major"],
                    "minor": dev["minor"],
                    "access": "rwm",
                }
            )
    resources: dict[str, Any] = {"devices": rules}
    limits = {"memory": ("limit",), "cpu": ("shares", "quota", "period"), "pids": ("limit",)}
    for group, keys in limits.items():
        given = parsed.resources.get(group)
        if isinstance(given, Mapping):
            kept = {k: given[k] for k in keys if isinstance(given.get(k), int)}
            if kept:
                resources[group] = kept
    return resources
