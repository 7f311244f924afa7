"""What a Kata handler works with: the agent, the pod, and the native pipeline.

Every Kata RPC that changes or reveals guest state is carried out as one or more native
operations, each through the agent's dispatcher: the same argument schema, the same
`prepare -> gate.decide -> effect -> commit` pipeline and the same enforcement point as a
native request. The Kata layer adds no check of its own that the native one lacks, and skips
none.
"""

from __future__ import annotations

import asyncio
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
        self.connections: set[Any] = set()  # the KataConnections that are open

    def admit(self, connection: Any) -> bool:
        """The native listeners' cap on connections applies to the Kata listeners too."""
        if len(self.connections) >= self.agent.config.max_connections:
            return False
        self.connections.add(connection)
        return True

    async def stop(self, grace: float) -> None:
        """At shutdown: mutations in flight get `grace` seconds, then every connection closes
        (reads in flight are cancelled with their connection)."""
        mutating = [
            task
            for connection in self.connections
            for stream_id, task in connection.in_flight.items()
            if stream_id in connection.mutating_ids
        ]
        if mutating:
            await asyncio.wait(mutating, timeout=grace)
        for connection in list(self.connections):
            connection.close()

    async def native(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """Run one native operation through the dispatcher and the policy gate."""
        dispatcher = self.agent.dispatcher
        operation = dispatcher.lookup(op)
        validated = dispatcher.validate(operation, args or {})
        return await dispatcher.run(operation, validated)
