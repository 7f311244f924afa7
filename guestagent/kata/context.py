"""What a Kata handler works with: the agent, the pod, and the native pipeline.

Every Kata RPC that changes or reveals guest state is carried out as one or more native
operations, each through the agent's dispatcher: the same argument schema, the same
`prepare -> gate.decide -> effect -> commit` pipeline and the same enforcement point as a
native request. The Kata layer adds no check of its own that the native one lacks, and skips
none.
"""

from __future__ import annotations

from typing import Any

from guestagent.kata.sandbox import Sandbox

__all__ = ["KataContext"]


class KataContext:
    """Shared by every Kata connection of one agent (one sandbox per guest, as in Kata)."""

    def __init__(self, agent: Any) -> None:
        # The agent (guestagent.server.agent.Agent), untyped here: the server imports this
        # package, so this package does not import the server (no import circle).
        self.agent = agent
        self.sandbox = Sandbox()

    async def native(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Run one native operation through the dispatcher and the policy gate."""
        dispatcher = self.agent.dispatcher
        operation = dispatcher.lookup(op)
        validated = dispatcher.validate(operation, args or {})
        return await dispatcher.run(operation, validated)
