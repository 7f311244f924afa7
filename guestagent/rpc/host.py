"""What a connection needs from the service it belongs to, and the limits it holds to.

A service (the agent, the debug console, any further listener) satisfies `ConnectionHost`
and hands each listener a `ConnectionPool` built from it; the pool makes the connections.
Nothing in `rpc` knows which service it serves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from guestagent.protocol.framing import DEFAULT_MAX_FRAME
from guestagent.records import record

if TYPE_CHECKING:
    from guestagent.rpc.dispatch import Dispatcher

__all__ = ["DEFAULT_LIMITS", "ConnectionHost", "ConnectionLimits"]


@record
class ConnectionLimits:
    """Every bound a host's connections enforce (docs/protocol.md, "Limits").

    max_frame:          largest frame accepted or sent.
    max_in_flight:      requests running per connection; past it the connection is not read
                        (frames already read wait, in order) until one finishes.
    max_connections:    open connections per listener; a new one first evicts the oldest
                        that has not completed hello, else it is refused.
    handshake_timeout:  seconds a connection has to complete hello.
    frame_timeout:      seconds a frame may take to arrive once its first byte has, while the
                        agent is reading (slowloris).
    buffer_budget:      bytes of partial frames larger than `small_frame` that all the
                        host's connections may hold at once; a connection that needs more
                        stops being read until some is freed.
    small_frame:        partial frames up to this size need no share of the budget.
    """

    max_frame: int = DEFAULT_MAX_FRAME
    max_in_flight: int = 128
    max_connections: int = 1024
    handshake_timeout: float = 10.0
    frame_timeout: float = 30.0
    buffer_budget: int = 32 << 20
    small_frame: int = 64 << 10


class ConnectionHost(Protocol):
    """The service behind a connection: its limits, its operations, its hello."""

    @property
    def limits(self) -> ConnectionLimits: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    @property
    def shutting_down(self) -> bool: ...

    def hello_result(self) -> dict[str, Any]:
        """The `hello` reply: protocol, agent, ops, max_frame."""
        ...


DEFAULT_LIMITS = ConnectionLimits()
