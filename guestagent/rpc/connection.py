"""One host connection: frames in, admission, and when to read.

Bad input is answered, never fatal to the agent: a malformed frame gets an error reply and
the connection carries on; only an oversized length (the stream cannot be resynchronised), a
missed deadline or the connection cap closes it, after one error reply. Replies may leave
out of order; each carries its request's id.

The connection stops reading (and says why in `_paused`) while its replies wait for the host
to read them (`writing`), while `max_in_flight` requests run (`in_flight`: frames already
read wait here, in order, and are admitted as requests finish), or while the host's buffer
budget cannot hold the large frame in progress (`budget`). Reply writing is `ReplyWriter`'s
job; the request tasks and their TaskGroup are `RequestTasks`'.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode, ProtocolError
from guestagent.protocol.framing import Framer, FrameTooLargeError
from guestagent.protocol.messages import PROTOCOL_VERSION, Request, decode_request
from guestagent.rpc.pacing import ReadPacing
from guestagent.rpc.replies import ReplyWriter
from guestagent.rpc.requests import RequestTasks

if TYPE_CHECKING:
    from guestagent.rpc.host import ConnectionHost
    from guestagent.rpc.operation import Operation
    from guestagent.rpc.pool import ConnectionPool

__all__ = ["Connection"]

log = logging.getLogger("guestagent.connection")


class Connection(ReadPacing, asyncio.Protocol):
    def __init__(self, host: ConnectionHost, pool: ConnectionPool) -> None:
        self.host = host
        self.pool = pool
        self.limits = pool.limits
        self.framer = Framer(self.limits.max_frame)
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.peer = "?"
        self.opened_at = time.monotonic()
        self.replies = ReplyWriter(self.limits.max_frame, self._writing_paused)
        self.requests = RequestTasks(self._request_done)
        self._in_flight = self.requests.in_flight  # read per request: no method call
        self._max_in_flight = self.limits.max_in_flight
        self._backlog: deque[bytes] = deque()  # frames read, waiting for an in-flight slot
        self._init_pacing()

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.replies.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername") or "local")
        self.pool.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.closed(self)
        self.requests.connection_lost()
        self._set_reservation(0)
        self.pool.budget.forget(self)
        self.replies.closed()
        self._backlog.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.framer.feed(data)
        except FrameTooLargeError as exc:
            self.replies.error(None, exc)
            log.warning("closing %s: %s", self.peer, exc.message)
            self.close()
            return
        if payloads:
            self._partial_since = 0.0
            if self._backlog:  # frames already wait: these queue behind them, in order
                self._backlog.extend(payloads)
                self._admit_backlog()
            elif len(payloads) == 1 and len(self._in_flight) < self._max_in_flight:
                self._handle(payloads[0])  # the usual case: one request per read
            else:
                self._handle_batch(payloads)
        if self.framer.pending or self._reserved:
            self._track_partial()

    def pause_writing(self) -> None:
        self.replies.pause()

    def resume_writing(self) -> None:
        self.replies.resume()

    # -- admission ---------------------------------------------------------------------------
    def _handle_batch(self, payloads: list[bytes]) -> None:
        """Several frames in one read: their inline replies leave in one write (one syscall).
        Frames past the in-flight cap wait in the backlog and reading stops."""
        in_flight, limit = self._in_flight, self._max_in_flight
        self.replies.begin_batch()
        try:
            for index, payload in enumerate(payloads):
                if len(in_flight) >= limit:
                    self._backlog.extend(payloads[index:])
                    self._pause("in_flight")
                    break
                self._handle(payload)
        finally:
            self.replies.end_batch()

    def _admit_backlog(self) -> None:
        """Handle waiting frames while in-flight slots last, as one batch."""
        backlog, in_flight, limit = self._backlog, self._in_flight, self._max_in_flight
        self.replies.begin_batch()
        try:
            while backlog and len(in_flight) < limit and self.transport is not None:
                self._handle(backlog.popleft())
        finally:
            self.replies.end_batch()
        if backlog:
            self._pause("in_flight")
        else:
            self._resume("in_flight")

    def _request_done(self, request_id: int) -> None:
        if self._backlog and self.transport is not None:
            self._admit_backlog()

    def _handle(self, payload: bytes) -> None:
        try:
            request = decode_request(payload)
        except ProtocolError as exc:
            self.replies.error(exc.request_id, exc)
            return
        dispatcher = self.host.dispatcher
        try:
            operation = self._admit(request)
            if operation is None:
                return
            args = dispatcher.validate(operation, request.args)
            if operation.runs_inline:
                self.replies.result(request.id, dispatcher.run_inline(operation, args))
                return
        except Exception as exc:
            self.replies.error(request.id, exc, request.op)
            return
        self.requests.start(request.id, self._run(request, operation, args), operation.mutating)

    def _admit(self, request: Request) -> Operation | None:
        """Protocol-level checks before dispatch. Returns None when hello was handled."""
        if request.op == "hello":
            self._hello(request)
            return None
        if not self.handshaken:
            raise AgentError(
                f"the connection must open with hello (protocol {PROTOCOL_VERSION}) before "
                f"{request.op[:64]!r}",
                code=ErrorCode.HANDSHAKE_REQUIRED,
            )
        if self.host.shutting_down:
            raise AgentError("the agent is shutting down", code=ErrorCode.SHUTTING_DOWN)
        if request.id in self.requests:
            raise AgentError(
                f"request id {request.id} is already in flight on this connection",
                code=ErrorCode.DUPLICATE_ID,
            )
        return self.host.dispatcher.lookup(request.op)

    def _hello(self, request: Request) -> None:
        version = request.args.get("protocol")
        unknown = sorted(set(request.args) - {"protocol", "client"})
        if unknown:
            error: AgentError = AgentError(
                f"unknown hello arguments: {unknown}", code=ErrorCode.UNKNOWN_FIELD
            )
        elif type(version) is not int or version != PROTOCOL_VERSION:
            error = AgentError(
                f"unsupported protocol version {version!r:.20}; this agent speaks "
                f"{PROTOCOL_VERSION}",
                code=ErrorCode.UNSUPPORTED_VERSION,
                details={"supported": [PROTOCOL_VERSION]},
            )
        elif self.handshaken:
            error = AgentError("hello was already completed", code=ErrorCode.INVALID_STATE)
        else:
            self.handshaken = True
            self.replies.result(request.id, self.host.hello_result())
            return
        self.replies.error(request.id, error)

    async def _run(self, request: Request, operation: Operation, args: dict[str, Any]) -> None:
        try:
            result = await self.host.dispatcher.run(operation, args)
        except asyncio.CancelledError:
            if not self.requests.stopping:
                raise  # the host went away: no one to answer
            self.replies.error(request.id, _shutting_down(request.op))
            return
        except Exception as exc:
            self.replies.error(request.id, exc, request.op)
            return
        try:
            await self.replies.wait_writable()
        except asyncio.CancelledError:
            if not self.requests.stopping:
                raise
        self.replies.result(request.id, result)

    # -- when to read ------------------------------------------------------------------------
    def _writing_paused(self, paused: bool) -> None:
        if paused:
            self._pause("writing")
        else:
            self._resume("writing")

    def check_deadlines(self, now: float) -> None:
        """The pool's sweep: hello and frames must arrive in time."""
        if not self.handshaken and now - self.opened_at > self.limits.handshake_timeout:
            self.refuse(
                AgentError(
                    f"no hello within {self.limits.handshake_timeout:g} s",
                    code=ErrorCode.HANDSHAKE_REQUIRED,
                )
            )
        elif self._frame_overdue(now):
            self.refuse(
                ProtocolError(
                    f"a frame did not arrive within {self.limits.frame_timeout:g} s "
                    f"({self.framer.pending} of {self.framer.expected} bytes came)",
                    code=ErrorCode.BAD_FRAME,
                )
            )

    # -- closing -----------------------------------------------------------------------------
    def refuse(self, error: AgentError) -> None:
        """One error reply (id nil), then close."""
        log.debug("closing %s: %s", self.peer, error.message)  # a flood must not flood the log
        self.replies.error(None, error)
        self.pool.closed(self)  # no longer counted, though its socket closes a moment later
        self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _shutting_down(op: str) -> AgentError:
    return AgentError(
        f"the agent is shutting down; {op[:64]} was stopped before it finished",
        code=ErrorCode.SHUTTING_DOWN,
    )
