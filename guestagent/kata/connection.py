"""One Kata (ttrpc) connection: frames in, unary calls multiplexed, responses out.

Behaves as containerd's ttrpc server does: an even or re-used stream id is answered
InvalidArgument; a frame over 4 MiB is skipped and answered ResourceExhausted with the
connection kept; frames that are not requests are ignored; an unknown service or method is
Unimplemented; `timeout_nano` is a deadline (DeadlineExceeded). Metadata (tracing) is
ignored. Calls run concurrently (WaitProcess blocks while ReadStdout streams output).

The connection lives in the listener's `rpc.pool.ConnectionPool`, as the native protocol's
do, with the same limits where ttrpc gives them a meaning: the pool's connection cap (a new
connection evicts the oldest that has not been "handshaken", else is closed); ttrpc has no
hello, so the handshake deadline is a first-request deadline (a connection whose first
valid request has not come within it is closed, and until then it is the first evicted);
the frame deadline; the shared partial-frame budget (a frame in progress over 64 KiB
reserves its size, or reading stops); `max_in_flight` (reading stops, nothing is refused);
and a host that does not read its responses stops being read. ttrpc cannot carry an error
outside a call, so where the native protocol sends a last error this one only closes.
Calls run as the connection's `RequestTasks`: at shutdown, reads in flight are answered
Unavailable (`agent.shutting_down`) at once and mutations after the grace.

A mutating call runs to completion once started, even past its deadline or after the
connection drops, so that the guest and the policy state never disagree about what happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from guestagent.kata.status import RpcError, to_status
from guestagent.kata.strict import reject_unknown_fields
from guestagent.kata.ttrpc import (
    MAX_MESSAGE,
    Code,
    Frame,
    MessageType,
    Oversized,
    TtrpcFramer,
    decode_request,
    encode_response,
)
from guestagent.rpc.pacing import ReadPacing
from guestagent.rpc.requests import RequestTasks

if TYPE_CHECKING:
    from guestagent.errors import AgentError
    from guestagent.kata.context import KataContext
    from guestagent.kata.pb.ttrpc_pb2 import Request
    from guestagent.kata.registry import Rpc, RpcTable
    from guestagent.rpc.pool import ConnectionPool

__all__ = ["KataConnection"]

log = logging.getLogger("guestagent.kata")


class KataConnection(ReadPacing, asyncio.Protocol):
    def __init__(self, context: KataContext, table: RpcTable, pool: ConnectionPool) -> None:
        self.context = context
        self.agent = context.agent
        self.table = table
        self.pool = pool
        self.limits = pool.limits
        self.framer = TtrpcFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_stream = 0
        self.handshaken = False  # a first valid request has come (ttrpc has no hello)
        self.opened_at = time.monotonic()
        self.requests = RequestTasks(self._request_done)
        self._init_pacing()

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername") or "local")
        self.pool.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.closed(self)
        self.requests.connection_lost()  # reads end now, mutations when they are done
        self._set_reservation(0)
        self.pool.budget.forget(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        events = self.framer.feed(data)
        if events:
            self._partial_since = 0.0
        for event in events:
            if isinstance(event, Oversized):
                if event.type == MessageType.REQUEST:
                    self._reply(
                        event.stream_id,
                        Code.RESOURCE_EXHAUSTED,
                        f"message length {event.length} exceed maximum message size of "
                        f"{MAX_MESSAGE}",
                    )
            elif event.type == MessageType.REQUEST:
                self._request(event)
            # Other frame types (data, stray responses) are ignored, as containerd does.
        self._track_partial()

    def pause_writing(self) -> None:
        self._pause("writing")  # the host does not read its responses: read no more calls

    def resume_writing(self) -> None:
        self._resume("writing")

    # -- requests ----------------------------------------------------------------------------
    def _request(self, frame: Frame) -> None:
        stream_id = frame.stream_id
        if stream_id % 2 != 1:
            self._reply(
                stream_id,
                Code.INVALID_ARGUMENT,
                "StreamID must be odd for client initiated streams",
            )
            return
        if stream_id <= self.last_stream:
            self._reply(
                stream_id, Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment"
            )
            return
        self.last_stream = stream_id
        try:
            request = decode_request(frame.payload)
        except ValueError as exc:
            self._reply(stream_id, Code.INVALID_ARGUMENT, str(exc))
            return
        self.handshaken = True
        if self.agent.shutting_down:
            self._reply(stream_id, Code.UNAVAILABLE, "agent.shutting_down: the agent is stopping")
            return
        found = self.table.lookup(request.service, request.method)
        if isinstance(found, str):
            self._reply(stream_id, Code.UNIMPLEMENTED, found)
            return
        self.requests.start(stream_id, self._run(stream_id, found, request), found.mutating)
        if len(self.requests) >= self.limits.max_in_flight:
            self._pause("in_flight")

    def _request_done(self, stream_id: int) -> None:
        if len(self.requests) < self.limits.max_in_flight:
            self._resume("in_flight")

    async def _run(self, stream_id: int, rpc: Rpc, request: Request) -> None:
        name = f"{rpc.service}/{rpc.method}"
        try:
            message = rpc.request()
            try:
                message.ParseFromString(request.payload)
            except DecodeError as exc:
                raise RpcError(Code.INTERNAL, f"cannot decode {name} request: {exc}") from None
            reject_unknown_fields(message)
            work = asyncio.ensure_future(rpc.handler(self.context, message))
            if rpc.mutating:
                self.agent.track(work)  # finishes even when the caller gives up
            if request.timeout_nano > 0:
                waited = asyncio.shield(work) if rpc.mutating else work
                response = await asyncio.wait_for(waited, request.timeout_nano / 1e9)
            else:
                response = await work
        except asyncio.CancelledError:
            if not self.requests.stopping:
                raise  # the host went away: no one to answer
            self._reply(
                stream_id,
                Code.UNAVAILABLE,
                f"agent.shutting_down: {name} was stopped before it finished",
            )
        except TimeoutError:
            self._reply(stream_id, Code.DEADLINE_EXCEEDED, f"{name}: deadline exceeded")
        except Exception as exc:
            code, text = to_status(exc, name)
            self._reply(stream_id, code, text)
        else:
            payload = response.SerializeToString()
            if len(payload) > MAX_MESSAGE - 64:
                self._reply(stream_id, Code.RESOURCE_EXHAUSTED, f"{name}: response too large")
            else:
                self._reply(stream_id, Code.OK, "", payload)

    def _reply(self, stream_id: int, code: Code, message: str, payload: bytes = b"") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(encode_response(stream_id, code, message, payload))

    # -- deadlines ---------------------------------------------------------------------------
    def check_deadlines(self, now: float) -> None:
        """The pool's sweep: a first request, and each frame, must arrive in time."""
        if not self.handshaken and now - self.opened_at > self.limits.handshake_timeout:
            self._close_late(f"no request within {self.limits.handshake_timeout:g} s")
        elif self._frame_overdue(now):
            self._close_late(f"a frame did not arrive within {self.limits.frame_timeout:g} s")

    # -- closing -----------------------------------------------------------------------------
    def _close_late(self, why: str) -> None:
        log.debug("closing Kata connection %s: %s", self.peer, why)
        self.pool.closed(self)
        self.close()

    def refuse(self, error: AgentError) -> None:
        """ttrpc has no message outside a call: the close is the answer."""
        self._close_late(error.message)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
