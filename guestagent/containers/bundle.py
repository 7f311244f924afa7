"""config.json, built from the facts the policy decided on and constants the agent sets.

`build_bundle_config` never sees the host's spec. Its inputs are the `create_container`
enforcement input (the facts, spec.read_create), the allowed decision's data (env and
capabilities the policy kept, the policy's umask) and what the agent itself chose (cgroup,
network namespace, the seccomp profile whose digest the decision saw). Every value it writes
is one of those or an agent constant (spec_defaults); tests/containers/test_bundle_property.py
holds it to that for generated specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.containers._specfields import read_capabilities, read_env, read_str
from guestagent.containers.spec import seccomp_sha256
from guestagent.containers.spec_defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_OOM_SCORE_ADJ,
    DEFAULT_READONLY_PATHS,
    DEFAULT_UMASK,
    OCI_VERSION,
    agent_hostname,
    default_mounts,
    default_namespaces,
)
from guestagent.errors import InvalidArgumentError

__all__ = ["build_bundle_config"]

# Flat resource facts ("memory.limit") -> (OCI group, key); hugepage.<size> are separate.
_LIMIT_KEYS = {
    f"{group}.{key}": (group, key)
    for group, keys in {
        "memory": ("limit", "reservation", "swap"),
        "cpu": ("shares", "quota", "period", "cpus", "mems"),
        "pids": ("limit",),
    }.items()
    for key in keys
}


def build_bundle_config(
    facts: Mapping[str, Any],
    decision_data: Mapping[str, Any],
    *,
    cgroups_path: str,
    seccomp: Mapping[str, Any] | None = None,
    netns_path: str | None = None,
    joined: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The config.json the agent writes for an allowed `create_container`.

    `decision_data` may narrow env and capabilities (absent: the request's, which the
    decision saw and allowed); `seccomp` must be the profile whose digest the facts carry;
    `netns_path` joins a network namespace the agent made (a pod's); `joined` (type -> path)
    other containers' namespaces the agent opened (pod_namespaces.py) for the policy's joins.
    A container in another's UTS namespace gets no hostname of its own (the owner's holds).
    """
    rootfs = read_str(facts["rootfs"], "rootfs", absolute=True)
    read_str(cgroups_path, "cgroupsPath", absolute=True)
    if seccomp_sha256(seccomp) != facts["seccomp_profile_sha256"]:
        raise InvalidArgumentError(
            "the seccomp profile is not the one the policy decided on",
            details={"path": "linux.seccomp"},
        )
    joined = joined or {}
    if set(joined) != set(facts["joins"]):
        raise InvalidArgumentError(
            "the joined namespaces are not the ones the policy decided on",
            details={"path": "joins"},
        )
    linux: dict[str, Any] = {
        "namespaces": default_namespaces(netns_path, set(facts["namespaces"]), joined),
        "cgroupsPath": cgroups_path,
        "resources": _resources(facts),
        "maskedPaths": _union(DEFAULT_MASKED_PATHS, facts["masked_paths"]),
        "readonlyPaths": _union(DEFAULT_READONLY_PATHS, facts["readonly_paths"]),
    }
    if facts["devices"]:
        linux["devices"] = [_device(node) for node in facts["devices"]]
    if facts["sysctl"]:
        linux["sysctl"] = dict(facts["sysctl"])
    if seccomp:
        linux["seccomp"] = dict(seccomp)
    config = {
        "ociVersion": OCI_VERSION,
        "process": _process(facts, decision_data),
        "root": {"path": rootfs, "readonly": facts["readonly_rootfs"]},
        "hostname": facts["hostname"] or agent_hostname(facts["container_id"]),
        "mounts": _merge_mounts(default_mounts(), facts["mounts"]),
        "linux": linux,
    }
    if "uts" in joined:
        del config["hostname"]
    return config


def _process(facts: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    env = data.get("env")
    caps = data.get("capabilities")
    user = facts["user"]
    umask = data.get("umask", facts["umask"])
    oom = data.get("oom_score_adj", facts["oom_score_adj"])  # the decision's, when it says
    process: dict[str, Any] = {
        "terminal": facts["terminal"],
        "user": {
            "uid": user["uid"],
            "gid": user["gid"],
            "additionalGids": list(user["additional_gids"]),
            "umask": DEFAULT_UMASK if umask is None else umask,
        },
        "args": list(facts["argv"]),
        "env": list(facts["env"]) if env is None else read_env(env, "decision.env"),
        "cwd": facts["working_dir"],
        "capabilities": read_capabilities(
            facts["capabilities"] if caps is None else caps, "decision.capabilities"
        ),
        "noNewPrivileges": facts["no_new_privileges"],
        "oomScoreAdj": DEFAULT_OOM_SCORE_ADJ if oom is None else oom,
    }
    if facts["rlimits"]:
        process["rlimits"] = [
            {"type": r["type"], "hard": r["hard"], "soft": r["soft"]} for r in facts["rlimits"]
        ]
    return process


def _device(node: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": node["path"],
        "type": node["type"],
        "major": node["major"],
        "minor": node["minor"],
        "fileMode": node["file_mode"],
        "uid": node["uid"],
        "gid": node["gid"],
    }


def _union(defaults: tuple[str, ...], extra: list[str]) -> list[str]:
    """Defaults always apply; the host may add paths the policy allows, never remove any."""
    return list(dict.fromkeys([*defaults, *extra]))


def _merge_mounts(defaults: list[dict[str, Any]], host: list[dict[str, Any]]) -> list[dict]:
    """The host's (policy-approved) mounts replace defaults at the same destination."""
    by_destination = {m["destination"]: m for m in defaults}
    for mount in host:
        by_destination[mount["destination"]] = {
            key: (list(mount[key]) if key == "options" else mount[key])
            for key in ("destination", "type", "source", "options")
        }
    return list(by_destination.values())


def _resources(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Deny every device but the decided ones (by the guest's numbers); the host's limits."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for node in facts["devices"]:
        rules.append(
            {
                "allow": True,
                "type": node["type"],
                "major": node["major"],
                "minor": node["minor"],
                "access": "rwm",
            }
        )
    resources: dict[str, Any] = {"devices": rules}
    pages = []
    for name, value in facts["resources"].items():
        if name.startswith("hugepage."):
            pages.append({"pageSize": name.removeprefix("hugepage."), "limit": value})
        elif name in _LIMIT_KEYS:
            group, key = _LIMIT_KEYS[name]
            resources.setdefault(group, {})[key] = value
        else:
            raise InvalidArgumentError(
                f"unknown resource fact {name!r}", details={"path": "resources"}
            )
    if pages:
        resources["hugepageLimits"] = pages
    return resources
