"""Stdio of container processes: pipes and ptys the agent owns, with bounded buffers.

Each stream is read by a loop reader into a bounded buffer. When the buffer is full the reader
is removed from the loop, so the pipe fills and the writer inside the container blocks: that is
the backpressure. A consumer `read()` frees space and re-arms the reader. End of output is the
pipe's EOF (or EIO on a pty master once the slave side is gone), so output written just before
exit is never lost: completion waits for EOF, not for the exit status alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct
import termios

from guestagent.errors import AgentError, ErrorCode, InvalidStateError
from guestagent.records import field, record

__all__ = [
    "DEFAULT_BUFFER_LIMIT",
    "ConsoleSocket",
    "InputStream",
    "OutputStream",
    "ProcessIO",
    "StdioOptions",
    "open_pipes",
]

DEFAULT_BUFFER_LIMIT = 1 << 20
_READ_CHUNK = 64 * 1024


@record
class StdioOptions:
    """Which streams the host gets. Streams it does not get are /dev/null."""

    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    buffer_limit: int = DEFAULT_BUFFER_LIMIT


class OutputStream:
    """One output stream (pipe or pty master): bounded buffer, backpressure, EOF tracking.

    `truncate=True` keeps the first `limit` bytes and discards the rest instead of blocking the
    writer (used for the runtime's own diagnostics, which must never stall the runtime).
    """

    def __init__(self, fd: int, *, limit: int = DEFAULT_BUFFER_LIMIT, truncate: bool = False):
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        self._limit = limit
        self._truncate = truncate
        self._buffer = bytearray()
        self._reading = False
        self._data_ready = asyncio.Event()
        self.eof = asyncio.Event()
        self.high_water = 0  # the most bytes ever buffered: evidence the bound holds
        self.dropped = 0
        os.set_blocking(fd, False)
        self._arm()

    def _arm(self) -> None:
        if not self._reading and not self.eof.is_set():
            self._loop.add_reader(self._fd, self._on_readable)
            self._reading = True

    def _disarm(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def _on_readable(self) -> None:
        room = self._limit - len(self._buffer)
        want = _READ_CHUNK if self._truncate else min(_READ_CHUNK, room)
        try:
            chunk = os.read(self._fd, want)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: pty master whose slave side closed
                raise
            chunk = b""
        if not chunk:
            self._finish()
            return
        if self._truncate and len(chunk) > room:
            self.dropped += len(chunk) - max(room, 0)
            chunk = chunk[: max(room, 0)]
        self._buffer += chunk
        self.high_water = max(self.high_water, len(self._buffer))
        self._data_ready.set()
        if not self._truncate and len(self._buffer) >= self._limit:
            self._disarm()  # backpressure: let the pipe fill until the consumer drains

    def _finish(self) -> None:
        self._disarm()
        os.close(self._fd)
        self._fd = -1
        self.eof.set()
        self._data_ready.set()

    async def read(self, max_bytes: int = _READ_CHUNK) -> bytes:
        """Up to `max_bytes` of buffered output; b"" once the stream ended and is drained."""
        while not self._buffer and not self.eof.is_set():
            self._data_ready.clear()
            await self._data_ready.wait()
        data = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        if len(self._buffer) < self._limit:
            self._arm()
        return data

    async def read_all(self) -> bytes:
        """Everything until EOF (for small outputs: the buffer bound still applies per read)."""
        parts = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    def buffered(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Stop reading and drop what is buffered."""
        if self._fd >= 0:
            self._disarm()
            os.close(self._fd)
            self._fd = -1
        self._buffer.clear()
        self.eof.set()
        self._data_ready.set()


class InputStream:
    """The write end of a process's stdin (or of a pty master)."""

    def __init__(self, fd: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._fd = fd
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    async def write(self, data: bytes) -> int:
        """Write all of `data`, waiting while the pipe is full."""
        view = memoryview(data)
        while view:
            if self._fd < 0:
                raise InvalidStateError("stdin is closed")
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._writable()
                continue
            except (BrokenPipeError, OSError) as exc:
                if exc.errno not in (errno.EPIPE, errno.EIO):
                    raise
                raise InvalidStateError("the process closed its stdin") from exc
            view = view[written:]
        return len(data)

    async def _writable(self) -> None:
        ready = self._loop.create_future()
        self._loop.add_writer(self._fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@record(mutable=True)
class ProcessIO:
    """The agent's side of one process's stdio (pipes, or a pty when `terminal`)."""

    stdin: InputStream | None = None
    stdout: OutputStream | None = None
    stderr: OutputStream | None = None
    terminal: bool = False
    pty_master: int = -1
    _extra: list[int] = field(default_factory=list)

    async def wait_eof(self) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                await stream.eof.wait()

    def resize(self, rows: int, cols: int) -> None:
        if not self.terminal or self.pty_master < 0:
            raise InvalidStateError("resize needs a terminal")
        if not (0 < rows < 65536 and 0 < cols < 65536):
            raise AgentError("terminal size out of range", code=ErrorCode.INVALID_ARGUMENT)
        fcntl.ioctl(self.pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        for closable in (self.stdin, self.stdout, self.stderr):
            if closable is not None:
                closable.close()
        if self.pty_master >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pty_master)
            self.pty_master = -1


def open_pipes(options: StdioOptions) -> tuple[ProcessIO, tuple[int, int, int]]:
    """Pipes for a non-terminal process: our ends in a ProcessIO, and the child's 0/1/2 fds.

    The caller passes the child fds to the runtime and closes them with `close_fds` once the
    runtime has handed them to the container (otherwise EOF never arrives).
    """
    io = ProcessIO()
    child: list[int] = []
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        if options.stdin:
            read_end, write_end = os.pipe()
            io.stdin = InputStream(write_end)
            child.append(read_end)
        else:
            child.append(os.dup(null))
        for wanted, name in ((options.stdout, "stdout"), (options.stderr, "stderr")):
            if wanted:
                read_end, write_end = os.pipe()
                setattr(io, name, OutputStream(read_end, limit=options.buffer_limit))
                child.append(write_end)
            else:
                child.append(os.dup(null))
    except BaseException:
        io.close()
        close_fds(child)
        raise
    finally:
        os.close(null)
    return io, (child[0], child[1], child[2])


def close_fds(fds: list[int] | tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class ConsoleSocket:
    """A unix socket the runtime connects to (`--console-socket`) to hand us the pty master."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(1)
        self._sock.setblocking(False)

    async def receive_master(self) -> int:
        """Accept the runtime's connection and take the fd it sends (SCM_RIGHTS)."""
        loop = asyncio.get_running_loop()
        conn, _ = await loop.sock_accept(self._sock)
        with conn:
            ready = loop.create_future()
            loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(conn.fileno())
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        if len(fds) != 1:
            close_fds(fds)
            raise AgentError("runtime sent no pty master", code=ErrorCode.RUNTIME)
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def pty_io(master: int, options: StdioOptions) -> ProcessIO:
    """ProcessIO over a pty master: output and input are the same terminal."""
    os.set_inheritable(master, False)
    return ProcessIO(
        stdin=InputStream(os.dup(master)),
        stdout=OutputStream(os.dup(master), limit=options.buffer_limit),
        terminal=True,
        pty_master=master,
    )
