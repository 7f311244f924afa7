"""Container lifecycle and process points: start, exec, external exec, signal, shutdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.rules import _process as proc
from guestagent.policy.rules._candidates import Checks, deny_candidates, first_failure, same_data
from guestagent.policy.rules._common import BadInput, allow, deny
from guestagent.policy.rules._input import (
    BOOL,
    CAPS,
    STR,
    STR_LIST,
    U32,
    USER,
    OptionalStr,
    OptionalU32,
    Schema,
    check_input,
)
from guestagent.policy.rules._match import match_env
from guestagent.policy.rules._runtime import umask_allowed
from guestagent.policy.state import PolicyState

__all__ = [
    "decide_container_state",
    "decide_exec_external",
    "decide_exec_in_container",
    "decide_shutdown_container",
    "decide_signal_container_process",
    "decide_start_container",
]

_NO_ARGVS: frozenset[tuple[str, ...]] = frozenset()

EXEC_SCHEMA = Schema(
    {
        "container_id": STR,
        "argv": STR_LIST,
        "env": STR_LIST,
        "working_dir": STR,
        "user": USER,
        "capabilities": CAPS,
        "no_new_privileges": BOOL,
        "terminal": BOOL,
        "umask": OptionalU32,  # null: the container's (the policy's) umask
    }
)
_CONTAINER = Schema({"container_id": STR})
_EXTERNAL = Schema({"argv": STR_LIST, "env": STR_LIST, "working_dir": STR})
_SIGNAL = Schema({"container_id": STR, "signal": U32, "is_init": BOOL, "argv": STR_LIST})
_STATE = Schema({"container_id": OptionalStr})


def decide_start_container(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    check_input(req, _CONTAINER)
    cid = req["container_id"]
    if cid not in state.created:
        return deny(
            "start_container", "container_id", f"container {cid} was not created", asked=cid
        )
    if cid in state.started:
        return deny(
            "start_container", "container_id", f"container {cid} is already started", asked=cid
        )
    after = state.evolve(started=state.started.add(cid))
    return allow("start_container", f"container {cid} was created", state, after)


def _exec_command(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    argv = tuple(req["argv"])
    for process in c.exec_processes:
        if process.command == argv:
            wanted = process.working_dir or c.working_dir
            if req["working_dir"] == wanted:
                return None
            return {
                "why": f"working directory {req['working_dir']} is not allowed for this "
                "exec process",
                "asked": req["working_dir"],
                "allowed": wanted,
            }
    return {
        "why": "argv is not an allowed exec process",
        "asked": list(argv),
        "allowed": [list(p.command) for p in c.exec_processes],
    }


EXEC_CHECKS = Checks(
    (
        ("argv", _exec_command),
        ("user", proc.user_allowed),
        ("no_new_privileges", proc.no_new_privileges_kept),
        ("terminal", proc.terminal_allowed),
        ("umask", umask_allowed),
    ),
    absent={"terminal": False, "umask": None},
)


def decide_exec_in_container(
    policy: Policy, state: PolicyState, req: Mapping[str, Any]
) -> Decision:
    point = "exec_in_container"
    check_input(req, EXEC_SCHEMA)
    cid = req["container_id"]
    if cid not in state.started:
        return deny(point, "container_id", f"container {cid} is not running", asked=cid)
    survivors, datas, failures = [], [], []
    checks = EXEC_CHECKS.for_request(req)
    for index in state.candidates[cid]:
        container = policy.containers[index]
        failed = first_failure(container, req, checks)
        if failed is None:
            result = proc.env_and_caps(policy, container, req, len(EXEC_CHECKS))
            if isinstance(result, dict):
                survivors.append(index)
                datas.append(result)
                continue
            failed = result
        failures.append((index, *failed))
    if not survivors:
        return deny_candidates(point, policy, f"exec in container {cid}", failures)
    if not same_data(datas):
        return deny(
            point,
            "candidates",
            "matching policy containers disagree on env, capabilities or stdio",
            candidates=[policy.containers[i].name for i in survivors],
        )
    argvs = state.processes.get(cid, _NO_ARGVS)
    argv = tuple(req["argv"])
    candidates = state.candidates
    after = state.evolve(
        candidates=candidates.set(cid, tuple(survivors))
        if len(survivors) < len(candidates[cid])
        else candidates,
        processes=state.processes if argv in argvs else state.processes.set(cid, argvs | {argv}),
    )
    return allow(point, "an allowed exec process", state, after, datas[0])


def decide_exec_external(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "exec_external"
    check_input(req, _EXTERNAL)
    argv = tuple(req["argv"])
    matches = [
        p
        for p in policy.external_processes
        if p.command == argv and p.working_dir == req["working_dir"]
    ]
    if not matches:
        return deny(
            point,
            "argv",
            "no external process with this argv and working directory",
            asked={"argv": list(argv), "working_dir": req["working_dir"]},
            allowed=[
                {"argv": list(p.command), "working_dir": p.working_dir}
                for p in policy.external_processes
            ],
        )
    dropping = policy.allow_environment_variable_dropping
    results = []
    for process in matches:
        env, failure = match_env(process.env_matcher, req["env"], dropping)
        if env is not None:
            results.append({"env": env, "allow_stdio": process.allow_stdio_access})
    if not results:
        return deny(
            point,
            "env",
            "the environment matches no external process's env rules",
            **(failure or {}),
        )
    if not same_data(results):
        return deny(point, "candidates", "matching external processes disagree")
    return allow(point, "an allowed external process", state, None, results[0])


def _signal_input(req: Mapping[str, Any]) -> None:
    check_input(req, _SIGNAL)
    if not 1 <= req["signal"] <= 64:
        raise BadInput("signal", "expected a signal number in [1, 64]")


def _signal_check(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    sig = req["signal"]
    if req["is_init"]:
        if sig in c.signals:
            return None
        return {
            "why": f"signal {sig} is not allowed for the init process",
            "asked": sig,
            "allowed": sorted(c.signals),
        }
    argv = tuple(req["argv"])
    allowed = [p.signals for p in c.exec_processes if p.command == argv]
    if any(sig in s for s in allowed):
        return None
    return {
        "why": f"signal {sig} is not allowed for this process",
        "asked": sig,
        "allowed": sorted(set().union(*allowed)) if allowed else [],
    }


def decide_signal_container_process(
    policy: Policy, state: PolicyState, req: Mapping[str, Any]
) -> Decision:
    point = "signal_container_process"
    _signal_input(req)
    cid = req["container_id"]
    if cid not in state.started:
        return deny(point, "container_id", f"container {cid} is not running", asked=cid)
    if not req["is_init"] and tuple(req["argv"]) not in state.processes.get(cid, _NO_ARGVS):
        return deny(
            point, "argv", "no such exec'd process in this container", asked=list(req["argv"])
        )
    survivors, failures = [], []
    for index in state.candidates[cid]:
        failure = _signal_check(policy.containers[index], req)
        if failure is None:
            survivors.append(index)
        else:
            failures.append((index, 0, "signal", failure))
    if not survivors:
        return deny_candidates(point, policy, f"signal to container {cid}", failures)
    after = state.evolve(candidates=state.candidates.set(cid, tuple(survivors)))
    return allow(point, f"signal {req['signal']} is allowed", state, after)


def _overlay_candidates(policy: Policy, state: PolicyState, cid: str) -> tuple[int, ...]:
    overlay = state.overlays[state.rootfs[cid]]
    return policy.by_layers[overlay.layers]


def decide_shutdown_container(
    policy: Policy, state: PolicyState, req: Mapping[str, Any]
) -> Decision:
    check_input(req, _CONTAINER)
    cid = req["container_id"]
    if cid not in state.created:
        return deny(
            "shutdown_container", "container_id", f"container {cid} does not exist", asked=cid
        )
    after = state.evolve(
        created=state.created.discard(cid),
        started=state.started.discard(cid),
        processes=state.processes.delete(cid),
        # The overlay stays mounted until unmount_overlay, so the container may be created
        # again on it: its candidates widen back to every entry with the overlay's layers.
        candidates=state.candidates.set(cid, _overlay_candidates(policy, state, cid)),
    )
    return allow("shutdown_container", f"container {cid} exists", state, after)


def decide_container_state(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    if isinstance(req, Mapping) and not req:
        req = {"container_id": None}
    check_input(req, _STATE)
    return allow("container_state", "reading container state is allowed", state)
