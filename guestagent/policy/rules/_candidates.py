"""Running per-candidate checks and turning the outcome into one decision.

Each check returns None (passes) or a failure dict with a `why` sentence. A candidate's
first failing check is its failure; the denial reports the candidates that got furthest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.rules._common import deny

__all__ = ["Check", "Checks", "Ranked", "deny_candidates", "first_failure", "same_data"]

Check = tuple[str, Callable[[Container, Mapping[str, Any]], dict[str, Any] | None]]


# The checks to run, and each one's (rank, field) for naming a failure.
Ranked = tuple[tuple[Callable[..., dict[str, Any] | None], ...], dict[Any, tuple[int, str]]]


def _ranked(checks: Sequence[Check], skip: frozenset[str]) -> Ranked:
    kept = [(rank, name, fn) for rank, (name, fn) in enumerate(checks) if name not in skip]
    return tuple(fn for _, _, fn in kept), {fn: (rank, name) for rank, name, fn in kept}


class Checks:
    """A point's one list of checks, in rank order, arranged once at import.

    `absent` maps fields to the value that makes their check pass for every policy
    container (tests/policy/test_checks.py proves each). A request in which all of them
    hold that value runs the other checks only: the same list less checks that cannot fail.
    The request's input check has made every field its exact type, so one tuple comparison
    tells absence (`[] == []`, `None == None`; no 0 == False or 0 == None confusion).
    """

    def __init__(self, checks: Sequence[Check], absent: Mapping[str, Any] | None = None) -> None:
        self.checks = tuple(checks)
        self.absent = dict(absent or {})
        names = [name for name, _ in self.checks]
        assert len(set(names)) == len(names) and set(self.absent) <= set(names)
        self.all = _ranked(self.checks, frozenset())
        self.core = _ranked(self.checks, frozenset(self.absent))
        keys = tuple(self.absent)
        self._held = itemgetter(*keys) if len(keys) > 1 else lambda req: (req[keys[0]],)
        self._values = tuple(self.absent.values())
        if not keys:
            self.core = self.all

    def __len__(self) -> int:
        return len(self.checks)

    def for_request(self, req: Mapping[str, Any]) -> Ranked:
        """The checks that can fail on `req`."""
        if self.absent and self._held(req) == self._values:
            return self.core
        return self.all


def first_failure(
    container: Container, req: Mapping[str, Any], checks: Ranked
) -> tuple[int, str, dict[str, Any]] | None:
    """(rank, field, failure) of the container's first failing check, or None."""
    fns, where = checks
    for check in fns:
        failure = check(container, req)
        if failure is not None:
            return (*where[check], failure)
    return None


def deny_candidates(
    point: str,
    policy: Policy,
    subject: str,
    failures: list[tuple[int, int, str, dict[str, Any]]],
) -> Decision:
    """Deny, naming the field where the furthest candidate failed, and each candidate's miss."""
    failures.sort(key=lambda f: -f[1])
    index, _, field, failure = failures[0]
    name = policy.containers[index].name
    others = len(failures) - 1
    reason = f"{subject}: {failure.pop('why')} (policy container {name!r}"
    reason += f", and {others} other candidate(s) also fail)" if others else ")"
    nearest = [{"container": name, "index": index, "field": field, **failure}]
    for idx, _, fld, fail in failures[1:4]:
        fail.pop("why", None)
        nearest.append(
            {"container": policy.containers[idx].name, "index": idx, "field": fld, **fail}
        )
    return deny(point, field, reason, candidates=nearest)


def same_data(datas: Sequence[Mapping[str, Any]]) -> bool:
    first = datas[0]
    return all(d == first for d in datas[1:])
