"""Running per-candidate checks and turning the outcome into one decision.

Each check returns None (passes) or a failure dict with a `why` sentence. A candidate's
first failing check is its failure; the denial reports the candidates that got furthest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guestagent.policy.containers import Container
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.rules._common import deny

__all__ = ["Check", "deny_candidates", "first_failure", "same_data"]

Check = tuple[str, Callable[[Container, Mapping[str, Any]], dict[str, Any] | None]]


def first_failure(
    container: Container, req: Mapping[str, Any], checks: Sequence[Check]
) -> tuple[int, str, dict[str, Any]] | None:
    for rank, (name, check) in enumerate(checks):
        failure = check(container, req)
        if failure is not None:
            return rank, name, failure
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
