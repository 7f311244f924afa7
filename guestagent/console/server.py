"""The console's listeners: the agent's connection and dispatch machinery, its own table.

`ConsoleServer` is a `rpc.host.ConnectionHost` (and a `rpc.dispatch.PolicyHost`), so framing,
handshake, limits, flow control and error replies are exactly the agent's. What differs is
the operation table: only `console_operations()`, all read-only and all gated.
`ConsoleDispatcher` refuses at construction any operation that is mutating or not gated at a
`console_` point, and refuses again at run time, so a mistake in the table cannot open a write path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from guestagent import __version__
from guestagent.console.commands import console_operations
from guestagent.errors import AgentError, ErrorCode
from guestagent.protocol.messages import PROTOCOL_VERSION
from guestagent.rpc.connection import Connection
from guestagent.rpc.dispatch import Dispatcher
from guestagent.rpc.host import ConnectionLimits
from guestagent.rpc.operation import Operation
from guestagent.rpc.pool import BufferBudget, ConnectionPool
from guestagent.transport.listen import Listener, listen
from guestagent.transport.uri import parse_uri

if TYPE_CHECKING:
    from guestagent.console.view import AgentView
    from guestagent.policy.decision import Decision

__all__ = ["DEFAULT_CONSOLE_URI", "ConsoleDispatcher", "ConsoleServer"]

log = logging.getLogger("guestagent.console")

# The agent's own port is vsock 1024; the console listens beside it.
DEFAULT_CONSOLE_URI = "vsock://any:1025"
CONSOLE_MAX_FRAME = 1 << 20  # requests are tiny; replies (process lists) stay well under
CONSOLE_LIMITS = ConnectionLimits(
    max_frame=CONSOLE_MAX_FRAME,
    max_in_flight=8,
    max_connections=16,
    buffer_budget=4 * CONSOLE_MAX_FRAME,
)


class ConsoleDispatcher(Dispatcher):
    """A dispatcher that only ever holds read-only console operations."""

    def __init__(self, host: ConsoleServer, operations: Iterable[Operation]) -> None:
        operations = list(operations)
        for operation in operations:
            _check_read_only(operation)
        super().__init__(host, operations)
        self.requests = 0

    def lookup(self, name: str) -> Operation:
        self.requests += 1  # every admitted request, known or not
        return super().lookup(name)

    async def run(self, operation: Operation, args: dict[str, Any]) -> Any:
        _check_read_only(operation)
        return await super().run(operation, args)


def _check_read_only(operation: Operation) -> None:
    if operation.mutating or not (operation.point or "").startswith("console_"):
        raise AgentError(
            f"console operation {operation.name!r} must be read-only and gated at a console_ point",
            code=ErrorCode.INTERNAL,
        )


class ConsoleServer:
    """Serves the console commands over `listen` URIs, reading the agent through `view`."""

    def __init__(self, view: AgentView, listen: Sequence[str] = (DEFAULT_CONSOLE_URI,)) -> None:
        self.view = view
        self.uris = list(listen)
        self.limits = CONSOLE_LIMITS
        self.dispatcher = ConsoleDispatcher(self, console_operations())
        self.pools: list[ConnectionPool] = []
        self.listeners: list[Listener] = []
        self.shutting_down = False
        self.started_at = time.monotonic()
        self._budget = BufferBudget(self.limits.buffer_budget)

    # -- what connections and the dispatcher read from their host ---------------------------
    def decide(
        self, point: str, facts: Mapping[str, Any], args: Mapping[str, Any] | None = None
    ) -> Decision:
        return self.view.decide(point, facts)  # a console input is `{}`: nothing more to trace

    def hello_result(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "agent": f"guestagent {__version__} debug console (read-only)",
            "ops": sorted(self.dispatcher.table),
            "max_frame": self.limits.max_frame,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for uri in self.uris:
            pool = ConnectionPool(self, uri, self._budget, self.limits)
            listener = await listen(parse_uri(uri), pool.factory)
            self.pools.append(pool)
            self.listeners.append(listener)
            log.info("debug console listening", extra={"uri": uri})

    @property
    def connections(self) -> list[Connection]:
        return [connection for pool in self.pools for connection in pool.connections]

    @property
    def connections_total(self) -> int:
        return sum(pool.opened_total for pool in self.pools)

    async def stop(self) -> None:
        self.shutting_down = True
        for listener in self.listeners:
            await listener.close()
        self.listeners.clear()
        for pool in self.pools:
            await pool.stop(grace=0.0)  # reads only: answered at once

    def counters(self) -> dict[str, Any]:
        return {
            "requests": self.dispatcher.requests,
            "connections": len(self.connections),
            "connections_total": self.connections_total,
        }
