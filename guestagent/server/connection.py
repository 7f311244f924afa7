"""One host connection: frames in, replies out, any number of requests in flight.

Bad input is answered, never fatal to the agent: a malformed frame gets an error reply and
the connection carries on; only an oversized length (the stream cannot be resynchronised)
closes it, after one error reply. Each connection is independent, so a hostile client
cannot block others. Replies may leave out of order; each carries its request's id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from guestagent.errors import AgentError, ErrorCode, ProtocolError
from guestagent.protocol.framing import Framer, FrameTooLargeError, encode_frame
from guestagent.protocol.messages import (
    PROTOCOL_VERSION,
    Request,
    decode_request,
    encode_error,
    encode_result,
)
from guestagent.server.dispatch import error_to_wire

if TYPE_CHECKING:
    from guestagent.server.agent import Agent
    from guestagent.server.operation import Operation

__all__ = ["Connection"]

log = logging.getLogger("guestagent.connection")


class Connection(asyncio.Protocol):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.framer = Framer(agent.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.peer = "?"
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self.mutating_ids: set[int] = set()
        self._reading_paused = False
        self._writing_paused = False
        self._batch: list[bytes] | None = None  # replies held back while a read is handled

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername") or "local")
        self.agent.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.agent.connections.discard(self)
        # Reads are pointless without a reader; mutations run to completion so that the
        # guest and the policy state never disagree about what happened.
        for request_id, task in list(self.in_flight.items()):
            if request_id not in self.mutating_ids:
                task.cancel()
                self.in_flight.pop(request_id, None)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.framer.feed(data)
        except FrameTooLargeError as exc:
            self._reply_error(None, exc)
            log.warning("closing %s: %s", self.peer, exc.message)
            self.close()
            return
        if len(payloads) == 1:
            self._handle(payloads[0])
            return
        # Several requests in one read: their inline replies leave in one write (one syscall).
        self._batch = []
        try:
            for payload in payloads:
                self._handle(payload)
        finally:
            batch, self._batch = self._batch, None
            if batch and self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(batch))

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # -- requests ----------------------------------------------------------------------------
    def _handle(self, payload: bytes) -> None:
        try:
            request = decode_request(payload)
        except ProtocolError as exc:
            self._reply_error(exc.request_id, exc)
            return
        try:
            operation = self._admit(request)
            if operation is None:
                return
            args = self.agent.dispatcher.validate(operation, request.args)
            if operation.runs_inline:
                self._reply_result(request.id, self.agent.dispatcher.run_inline(operation, args))
                return
        except Exception as exc:
            self._reply_error(request.id, exc, request.op)
            return
        task = asyncio.get_running_loop().create_task(self._run(request, operation, args))
        if operation.mutating:
            self.mutating_ids.add(request.id)
        self.in_flight[request.id] = task
        self.agent.track(task)
        self._update_reading()

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
        if self.agent.shutting_down:
            raise AgentError("the agent is shutting down", code=ErrorCode.SHUTTING_DOWN)
        if request.id in self.in_flight:
            raise AgentError(
                f"request id {request.id} is already in flight on this connection",
                code=ErrorCode.DUPLICATE_ID,
            )
        return self.agent.dispatcher.lookup(request.op)

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
            self._reply_result(request.id, self.agent.hello_result())
            return
        self._reply_error(request.id, error)

    async def _run(self, request: Request, operation: Operation, args: dict[str, Any]) -> None:
        try:
            result = await self.agent.dispatcher.run(operation, args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._reply_error(request.id, exc, request.op)
        else:
            self._reply_result(request.id, result)
        finally:
            self.in_flight.pop(request.id, None)
            self.mutating_ids.discard(request.id)
            self._update_reading()

    # -- replies and flow control ----------------------------------------------------------
    def _reply_result(self, request_id: int, result: Any) -> None:
        try:
            payload = encode_result(request_id, result)
        except Exception as exc:
            self._reply_error(request_id, exc)
            return
        if len(payload) > self.agent.config.max_frame:
            # Say so rather than drop the reply: the host can ask for less.
            self._reply_error(
                request_id, FrameTooLargeError(len(payload), self.agent.config.max_frame)
            )
            return
        self._send(payload)

    def _reply_error(self, request_id: int | None, exc: BaseException, op: str = "") -> None:
        self._send(encode_error(request_id, error_to_wire(exc, op)))

    def _send(self, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._batch is not None:
            self._batch.append(encode_frame(payload, max_frame=len(payload)))
            return
        self.transport.write(encode_frame(payload, max_frame=len(payload)))

    def _update_reading(self) -> None:
        if self.transport is None:
            return
        should_pause = (
            self._writing_paused or len(self.in_flight) >= self.agent.config.max_in_flight
        )
        if should_pause and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
