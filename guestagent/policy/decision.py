"""The result of asking the policy about one request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from guestagent.errors import ErrorCode, PolicyDenied

__all__ = ["Decision"]


@dataclass(frozen=True, slots=True)
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
