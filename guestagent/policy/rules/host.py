"""Guest-wide points: properties, stacks, logging, network, file copy, debug console."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.policy.decision import Decision
from guestagent.policy.document import CONSOLE_COMMANDS, NETWORK_KINDS, CopyFileRules, Policy
from guestagent.policy.rules._common import BadInput, allow, deny
from guestagent.policy.rules._input import (
    BOOL,
    EMPTY,
    STR,
    U32,
    Schema,
    check_input,
    check_str,
)
from guestagent.policy.state import PolicyState

__all__ = [
    "console_deciders",
    "decide_copy_file",
    "decide_create_sandbox",
    "decide_dump_stacks",
    "decide_get_properties",
    "decide_network_change",
    "decide_runtime_logging",
    "resolve_link",
]

# The kinds of network change made on an interface (dns and hosts are files).
_ON_AN_INTERFACE = frozenset({"interface", "address", "route", "neighbor"})
# Setuid, setgid and sticky bits are never granted to a copied file.
_SPECIAL_MODE_BITS = 0o7000
_COPY = Schema(
    {
        "destination": STR,
        "mode": U32,
        "dir_mode": U32,  # of the parent directories the copy makes
        "size": U32,
        "kind": STR,  # file, directory or symlink
        "target": STR,  # a symlink's target ("" otherwise)
        "uid": U32,
        "gid": U32,
    }
)
COPY_KINDS = ("file", "directory", "symlink")


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
    for field in ("mode", "dir_mode"):
        if req[field] & _SPECIAL_MODE_BITS or req[field] > 0o7777:
            return deny(
                point,
                field,
                "setuid, setgid and sticky bits are never allowed",
                asked=oct(req[field]),
            )
    if req["size"] > rules.max_size:
        return deny(
            point,
            "size",
            f"{req['size']} bytes exceeds the {rules.max_size} limit",
            asked=req["size"],
            allowed=rules.max_size,
        )
    if req["kind"] not in COPY_KINDS:
        return deny(point, "kind", f"unknown kind {req['kind']}", asked=req["kind"],
                    allowed=list(COPY_KINDS))  # fmt: skip
    for field in ("uid", "gid"):
        rule = getattr(rules, field)
        if not rule.allows(req[field]):
            return deny(
                point,
                field,
                f"owner {field} {req[field]} is not allowed for copied files",
                asked=req[field],
                allowed=rule.describe(),
            )
    if req["kind"] == "symlink":
        return _symlink(point, rules, dest, req["target"], state)
    if req["target"]:
        return deny(point, "target", f"a {req['kind']} has no target", asked=req["target"])
    return allow(point, f"copying to {dest} is allowed", state)


def _symlink(
    point: str, rules: CopyFileRules, dest: str, target: str, state: PolicyState
) -> Decision:
    """A symlink is allowed only when the policy says so, and only to a relative target whose
    leading `..` stay inside the destination's directories and which lands on a path the
    policy lets the host copy to (so a chain of links never leaves the allowed paths)."""
    if not rules.symlinks:
        return deny(point, "kind", "the policy allows no symlinks (copy_file.symlinks)",
                    asked="symlink", allowed=["file", "directory"])  # fmt: skip
    resolved = resolve_link(dest, target)
    if resolved is None:
        return deny(
            point,
            "target",
            f"symlink target {target!r}: only a relative path, '..' only leading and within "
            "the destination's directories, no '.' or empty segments",
            asked=target,
        )
    if not any(p.matches(resolved) for p in rules.destinations):
        return deny(
            point,
            "target",
            f"symlink target {target!r} resolves to {resolved}, which is not a copy_file "
            "destination",
            asked=resolved,
            allowed=[p.source for p in rules.destinations],
        )
    return allow(point, f"a symlink at {dest} to {resolved} is allowed", state)


def resolve_link(dest: str, target: str) -> str | None:
    """Where a relative symlink at `dest` points (lexically), or None if its form is not
    one whose lexical and real resolution agree (leading `..` over real directories)."""
    parts = target.split("/")
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    rest = parts[ups:]
    if not target or target.startswith("/") or any(p in ("", ".", "..") for p in rest):
        return None
    base = [p for p in dest.split("/")[:-1] if p]
    if ups > len(base):
        return None
    return "/" + "/".join(base[: len(base) - ups] + rest)


_SANDBOX = Schema({"sandbox_id": STR, "hostname": STR, "shared_pid_namespace": BOOL})


def decide_create_sandbox(policy: Policy, state: PolicyState, req: Mapping[str, Any]) -> Decision:
    """A Kata pod's sandbox: its id and hostname as the policy's `sandbox` says; a shared pid
    namespace has no rule. It changes no engine state: each container is still ruled."""
    point = "create_sandbox"
    check_input(req, _SANDBOX)
    rules = policy.sandbox
    if rules is None:
        return deny(point, "sandbox", "the policy names no sandbox (its `sandbox` section)")
    sandbox_id, hostname = req["sandbox_id"], req["hostname"]
    if rules.id is not None and not rules.id.matches(sandbox_id):
        return deny(point, "sandbox_id", f"sandbox id {sandbox_id} is not allowed",
                    asked=sandbox_id, allowed=rules.id.source)  # fmt: skip
    if hostname and (rules.hostname is None or not rules.hostname.matches(hostname)):
        return deny(
            point,
            "hostname",
            f"sandbox hostname {hostname} is not allowed",
            asked=hostname,
            allowed=None if rules.hostname is None else rules.hostname.source,
        )
    if req["shared_pid_namespace"]:
        return deny(point, "shared_pid_namespace", "a pod-wide pid namespace has no rule",
                    asked=True, allowed=False)  # fmt: skip
    return allow(point, f"sandbox {sandbox_id} is allowed", state)


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
