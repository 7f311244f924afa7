"""The host's OCI runtime spec, read strictly into the facts the policy decides on.

`parse_spec` is pure: malformed fields raise `InvalidArgumentError` naming the JSON path.
Every field of the spec has a rule (docs/policy.md lists them): it becomes a fact the engine
rules on, or it is one of the few the agent accepts and replaces with its own value
(`cgroupsPath`, `root.path`, `ociVersion`, `annotations`, `consoleSize`), or it is listed in
`unsupported_fields` so the engine refuses the request naming it. Nothing is dropped silently.

`read_create` adds what only the guest knows (its device nodes, see devices.py) and returns
the `create_container` enforcement input; `bundle.build_bundle_config` then writes config.json
from those facts alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from guestagent.containers._specfields import (
    KNOWN_CAPABILITIES,
    check_keys,
    has_hooks,
    optional_paths,
    read_args,
    read_bool,
    read_capabilities,
    read_devices,
    read_env,
    read_hostname,
    read_int,
    read_list,
    read_map,
    read_mounts,
    read_namespaces,
    read_oom_score_adj,
    read_resources,
    read_rlimits,
    read_str,
    read_sysctl,
    read_user,
)
from guestagent.containers.devices import guest_devices
from guestagent.errors import InvalidArgumentError
from guestagent.records import field, record
from guestagent.runtime_defaults import SHARED_NAMESPACES

__all__ = [
    "EXEC_UNSUPPORTED",
    "PROCESS_FIELDS",
    "ParsedSpec",
    "enforcement_input",
    "parse_spec",
    "read_create",
    "seccomp_sha256",
]

TOP_LEVEL = frozenset(
    ("ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks", "annotations",
     "linux")
)  # fmt: skip
PROCESS_FIELDS = frozenset(
    ("terminal", "consoleSize", "cwd", "env", "args", "capabilities", "noNewPrivileges", "user",
     "rlimits", "apparmorProfile", "selinuxLabel", "oomScoreAdj", "ioPriority", "scheduler",
     "execCPUAffinity", "commandLine")
)  # fmt: skip
# Process fields no rule covers: present and non-empty, the engine refuses them.
PROCESS_UNSUPPORTED = (
    "apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity",
    "commandLine",
)  # fmt: skip
# An exec process is refused outright (there is no later decision to narrow it): these too.
EXEC_UNSUPPORTED = (*PROCESS_UNSUPPORTED, "rlimits", "oomScoreAdj")
LINUX_FIELDS = frozenset(
    ("namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "cgroupsPath",
     "resources", "rootfsPropagation", "seccomp", "sysctl", "maskedPaths", "readonlyPaths",
     "mountLabel", "intelRdt", "personality", "memoryPolicy", "netDevices")
)  # fmt: skip
LINUX_UNSUPPORTED = (
    "uidMappings", "gidMappings", "timeOffsets", "mountLabel", "intelRdt", "personality",
    "memoryPolicy", "netDevices",
)  # fmt: skip
ROOT_FIELDS = frozenset(("path", "readonly"))
# Propagation that shares nothing back to the guest; the bundle always has rprivate.
SAFE_PROPAGATION = frozenset(("", "private", "rprivate", "slave", "rslave"))


@record(mutable=True)
class ParsedSpec:
    """The validated fields of a host spec: everything the agent applies, and nothing else."""

    argv: list[str]
    env: list[str]
    working_dir: str
    user: dict[str, Any]
    capabilities: dict[str, list[str]]
    no_new_privileges: bool
    terminal: bool
    hostname: str
    readonly_rootfs: bool
    mounts: list[dict[str, Any]]
    namespaces: list[dict[str, str]]
    hooks: bool
    devices: list[dict[str, Any]]
    sysctl: dict[str, str]
    seccomp: Mapping[str, Any] | None
    resources: Mapping[str, Any]
    limits: dict[str, int | str]
    masked_paths: list[str] | None
    readonly_paths: list[str] | None
    rlimits: list[dict[str, Any]]
    oom_score_adj: int | None
    unsupported: list[str] = field(default_factory=list)


def seccomp_sha256(seccomp: Mapping[str, Any] | None) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of linux.seccomp, "" if none."""
    if not seccomp:
        return ""
    canonical = json.dumps(seccomp, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _accepted_not_applied(
    spec: Mapping[str, Any], process: Mapping[str, Any], linux: Mapping[str, Any]
) -> None:
    """Fields the agent replaces with its own value: they must still be well formed."""
    read_str(spec.get("ociVersion", ""), "ociVersion")
    for key, value in read_map(spec.get("annotations", {}), "annotations").items():
        read_str(value, f"annotations.{key}")
    read_str(linux.get("cgroupsPath", ""), "linux.cgroupsPath")
    if process.get("consoleSize") is not None:
        size = read_map(process["consoleSize"], "process.consoleSize")
        for key in ("height", "width"):
            read_int(size.get(key, 0), f"process.consoleSize.{key}", high=65535)


def _root(spec: Mapping[str, Any], unsupported: list[str]) -> bool:
    """root.readonly (a fact); root.path is never used: the rootfs is the agent's overlay."""
    root = read_map(spec.get("root", {}), "root")
    unsupported += check_keys(root, "root", ROOT_FIELDS)
    read_str(root.get("path", ""), "root.path")
    return read_bool(root.get("readonly", False), "root.readonly")


def _namespaces(linux: Mapping[str, Any], unsupported: list[str]) -> list[dict[str, str]]:
    namespaces = read_namespaces(linux.get("namespaces", []))
    for i, ns in enumerate(namespaces):
        if ns["type"] == "user":  # needs uid/gid mappings, which the agent never applies
            unsupported.append(f"linux.namespaces[{i}]")
    return namespaces


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
    if read_str(spec.get("domainname", ""), "domainname"):
        unsupported.append("domainname")
    _accepted_not_applied(spec, process, linux)
    user, user_unsupported = read_user(process.get("user", {}))
    args = read_args(process.get("args"), "process.args")
    resources = read_map(linux.get("resources", {}), "linux.resources")
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
        hostname=read_hostname(spec.get("hostname", ""), "hostname"),
        readonly_rootfs=_root(spec, unsupported),
        mounts=read_mounts(spec.get("mounts", []), unsupported),
        namespaces=_namespaces(linux, unsupported),
        hooks=has_hooks(spec.get("hooks")),
        devices=read_devices(linux.get("devices", [])),
        sysctl=read_sysctl(linux.get("sysctl", {})),
        seccomp=read_map(linux["seccomp"], "linux.seccomp") if linux.get("seccomp") else None,
        resources=resources,
        limits=read_resources(resources, unsupported),
        masked_paths=optional_paths(linux, "maskedPaths"),
        readonly_paths=optional_paths(linux, "readonlyPaths"),
        rlimits=read_rlimits(process.get("rlimits") or [], "process.rlimits"),
        oom_score_adj=read_oom_score_adj(process.get("oomScoreAdj"), "process.oomScoreAdj"),
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
    for rule in read_list(parsed.resources.get("devices") or [], "linux.resources.devices"):
        rule = read_map(rule, "linux.resources.devices[]")
        if rule.get("allow") is True and rule.get("type", "a") == "a" and "major" not in rule:
            reasons.append("device cgroup allows all devices")
    for mount in parsed.mounts:
        if mount["type"] in ("sysfs", "cgroup", "cgroup2") and "ro" not in mount["options"]:
            reasons.append(f"writable {mount['type']} at {mount['destination']}")
    if parsed.masked_paths == [] and parsed.readonly_paths == []:
        reasons.append("no masked or read-only paths")
    return reasons


def _read_joins(joins: Mapping[str, Any], parsed: ParsedSpec) -> dict[str, str]:
    """namespace type -> container id: each a shared type the spec has a namespace of."""
    listed = {ns["type"] for ns in parsed.namespaces}
    for ns, owner in joins.items():
        if ns not in SHARED_NAMESPACES:
            raise InvalidArgumentError(
                f"joins.{ns}: only {', '.join(SHARED_NAMESPACES)} namespaces are joined",
                details={"path": f"joins.{ns}"},
            )
        read_str(owner, f"joins.{ns}", nonempty=True)
        if ns not in listed:
            raise InvalidArgumentError(
                f"joins.{ns}: the spec has no {ns} namespace (linux.namespaces) to join",
                details={"path": f"joins.{ns}"},
            )
    return dict(joins)


def read_create(
    container_id: str,
    host_spec: Mapping[str, Any],
    rootfs_target: str,
    joins: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """(the `create_container` enforcement input, the seccomp profile its digest is of).

    `joins` (namespace type -> id of a container the agent runs) asks for another
    container's namespace; the policy rules it and the agent computes the path.
    Reads the guest's device nodes for the spec's devices (devices.py): the only I/O here.
    """
    parsed = parse_spec(host_spec)
    joined = _read_joins(joins or {}, parsed)
    reasons = privileged_reasons(parsed)
    devices, conflicts = guest_devices(parsed.devices)
    facts = {
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
        "devices": devices,
        "device_conflicts": conflicts,
        "sysctl": parsed.sysctl,
        "terminal": parsed.terminal,
        "rootfs": rootfs_target,
        "readonly_rootfs": parsed.readonly_rootfs,
        "hostname": parsed.hostname,
        "masked_paths": parsed.masked_paths or [],
        "readonly_paths": parsed.readonly_paths or [],
        "rlimits": parsed.rlimits,
        "oom_score_adj": parsed.oom_score_adj,
        "resources": parsed.limits,
        "privileged": bool(reasons),
        "privileged_reasons": reasons,
        "unsupported_fields": sorted(set(parsed.unsupported)),
        "joins": joined,
    }
    return facts, parsed.seccomp


def enforcement_input(
    container_id: str, host_spec: Mapping[str, Any], rootfs_target: str
) -> dict[str, Any]:
    """The `create_container` enforcement input for the host's spec."""
    return read_create(container_id, host_spec, rootfs_target)[0]
