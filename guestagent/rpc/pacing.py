"""When a pooled connection reads: one implementation for every protocol (native, Kata).

A connection stops reading for named reasons (`_paused`): its replies wait for the host to
read them (`writing`), `max_in_flight` requests run (`in_flight`), or the pool's buffer
budget cannot hold the large frame in progress (`budget`); it reads again once no reason is
left. The frame deadline counts only time the connection was reading (`_partial_since`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from guestagent.rpc.host import ConnectionLimits
    from guestagent.rpc.pool import ConnectionPool

__all__ = ["ReadPacing"]


class _Framer(Protocol):
    @property
    def pending(self) -> int: ...

    @property
    def expected(self) -> int: ...


class ReadPacing:
    """Mixed into a connection (an `asyncio.Protocol` in a `ConnectionPool`)."""

    transport: asyncio.Transport | None
    pool: ConnectionPool
    limits: ConnectionLimits
    framer: _Framer

    def _init_pacing(self) -> None:
        self._paused: set[str] = set()
        self._reading_paused = False
        self._reserved = 0  # share of the buffer budget held by the frame in progress
        self._partial_since = 0.0  # when the frame in progress started arriving (0: none)

    def _pause(self, why: str) -> None:
        self._paused.add(why)
        if not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
            self._partial_since = 0.0  # a frame we stopped reading is not the host's delay

    def _resume(self, why: str) -> None:
        self._paused.discard(why)
        transport = self.transport
        if self._paused or not self._reading_paused or transport is None:
            return
        if not transport.is_closing():
            transport.resume_reading()
        self._reading_paused = False
        if self.framer.pending:
            self._partial_since = time.monotonic()

    def _track_partial(self) -> None:
        """After a read: start the frame clock and reserve budget for a large frame."""
        if self.framer.pending:
            self._partial_since = self._partial_since or time.monotonic()
            expected = self.framer.expected
            self._set_reservation(expected if expected > self.limits.small_frame else 0)
        elif self._reserved:
            self._set_reservation(0)

    def _set_reservation(self, size: int) -> None:
        if size == self._reserved:
            return
        budget = self.pool.budget
        if self._reserved:
            held, self._reserved = self._reserved, 0
            budget.release(self, held)  # type: ignore[arg-type]
        if size:
            if budget.reserve(self, size):  # type: ignore[arg-type]
                self._reserved = size
                self._resume("budget")
            else:
                self._pause("budget")

    def budget_freed(self) -> None:
        """The budget has room again: retry the reservation of the frame in progress."""
        expected = self.framer.expected
        if self.transport is not None and expected > self.limits.small_frame:
            self._set_reservation(expected)

    def _frame_overdue(self, now: float) -> bool:
        return bool(
            self._partial_since
            and not self._reading_paused
            and now - self._partial_since > self.limits.frame_timeout
        )
