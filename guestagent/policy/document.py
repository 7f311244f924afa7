"""The policy document: versioned JSON parsed strictly into frozen records.

`parse_policy(raw_bytes)` is the only way in. Unknown fields anywhere, duplicate keys, wrong
types and invalid regular expressions are errors naming the JSON path; nothing is ignored.
Regular expressions are compiled here, once, and lookup indexes are built for the engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from guestagent.policy._reader import ARGV_CONTROLS, Obj, PolicyFormatError
from guestagent.policy.containers import (
    CAPABILITY_SETS,
    CapabilitySets,
    Container,
    EnvMatcher,
    EnvRule,
    ExecProcess,
    IdRule,
    MountRule,
    UserRule,
    parse_container,
    parse_env_rules,
    parse_id_rule,
    parse_str_patterns,
)
from guestagent.policy.patterns import compile_pattern
from guestagent.records import field, record

__all__ = [
    "CAPABILITY_SETS",
    "CONSOLE_COMMANDS",
    "MAX_POLICY_BYTES",
    "NETWORK_KINDS",
    "VERITY_MODES",
    "CapabilitySets",
    "Container",
    "CopyFileRules",
    "DebugConsole",
    "EnvRule",
    "ExecProcess",
    "ExternalProcess",
    "IdRule",
    "MountRule",
    "NetworkRules",
    "Policy",
    "PolicyFormatError",
    "SandboxRules",
    "UserRule",
    "parse_policy",
]

MAX_POLICY_BYTES = 1 << 20
POLICY_VERSION = 1
NETWORK_KINDS = frozenset({"interface", "address", "route", "neighbor", "dns", "hosts"})
CONSOLE_COMMANDS = frozenset(
    {
        "status",
        "policy",
        "report",
        "containers",
        "processes",
        "mounts",
        "network",
        "decisions",
        "metrics",
        "trace",
    }
)
VERITY_MODES = ("error", "restart_on_corruption", "panic_on_corruption")


@record
class ExternalProcess:
    command: tuple[str, ...]
    env_rules: tuple[EnvRule, ...]
    working_dir: str
    allow_stdio_access: bool
    env_matcher: EnvMatcher = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.env_matcher is None:
            object.__setattr__(self, "env_matcher", EnvMatcher.build(self.env_rules))


@record
class NetworkRules:
    allow_network_changes: bool = False
    kinds: frozenset[str] = NETWORK_KINDS
    interface_patterns: tuple[Any, ...] = ()


_ROOT = IdRule(0, 0)


@record
class CopyFileRules:
    destinations: tuple[Any, ...] = ()
    max_size: int = 16 << 20
    symlinks: bool = False  # whether the host may make symlinks (their targets are ruled)
    uid: IdRule = _ROOT  # the owners a copied file, directory or symlink may have
    gid: IdRule = _ROOT


@record
class SandboxRules:
    """What a Kata CreateSandbox may set: the pod's id and hostname (patterns; a null
    hostname: none)."""

    id: Any = None  # Pattern; None: any id the agent's id syntax takes
    hostname: Any = None  # Pattern or None


@record
class DebugConsole:
    enabled: bool = False
    commands: frozenset[str] = frozenset()


@record
class Policy:
    version: int
    containers: tuple[Container, ...]
    external_processes: tuple[ExternalProcess, ...] = ()
    allow_properties_access: bool = False
    allow_dump_stacks: bool = False
    allow_runtime_logging: bool = False
    allow_environment_variable_dropping: bool = False
    allow_capability_dropping: bool = False
    allow_unencrypted_scratch: bool = False
    network: NetworkRules = NetworkRules()
    copy_file: CopyFileRules = CopyFileRules()
    sandbox: SandboxRules | None = None  # None: no CreateSandbox is allowed
    debug_console: DebugConsole = DebugConsole()
    verity_corruption: str = "error"
    # Indexes for the hot path, derived from `containers`.
    layer_hashes: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    by_layers: Mapping[tuple[str, ...], tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )


_TOP_FIELDS = frozenset(
    {
        "version",
        "containers",
        "external_processes",
        "allow_properties_access",
        "allow_dump_stacks",
        "allow_runtime_logging",
        "allow_environment_variable_dropping",
        "allow_capability_dropping",
        "allow_unencrypted_scratch",
        "network",
        "copy_file",
        "sandbox",
        "debug_console",
        "verity_corruption",
    }
)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers could read different values: an ambiguity the measurement hides.
            raise PolicyFormatError("$", f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise PolicyFormatError("$", f"{name} is not valid JSON")


def decode_json(raw: bytes) -> Any:
    """Decode policy JSON bytes (UTF-8, no duplicate keys, no NaN/Infinity)."""
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyFormatError("$", f"policy larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except UnicodeDecodeError as exc:
        raise PolicyFormatError("$", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise PolicyFormatError("$", f"invalid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise PolicyFormatError("$", "nesting too deep") from None


def _parse_external(value: Any, path: str) -> ExternalProcess:
    obj = Obj(value, path, {"command", "env_rules", "working_dir", "allow_stdio_access"})
    command = obj.str_list("command", allow_empty=True, controls=ARGV_CONTROLS)
    if not command:
        raise PolicyFormatError(obj.at("command"), "must not be empty")
    return ExternalProcess(
        command=command,
        env_rules=parse_env_rules(obj),
        working_dir=obj.str("working_dir", "/"),
        allow_stdio_access=obj.bool("allow_stdio_access", False),
    )


def _parse_network(value: Any, path: str) -> NetworkRules:
    obj = Obj(value, path, {"allow_network_changes", "kinds", "interface_patterns"})
    kinds = NETWORK_KINDS
    if obj.has("kinds"):
        kinds = frozenset(obj.str_list("kinds"))
        unknown = kinds - NETWORK_KINDS
        if unknown:
            raise PolicyFormatError(obj.at("kinds"), f"unknown kinds {sorted(unknown)}")
    return NetworkRules(
        allow_network_changes=obj.bool("allow_network_changes", False),
        kinds=kinds,
        interface_patterns=parse_str_patterns(obj, "interface_patterns"),
    )


def _parse_copy_file(value: Any, path: str) -> CopyFileRules:
    obj = Obj(value, path, {"destinations", "max_size", "symlinks", "uid", "gid"})
    return CopyFileRules(
        destinations=parse_str_patterns(obj, "destinations"),
        max_size=obj.int("max_size", 16 << 20, hi=1 << 34),
        symlinks=obj.bool("symlinks", False),
        uid=parse_id_rule(obj, "uid"),
        gid=parse_id_rule(obj, "gid"),
    )


def _parse_sandbox(value: Any, path: str) -> SandboxRules:
    obj = Obj(value, path, {"id", "hostname"})
    id_pattern, hostname = obj.str("id", None, allow_empty=False), obj.str("hostname", None)
    return SandboxRules(
        id=None if id_pattern is None else compile_pattern(id_pattern, obj.at("id")),
        hostname=None if hostname is None else compile_pattern(hostname, obj.at("hostname")),
    )


def _parse_console(value: Any, path: str) -> DebugConsole:
    obj = Obj(value, path, {"enabled", "commands"})
    commands = frozenset(obj.str_list("commands", []))
    unknown = commands - CONSOLE_COMMANDS
    if unknown:
        raise PolicyFormatError(obj.at("commands"), f"unknown commands {sorted(unknown)}")
    return DebugConsole(enabled=obj.bool("enabled", False), commands=commands)


def _build_indexes(containers: tuple[Container, ...]) -> tuple[frozenset[str], dict]:
    by_layers: dict[tuple[str, ...], list[int]] = {}
    for index, container in enumerate(containers):
        by_layers.setdefault(container.layers, []).append(index)
    hashes = frozenset(h for c in containers for h in c.layers)
    return hashes, {k: tuple(v) for k, v in by_layers.items()}


def _check_joins(containers: tuple[Container, ...]) -> None:
    """Each join names another container of the policy that owns that namespace itself, and
    a network join never hands the guest's network namespace to a container not allowed it."""
    by_name = {c.name: c for c in containers}
    for i, container in enumerate(containers):
        for ns, owner_name in container.joins.items():
            path = f"$.containers[{i}].joins.{ns}"
            owner = by_name.get(owner_name)
            if owner is None or owner is container:
                raise PolicyFormatError(
                    path, f"names no other container of the policy: {owner_name!r}"
                )
            if ns in owner.joins:
                raise PolicyFormatError(
                    path,
                    f"container {owner_name!r} joins its {ns} namespace itself: name the owner",
                )
            if ns == "network" and owner.host_network and not container.host_network:
                raise PolicyFormatError(
                    path,
                    f"container {owner_name!r} has host_network: joining its network namespace "
                    "needs host_network here too",
                )


