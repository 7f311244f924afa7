"""The engine: route each enforcement point to its rule, and fail closed on anything odd.

`decide(policy, state, point, request)` is pure. A malformed input is denied naming the
field (code protocol.invalid_argument); a bug in a rule is denied too (code internal), never
allowed; an unknown point is denied.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.errors import ErrorCode
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.points import MUTATING_POINTS
from guestagent.policy.rules import host, process, storage
from guestagent.policy.rules._common import BadInput, deny
from guestagent.policy.rules.create import decide_create_container
from guestagent.policy.state import PolicyState

__all__ = ["MUTATING_POINTS", "POINTS", "decide"]

Rule = Callable[[Policy, PolicyState, Mapping[str, Any]], Decision]

POINTS: dict[str, Rule] = {
    "mount_device": storage.decide_mount_device,
    "unmount_device": storage.decide_unmount_device,
    "mount_overlay": storage.decide_mount_overlay,
    "unmount_overlay": storage.decide_unmount_overlay,
    "mount_scratch": storage.decide_mount_scratch,
    "unmount_scratch": storage.decide_unmount_scratch,
    "create_container": decide_create_container,
    "start_container": process.decide_start_container,
    "exec_in_container": process.decide_exec_in_container,
    "exec_external": process.decide_exec_external,
    "signal_container_process": process.decide_signal_container_process,
    "shutdown_container": process.decide_shutdown_container,
    "container_state": process.decide_container_state,
    "get_properties": host.decide_get_properties,
    "dump_stacks": host.decide_dump_stacks,
    "runtime_logging": host.decide_runtime_logging,
    "network_change": host.decide_network_change,
    "copy_file": host.decide_copy_file,
    "create_sandbox": host.decide_create_sandbox,
    **host.console_deciders(),
}


def decide(policy: Policy, state: PolicyState, point: str, request: Mapping[str, Any]) -> Decision:
    """Rule on `request` at `point`; the decision's next_state is set only on allow."""
    rule = POINTS.get(point)
    if rule is None:
        return deny(str(point)[:64], "point", f"unknown enforcement point {str(point)[:64]!r}")
    try:
        return rule(policy, state, request)
    except BadInput as exc:
        return deny(
            point,
            "input",
            f"malformed input: {exc.field}: {exc.message}",
            code=ErrorCode.INVALID_ARGUMENT,
            asked=exc.field,
        )
    except Exception as exc:  # a broken rule must deny, never allow
        return deny(
            point,
            "engine_error",
            f"the policy engine failed: {type(exc).__name__}",
            code=ErrorCode.INTERNAL,
        )
