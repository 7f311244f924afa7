"""create_container: every constrained field of the spec against each candidate container.

The allowed path is the hot one (issue 4: p50 < 20 us on a 20-container policy), so it runs
a one-pass input check and `_passes`, the checks of CHECKS without explanations. Only when
no candidate passes are the input (if the quick check declined it) and CHECKS run the
explaining way, to name the field and the nearest allowed values in the denial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.rules import _process as proc
from guestagent.policy.rules._candidates import Check, deny_candidates, first_failure, same_data
from guestagent.policy.rules._common import (
    BadInput,
    check_input,
    deny,
    is_bool,
    is_caps,
    is_int,
    is_str,
    is_str_list,
    is_user,
)
from guestagent.policy.rules._fastinput import create_input_ok
from guestagent.policy.rules._mounts import match_mounts, mounts_fit
from guestagent.policy.rules._process import env_and_caps
from guestagent.policy.rules._runtime import (
    RUNTIME_CHECKS,
    hostname_allowed,
    is_devices,
    is_oom_score_adj,
    is_resources,
    is_rlimits,
    rlimits_allowed,
)
from guestagent.policy.state import PolicyState, Transition

__all__ = ["BASE_NAMESPACES", "KNOWN_NAMESPACES", "decide_create_container"]

# A container always gets its own pid, ipc, uts and mount namespaces; network too unless the
# policy entry sets host_network (then it may run in the guest's namespace). cgroup, user and
# time namespaces only take privilege away, so they are allowed.
BASE_NAMESPACES = frozenset({"pid", "ipc", "uts", "mount"})
KNOWN_NAMESPACES = BASE_NAMESPACES | {"network", "cgroup", "user", "time"}
_WITH_NETWORK = BASE_NAMESPACES | {"network"}
_POINT = "create_container"
_ALLOWED = "create_container.allowed"  # the rule of an allowed decision (as rules.allow)


_MOUNT_SCHEMA = {"destination": is_str, "source": is_str, "type": is_str, "options": is_str_list}


def _is_mounts(value: Any, name: str) -> None:
    if type(value) not in (list, tuple) or len(value) > 1024:
        raise BadInput(name, "expected a list of mounts")
    for i, mount in enumerate(value):
        try:
            check_input(mount, _MOUNT_SCHEMA)
        except BadInput as exc:
            raise BadInput(f"{name}[{i}].{exc.field}", exc.message) from None


def _is_sysctl(value: Any, name: str) -> None:
    if not isinstance(value, Mapping) or len(value) > 1024:
        raise BadInput(name, "expected a map of strings")
    for key, item in value.items():
        is_str(key, name)
        is_str(item, f"{name}.{key}")


SCHEMA = {
    "container_id": is_str,
    "argv": is_str_list,
    "env": is_str_list,
    "working_dir": is_str,
    "user": is_user,
    "capabilities": is_caps,
    "no_new_privileges": is_bool,
    "seccomp_profile_sha256": is_str,
    "mounts": _is_mounts,
    "namespaces": is_str_list,
    "hooks": is_bool,
    "devices": is_devices,
    "sysctl": _is_sysctl,
    "terminal": is_bool,
    "rootfs": is_str,
    "privileged": is_bool,
    # Facts the agent's spec reader adds: what made the spec privileged, namespaces it
    # asked to join by path, and spec fields the agent never applies (uid mappings, rlimits,
    # LSM labels, ...): the last two are always denied, the first is for the explanation.
    "privileged_reasons": is_str_list,
    "host_namespaces": is_str_list,
    "unsupported_fields": is_str_list,
    "umask": lambda value, name: None if value is None else is_int(value, name),
    # Facts for the runtime fields (docs/policy.md, "The host's spec").
    "device_conflicts": is_str_list,
    "readonly_rootfs": is_bool,
    "hostname": is_str,
    "masked_paths": is_str_list,
    "readonly_paths": is_str_list,
    "rlimits": is_rlimits,
    "oom_score_adj": is_oom_score_adj,
    "resources": is_resources,
}


def _privileged(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    if req["privileged"] and not c.allow_elevated:
        reasons = ", ".join(req["privileged_reasons"]) or "privileged"
        return {
            "why": f"privileged containers are not allowed ({reasons})",
            "asked": True,
            "allowed": False,
        }
    return None


def _seccomp(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    if req["seccomp_profile_sha256"].lower() != c.seccomp_profile_sha256:
        return {
            "why": "the seccomp profile digest differs",
            "asked": req["seccomp_profile_sha256"],
            "allowed": c.seccomp_profile_sha256,
        }
    return None


def _namespaces(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    required = BASE_NAMESPACES if c.host_network else BASE_NAMESPACES | {"network"}
    missing = sorted(required - set(req["namespaces"]))
    if missing:
        return {
            "why": f"the container must have its own {', '.join(missing)} namespace(s)",
            "asked": sorted(req["namespaces"]),
            "required": sorted(required),
        }
    return None


def _devices(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    extra = sorted({d["path"] for d in req["devices"]} - c.devices)
    if extra:
        return {
            "why": f"device {extra[0]} is not allowed",
            "asked": extra,
            "allowed": sorted(c.devices),
        }
    return None


def _sysctl(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    for key, value in req["sysctl"].items():
        if c.sysctls.get(key) != value:
            return {
                "why": f"sysctl {key}={value} is not allowed",
                "asked": f"{key}={value}",
                "allowed": [f"{k}={v}" for k, v in c.sysctls.items()],
            }
    return None


def _mounts(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    elevated = c.allow_elevated and req["privileged"]
    failure = match_mounts(c.mounts, c.mounts_by_destination, req["mounts"], elevated)
    if failure is not None:
        asked = failure["asked"]
        failure["why"] = (
            f"mount {asked['type']} {asked['source']} -> {asked['destination']} "
            "matches no free policy mount"
        )
    return failure


CHECKS: tuple[Check, ...] = (
    ("argv", proc.argv_equals_command),
    ("working_dir", proc.working_dir_equals),
    ("user", proc.user_allowed),
    ("privileged", _privileged),
    ("no_new_privileges", proc.no_new_privileges_kept),
    ("seccomp_profile_sha256", _seccomp),
    ("terminal", proc.terminal_allowed),
    ("namespaces", _namespaces),
    ("devices", _devices),
    ("sysctl", _sysctl),
    ("mounts", _mounts),
    *RUNTIME_CHECKS,
)


_RANK_ENV = len(CHECKS)  # env and capabilities are checked after every check in CHECKS


def _precheck(
    state: PolicyState, req: Mapping[str, Any], candidates: tuple[int, ...] | None
) -> Decision | None:
    point, cid = "create_container", req["container_id"]
    if candidates is None:
        return deny(
            point,
            "container_id",
            f"no verified root filesystem was mounted for container {cid}",
            asked=cid,
        )
    if cid in state.created:
        return deny(point, "container_id", f"container {cid} already exists", asked=cid)
    if req["rootfs"] != state.rootfs.get(cid):
        return deny(
            point,
            "rootfs",
            f"rootfs must be the overlay mounted for container {cid}",
            asked=req["rootfs"],
            allowed=state.rootfs[cid],
        )
    if req["hooks"]:
        return deny(point, "hooks", "OCI hooks are never allowed", asked=True, allowed=False)
    if req["host_namespaces"]:
        return deny(
            point,
            "host_namespaces",
            f"joining an existing {req['host_namespaces'][0]} namespace by path is never allowed",
            asked=req["host_namespaces"],
            allowed=[],
        )
    if req["unsupported_fields"]:
        return deny(
            point,
            "unsupported_fields",
            f"spec field {req['unsupported_fields'][0]} is not supported by the agent",
            asked=req["unsupported_fields"],
            allowed=[],
        )
    if req["device_conflicts"]:
        return deny(
            point,
            "devices",
            f"device {req['device_conflicts'][0]}",
            asked=req["device_conflicts"],
        )
    if not KNOWN_NAMESPACES.issuperset(req["namespaces"]):
        unknown = sorted(set(req["namespaces"]) - KNOWN_NAMESPACES)
        return deny(
            point,
            "namespaces",
            f"unknown namespace type {unknown[0]}",
            asked=unknown,
            allowed=sorted(KNOWN_NAMESPACES),
        )
    return None


def _passes(c: Container, req: Mapping[str, Any], argv: tuple[str, ...], seccomp: str) -> bool:
    """True iff no check in CHECKS fails for `c`: the same tests, in the same order, without
    building explanations (tests/policy/test_fast_match.py holds them to agree)."""
    user, rule, runtime, oom = req["user"], c.user, c.runtime, req["oom_score_adj"]
    return (
        argv == c.command
        and req["working_dir"] == c.working_dir
        and rule.uid.lo <= user["uid"] <= rule.uid.hi
        and rule.gid.lo <= user["gid"] <= rule.gid.hi
        and rule.additional_gids.issuperset(user["additional_gids"])
        and (c.allow_elevated or not req["privileged"])
        and (req["no_new_privileges"] or not c.no_new_privileges)
        and seccomp == c.seccomp_profile_sha256
        and (c.allow_terminal or not req["terminal"])
        and (BASE_NAMESPACES if c.host_network else _WITH_NETWORK).issubset(req["namespaces"])
        and (not req["devices"] or _devices(c, req) is None)
        and (not req["sysctl"] or _sysctl(c, req) is None)
        and mounts_fit(
            c.mounts, c.mounts_by_destination, req["mounts"], c.allow_elevated and req["privileged"]
        )
        and (req["umask"] is None or req["umask"] == runtime.umask)
        and (not req["hostname"] or hostname_allowed(c, req) is None)
        and runtime.masked_paths.issuperset(req["masked_paths"])
        and runtime.readonly_paths.issuperset(req["readonly_paths"])
        and (not req["rlimits"] or rlimits_allowed(c, req) is None)
        and (oom is None or runtime.oom_score_adj[0] <= oom <= runtime.oom_score_adj[1])
    )


def _explained_matches(
    policy: Policy, candidates: tuple[int, ...], req: Mapping[str, Any]
) -> tuple[list[int], list[dict[str, Any]], list[tuple[int, int, str, dict[str, Any]]]]:
    """The candidates that allow the request and their data, and each failing candidate's
    first failure (rank, field, failure)."""
    survivors: list[int] = []
    datas: list[dict[str, Any]] = []
    failures: list[tuple[int, int, str, dict[str, Any]]] = []
    for index in candidates:
        container = policy.containers[index]
        failed = first_failure(container, req, CHECKS)
        if failed is None:
            failed_or_data = env_and_caps(policy, container, req, _RANK_ENV)
            if isinstance(failed_or_data, dict):
                survivors.append(index)
                datas.append(failed_or_data)
                continue
            failed = failed_or_data
        failures.append((index, *failed))
    return survivors, datas, failures


def decide_create_container(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    if not create_input_ok(req):
        check_input(req, SCHEMA)  # raises the precise BadInput (or accepts a rare shape)
    cid = req["container_id"]
    candidates = state.candidates.get(cid)
    early = _precheck(state, req, candidates)
    if early is not None:
        return early
    assert candidates is not None
    survivors: list[int] = []
    datas: list[dict[str, Any]] = []
    argv, seccomp = tuple(req["argv"]), req["seccomp_profile_sha256"].lower()
    for index in candidates:  # without explanations: the allowed path
        container = policy.containers[index]
        if _passes(container, req, argv, seccomp):
            data = env_and_caps(policy, container, req, _RANK_ENV)
            if type(data) is dict:
                survivors.append(index)
                datas.append(data)
    if not survivors:  # a denial: run the checks again, this time explaining each miss
        survivors, datas, failures = _explained_matches(policy, candidates, req)
        if not survivors:
            return deny_candidates("create_container", policy, f"container {cid}", failures)
    if len(datas) > 1 and not same_data(datas):
        return deny(
            "create_container",
            "candidates",
            "matching policy containers disagree on env, capabilities or stdio",
            candidates=[policy.containers[i].name for i in survivors],
        )
    narrowed = len(survivors) < len(candidates)  # else the candidates map stays as it is
    after = state.evolve(
        candidates=state.candidates.set(cid, tuple(survivors)) if narrowed else state.candidates,
        created=state.created.add(cid),
    )
    containers = policy.containers
    names = (
        [containers[i].name for i in survivors]
        if len(survivors) > 1
        else [containers[survivors[0]].name]
    )
    data = datas[0]  # a dict of our own, made for this decision
    data["candidates"] = names
    reason = f"matches policy container {names[0]!r}"
    return Decision(True, _POINT, _ALLOWED, reason, {}, data, Transition(state, after))
