"""A small asyncio ttrpc client for the Kata agent protocol (tests, benches, the host side).

Unary calls on odd, increasing stream ids, any number in flight on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from typing import TypeVar

from google.protobuf.message import Message

from guestagent.kata.ttrpc import (
    Code,
    MessageType,
    Oversized,
    TtrpcFramer,
    decode_response,
    encode_request,
)
from guestagent.transport.uri import parse_uri

__all__ = ["AGENT", "HEALTH", "KataClient", "KataRpcError"]

AGENT = "grpc.AgentService"
HEALTH = "grpc.Health"
M = TypeVar("M", bound=Message)


class KataRpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{Code(code).name}: {message}")
        self.code = Code(code)
        self.message = message


class KataClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1, 2)
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._framer = TtrpcFramer()
        self._reading = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def connect(cls, uri: str) -> KataClient:
        endpoint = parse_uri(uri)
        if endpoint.scheme != "unix":
            raise ValueError("this client dials unix:// sockets")
        reader, writer = await asyncio.open_unix_connection(endpoint.path)
        return cls(reader, writer)

    @classmethod
    async def from_socket(cls, sock: socket.socket) -> KataClient:
        """Over a stream socket that is already connected (a virtio-serial channel)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    async def close(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> KataClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def call_raw(
        self, service: str, method: str, payload: bytes, timeout: float | None = None
    ) -> bytes:
        stream_id = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = future
        timeout_nano = int(timeout * 1e9) if timeout else 0
        self._writer.write(encode_request(stream_id, service, method, payload, timeout_nano))
        try:
            return await future
        finally:
            self._pending.pop(stream_id, None)

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        response_type: type[M],
        timeout: float | None = None,
    ) -> M:
        data = await self.call_raw(service, method, request.SerializeToString(), timeout)
        response = response_type()
        response.ParseFromString(data)
        return response

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(1 << 16)
                if not data:
                    break
                for frame in self._framer.feed(data):
                    if isinstance(frame, Oversized) or frame.type != MessageType.RESPONSE:
                        continue
                    future = self._pending.get(frame.stream_id)
                    if future is None or future.done():
                        continue
                    response = decode_response(frame.payload)
                    if response.status.code != Code.OK:
                        future.set_exception(
                            KataRpcError(response.status.code, response.status.message)
                        )
                    else:
                        future.set_result(response.payload)
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the agent closed the connection"))
