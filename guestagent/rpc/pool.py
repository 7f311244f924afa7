"""The connections of one listener: the cap on their number, their deadlines, their shutdown.

A pool makes each connection (`factory`, handed to `transport.listen`), admits it or not,
closes those that miss the handshake or frame deadline (one sweep a second, not a timer per
connection), and at shutdown answers every request in flight before closing them all.
`BufferBudget` is shared by a host's pools: the bytes of large partial frames all its
connections may hold at once. The connections are the native protocol's (`Connection`) by
default; another protocol's (the Kata agent's ttrpc) are made by `make` and need only what
`Pooled` lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from guestagent.errors import AgentError, ErrorCode
from guestagent.rpc.connection import Connection

if TYPE_CHECKING:
    from guestagent.rpc.host import ConnectionHost, ConnectionLimits
    from guestagent.rpc.requests import RequestTasks

__all__ = ["BufferBudget", "ConnectionPool", "Pooled"]

log = logging.getLogger("guestagent.connection")
SWEEP_SECONDS = 1.0
FLUSH_SECONDS = 2.0  # at shutdown, how long replies may take to leave before the close


class Pooled(Protocol):
    """What a pool needs from its connections."""

    handshaken: bool  # past the handshake (the native hello; ttrpc: a first valid request)
    requests: RequestTasks

    def refuse(self, error: AgentError) -> None:
        """Tell the peer why (if the protocol can say it), then close."""
        ...

    def check_deadlines(self, now: float) -> None: ...

    def budget_freed(self) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class BufferBudget:
    """Bytes reserved for partial frames larger than `small_frame`, across connections."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._waiting: dict[Pooled, None] = {}

    def reserve(self, connection: Pooled, size: int) -> bool:
        if self.used + size > self.total and self.used:
            self._waiting[connection] = None
            return False
        self.used += size  # one frame larger than the whole budget may still come alone
        return True

    def release(self, connection: Pooled, size: int) -> None:
        self.used -= size
        self._waiting.pop(connection, None)
        if self._waiting and self.used < self.total:
            # Each waiter retries once; those that still do not fit queue up again.
            waiting, self._waiting = list(self._waiting), {}
            for waiter in waiting:
                waiter.budget_freed()

    def forget(self, connection: Pooled) -> None:
        self._waiting.pop(connection, None)


class ConnectionPool:
    def __init__(
        self,
        host: ConnectionHost,
        name: str,
        budget: BufferBudget,
        limits: ConnectionLimits,
        make: Callable[[ConnectionPool], Pooled] | None = None,
    ) -> None:
        self.host = host
        self._make = make
        self.name = name
        self.budget = budget
        self.limits = limits
        self.connections: dict[Pooled, None] = {}  # oldest first
        self.opened_total = 0
        self.refused_total = 0
        # Every connection's requests until its supervisor ends: after the host has gone,
        # mutations still run, and shutdown must stop them too.
        self._supervisors: dict[asyncio.Task[None], RequestTasks] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self.connections)

    def factory(self) -> Pooled:
        return Connection(self.host, self) if self._make is None else self._make(self)

    # -- admission ---------------------------------------------------------------------------
    def admit(self, connection: Pooled) -> bool:
        """Called as a connection is made: room is made for it, or it is refused."""
        self.opened_total += 1
        if len(self.connections) >= self.limits.max_connections:
            idle = next((c for c in self.connections if not c.handshaken), None)
            if idle is None:
                self.refused_total += 1
                connection.refuse(_full(self.limits.max_connections))
                return False
            idle.refuse(_full(self.limits.max_connections, evicted=True))
        self.connections[connection] = None
        supervisor = asyncio.get_running_loop().create_task(connection.requests.supervise())
        self._supervisors[supervisor] = connection.requests
        supervisor.add_done_callback(self._supervisors.pop)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

    def closed(self, connection: Pooled) -> None:
        self.connections.pop(connection, None)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            for connection in list(self.connections):
                connection.check_deadlines(now)

    # -- shutdown ----------------------------------------------------------------------------
    async def stop(self, grace: float) -> None:
        """Answer every request in flight, then close every connection.

        Reads (long polls included) are answered `agent.shutting_down` at once; mutations
        get `grace` seconds to finish, then are answered the same way.
        """
        everyone = list(self._supervisors.values())
        for requests in everyone:
            requests.stop(reads_only=True)
        deadline = time.monotonic() + grace
        for requests in everyone:
            await requests.wait(max(0.0, deadline - time.monotonic()))
        for requests in everyone:
            requests.stop(reads_only=False)
        for requests in everyone:
            await requests.wait(1.0)
        for connection in list(self.connections):
            connection.close()
        flushed = time.monotonic() + FLUSH_SECONDS
        while self.connections and time.monotonic() < flushed:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()  # a host that does not read its replies does not hold us up
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._supervisors:
            await asyncio.wait(list(self._supervisors), timeout=1.0)


def _full(limit: int, evicted: bool = False) -> AgentError:
    if evicted:
        message = f"closed to make room: {limit} connections open and this one never said hello"
    else:
        message = f"too many connections: {limit} open, all of them past hello"
    return AgentError(message, code=ErrorCode.TOO_MANY_CONNECTIONS, details={"limit": limit})
