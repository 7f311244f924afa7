"""asyncio client: many requests in flight on one connection, replies matched by id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from typing import Any

from guestagent.client.errors import AgentConnectionError, error_from_wire
from guestagent.client.methods import AgentMethods
from guestagent.protocol.framing import DEFAULT_MAX_FRAME, HEADER_SIZE
from guestagent.protocol.messages import decode_reply, encode_request
from guestagent.transport.dial import connect_socket

__all__ = ["AsyncClient"]


class AsyncClient(AgentMethods):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        uri: str,
        *,
        timeout: float = 30.0,
        hello: bool = True,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> AsyncClient:
        try:
            sock = await asyncio.to_thread(connect_socket, uri, timeout)
        except OSError as exc:
            raise AgentConnectionError(f"cannot connect to {uri}: {exc}") from exc
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=max_frame + HEADER_SIZE)
        client = cls(reader, writer, max_frame)
        if hello:
            await client.hello()
        return client

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return await self._call(op, args)

    async def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        reply = await self.request(op, args)
        if reply.get("ok") is True:
            return reply.get("result")
        raise error_from_wire(reply.get("error"))

    async def request(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and wait for its raw reply map."""
        if self._reader_task.done():
            raise AgentConnectionError("the connection is closed")
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        payload = encode_request(request_id, op, args)
        try:
            self.writer.write(struct.pack(">I", len(payload)) + payload)
            await self.writer.drain()
            return await future
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, AgentConnectionError):
                raise
            raise AgentConnectionError(f"the connection is closed: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)

    async def _read_loop(self) -> None:
        error: BaseException = AgentConnectionError("the agent closed the connection")
        try:
            while True:
                (size,) = struct.unpack(">I", await self.reader.readexactly(HEADER_SIZE))
                if size > self.max_frame:
                    raise AgentConnectionError(f"reply of {size} bytes exceeds {self.max_frame}")
                reply = decode_reply(await self.reader.readexactly(size))
                future = self._pending.get(reply.get("id"))  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(reply)
                elif reply.get("id") is None and not reply.get("ok"):
                    # An error that could not name its request closes the conversation.
                    error = error_from_wire(reply.get("error"))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                error = exc
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
