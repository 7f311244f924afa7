"""Blocking client: one socket, requests may be pipelined with `call_many`."""

from __future__ import annotations

import itertools
import socket
import struct
from typing import Any

from guestagent.client.errors import AgentConnectionError, error_from_wire
from guestagent.client.methods import AgentMethods
from guestagent.protocol.framing import DEFAULT_MAX_FRAME, HEADER_SIZE
from guestagent.protocol.messages import decode_reply, encode_request
from guestagent.transport.dial import connect_socket

__all__ = ["Client"]


class Client(AgentMethods):
    def __init__(self, sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.sock = sock
        self.max_frame = max_frame
        self._ids = itertools.count(1)
        self._early: dict[int | None, dict[str, Any]] = {}

    @classmethod
    def connect(cls, uri: str, *, timeout: float | None = 30.0, hello: bool = True) -> Client:
        try:
            sock = connect_socket(uri, timeout=timeout)
        except OSError as exc:
            raise AgentConnectionError(f"cannot connect to {uri}: {exc}") from exc
        client = cls(sock)
        if hello:
            client.hello()
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        return self._call(op, args)

    def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        request_id = self.send(op, args)
        return _result(self.receive(request_id))

    def call_many(self, requests: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
        """Pipeline: send all, then collect the raw replies in request order."""
        ids = [self.send(op, args) for op, args in requests]
        return [self.receive(request_id) for request_id in ids]

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        request_id = next(self._ids)
        payload = encode_request(request_id, op, args)
        self.send_raw(struct.pack(">I", len(payload)) + payload)
        return request_id

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise AgentConnectionError(f"send failed: {exc}") from exc

    def receive(self, request_id: int | None) -> dict[str, Any]:
        """The reply for `request_id` (replies for other ids are kept for later)."""
        if request_id in self._early:
            return self._early.pop(request_id)
        while True:
            reply = self.read_reply()
            if reply.get("id") == request_id:
                return reply
            self._early[reply.get("id")] = reply

    def read_reply(self) -> dict[str, Any]:
        (size,) = struct.unpack(">I", self._read_exactly(HEADER_SIZE))
        if size > self.max_frame:
            raise AgentConnectionError(f"reply frame of {size} bytes exceeds {self.max_frame}")
        return decode_reply(self._read_exactly(size))

    def _read_exactly(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            try:
                chunk = self.sock.recv(min(size - len(chunks), 1 << 20))
            except OSError as exc:
                raise AgentConnectionError(f"receive failed: {exc}") from exc
            if not chunk:
                raise AgentConnectionError("the agent closed the connection")
            chunks += chunk
        return bytes(chunks)


def _result(reply: dict[str, Any]) -> Any:
    if reply.get("ok") is True:
        return reply.get("result")
    raise error_from_wire(reply.get("error"))
