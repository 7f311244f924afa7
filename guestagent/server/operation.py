"""What an operation is: its name, its argument schema, where the policy rules on it, and
the effect that runs once the policy has allowed it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guestagent.protocol.schema import Schema

if TYPE_CHECKING:
    from guestagent.policy.decision import Decision
    from guestagent.server.agent import Agent

__all__ = ["Effect", "Operation", "Prepare"]

# effect(agent, args, decision) -> result; a plain function or a coroutine function.
Effect = Callable[["Agent", dict[str, Any], "Decision | None"], Any]
# prepare(agent, args) -> enforcement input; gathers facts with read-only I/O.
Prepare = Callable[["Agent", dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Operation:
    """One wire operation.

    `point` is the policy enforcement point that must allow the request; None marks the few
    operations that are never gated (ping, status: they reveal nothing the policy guards and
    change nothing). `prepare` turns the validated arguments into the enforcement input (by
    default the arguments themselves). `mutating` operations are serialised, so each decision
    is made against the state the previous effect committed.
    """

    name: str
    effect: Effect
    args: Schema = field(default_factory=dict)
    point: str | None = None
    prepare: Prepare | None = None
    mutating: bool = False
    summary: str = ""

    @property
    def runs_inline(self) -> bool:
        """Ungated, synchronous operations answer without a task (the hot path: ping)."""
        return (
            self.point is None
            and self.prepare is None
            and not inspect.iscoroutinefunction(self.effect)
        )
