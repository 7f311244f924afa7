"""create_container checks of the runtime fields (umask, hostname, masked and read-only paths,
rlimits, oomScoreAdj; policy/runtime_fields.py), and the shapes of their facts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.rules._candidates import Check
from guestagent.policy.rules._common import BadInput, check_input, is_int, is_str, is_u64

__all__ = [
    "RUNTIME_CHECKS",
    "hostname_allowed",
    "is_devices",
    "is_oom_score_adj",
    "is_resources",
    "is_rlimits",
    "rlimits_allowed",
]

_DEVICE_SCHEMA = {
    "path": is_str,
    "type": is_str,
    "major": is_int,
    "minor": is_int,
    "file_mode": is_int,
    "uid": is_int,
    "gid": is_int,
}
_RLIMIT_SCHEMA = {"type": is_str, "soft": is_u64, "hard": is_u64}


def _is_records(schema: Mapping[str, Any]) -> Callable[[Any, str], None]:
    def check(value: Any, name: str) -> None:
        if type(value) not in (list, tuple) or len(value) > 1024:
            raise BadInput(name, "expected a list of records")
        for i, item in enumerate(value):
            try:
                check_input(item, schema)
            except BadInput as exc:
                raise BadInput(f"{name}[{i}].{exc.field}", exc.message) from None

    return check


is_devices = _is_records(_DEVICE_SCHEMA)
is_rlimits = _is_records(_RLIMIT_SCHEMA)


def is_resources(value: Any, name: str) -> None:
    if not isinstance(value, Mapping) or len(value) > 64:
        raise BadInput(name, "expected a map of limits")
    for key, item in value.items():
        is_str(key, name)
        if type(item) is str:
            is_str(item, f"{name}.{key}")
        elif type(item) is not int or not -(2**63) <= item < 2**64:
            raise BadInput(f"{name}.{key}", "expected an integer or a string")


def is_oom_score_adj(value: Any, name: str) -> None:
    if value is not None and (type(value) is not int or not -1000 <= value <= 1000):
        raise BadInput(name, "expected null or an integer in [-1000, 1000]")


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


RUNTIME_CHECKS: tuple[Check, ...] = (
    ("umask", umask_allowed),
    ("hostname", hostname_allowed),
    _paths("masked_paths", "masking"),
    _paths("readonly_paths", "making read-only"),
    ("rlimits", rlimits_allowed),
    ("oom_score_adj", oom_score_adj_allowed),
)