def policy_from_json(value: Any) -> Policy:
    """Build a Policy from decoded JSON (a dict)."""
    obj = Obj(value, "$", _TOP_FIELDS)
    version = obj.int("version", hi=1 << 16)
    if version != POLICY_VERSION:
        raise PolicyFormatError(obj.at("version"), f"unsupported version {version}")
    containers = tuple(
        parse_container(item, path) for item, path in obj.list("containers", max_items=4096)
    )
    names = [c.name for c in containers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise PolicyFormatError(f"$.containers[{i}].name", f"duplicate name {name!r}")
    _check_joins(containers)
    verity = obj.str("verity_corruption", "error")
    if verity not in VERITY_MODES:
        raise PolicyFormatError(obj.at("verity_corruption"), f"must be one of {VERITY_MODES}")
    hashes, by_layers = _build_indexes(containers)
    optional = {
        "network": _parse_network,
        "copy_file": _parse_copy_file,
        "sandbox": _parse_sandbox,
        "debug_console": _parse_console,
    }
    parts = {k: fn(obj.raw(k), obj.at(k)) for k, fn in optional.items() if obj.has(k)}
    return Policy(
        version=version,
        containers=containers,
        external_processes=tuple(
            _parse_external(item, path) for item, path in obj.list("external_processes", None)
        ),
        allow_properties_access=obj.bool("allow_properties_access", False),
        allow_dump_stacks=obj.bool("allow_dump_stacks", False),
        allow_runtime_logging=obj.bool("allow_runtime_logging", False),
        allow_environment_variable_dropping=obj.bool("allow_environment_variable_dropping", False),
        allow_capability_dropping=obj.bool("allow_capability_dropping", False),
        allow_unencrypted_scratch=obj.bool("allow_unencrypted_scratch", False),
        verity_corruption=verity,
        layer_hashes=hashes,
        by_layers=MappingProxyType(by_layers),
        **parts,
    )


def parse_policy(raw: bytes) -> Policy:
    """Parse policy bytes (UTF-8 JSON) strictly; raises PolicyFormatError naming the path."""
    return policy_from_json(decode_json(raw))
