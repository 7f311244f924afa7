"""Reply writing for one connection: encode, size-check, batch, and respect the host's pace.

Replies to the requests of one read leave in one write (one syscall). When the transport's
buffer passes its high-water mark (`pause_writing`), the connection stops reading, so inline
replies cannot pile up; replies of request tasks wait in `wait_writable` until the host has
read, holding their in-flight slot. What the agent buffers for a host that never reads is
therefore bounded by the transport's high-water mark plus one read's inline replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from guestagent.protocol.framing import FrameTooLargeError, encode_frame
from guestagent.protocol.messages import encode_error, encode_result
from guestagent.rpc.dispatch import error_to_wire

__all__ = ["ReplyWriter"]


class ReplyWriter:
    __slots__ = ("_batch", "_on_pause", "_writable", "max_frame", "paused", "transport")

    def __init__(self, max_frame: int, on_pause: Callable[[bool], None]) -> None:
        self.max_frame = max_frame
        self.transport: asyncio.WriteTransport | None = None
        self.paused = False
        self._on_pause = on_pause
        self._batch: list[bytes] | None = None
        self._writable: asyncio.Event | None = None

    # -- what to send ------------------------------------------------------------------------
    def result(self, request_id: int, result: Any) -> None:
        try:
            payload = encode_result(request_id, result)
        except Exception as exc:
            self.error(request_id, exc)
            return
        if len(payload) > self.max_frame:
            # Say so rather than drop the reply: the host can ask for less.
            self.error(request_id, FrameTooLargeError(len(payload), self.max_frame))
            return
        self._send(payload)

    def error(self, request_id: int | None, exc: BaseException, op: str = "") -> None:
        self._send(encode_error(request_id, error_to_wire(exc, op)))

    def _send(self, payload: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._batch is not None:
            self._batch.append(encode_frame(payload, max_frame=len(payload)))
            return
        transport.write(encode_frame(payload, max_frame=len(payload)))

    # -- batching ----------------------------------------------------------------------------
    def begin_batch(self) -> None:
        self._batch = []

    def end_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(batch))

    # -- the host's pace ---------------------------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        self._on_pause(True)

    def resume(self) -> None:
        self.paused = False
        if self._writable is not None:
            self._writable.set()
            self._writable = None
        self._on_pause(False)

    async def wait_writable(self) -> None:
        """Until the transport takes more (returns at once unless paused)."""
        while self.paused and self.transport is not None and not self.transport.is_closing():
            if self._writable is None:
                self._writable = asyncio.Event()
            await self._writable.wait()

    def closed(self) -> None:
        self.transport = None
        if self._writable is not None:
            self._writable.set()
            self._writable = None
