"""The gate: the one object the agent asks before any gated request takes effect.

The agent holds exactly one gate at a time. Before a policy is adopted it is a `DenyAllGate`
whose reason explains why (none delivered yet, or the digest did not match HOST_DATA). The
`InsecureAllowAllGate` exists only for development, must be asked for explicitly, and says so
in every decision and in status. `PolicyGate` (policy/enforcing.py, with the engine) is loaded
when first used: the agent starts, and answers the handshake, without the policy engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from guestagent.errors import ErrorCode
from guestagent.policy.decision import Decision

if TYPE_CHECKING:
    from guestagent.policy.enforcing import PolicyGate

__all__ = ["DenyAllGate", "Gate", "InsecureAllowAllGate", "PolicyGate"]


class Gate(Protocol):
    def decide(self, point: str, request: Mapping[str, Any]) -> Decision:
        """Rule on one request at an enforcement point. Pure: changes nothing."""
        ...

    def commit(self, decision: Decision) -> None:
        """Adopt `decision.next_state` after the effect succeeded."""
        ...

    def revert(self, decision: Decision) -> None:
        """Undo a committed decision whose effect then failed (see `PolicyState.revert`)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What status shows about the policy in force."""
        ...


class DenyAllGate:
    """Denies everything, with the reason no policy is in force."""

    def __init__(self, reason: str, *, code: ErrorCode = ErrorCode.POLICY_NOT_ADOPTED) -> None:
        self.reason = reason
        self.code = code

    def decide(self, point: str, request: Mapping[str, Any]) -> Decision:
        return Decision(False, point, "no_policy", self.reason, code=self.code)

    def commit(self, decision: Decision) -> None:
        raise AssertionError("a deny-all gate never allows, so there is nothing to commit")

    def revert(self, decision: Decision) -> None:
        raise AssertionError("a deny-all gate never allows, so there is nothing to revert")

    def describe(self) -> dict[str, Any]:
        state = "mismatch" if self.code is ErrorCode.POLICY_MISMATCH else "none"
        return {"state": state, "reason": self.reason}


class InsecureAllowAllGate:
    """Development only: allows everything. Never chosen without an explicit flag."""

    def decide(self, point: str, request: Mapping[str, Any]) -> Decision:
        # Development only: stdio flows so that a developer sees the workload's output.
        return Decision(
            True,
            point,
            "insecure_allow_all",
            "INSECURE development mode",
            data={"allow_stdio": True},
        )

    def commit(self, decision: Decision) -> None:
        return None

    def revert(self, decision: Decision) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"state": "insecure", "reason": "INSECURE development mode: no policy enforced"}


def __getattr__(name: str) -> Any:
    if name == "PolicyGate":
        from guestagent.policy.enforcing import PolicyGate

        return PolicyGate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
