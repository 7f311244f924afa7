"""Matching one request field against one policy entry. Each returns None or a failure.

A failure is a small dict: what was asked and the nearest allowed values, for the denial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from guestagent.capabilities import ALL_CAPABILITIES, DEFAULT_UNPRIVILEGED_CAPABILITIES
from guestagent.policy.containers import (
    CAPABILITY_SETS,
    CapabilitySets,
    EnvMatcher,
    EnvRule,
    UserRule,
)

__all__ = [
    "DEFAULT_PRIVILEGED_CAPS",
    "DEFAULT_UNPRIVILEGED_CAPS",
    "Failure",
    "expected_caps",
    "granted_caps",
    "match_caps",
    "match_env",
    "match_user",
]

Failure = dict[str, Any]

DEFAULT_UNPRIVILEGED_CAPS = DEFAULT_UNPRIVILEGED_CAPABILITIES
DEFAULT_PRIVILEGED_CAPS = ALL_CAPABILITIES
_EMPTY: frozenset[str] = frozenset()
_UNPRIVILEGED = CapabilitySets(
    DEFAULT_UNPRIVILEGED_CAPS, DEFAULT_UNPRIVILEGED_CAPS, _EMPTY, DEFAULT_UNPRIVILEGED_CAPS, _EMPTY
)
_PRIVILEGED = CapabilitySets(
    DEFAULT_PRIVILEGED_CAPS,
    DEFAULT_PRIVILEGED_CAPS,
    DEFAULT_PRIVILEGED_CAPS,
    DEFAULT_PRIVILEGED_CAPS,
    _EMPTY,
)


def expected_caps(policy_caps: CapabilitySets | None, privileged: bool) -> CapabilitySets:
    """The policy's sets, or (when null) the default set for the privilege asked."""
    if policy_caps is not None:
        return policy_caps
    return _PRIVILEGED if privileged else _UNPRIVILEGED


def _nearest_env_rules(rules: Sequence[EnvRule], var: str) -> list[str]:
    """The rules for the same variable name, else the first few rules."""
    name = var.split("=", 1)[0] + "="
    same = [r.pattern for r in rules if r.pattern.startswith(name)]
    return same or [r.pattern for r in rules[:4]]


def match_env(
    matcher: EnvMatcher, env: Sequence[str], dropping: bool
) -> tuple[list[str] | None, Failure | None]:
    """Kept env, or the first unmatched variable / missing required rule."""
    allows = matcher.allows
    if matcher.allows_all(env):
        kept = list(env)
    elif dropping:
        kept = [var for var in env if allows(var)]
    else:
        var = next(v for v in env if not allows(v))  # the explanation: the first refused
        return None, {"asked": var, "allowed": _nearest_env_rules(matcher.rules, var)}
    missing = matcher.missing_required(kept)
    if missing is not None:
        return None, {"asked": "(absent)", "required_rule": missing.pattern}
    return kept, None


# The bounding list last found equal to each policy set: equality of the set and a list is
# a pure function of them (the input check made the names exact strings), so remembering
# it changes no decision. The key is the set's id; the value holds the set, so the id cannot
# be reused while the entry lives. Bounded: REMEMBERED_SETS entries (all dropped when full),
# lists of at most MAX_REMEMBERED_NAMES names.
REMEMBERED_SETS = 256
MAX_REMEMBERED_NAMES = 128
_bounding_lists: dict[int, tuple[frozenset[str], list[str]]] = {}


def granted_caps(
    expected: CapabilitySets, asked: Mapping[str, Sequence[str]]
) -> dict[str, list[str]] | None:
    """The sets to grant when every asked set equals the policy's, else None."""
    b, e, i, p, a = expected.sets
    bounding, effective, permitted = asked["bounding"], asked["effective"], asked["permitted"]
    inheritable, ambient = asked["inheritable"], asked["ambient"]
    # Effective and permitted are usually the bounding list again (equal lists, equal sets),
    # and the policy's the bounding set again (one object, CapabilitySets): then the one
    # comparison of bounding covers them. A bounding list equal to the one last found equal
    # to the set holds the same names: one list comparison, no set built.
    seen = _bounding_lists.get(id(b))
    if seen is None or seen[0] is not b or seen[1] != bounding:
        if b != frozenset(bounding):
            return None
        if len(bounding) <= MAX_REMEMBERED_NAMES:
            if len(_bounding_lists) >= REMEMBERED_SETS:
                _bounding_lists.clear()
            _bounding_lists[id(b)] = (b, list(bounding))  # a copy: the request's is not ours
    if not (
        ((e is b and effective == bounding) or e == frozenset(effective))
        and ((p is b and permitted == bounding) or p == frozenset(permitted))
        and (i == frozenset(inheritable) if inheritable or i else True)
        and (a == frozenset(ambient) if ambient or a else True)
    ):
        return None
    b, e, i, p, a = expected.sorted_sets  # == sorted(asked set): sorted at policy load
    return {
        "bounding": list(b),
        "effective": list(e),
        "inheritable": list(i),
        "permitted": list(p),
        "ambient": list(a),
    }


def _caps_difference(expected: CapabilitySets, asked: Mapping[str, Sequence[str]]) -> Failure:
    """Why granted_caps refused: the first set that differs (built only for a denial)."""
    for name, want in zip(CAPABILITY_SETS, expected.sets, strict=True):
        have = frozenset(asked[name])
        if have != want:
            return {
                "set": name,
                "asked_extra": sorted(have - want),
                "asked_missing": sorted(want - have),
                "allowed": sorted(want),
            }
    return {"set": "bounding", "asked_extra": [], "asked_missing": [], "allowed": []}


def match_caps(
    expected: CapabilitySets, asked: Mapping[str, Sequence[str]], dropping: bool
) -> tuple[dict[str, list[str]] | None, Failure | None]:
    """Each set equal to the policy's; with dropping, the extras are dropped instead."""
    granted = granted_caps(expected, asked)
    if granted is not None:
        return granted, None
    if dropping:
        sets = zip(CAPABILITY_SETS, expected.sets, strict=True)
        return {name: sorted(frozenset(asked[name]) & want) for name, want in sets}, None
    return None, _caps_difference(expected, asked)


def match_user(rule: UserRule, user: Mapping[str, Any]) -> Failure | None:
    uid, gid, gids = user["uid"], user["gid"], user["additional_gids"]
    if not rule.uid.allows(uid):
        return {"asked": {"uid": uid}, "allowed": {"uid": rule.uid.describe()}}
    if not rule.gid.allows(gid):
        return {"asked": {"gid": gid}, "allowed": {"gid": rule.gid.describe()}}
    if gids and not rule.additional_gids.issuperset(gids):
        extra = sorted(set(gids) - rule.additional_gids)
        return {"asked": {"additional_gids": extra}, "allowed": sorted(rule.additional_gids)}
    return None
