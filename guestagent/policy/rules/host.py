"""Guest-wide points: properties, stacks, logging, network, file copy, debug console."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.policy.decision import Decision
from guestagent.policy.document import CONSOLE_COMMANDS, NETWORK_KINDS, Policy
from guestagent.policy.rules._common import BadInput, allow, deny
from guestagent.policy.rules._input import EMPTY, STR, U32, Schema, check_input, check_str
from guestagent.policy.state import PolicyState

__all__ = [
    "console_deciders",
    "decide_copy_file",
    "decide_dump_stacks",
    "decide_get_properties",
    "decide_network_change",
    "decide_runtime_logging",
]

# The kinds of network change made on an interface (dns and hosts are files).
_ON_AN_INTERFACE = frozenset({"interface", "address", "route", "neighbor"})
# Setuid, setgid and sticky bits are never granted to a copied file.
_SPECIAL_MODE_BITS = 0o7000
_COPY = Schema({"destination": STR, "mode": U32, "size": U32})


def _flag(point: str, flag: str, what: str) -> Callable[..., Decision]:
    def decide(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
        check_input(req, EMPTY)
        if getattr(policy, flag):
            return allow(point, f"the policy sets {flag}", state)
        return deny(
            point,
            flag,
            f"{what} is not allowed: the policy does not set {flag}",
            asked=True,
            allowed=False,
        )

    decide.__name__ = f"decide_{point}"
    return decide


decide_get_properties = _flag("get_properties", "allow_properties_access", "reading properties")
decide_dump_stacks = _flag("dump_stacks", "allow_dump_stacks", "dumping stacks")
decide_runtime_logging = _flag("runtime_logging", "allow_runtime_logging", "runtime logging")


def decide_network_change(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "network_change"
    if not isinstance(req, Mapping) or "kind" not in req:
        raise BadInput("kind", "required field is missing")
    kind = req["kind"]
    if not isinstance(kind, str) or kind not in NETWORK_KINDS:
        raise BadInput("kind", f"expected one of {sorted(NETWORK_KINDS)}")
    rules = policy.network
    if not rules.allow_network_changes:
        return deny(
            point, "allow_network_changes", "the policy does not allow network changes", asked=kind
        )
    if kind not in rules.kinds:
        return deny(
            point,
            "kind",
            f"{kind} changes are not allowed",
            asked=kind,
            allowed=sorted(rules.kinds),
        )
    name = req.get("interface")
    if rules.interface_patterns and kind in _ON_AN_INTERFACE and name is None:
        # A route without an interface goes where the kernel sends its gateway: the agent
        # resolves that interface, and when it cannot, nothing says the route is allowed.
        return deny(
            point,
            "interface",
            f"the interface of this {kind} change could not be resolved in the guest",
            asked=None,
            allowed=[p.source for p in rules.interface_patterns],
        )
    if rules.interface_patterns and name is not None:
        check_str(name, "interface")
        if not any(p.matches(name) for p in rules.interface_patterns):
            return deny(
                point,
                "interface",
                f"interface {name} is not allowed",
                asked=name,
                allowed=[p.source for p in rules.interface_patterns],
            )
    return allow(point, f"{kind} changes are allowed", state)


def decide_copy_file(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    point = "copy_file"
    check_input(req, _COPY)
    dest, rules = req["destination"], policy.copy_file
    if not dest.startswith("/") or ".." in dest.split("/"):
        return deny(
            point, "destination", "the destination must be absolute, without '..'", asked=dest
        )
    if not any(p.matches(dest) for p in rules.destinations):
        return deny(
            point,
            "destination",
            f"copying to {dest} is not allowed",
            asked=dest,
            allowed=[p.source for p in rules.destinations],
        )
    if req["mode"] & _SPECIAL_MODE_BITS or req["mode"] > 0o7777:
        return deny(
            point,
            "mode",
            "setuid, setgid and sticky bits are never allowed",
            asked=oct(req["mode"]),
        )
    if req["size"] > rules.max_size:
        return deny(
            point,
            "size",
            f"{req['size']} bytes exceeds the {rules.max_size} limit",
            asked=req["size"],
            allowed=rules.max_size,
        )
    return allow(point, f"copying to {dest} is allowed", state)


def _console(command: str) -> Callable[..., Decision]:
    point = f"console_{command}"

    def decide(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
        check_input(req, EMPTY)
        console = policy.debug_console
        if not console.enabled:
            return deny(point, "debug_console", "the debug console is disabled by the policy")
        if command not in console.commands:
            return deny(
                point,
                "command",
                f"console command {command} is not allowed",
                asked=command,
                allowed=sorted(console.commands),
            )
        return allow(point, f"console command {command} is allowed", state)

    decide.__name__ = f"decide_{point}"
    return decide


def console_deciders() -> dict[str, Callable[..., Decision]]:
    return {f"console_{c}": _console(c) for c in sorted(CONSOLE_COMMANDS)}
