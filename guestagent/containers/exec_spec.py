"""An exec request's OCI process object: its enforcement input, and the process the agent
hands to the runtime (built from vetted parts, with the policy's env and capabilities)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.containers._specfields import (
    check_keys,
    read_args,
    read_bool,
    read_capabilities,
    read_env,
    read_map,
    read_str,
    read_user,
)
from guestagent.containers.spec import EXEC_UNSUPPORTED, PROCESS_FIELDS
from guestagent.containers.spec_defaults import DEFAULT_UMASK
from guestagent.errors import InvalidArgumentError

__all__ = ["build_exec_process", "exec_input"]


def _parse(process: Any) -> dict[str, Any]:
    process = read_map(process, "process")
    unsupported = check_keys(process, "process", PROCESS_FIELDS)
    unsupported += [f"process.{k}" for k in EXEC_UNSUPPORTED if process.get(k)]
    user, user_unsupported = read_user(process.get("user", {}))
    unsupported += user_unsupported
    if unsupported:
        # An exec has no later chance to be narrowed: refuse what would not be applied.
        raise InvalidArgumentError(
            f"exec process field {unsupported[0]} is not supported",
            details={"path": unsupported[0], "unsupported": unsupported},
        )
    argv = read_args(process.get("args"), "process.args")
    return {
        "argv": argv,
        "env": read_env(process.get("env", []), "process.env"),
        "working_dir": read_str(process.get("cwd", "/"), "process.cwd", absolute=True),
        "user": user,
        "capabilities": read_capabilities(process.get("capabilities", {}), "process.capabilities"),
        "no_new_privileges": read_bool(
            process.get("noNewPrivileges", True), "process.noNewPrivileges"
        ),
        "terminal": read_bool(process.get("terminal", False), "process.terminal"),
    }


def exec_input(container_id: str, process: Mapping[str, Any]) -> dict[str, Any]:
    """The `exec_in_container` enforcement input."""
    parsed = _parse(process)
    user = parsed["user"]
    return {
        "container_id": container_id,
        "argv": parsed["argv"],
        "env": parsed["env"],
        "working_dir": parsed["working_dir"],
        "user": {k: user[k] for k in ("uid", "gid", "additional_gids")},
        "capabilities": parsed["capabilities"],
        "no_new_privileges": parsed["no_new_privileges"],
        "terminal": parsed["terminal"],
        "umask": user.get("umask"),
    }


def build_exec_process(process: Mapping[str, Any], decision_data: Mapping[str, Any]) -> dict:
    """The process.json for `runtime exec`: the host's argv and cwd, the policy's env/caps."""
    parsed = _parse(process)
    env = decision_data.get("env")
    caps = decision_data.get("capabilities")
    user = parsed["user"]
    built: dict[str, Any] = {
        "terminal": parsed["terminal"],
        "args": parsed["argv"],
        "cwd": parsed["working_dir"],
        "env": parsed["env"] if env is None else read_env(env, "decision.env"),
        "user": {"uid": user["uid"], "gid": user["gid"], "additionalGids": user["additional_gids"]},
        "capabilities": parsed["capabilities"]
        if caps is None
        else read_capabilities(caps, "decision.capabilities"),
        "noNewPrivileges": parsed["no_new_privileges"],
    }
    # The container's umask (the policy's): the decision refused an exec stating another.
    built["user"]["umask"] = decision_data.get("umask", DEFAULT_UMASK)
    return built
