"""Listeners for each transport. Each accepted stream is handed to `protocol_factory()`.

The serial "listener" is different in kind: a virtio-serial port is one byte stream with no
accept. It is opened as a single connection; when the host side goes away (EOF) the
connection is dropped (its handshake state with it) and the port is reopened. `listen`
returns once the port is open and read (so "listening" is true when logged: bytes a host
sends after it are not lost), or once the first open failed (it is retried in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guestagent.errors import AgentError, ErrorCode
from guestagent.transport.uri import Endpoint

__all__ = ["BACKLOG", "Listener", "listen", "resolve_serial_port"]

log = logging.getLogger("guestagent.transport")
ProtocolFactory = Callable[[], asyncio.Protocol]
# Unix sockets refuse a connect (EAGAIN) once the backlog is full, so it is generous. asyncio
# accepts up to `backlog` connections per wake-up before the protocols decide which to keep:
# the fds the connection cap leaves spare must hold such a burst (server/limits.py).
BACKLOG = 256
SERIAL_RETRY_SECONDS = 0.2


class Listener:
    """A running listener: `close()` stops accepting; live connections are not touched."""

    def __init__(self, endpoint: Endpoint, closer: Callable[[], Any]) -> None:
        self.endpoint = endpoint
        self._closer = closer

    async def close(self) -> None:
        result = self._closer()
        if asyncio.iscoroutine(result):
            await result


async def listen(endpoint: Endpoint, protocol_factory: ProtocolFactory) -> Listener:
    loop = asyncio.get_running_loop()
    if endpoint.scheme == "unix":
        return await _listen_unix(loop, endpoint, protocol_factory)
    if endpoint.scheme == "vsock":
        return await _listen_vsock(loop, endpoint, protocol_factory)
    if endpoint.scheme == "serial":
        return await _SerialPort(endpoint, protocol_factory).start()
    raise AgentError(f"no listener for scheme {endpoint.scheme!r}", code=ErrorCode.INTERNAL)


async def _listen_unix(
    loop: asyncio.AbstractEventLoop, endpoint: Endpoint, factory: ProtocolFactory
) -> Listener:
    path = Path(endpoint.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # a stale socket from a previous run
    # Only root in the guest (and the tests' own user) may talk to the agent.
    old_umask = os.umask(0o177)
    try:
        server = await loop.create_unix_server(factory, str(path), backlog=BACKLOG)
    finally:
        os.umask(old_umask)

    async def close() -> None:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    return Listener(endpoint, close)


async def _listen_vsock(
    loop: asyncio.AbstractEventLoop, endpoint: Endpoint, factory: ProtocolFactory
) -> Listener:
    if not hasattr(socket, "AF_VSOCK"):
        raise AgentError("this Python has no AF_VSOCK support", code=ErrorCode.INTERNAL)
    sock = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        sock.bind((endpoint.cid, endpoint.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise AgentError(f"cannot listen on {endpoint}: {exc}", code=ErrorCode.INTERNAL) from exc
    server = await loop.create_server(factory, sock=sock)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    return Listener(endpoint, close)


def resolve_serial_port(name: str, sys_root: str = "/sys", dev_root: str = "/dev") -> str:
    """Find /dev/vportNpM by port name: without udev there is no /dev/virtio-ports link."""
    linked = Path(dev_root, "virtio-ports", name)
    if linked.exists():
        return str(linked)
    for name_file in sorted(Path(sys_root, "class", "virtio-ports").glob("*/name")):
        if Path(name_file).read_text().strip() == name:
            return str(Path(dev_root, Path(name_file).parent.name))
    raise AgentError(f"no virtio-serial port named {name!r}", code=ErrorCode.NOT_FOUND)


class _DuplexPipe(asyncio.Transport):
    """A read pipe transport and a write pipe transport on one character device."""

    def __init__(self, reader: asyncio.ReadTransport, writer: asyncio.WriteTransport) -> None:
        super().__init__()
        self._reader = reader
        self._writer = writer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._writer.write(data)

    def pause_reading(self) -> None:
        self._reader.pause_reading()

    def resume_reading(self) -> None:
        self._reader.resume_reading()

    def is_closing(self) -> bool:
        return self._reader.is_closing() or self._writer.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._writer.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._writer.set_write_buffer_limits(high, low)

    def abort(self) -> None:
        self._writer.abort()
        self._reader.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "serial" if name == "peername" else default

    def close(self) -> None:
        self._writer.close()
        self._reader.close()


class _ReadSide(asyncio.Protocol):
    """Forwards the device's bytes to the connection protocol; signals EOF.

    Bytes that arrive before the connection has its transport (a host that connected and
    spoke before the agent opened the port) are held back, not handed to a protocol that
    could not answer them.
    """

    def __init__(self, target: asyncio.Protocol, lost: asyncio.Future[None]) -> None:
        self._target = target
        self._lost = lost
        self._early: list[bytes] | None = []

    def attach(self, transport: asyncio.Transport) -> None:
        self._target.connection_made(transport)
        early, self._early = self._early or [], None
        for data in early:
            self._target.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._early is not None:
            self._early.append(data)
        else:
            self._target.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)


class _WriteSide(asyncio.Protocol):
    """Carries the write pipe's flow control to the connection: a host that does not read
    the port fills the pipe, and the connection must stop reading (and answering) then."""

    def __init__(self, target: asyncio.Protocol, lost: asyncio.Future[None]) -> None:
        self._target = target
        self._lost = lost

    def pause_writing(self) -> None:
        self._target.pause_writing()

    def resume_writing(self) -> None:
        self._target.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.done():
            self._lost.set_result(None)


class _SerialPort:
    def __init__(self, endpoint: Endpoint, factory: ProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None

    async def start(self) -> Listener:
        """The listener, once the port is open and read (or its first open failed)."""
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = loop.create_task(self._run())
        await asyncio.wait([self._first, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():  # not an OSError to retry (no port of that name): say why now
            self._task.result()
        return Listener(self.endpoint, self._stop)

    def _first_attempt_done(self) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._serve_once()
            except OSError as exc:
                if self._first is not None and not self._first.done():
                    log.warning(
                        "serial port not open yet, retrying",
                        extra={"port": str(self.endpoint), "error": str(exc)},
                    )
                else:
                    log.debug("serial port %s unavailable: %s", self.endpoint, exc)
            self._first_attempt_done()
            await asyncio.sleep(SERIAL_RETRY_SECONDS)

    async def _serve_once(self) -> None:
        loop = asyncio.get_running_loop()
        path = self.endpoint.path or resolve_serial_port(self.endpoint.port_name)
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        read_file = os.fdopen(fd, "rb", buffering=0)
        write_file = os.fdopen(os.dup(fd), "wb", buffering=0)
        protocol = self.factory()
        lost: asyncio.Future[None] = loop.create_future()
        read_side = _ReadSide(protocol, lost)
        write_side = _WriteSide(protocol, lost)
        write_transport, _ = await loop.connect_write_pipe(lambda: write_side, write_file)
        read_transport, _ = await loop.connect_read_pipe(lambda: read_side, read_file)
        duplex = _DuplexPipe(read_transport, write_transport)  # type: ignore[arg-type]
        read_side.attach(duplex)
        self._first_attempt_done()
        try:
            await lost  # EOF: the host side disconnected (or was never there)
        finally:
            duplex.close()
            protocol.connection_lost(None)
