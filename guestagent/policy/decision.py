"""The result of asking the policy about one request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from guestagent.errors import ErrorCode, PolicyDenied
from guestagent.records import field, record

__all__ = ["Decision"]

_set_slot = object.__setattr__


@record(slots=False)  # __init__ writes the instance dict in one step
class Decision:
    """Allow or deny, the rule that decided, why, and what the effect must use.

    `data` carries sanitised values the effect must apply (the environment to keep, the
    capabilities to grant, whether stdio may be forwarded): decisions return data, not a bool.
    `next_state` is the engine state to commit once the effect has succeeded; a denied
    decision has none, so a denial can never change state.
    """

    allowed: bool
    point: str
    rule: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    next_state: Any = None
    code: ErrorCode = ErrorCode.POLICY_DENIED

    def __init__(
        self,
        allowed: bool,
        point: str,
        rule: str,
        reason: str,
        details: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        next_state: Any = None,
        code: ErrorCode = ErrorCode.POLICY_DENIED,
    ) -> None:
        # Hand-written (record keeps it): a decision is built per request, and one
        # write of the instance dict costs a fraction of the generated frozen __init__.
        fields = {
            "allowed": allowed,
            "point": point,
            "rule": rule,
            "reason": reason,
            "details": {} if details is None else details,
            "data": {} if data is None else data,
            "next_state": next_state,
            "code": code,
        }
        _set_slot(self, "__dict__", fields)

    def raise_if_denied(self) -> None:
        if not self.allowed:
            raise PolicyDenied(
                f"{self.point}: {self.reason}",
                code=self.code,
                rule=self.rule,
                details=dict(self.details),
            )

    def summary(self) -> dict[str, Any]:
        """A loggable record of the decision (no state)."""
        return {
            "allowed": self.allowed,
            "point": self.point,
            "rule": self.rule,
            "reason": self.reason,
        }
