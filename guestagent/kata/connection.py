"""One Kata (ttrpc) connection: frames in, unary calls multiplexed, responses out.

Behaves as containerd's ttrpc server does: an even or re-used stream id is answered
InvalidArgument; a frame over 4 MiB is skipped and answered ResourceExhausted with the
connection kept; frames that are not requests are ignored; an unknown service or method is
Unimplemented; `timeout_nano` is a deadline (DeadlineExceeded). Metadata (tracing) is
ignored. Calls run concurrently (WaitProcess blocks while ReadStdout streams output).

A mutating call runs to completion once started, even past its deadline or after the
connection drops, so that the guest and the policy state never disagree about what happened.
"""

from __future__ import annotations

import asyncio
import logging
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

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext
    from guestagent.kata.pb.ttrpc_pb2 import Request
    from guestagent.kata.registry import Rpc, RpcTable

__all__ = ["KataConnection"]

log = logging.getLogger("guestagent.kata")


class KataConnection(asyncio.Protocol):
    def __init__(self, context: KataContext, table: RpcTable) -> None:
        self.context = context
        self.agent = context.agent
        self.table = table
        self.framer = TtrpcFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_stream = 0
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self.mutating_ids: set[int] = set()
        self._reading_paused = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = str(transport.get_extra_info("peername") or "local")
        self.agent.kata_connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.agent.kata_connections.discard(self)
        for stream_id, task in list(self.in_flight.items()):
            if stream_id not in self.mutating_ids:
                task.cancel()
                self.in_flight.pop(stream_id, None)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        for event in self.framer.feed(data):
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
        if self.agent.shutting_down:
            self._reply(stream_id, Code.UNAVAILABLE, "agent.shutting_down: the agent is stopping")
            return
        found = self.table.lookup(request.service, request.method)
        if isinstance(found, str):
            self._reply(stream_id, Code.UNIMPLEMENTED, found)
            return
        task = asyncio.get_running_loop().create_task(self._run(stream_id, found, request))
        if found.mutating:
            self.mutating_ids.add(stream_id)
        self.in_flight[stream_id] = task
        self.agent.track(task)
        self._update_reading()

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
            raise
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
        finally:
            self.in_flight.pop(stream_id, None)
            self.mutating_ids.discard(stream_id)
            self._update_reading()

    # -- replies and flow control ----------------------------------------------------------
    def _reply(self, stream_id: int, code: Code, message: str, payload: bytes = b"") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(encode_response(stream_id, code, message, payload))

    def _update_reading(self) -> None:
        if self.transport is None:
            return
        should_pause = len(self.in_flight) >= self.agent.config.max_in_flight
        if should_pause and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            self.transport.resume_reading()
            self._reading_paused = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
