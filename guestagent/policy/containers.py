"""The container entries of a policy document, and the rule pieces they are made of."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from guestagent.capabilities import ALL_CAPABILITIES
from guestagent.policy._reader import (
    ARGV_CONTROLS,
    Obj,
    PolicyFormatError,
    expect_int,
    expect_str,
)
from guestagent.policy.patterns import Pattern, PatternSet, compile_pattern
from guestagent.policy.runtime_fields import (
    DEFAULT_RUNTIME_RULES,
    RUNTIME_FIELDS,
    RuntimeRules,
    parse_runtime_rules,
)
from guestagent.records import field, record
from guestagent.runtime_defaults import SHARED_NAMESPACES

__all__ = [
    "CAPABILITY_SETS",
    "SHARED_NAMESPACES",
    "CapabilitySets",
    "Container",
    "EnvMatcher",
    "EnvRule",
    "ExecProcess",
    "IdRule",
    "MountRule",
    "UserRule",
    "parse_container",
    "parse_env_rules",
    "parse_id_rule",
    "parse_str_patterns",
]

CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_SIGNAL = 64
KNOWN_VARIABLES = 64  # per env matcher: a few MiB at most on a 200-container policy


@record
class EnvRule:
    """One allowed "NAME=VALUE" form: exact (`string`) or an anchored regex (`re2`/`regex`)."""

    pattern: str
    strategy: str
    required: bool
    compiled: Pattern | None = None

    def matches(self, var: str) -> bool:
        if self.compiled is None:
            return var == self.pattern
        return self.compiled.matches(var)


@record
class EnvMatcher:
    """A process's env rules as one set lookup plus one RE2 set of its regex rules (hot path)."""

    rules: tuple[EnvRule, ...]
    exact: frozenset[str]
    combined: PatternSet | None  # None: no regex rules
    required: tuple[EnvRule, ...] = ()  # the required rules, in policy order
    # Variables known to be allowed: the exact rules, and up to KNOWN_VARIABLES short ones
    # RE2 accepted (a verdict is a pure function of the rules and the text, so remembering
    # it changes no decision). Checked as one set test: a container's env comes back on
    # every restart and exec.
    known: set[str] = field(default_factory=set, compare=False, repr=False)

    @classmethod
    def build(cls, rules: tuple[EnvRule, ...]) -> EnvMatcher:
        exact = frozenset(r.pattern for r in rules if r.compiled is None)
        regex = [r.pattern for r in rules if r.compiled is not None]
        required = tuple(r for r in rules if r.required)
        return cls(rules, exact, PatternSet(regex) if regex else None, required, set(exact))

    def allows(self, var: str) -> bool:
        """The one test of a variable: some rule matches it whole."""
        return var in self.exact or (self.combined is not None and self.combined.any(var))

    def allows_all(self, env: Sequence[str]) -> bool:
        """allows() of every variable of `env`."""
        known = self.known
        if known.issuperset(env):
            return True
        for var in env:
            if var not in known:
                if not self.allows(var):
                    return False
                if len(known) < len(self.exact) + KNOWN_VARIABLES and len(var) <= 256:
                    known.add(var)
        return True

    def missing_required(self, env: Sequence[str]) -> EnvRule | None:
        """The first required rule no variable of `env` matches, if any."""
        for rule in self.required:
            if rule.compiled is None:
                if rule.pattern not in env:
                    return rule
            elif not any(map(rule.compiled.matches, env)):
                return rule
        return None


@record
class IdRule:
    """A uid or gid: exact when lo == hi, else an inclusive range."""

    lo: int
    hi: int

    def allows(self, value: int) -> bool:
        return self.lo <= value <= self.hi

    def describe(self) -> int | str:
        return self.lo if self.lo == self.hi else f"{self.lo}..{self.hi}"


@record
class UserRule:
    uid: IdRule = IdRule(0, 0)
    gid: IdRule = IdRule(0, 0)
    additional_gids: frozenset[int] = frozenset()


