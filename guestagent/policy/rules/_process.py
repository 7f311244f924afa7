"""Process checks shared by create_container and exec_in_container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.document import Policy
from guestagent.policy.rules._match import expected_caps, match_caps, match_env, match_user

__all__ = [
    "argv_equals_command",
    "env_and_caps",
    "no_new_privileges_kept",
    "terminal_allowed",
    "user_allowed",
    "working_dir_equals",
]


def argv_equals_command(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    argv = req["argv"]
    if len(argv) != len(c.command) or tuple(argv) != c.command:
        return {
            "why": "argv differs from the policy command",
            "asked": list(argv),
            "allowed": list(c.command),
        }
    return None


def working_dir_equals(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    if req["working_dir"] != c.working_dir:
        return {
            "why": f"working directory {req['working_dir']} is not allowed",
            "asked": req["working_dir"],
            "allowed": c.working_dir,
        }
    return None


def user_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    failure = match_user(c.user, req["user"])
    if failure is not None:
        failure["why"] = f"user {failure['asked']} is not allowed"
    return failure


def no_new_privileges_kept(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    if c.no_new_privileges and not req["no_new_privileges"]:
        return {"why": "no_new_privileges must be set", "asked": False, "allowed": True}
    return None


def terminal_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    if req["terminal"] and not c.allow_terminal:
        return {"why": "a terminal is not allowed", "asked": True, "allowed": False}
    return None


def env_and_caps(
    policy: Policy, c: Container, req: Mapping[str, Any], rank: int
) -> dict[str, Any] | tuple[int, str, dict[str, Any]]:
    """The data to apply (kept env and caps), or (rank, field, failure)."""
    env, failure = match_env(c.env_matcher, req["env"], policy.allow_environment_variable_dropping)
    if env is None:
        assert failure is not None
        if "required_rule" in failure:
            failure["why"] = f"required variable {failure['required_rule']} is absent"
        else:
            failure["why"] = f"variable {failure['asked'].split('=', 1)[0]} matches no env rule"
        return rank, "env", failure
    want = c.capabilities or expected_caps(None, c.allow_elevated and bool(req.get("privileged")))
    caps, failure = match_caps(want, req["capabilities"], policy.allow_capability_dropping)
    if caps is None:
        assert failure is not None
        failure["why"] = f"the {failure['set']} capability set differs from the policy"
        return rank + 1, "capabilities", failure
    return {
        "env": env,
        "capabilities": caps,
        "allow_stdio": c.allow_stdio_access,
        "attestation_socket": c.attestation_socket,
        "umask": c.runtime.umask,
    }
