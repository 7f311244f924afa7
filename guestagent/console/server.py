"""The console's listeners: the agent's connection and dispatch machinery, its own table.

`ConsoleServer` stands in for the agent towards `server.connection.Connection` and
`server.dispatch.Dispatcher` (it has the attributes they read), so framing, handshake, flow
control and error replies are exactly the agent's. What differs is the operation table: only
`console_operations()`, all read-only and all gated. `ConsoleDispatcher` refuses at
construction any operation that is mutating or not gated at a `console_` point, and refuses
again at run time, so a mistake in the table cannot open a write path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guestagent import __version__
from guestagent.console.commands import console_operations
from guestagent.errors import AgentError, ErrorCode
from guestagent.protocol.messages import PROTOCOL_VERSION
from guestagent.server.connection import Connection
from guestagent.server.dispatch import Dispatcher
from guestagent.server.operation import Operation
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
CONSOLE_MAX_IN_FLIGHT = 8


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    max_frame: int = CONSOLE_MAX_FRAME
    max_in_flight: int = CONSOLE_MAX_IN_FLIGHT


class ConsoleDispatcher(Dispatcher):
    """A dispatcher that only ever holds read-only console operations."""

    def __init__(self, host: ConsoleServer, operations: Iterable[Operation]) -> None:
        operations = list(operations)
        for operation in operations:
            _check_read_only(operation)
        super().__init__(host, operations)  # type: ignore[arg-type]
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
        self.config = ConsoleConfig()
        self.dispatcher = ConsoleDispatcher(self, console_operations())
        self.connections: set[Connection] = set()
        self.listeners: list[Listener] = []
        self.shutting_down = False
        self.started_at = time.monotonic()
        self.connections_total = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- what Connection and Dispatcher read from their host -------------------------------
    def decide(
        self, point: str, facts: dict[str, Any], args: Mapping[str, Any] | None = None
    ) -> Decision:
        return self.view.decide(point, facts)  # a console input is `{}`: nothing more to trace

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def hello_result(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "agent": f"guestagent {__version__} debug console (read-only)",
            "ops": sorted(self.dispatcher.table),
            "max_frame": self.config.max_frame,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for uri in self.uris:
            listener = await listen(parse_uri(uri), self._connection)
            self.listeners.append(listener)
            log.info("debug console listening", extra={"uri": uri})

    def _connection(self) -> Connection:
        self.connections_total += 1
        return Connection(self)  # type: ignore[arg-type]

    async def stop(self) -> None:
        self.shutting_down = True
        for listener in self.listeners:
            await listener.close()
        self.listeners.clear()
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def counters(self) -> dict[str, Any]:
        return {
            "requests": self.dispatcher.requests,
            "connections": len(self.connections),
            "connections_total": self.connections_total,
        }