@record
class CapabilitySets:
    bounding: frozenset[str]
    effective: frozenset[str]
    inheritable: frozenset[str]
    permitted: frozenset[str]
    ambient: frozenset[str]
    # Derived, in CAPABILITY_SETS order: the five sets, and each sorted (what a decision
    # grants when the asked set equals the policy's), so requests need not sort.
    sets: tuple[frozenset[str], ...] = field(default=(), compare=False, repr=False)
    sorted_sets: tuple[tuple[str, ...], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        # Equal sets as one object (bounding, effective and permitted usually are): a request
        # whose lists are equal too is then checked against one set once (granted_caps).
        sets: list[frozenset[str]] = []
        for name in CAPABILITY_SETS:
            own = getattr(self, name)
            sets.append(next((s for s in sets if s == own), own))
        sets = tuple(sets)
        object.__setattr__(self, "sets", sets)
        object.__setattr__(self, "sorted_sets", tuple(tuple(sorted(s)) for s in sets))

    def get(self, name: str) -> frozenset[str]:
        return getattr(self, name)


@record
class MountRule:
    type: str
    source: Pattern
    destination: str
    options: tuple[str, ...]  # sorted: compared as a multiset

    @property
    def writable(self) -> bool:
        return "ro" not in self.options


@record
class ExecProcess:
    command: tuple[str, ...]
    signals: frozenset[int] = frozenset()
    working_dir: str | None = None


@record
class Container:
    name: str
    layers: tuple[str, ...]
    command: tuple[str, ...]
    env_rules: tuple[EnvRule, ...] = ()
    working_dir: str = "/"
    user: UserRule = UserRule()
    capabilities: CapabilitySets | None = None
    no_new_privileges: bool = True
    seccomp_profile_sha256: str = ""
    mounts: tuple[MountRule, ...] = ()
    exec_processes: tuple[ExecProcess, ...] = ()
    signals: frozenset[int] = frozenset()
    allow_stdio_access: bool = False
    allow_elevated: bool = False
    attestation_socket: bool = False
    allow_terminal: bool = False
    host_network: bool = False
    devices: frozenset[str] = frozenset()
    sysctls: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    runtime: RuntimeRules = DEFAULT_RUNTIME_RULES
    # namespace type -> name of the policy container whose namespace this one joins
    joins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    env_matcher: EnvMatcher = field(default=None, compare=False, repr=False)  # type: ignore[assignment]
    # destination -> ((index in mounts, rule), ...): a requested mount meets only its own.
    mounts_by_destination: Mapping[str, tuple[tuple[int, MountRule], ...]] = field(  # type: ignore[assignment]
        default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.env_matcher is None:
            object.__setattr__(self, "env_matcher", EnvMatcher.build(self.env_rules))
        by_destination: dict[str, list[tuple[int, MountRule]]] = {}
        for index, rule in enumerate(self.mounts):
            by_destination.setdefault(rule.destination, []).append((index, rule))
        # A plain dict (nobody else holds it): MappingProxyType lookups cost twice as much.
        indexed = {k: tuple(v) for k, v in by_destination.items()}
        object.__setattr__(self, "mounts_by_destination", indexed)


_CONTAINER_FIELDS = frozenset(
    {
        "name",
        "layers",
        "command",
        "env_rules",
        "working_dir",
        "user",
        "capabilities",
        "no_new_privileges",
        "seccomp_profile_sha256",
        "mounts",
        "exec_processes",
        "signals",
        "allow_stdio_access",
        "allow_elevated",
        "attestation_socket",
        "allow_terminal",
        "host_network",
        "devices",
        "sysctls",
        "joins",
        *RUNTIME_FIELDS,
    }
)


def parse_str_patterns(obj: Obj, key: str) -> tuple[Pattern, ...]:
    return tuple(compile_pattern(expect_str(item, path), path) for item, path in obj.list(key, []))


def _env_rule(value: Any, path: str) -> EnvRule:
    obj = Obj(value, path, {"pattern", "strategy", "required"})
    pattern = obj.str("pattern", allow_empty=False)
    strategy = obj.str("strategy", "string")
    if strategy not in ("string", "re2", "regex"):
        raise PolicyFormatError(obj.at("strategy"), "must be string, re2 or regex")
    compiled = None if strategy == "string" else compile_pattern(pattern, obj.at("pattern"))
    return EnvRule(pattern, strategy, obj.bool("required", False), compiled)


def parse_env_rules(obj: Obj) -> tuple[EnvRule, ...]:
    return tuple(_env_rule(item, path) for item, path in obj.list("env_rules", []))


def parse_id_rule(obj: Obj, key: str) -> IdRule:
    value = obj.raw(key, 0)
    if isinstance(value, dict):
        rng = Obj(value, obj.at(key), {"min", "max"})
        lo, hi = rng.int("min"), rng.int("max")
        if lo > hi:
            raise PolicyFormatError(rng.at("min"), "min is greater than max")
        return IdRule(lo, hi)
    exact = expect_int(value, obj.at(key))
    return IdRule(exact, exact)


def _user(value: Any, path: str) -> UserRule:
    obj = Obj(value, path, {"uid", "gid", "additional_gids"})
    gids = frozenset(expect_int(g, p) for g, p in obj.list("additional_gids", []))
    return UserRule(parse_id_rule(obj, "uid"), parse_id_rule(obj, "gid"), gids)


def _capabilities(value: Any, path: str) -> CapabilitySets | None:
    if value is None:
        return None
    obj = Obj(value, path, set(CAPABILITY_SETS))
    sets = {}
    for name in CAPABILITY_SETS:
        caps = obj.str_list(name, max_items=64)
        for i, cap in enumerate(caps):
            if cap not in ALL_CAPABILITIES:
                raise PolicyFormatError(f"{obj.at(name)}[{i}]", f"unknown capability {cap!r}")
        sets[name] = frozenset(caps)
    return CapabilitySets(**sets)


def _mount(value: Any, path: str) -> MountRule:
    obj = Obj(value, path, {"type", "source", "destination", "options"})
    destination = obj.str("destination", allow_empty=False)
    if not destination.startswith("/"):
        raise PolicyFormatError(obj.at("destination"), "must be an absolute path")
    return MountRule(
        type=obj.str("type", allow_empty=False),
        source=compile_pattern(obj.str("source"), obj.at("source")),
        destination=destination,
        options=tuple(sorted(obj.str_list("options", []))),
    )


def _signals(obj: Obj, key: str) -> frozenset[int]:
    return frozenset(expect_int(s, p, lo=1, hi=MAX_SIGNAL) for s, p in obj.list(key, []))


def _command(obj: Obj) -> tuple[str, ...]:
    command = obj.str_list("command", max_items=256, controls=ARGV_CONTROLS)
    if not command:
        raise PolicyFormatError(obj.at("command"), "must not be empty")
    return command


def _exec_process(value: Any, path: str) -> ExecProcess:
    obj = Obj(value, path, {"command", "signals", "working_dir"})
    return ExecProcess(_command(obj), _signals(obj, "signals"), obj.str("working_dir", None))


def _layers(obj: Obj) -> tuple[str, ...]:
    layers = []
    for item, path in obj.list("layers", max_items=256):
        text = expect_str(item, path).lower()
        if not _HEX64.fullmatch(text):
            raise PolicyFormatError(path, "expected a 64-digit hex dm-verity root hash")
        layers.append(text)
    if not layers:
        raise PolicyFormatError(obj.at("layers"), "must list at least one layer")
    return tuple(layers)


def _sysctls(value: Any, path: str) -> Mapping[str, str]:
    obj = Obj(value, path, set(value) if isinstance(value, dict) else set())
    return MappingProxyType(
        {expect_str(k, obj.at(k)): expect_str(v, obj.at(k)) for k, v in obj.value.items()}
    )


def _joins(value: Any, path: str) -> Mapping[str, str]:
    obj = Obj(value, path, set(SHARED_NAMESPACES))
    return MappingProxyType(
        {ns: obj.str(ns, allow_empty=False) for ns in SHARED_NAMESPACES if obj.has(ns)}
    )


def parse_container(value: Any, path: str) -> Container:
    obj = Obj(value, path, _CONTAINER_FIELDS)
    seccomp = obj.str("seccomp_profile_sha256", "").lower()
    if seccomp and not _HEX64.fullmatch(seccomp):
        raise PolicyFormatError(obj.at("seccomp_profile_sha256"), 'expected 64 hex digits or ""')
    flags = {
        k: obj.bool(k, default)
        for k, default in (
            ("no_new_privileges", True),
            ("allow_stdio_access", False),
            ("allow_elevated", False),
            ("attestation_socket", False),
            ("allow_terminal", False),
            ("host_network", False),
        )
    }
    return Container(
        name=obj.str("name", allow_empty=False, max_len=256),
        layers=_layers(obj),
        command=_command(obj),
        env_rules=parse_env_rules(obj),
        working_dir=obj.str("working_dir", "/"),
        user=_user(obj.raw("user"), obj.at("user")) if obj.has("user") else UserRule(),
        capabilities=_capabilities(obj.raw("capabilities", None), obj.at("capabilities")),
        seccomp_profile_sha256=seccomp,
        mounts=tuple(_mount(item, p) for item, p in obj.list("mounts", [])),
        exec_processes=tuple(_exec_process(i, p) for i, p in obj.list("exec_processes", [])),
        signals=_signals(obj, "signals"),
        devices=frozenset(obj.str_list("devices", [])),
        sysctls=_sysctls(obj.raw("sysctls", {}), obj.at("sysctls")),
        runtime=parse_runtime_rules(obj),
        joins=_joins(obj.raw("joins", {}), obj.at("joins")),
        **flags,
    )
