"""Mount matching: every requested mount maps to a distinct policy mount or default mount.

The default mounts every OCI runtime adds (proc, /dev, devpts, shm, mqueue, sysfs, cgroup)
are allowed without listing them, but only with their hardening options: each required
option (nosuid, noexec, nodev, ro) must be present and its opposite (suid, exec, dev, rw)
absent. sysfs and cgroup may be read-write only for a privileged container the policy
allows to be elevated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from guestagent.policy.containers import MountRule
from guestagent.records import record

__all__ = ["DEFAULT_MOUNTS", "DefaultMount", "match_mounts"]

_OPPOSITE = {"nosuid": "suid", "noexec": "exec", "nodev": "dev", "ro": "rw"}


@record
class DefaultMount:
    type: frozenset[str]
    sources: frozenset[str]
    destination: str
    required: frozenset[str]
    # (required options, forbidden opposites), for an unelevated and an elevated container.
    plain: tuple[frozenset[str], frozenset[str]]
    elevated: tuple[frozenset[str], frozenset[str]]


def _options_rule(required: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    return required, frozenset(_OPPOSITE[o] for o in required)


def _default(kind: str, source: str, dest: str, required: str) -> DefaultMount:
    options = frozenset(required.split(","))
    return DefaultMount(
        frozenset(kind.split("|")),
        frozenset(source.split("|")),
        dest,
        options,
        _options_rule(options),
        _options_rule(options - {"ro"}),
    )


DEFAULT_MOUNTS = (
    _default("proc", "proc", "/proc", "nosuid,noexec,nodev"),
    _default("tmpfs", "tmpfs", "/dev", "nosuid"),
    _default("devpts", "devpts", "/dev/pts", "nosuid,noexec"),
    _default("tmpfs", "shm|tmpfs", "/dev/shm", "nosuid,noexec,nodev"),
    _default("mqueue", "mqueue", "/dev/mqueue", "nosuid,noexec,nodev"),
    _default("sysfs", "sysfs", "/sys", "nosuid,noexec,nodev,ro"),
    _default("cgroup|cgroup2", "cgroup|cgroup2", "/sys/fs/cgroup", "nosuid,noexec,nodev,ro"),
)

_FIELDS = itemgetter("destination", "type", "source", "options")
# (destination, type, source) -> (slot among the defaults, plain rule, elevated rule): one
# lookup for match_mounts, which runs per request.
_DEFAULT_BY_KEY = {
    (d.destination, kind, source): (k, d.plain, d.elevated)
    for k, d in enumerate(DEFAULT_MOUNTS)
    for kind in d.type
    for source in d.sources
}


def _fits(
    rules: Sequence[tuple[int, MountRule]], kind: str, source: str, options: list[str]
) -> list[int]:
    """Indices of the policy mounts (all with the mount's destination) that fit it."""
    ordered = tuple(sorted(options))
    fits = []
    for j, rule in rules:  # a loop, not a comprehension: cheaper for the usual one rule
        if rule.type == kind and rule.options == ordered and rule.source.matches(source):
            fits.append(j)
    return fits


def _describe(rule: MountRule) -> dict[str, Any]:
    return {
        "type": rule.type,
        "source": rule.source.source,
        "destination": rule.destination,
        "options": list(rule.options),
    }


def _assign(edges: list[list[int]], slots: int) -> int | None:
    """Kuhn's matching; returns the index of an unmatched request, or None if all match."""
    owner = [-1] * slots

    def place(i: int, seen: list[bool]) -> bool:
        for j in edges[i]:
            if not seen[j]:
                seen[j] = True
                if owner[j] < 0 or place(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(len(edges)):
        if not place(i, [False] * slots):
            return i
    return None


def _misfit(
    rules: Sequence[MountRule],
    mount: Mapping[str, Any],
    i: int,
    default: tuple[int, Any, Any] | None,
    elevated: bool,
) -> dict[str, Any]:
    """The failure of a mount no policy or default mount fits (built only for a denial)."""
    near = [_describe(r) for r in rules if r.destination == mount["destination"]]
    failure: dict[str, Any] = {"asked": dict(mount), "mount_index": i}
    if default is not None:  # a default mount: say which options it lacks or has
        required, forbidden = default[2] if elevated else default[1]
        failure["default_mount_requires"] = sorted(required)
        failure["default_mount_forbids"] = sorted(forbidden)
        failure["missing_options"] = sorted(required - set(mount["options"]))
        failure["forbidden_options"] = sorted(forbidden & set(mount["options"]))
    failure["allowed"] = near or [_describe(r) for r in rules[:4]]
    if not failure["allowed"] and default is None:
        failure["allowed"] = "no policy mount or default mount has this destination"
    return failure


# The mount list last found allowed, per policy container (and elevation): a verdict is a
# pure function of the container's rules, `elevated` and the mounts (every field, options
# in order), so remembering it changes no decision, and a container's mounts come back on
# every restart. The key holds the ids of the container's rules and table; the value holds
# the objects, so neither id can be reused while the entry lives, and a copy of the list.
# Bounded: at most REMEMBERED_LISTS entries (all dropped when full), each of a list of at
# most REMEMBERED_CHARS characters.
REMEMBERED_LISTS = 256
REMEMBERED_CHARS = 4096
_allowed_lists: dict[tuple[int, int, bool], tuple[Any, Any, list[Any]]] = {}


def match_mounts(
    rules: Sequence[MountRule],
    by_destination: Mapping[str, Sequence[tuple[int, MountRule]]],
    mounts: Sequence[Mapping[str, Any]],
    elevated: bool,
) -> dict[str, Any] | None:
    """None if every mount gets its own rule; else a failure naming the first misfit.

    `by_destination` indexes `rules` by destination (Container.mounts_by_destination).
    """
    key = (id(rules), id(by_destination), elevated)
    asked = [*map(_FIELDS, mounts)]  # (destination, type, source, options) of each
    known = _allowed_lists.get(key)
    if known is not None and known[0] is rules and known[1] is by_destination and known[2] == asked:
        return None
    failure = _match(rules, by_destination, mounts, elevated)
    if failure is None and _chars(asked) <= REMEMBERED_CHARS:
        if len(_allowed_lists) >= REMEMBERED_LISTS:
            _allowed_lists.clear()
        # a copy: the request's option lists are not ours to keep
        _allowed_lists[key] = (rules, by_destination, [(*m[:3], list(m[3])) for m in asked])
    return failure


def _chars(asked: list[Any]) -> int:
    return sum(len(d) + len(t) + len(s) + sum(map(len, o)) for d, t, s, o in asked)


def _match(
    rules: Sequence[MountRule],
    by_destination: Mapping[str, Sequence[tuple[int, MountRule]]],
    mounts: Sequence[Mapping[str, Any]],
    elevated: bool,
) -> dict[str, Any] | None:
    """match_mounts, worked out."""
    edges: list[list[int]] = []
    firsts: set[int] = set()
    n = len(rules)
    slot = 2 if elevated else 1  # of a _DEFAULT_BY_KEY entry: the rule that applies
    for i, mount in enumerate(mounts):
        destination, kind, source, options = _FIELDS(mount)
        here = by_destination.get(destination)
        row = _fits(here, kind, source, options) if here else []
        default = _DEFAULT_BY_KEY.get((destination, kind, source))
        if default is not None:
            required, forbidden = default[slot]
            if required.issubset(options) and forbidden.isdisjoint(options):
                row.append(n + default[0])
        if not row:
            return _misfit(rules, mount, i, default, elevated)
        edges.append(row)
        firsts.add(row[0])
    if len(firsts) == len(edges):
        return None  # every mount's first fit is its own: no contest to resolve
    unmatched = _assign(edges, n + len(DEFAULT_MOUNTS))
    if unmatched is not None:
        return {
            "asked": dict(mounts[unmatched]),
            "mount_index": unmatched,
            "allowed": "each policy mount may be used once; all that fit are taken",
        }
    return None
