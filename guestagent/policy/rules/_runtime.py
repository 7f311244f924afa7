"""create_container checks of the runtime fields (umask, hostname, masked and read-only paths,
rlimits, oomScoreAdj; policy/runtime_fields.py), and the shapes of their facts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.rules._candidates import Check
from guestagent.policy.rules._codegen import Code
from guestagent.policy.rules._input import STR, U32, U64, IntIn, ListOf, Schema
from guestagent.runtime_defaults import DEFAULT_OOM_SCORE_ADJ

__all__ = [
    "DEVICES",
    "OOM_SCORE_ADJ",
    "RESOURCES",
    "RLIMITS",
    "RUNTIME_ABSENT",
    "RUNTIME_CHECKS",
    "hostname_allowed",
    "oom_score_adj_applied",
    "rlimits_allowed",
]

# The shapes of the facts (rules/_input.py).
DEVICES = ListOf(
    Schema(
        {
            "path": STR,
            "type": STR,
            "major": U32,
            "minor": U32,
            "file_mode": U32,
            "uid": U32,
            "gid": U32,
        }
    ),
    1024,
)
RLIMITS = ListOf(Schema({"type": STR, "soft": U64, "hard": U64}), 1024)
OOM_SCORE_ADJ = IntIn(-1000, 1000, optional=True)


class _Resources:
    """A map of at most 64 names to integers in [-2**63, 2**64) or strings."""

    @staticmethod
    def emit(code: Code, item: str, where: str, field: str) -> None:
        limits, name, value = code.var(), code.var(), code.var()
        code.line(f"{limits} = {item}")
        code.line(f"if type({limits}) is not dict or len({limits}) > 64:")
        code.fail(where, field, "expected a map of at most 64 limits")
        code.line(f"texts += {limits}")
        code.line(f"for {name}, {value} in {limits}.items():")
        code.line(f"    if type({value}) is str:")
        code.line(f"        texts.append({value})")
        code.line(f"    elif type({value}) is not int or not {-(2**63)} <= {value} < {2**64}:")
        code.line(
            f"        raise _bad(_place({where}, {field!r}), str({name}), "
            "'expected an integer or a string')"
        )


RESOURCES = _Resources


def umask_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    umask = req["umask"]
    if umask is not None and umask != c.runtime.umask:
        return {
            "why": f"umask {umask:04o} is not the policy's",
            "asked": f"{umask:04o}",
            "allowed": f"{c.runtime.umask:04o}",
        }
    return None


def hostname_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    name, rule = req["hostname"], c.runtime.hostname
    if name and (rule is None or not rule.matches(name)):
        return {
            "why": f"hostname {name} is not allowed",
            "asked": name,
            "allowed": "none: the agent names the container" if rule is None else rule.source,
        }
    return None


def _paths(key: str, what: str) -> Check:
    def check(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
        allowed = getattr(c.runtime, key)
        extra = [p for p in req[key] if p not in allowed]
        if extra:
            return {
                "why": f"{what} {extra[0]} is not allowed",
                "asked": extra,
                "allowed": sorted(allowed),
            }
        return None

    return key, check


def rlimits_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    for rlimit in req["rlimits"]:
        kind, limit = rlimit["type"], c.runtime.rlimits.get(rlimit["type"])
        if limit is None or rlimit["soft"] > limit[0] or rlimit["hard"] > limit[1]:
            return {
                "why": f"rlimit {kind} soft {rlimit['soft']} hard {rlimit['hard']} is not allowed",
                "asked": dict(rlimit),
                "allowed": [
                    {"type": k, "soft": soft, "hard": hard}
                    for k, (soft, hard) in c.runtime.rlimits.items()
                ],
            }
    return None


def oom_score_adj_allowed(c: Container, req: Mapping[str, Any]) -> dict[str, Any] | None:
    value, (lo, hi) = req["oom_score_adj"], c.runtime.oom_score_adj
    if value is not None and not lo <= value <= hi:
        return {
            "why": f"oomScoreAdj {value} is outside {lo}..{hi}",
            "asked": value,
            "allowed": {"min": lo, "max": hi},
        }
    return None


def oom_score_adj_applied(c: Container, req: Mapping[str, Any]) -> int:
    """The oomScoreAdj the container gets: the spec's (checked above), or, when it states
    none, the agent's default moved into the policy's range (a policy asking for 100..500
    must not get 0 because the host left the field out)."""
    value, (lo, hi) = req["oom_score_adj"], c.runtime.oom_score_adj
    if value is not None:
        return value
    return min(max(DEFAULT_OOM_SCORE_ADJ, lo), hi)


RUNTIME_CHECKS: tuple[Check, ...] = (
    ("umask", umask_allowed),
    ("hostname", hostname_allowed),
    _paths("masked_paths", "masking"),
    _paths("readonly_paths", "making read-only"),
    ("rlimits", rlimits_allowed),
    ("oom_score_adj", oom_score_adj_allowed),
)
# The value each field holds when the spec does not set it (its check then passes).
RUNTIME_ABSENT = {
    "umask": None,
    "hostname": "",
    "masked_paths": [],
    "readonly_paths": [],
    "rlimits": [],
    "oom_score_adj": None,
}
