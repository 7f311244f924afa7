"""Mount matching: every requested mount maps to a distinct policy mount or default mount.

The default mounts every OCI runtime adds (proc, /dev, devpts, shm, mqueue, sysfs, cgroup)
are allowed without listing them, but only with their hardening options: each required
option (nosuid, noexec, nodev, ro) must be present and its opposite (suid, exec, dev, rw)
absent. sysfs and cgroup may be read-write only for a privileged container the policy
allows to be elevated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from guestagent.policy.containers import MountRule

__all__ = ["DEFAULT_MOUNTS", "DefaultMount", "match_mounts"]

_OPPOSITE = {"nosuid": "suid", "noexec": "exec", "nodev": "dev", "ro": "rw"}


@dataclass(frozen=True, slots=True)
class DefaultMount:
    type: frozenset[str]
    sources: frozenset[str]
    destination: str
    required: frozenset[str]

    def allows(self, mount: Mapping[str, Any], elevated: bool) -> bool:
        if mount["destination"] != self.destination or mount["type"] not in self.type:
            return False
        if mount["source"] not in self.sources:
            return False
        options = set(mount["options"])
        required = self.required - {"ro"} if elevated else self.required
        return required <= options and not any(_OPPOSITE[o] in options for o in required)


def _default(kind: str, source: str, dest: str, required: str) -> DefaultMount:
    return DefaultMount(
        frozenset(kind.split("|")),
        frozenset(source.split("|")),
        dest,
        frozenset(required.split(",")),
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

_DEFAULT_BY_DESTINATION = {d.destination: k for k, d in enumerate(DEFAULT_MOUNTS)}


def _rule_allows(rule: MountRule, mount: Mapping[str, Any], options: tuple[str, ...]) -> bool:
    return (
        rule.destination == mount["destination"]
        and rule.type == mount["type"]
        and rule.options == options
        and rule.source.matches(mount["source"])
    )


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


def match_mounts(
    rules: Sequence[MountRule], mounts: Sequence[Mapping[str, Any]], elevated: bool
) -> dict[str, Any] | None:
    """None if every mount gets its own rule; else a failure naming the first misfit."""
    edges: list[list[int]] = []
    n = len(rules)
    for i, mount in enumerate(mounts):
        options = tuple(sorted(mount["options"]))
        row = [j for j, rule in enumerate(rules) if _rule_allows(rule, mount, options)]
        k = _DEFAULT_BY_DESTINATION.get(mount["destination"])
        if k is not None and DEFAULT_MOUNTS[k].allows(mount, elevated):
            row.append(n + k)
        if not row:
            near = [_describe(r) for r in rules if r.destination == mount["destination"]]
            return {
                "asked": dict(mount),
                "index": i,
                "allowed": near or [_describe(r) for r in rules[:4]],
            }
        edges.append(row)
    firsts = {row[0] for row in edges}
    if len(firsts) == len(edges):
        return None  # every mount's first fit is its own: no contest to resolve
    unmatched = _assign(edges, n + len(DEFAULT_MOUNTS))
    if unmatched is not None:
        return {
            "asked": dict(mounts[unmatched]),
            "index": unmatched,
            "allowed": "each policy mount may be used once; all that fit are taken",
        }
    return None
