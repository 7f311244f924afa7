"""create_container: every constrained field of the spec against each candidate container.

One list of checks, CHECKS, decides: each check returns None when the candidate passes, and
builds its explanation (the field, the nearest allowed values) only when it fails. The
allowed path (issue 4: p50 <= 20 us on a 20-container policy) runs the same checks as a
denial; a denial just keeps what the failing checks returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.rules import _process as proc
from guestagent.policy.rules._candidates import Checks, deny_candidates, first_failure, same_data
from guestagent.policy.rules._common import deny
from guestagent.policy.rules._input import (
    BOOL,
    CAPS,
    STR,
    STR_LIST,
    USER,
    ListOf,
    OptionalU32,
    Schema,
    StrMap,
    check_input,
)
from guestagent.policy.rules._mounts import match_mounts
from guestagent.policy.rules._process import env_and_caps
from guestagent.policy.rules._runtime import (
    DEVICES,
    OOM_SCORE_ADJ,
    RESOURCES,
    RLIMITS,
    RUNTIME_ABSENT,
    RUNTIME_CHECKS,
    oom_score_adj_applied,
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


_MOUNT = Schema({"destination": STR, "source": STR, "type": STR, "options": STR_LIST})
_MAX_MOUNTS = 1024

SCHEMA = Schema(
    {
        "container_id": STR,
        "argv": STR_LIST,
        "env": STR_LIST,
        "working_dir": STR,
        "user": USER,
        "capabilities": CAPS,
        "no_new_privileges": BOOL,
        "seccomp_profile_sha256": STR,
        "mounts": ListOf(_MOUNT, _MAX_MOUNTS),
        "namespaces": STR_LIST,
        "hooks": BOOL,
        "devices": DEVICES,
        "sysctl": StrMap,
        "terminal": BOOL,
        "rootfs": STR,
        "privileged": BOOL,
        # Facts the agent's spec reader adds: what made the spec privileged, namespaces it
        # asked to join by path, and spec fields the agent never applies (uid mappings,
        # LSM labels, ...): the last two are always denied, the first is for the explanation.
        "privileged_reasons": STR_LIST,
        "host_namespaces": STR_LIST,
        "unsupported_fields": STR_LIST,
        "umask": OptionalU32,
        # Facts for the runtime fields (docs/policy.md, "The host's spec").
        "device_conflicts": STR_LIST,
        "readonly_rootfs": BOOL,
        "hostname": STR,
        "masked_paths": STR_LIST,
        "readonly_paths": STR_LIST,
        "rlimits": RLIMITS,
        "oom_score_adj": OOM_SCORE_ADJ,
        "resources": RESOURCES,
        # namespace type -> id of the container (the agent started) whose namespace it joins
        "joins": StrMap,
    }
)
# Added to the request by decide_create_container when it joins: namespace type -> the
# policy container names the joined container matched.
_JOINED = "joined_policy_names"


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
    required = BASE_NAMESPACES if c.host_network else _WITH_NETWORK
    if required.issubset(req["namespaces"]):
        return None
    missing = sorted(required - set(req["namespaces"]))  # the explanation, for a denial
    return {
        "why": f"the container must have its own {', '.join(missing)} namespace(s)",
        "asked": sorted(req["namespaces"]),
        "required": sorted(required),
    }


def _devices(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    paths = {d["path"] for d in req["devices"]}
    if c.devices.issuperset(paths):
        return None
    extra = sorted(paths - c.devices)  # the explanation, for a denial
    return {
        "why": f"device {extra[0]} is not allowed",
        "asked": extra,
        "allowed": sorted(c.devices),
    }


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


def _joins(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    asked = req["joins"]
    if not asked and not c.joins:
        return None
    for ns in sorted({*asked, *c.joins}):
        owner = c.joins.get(ns)
        if owner is None:
            return {
                "why": f"joins.{ns}: the policy names no {ns} namespace for this container to "
                f"join (asked: that of container {asked[ns]})",
                "asked": asked[ns],
                "allowed": None,
            }
        if ns not in asked:
            return {
                "why": f"joins.{ns}: the container must join the {ns} namespace of policy "
                f"container {owner!r}",
                "asked": None,
                "allowed": owner,
            }
        if req[_JOINED][ns] != (owner,):
            return {
                "why": f"joins.{ns}: container {asked[ns]} is not policy container {owner!r}",
                "asked": list(req[_JOINED][ns]),
                "allowed": owner,
            }
    return None


CHECKS = Checks(
    (
        ("argv", proc.argv_equals_command),
        ("working_dir", proc.working_dir_equals),
        ("user", proc.user_allowed),
        ("privileged", _privileged),
        ("no_new_privileges", proc.no_new_privileges_kept),
        ("seccomp_profile_sha256", _seccomp),
        ("terminal", proc.terminal_allowed),
        ("namespaces", _namespaces),
        ("joins", _joins),
        ("devices", _devices),
        ("sysctl", _sysctl),
        ("mounts", _mounts),
        *RUNTIME_CHECKS,
    ),
    # What the spec holds when it does not set the field: then its check always passes.
    # (Not mounts: every spec has some.)
    absent={"privileged": False, "terminal": False, "devices": [], "sysctl": {}, **RUNTIME_ABSENT},
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
            f"linux.namespaces: the {req['host_namespaces'][0]} namespace gives a path: joining "
            "a namespace by path is never allowed (a pod's containers join by the policy's "
            "joins, at paths the agent computes)",
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
    for ns, target in req["joins"].items():
        if target == cid or target not in state.created:
            return deny(
                point,
                "joins",
                f"joins.{ns}: container {target} is not a created container of this pod",
                asked=target,
            )
    return None


def _resolve_joins(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Mapping[str, Any]:
    """The request with the policy names of the containers it joins (see _JOINED)."""
    names = {
        ns: tuple(sorted({policy.containers[i].name for i in state.candidates.get(target, ())}))
        for ns, target in req["joins"].items()
    }
    return {**req, _JOINED: names}


def _matches(
    policy: Policy, candidates: tuple[int, ...], req: Mapping[str, Any]
) -> tuple[list[int], list[dict[str, Any]], list[tuple[int, int, str, dict[str, Any]]]]:
    """The candidates that allow the request and their data, and each failing candidate's
    first failure (index, rank, field, failure)."""
    survivors: list[int] = []
    datas: list[dict[str, Any]] = []
    failures: list[tuple[int, int, str, dict[str, Any]]] = []
    checks = CHECKS.for_request(req)
    for index in candidates:
        container = policy.containers[index]
        failed = first_failure(container, req, checks)
        if failed is None:
            failed_or_data = env_and_caps(policy, container, req, _RANK_ENV)
            if isinstance(failed_or_data, dict):
                failed_or_data["oom_score_adj"] = oom_score_adj_applied(container, req)
                survivors.append(index)
                datas.append(failed_or_data)
                continue
            failed = failed_or_data
        failures.append((index, *failed))
    return survivors, datas, failures


def decide_create_container(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    check_input(req, SCHEMA)
    cid = req["container_id"]
    candidates = state.candidates.get(cid)
    early = _precheck(state, req, candidates)
    if early is not None:
        return early
    assert candidates is not None
    if req["joins"]:
        req = _resolve_joins(policy, state, req)
    survivors, datas, failures = _matches(policy, candidates, req)
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
