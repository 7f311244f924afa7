"""Policy rules for a container's runtime settings: umask, hostname, masked and read-only
paths, rlimits and oomScoreAdj.

Each has a safe default, so a policy that says nothing gets the agent's behaviour: umask
0022, the agent's hostname (the spec may name none), only the agent's masked and read-only
paths, no rlimits beyond the runtime's, and an oomScoreAdj of 0..1000 (a container may make
itself likelier to be OOM-killed, never less likely than the agent's own processes).
containerd sets rlimits and kubelet sets oomScoreAdj, so both can be allowed explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from guestagent.policy._reader import Obj, PolicyFormatError, expect_int, expect_str
from guestagent.policy.patterns import Pattern, compile_pattern
from guestagent.records import field, record
from guestagent.runtime_defaults import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_OOM_RANGE,
    DEFAULT_READONLY_PATHS,
    DEFAULT_UMASK,
    OOM_SCORE_ADJ_RANGE,
    RLIMIT_TYPES,
)

__all__ = ["RUNTIME_FIELDS", "RuntimeRules", "parse_runtime_rules"]

RUNTIME_FIELDS = frozenset(
    {"umask", "hostname", "masked_paths", "readonly_paths", "rlimits", "oom_score_adj"}
)
_UMASK = re.compile(r"0?[0-7]{3}")
_U64 = 2**64 - 1
_OOM_LOW, _OOM_HIGH = OOM_SCORE_ADJ_RANGE


@record
class RuntimeRules:
    """What a container's spec may set beyond its process (the policy's fields, resolved)."""

    umask: int = DEFAULT_UMASK
    hostname: Pattern | None = None  # None: the spec names no hostname; the agent sets it
    # The paths the spec may list: the agent's defaults plus the policy's.
    masked_paths: frozenset[str] = frozenset(DEFAULT_MASKED_PATHS)
    readonly_paths: frozenset[str] = frozenset(DEFAULT_READONLY_PATHS)
    rlimits: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: MappingProxyType({})
    )  # type -> (soft, hard) maxima
    oom_score_adj: tuple[int, int] = DEFAULT_OOM_RANGE


DEFAULT_RUNTIME_RULES = RuntimeRules()


def _umask(obj: Obj) -> int:
    text = obj.str("umask", "0022")
    if not _UMASK.fullmatch(text):
        raise PolicyFormatError(obj.at("umask"), 'expected an octal umask such as "0022"')
    return int(text, 8)


def _paths(obj: Obj, key: str, defaults: tuple[str, ...]) -> frozenset[str]:
    paths = set(defaults)
    for item, path in obj.list(key, []):
        text = expect_str(item, path, allow_empty=False)
        if not text.startswith("/"):
            raise PolicyFormatError(path, "must be an absolute path")
        paths.add(text)
    return frozenset(paths)


def _rlimits(obj: Obj) -> Mapping[str, tuple[int, int]]:
    rlimits: dict[str, tuple[int, int]] = {}
    for item, path in obj.list("rlimits", []):
        entry = Obj(item, path, {"type", "soft", "hard"})
        kind = entry.str("type")
        if kind not in RLIMIT_TYPES:
            raise PolicyFormatError(entry.at("type"), f"unknown rlimit {kind!r}")
        if kind in rlimits:
            raise PolicyFormatError(entry.at("type"), f"{kind} is listed twice")
        soft, hard = entry.int("soft", hi=_U64), entry.int("hard", hi=_U64)
        if soft > hard:
            raise PolicyFormatError(entry.at("soft"), "must not exceed hard")
        rlimits[kind] = (soft, hard)
    return MappingProxyType(rlimits)


def _oom_range(obj: Obj) -> tuple[int, int]:
    value: Any = obj.raw("oom_score_adj", None)
    if value is None:
        return DEFAULT_OOM_RANGE
    if isinstance(value, dict):
        rng = Obj(value, obj.at("oom_score_adj"), {"min", "max"})
        lo = rng.int("min", lo=_OOM_LOW, hi=_OOM_HIGH)
        hi = rng.int("max", lo=_OOM_LOW, hi=_OOM_HIGH)
        if lo > hi:
            raise PolicyFormatError(rng.at("min"), "min is greater than max")
        return lo, hi
    exact = expect_int(value, obj.at("oom_score_adj"), lo=_OOM_LOW, hi=_OOM_HIGH)
    return exact, exact


def parse_runtime_rules(obj: Obj) -> RuntimeRules:
    """The runtime fields of a container entry (`obj`), defaults for those it omits."""
    if not any(obj.has(key) for key in RUNTIME_FIELDS):
        return DEFAULT_RUNTIME_RULES
    hostname = obj.str("hostname", None, allow_empty=False)
    return RuntimeRules(
        umask=_umask(obj),
        hostname=None if hostname is None else compile_pattern(hostname, obj.at("hostname")),
        masked_paths=_paths(obj, "masked_paths", DEFAULT_MASKED_PATHS),
        readonly_paths=_paths(obj, "readonly_paths", DEFAULT_READONLY_PATHS),
        rlimits=_rlimits(obj),
        oom_score_adj=_oom_range(obj),
    )
