"""The gate: the one object the agent asks before any gated request takes effect.

The agent holds exactly one gate at a time. Before a policy is adopted it is a `DenyAllGate`
whose reason explains why (none delivered yet, or the digest did not match HOST_DATA). The
`InsecureAllowAllGate` exists only for development, must be asked for explicitly, and says so
in every decision and in status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from guestagent.errors import ErrorCode, InvalidStateError
from guestagent.policy.decision import Decision
from guestagent.policy.document import Policy
from guestagent.policy.engine import decide
from guestagent.policy.log import DecisionLog
from guestagent.policy.state import EMPTY_STATE, PolicyState, Transition
from guestagent.policy.trace import TraceRecorder

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


class PolicyGate:
    """The gate for an adopted policy: the pure engine plus its current state.

    `decide` asks the engine against the current state (and records the decision, and the
    request when tracing); `commit` adopts the decision's next state only if the decision
    was made against the current state, so a stale decision cannot roll state back.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        digest: str = "",
        state: PolicyState = EMPTY_STATE,
        log_capacity: int = 1024,
        clock: Callable[[], float] | None = None,
        log_sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.policy = policy
        self.digest = digest
        self.log = DecisionLog(log_capacity)
        self.trace: TraceRecorder | None = None
        # A copy of its own, so decisions made by another gate are never taken as fresh.
        self._state = state.evolve()
        self._clock = clock
        # Decisions reach the agent's logs only where the policy allows runtime logging.
        self._sink = log_sink if policy.allow_runtime_logging else None

    @property
    def state(self) -> PolicyState:
        return self._state

    def decide(self, point: str, request: Mapping[str, Any]) -> Decision:
        if self.trace is not None:
            self.trace.record(point, request)
        decision = decide(self.policy, self._state, point, request)
        entry = self.log.record(decision, self._clock() if self._clock else None)
        if self._sink is not None:
            self._sink(entry)
        return decision

    def commit(self, decision: Decision) -> None:
        if not decision.allowed:
            raise InvalidStateError("a denied decision has nothing to commit", rule=decision.rule)
        transition = decision.next_state
        if not isinstance(transition, Transition):
            raise InvalidStateError("the decision was not made by this policy engine")
        if transition.after is transition.before:
            return  # a read-only decision: nothing to adopt
        if transition.before is not self._state:
            raise InvalidStateError(
                f"stale decision for {decision.point}: the state changed after it was made",
                rule=decision.rule,
            )
        self._state = transition.after

    def revert(self, decision: Decision) -> None:
        transition = decision.next_state
        if not isinstance(transition, Transition):
            raise InvalidStateError("the decision was not made by this policy engine")
        if transition.after is not transition.before:
            self._state = self._state.revert(transition.before, transition.after)

    def start_trace(self, capacity: int = 100_000) -> TraceRecorder:
        self.trace = TraceRecorder(capacity)
        return self.trace

    def stop_trace(self) -> TraceRecorder | None:
        trace, self.trace = self.trace, None
        return trace

    def describe(self) -> dict[str, Any]:
        return {
            "state": "enforcing",
            "digest": self.digest,
            "policy_version": self.policy.version,
            "containers": [c.name for c in self.policy.containers],
            "engine_state": self._state.summary(),
            "decisions": self.log.counters(),
            "tracing": self.trace is not None,
        }
