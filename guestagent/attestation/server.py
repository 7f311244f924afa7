"""One container's attestation socket: an asyncio unix server speaking JSON lines.

Each server answers for exactly one policy entry (its keys are bound to that entry's name).
Requests to the secure processor run in a thread, one at a time per backend (the guest device
serialises them anyway). Connections are bounded in number and idle time, so a workload
cannot tie the agent up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from guestagent.attestation.keys import derive_workload_key
from guestagent.attestation.protocol import (
    MAX_LINE,
    KeyRequest,
    ReportRequest,
    encode_error,
    encode_reply,
    parse_request,
)
from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError, ProtocolError
from guestagent.snp.backend import SnpBackend
from guestagent.snp.cert_table import certificates_json

__all__ = ["SOCKET_DESTINATION", "AttestationServer", "oci_mount"]

log = logging.getLogger("guestagent.attestation")

SOCKET_DESTINATION = "/run/guestagent/attestation.sock"
MAX_CONNECTIONS = 16
IDLE_SECONDS = 30.0
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def oci_mount(socket_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json mount entry that puts the socket at SOCKET_DESTINATION.

    Read-only: connect(2) needs no write access to the mount, and the workload can neither
    replace nor remove the socket.
    """
    return {
        "destination": SOCKET_DESTINATION,
        "type": "bind",
        "source": str(socket_path),
        "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
    }


class AttestationServer:
    """The attestation socket for one container, bound to one policy entry."""

    def __init__(
        self,
        backend: SnpBackend,
        entry_name: str,
        socket_path: str | os.PathLike[str],
        *,
        lock: asyncio.Lock | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.backend = backend
        self.entry_name = entry_name
        self.socket_path = Path(socket_path)
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise InvalidArgumentError(
                f"attestation socket path is longer than {MAX_SOCKET_PATH} bytes: "
                f"{self.socket_path}"
            )
        self._lock = lock or asyncio.Lock()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle = idle_seconds
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.requests = 0

    def oci_mount(self) -> dict[str, Any]:
        return oci_mount(self.socket_path)

    async def start(self) -> None:
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket from an earlier run
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.socket_path), limit=MAX_LINE + 1
        )
        # Any uid inside the container may attest; only this container sees the socket.
        os.chmod(self.socket_path, 0o666)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self._slots.locked():
                busy = AgentError("too many connections", code=ErrorCode.TOO_MANY_IN_FLIGHT)
                writer.write(encode_error(busy))
                return
            async with self._slots:
                await self._conversation(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle):
                    line = await reader.readuntil(b"\n")
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            except asyncio.LimitOverrunError:
                writer.write(encode_error(ProtocolError(f"request longer than {MAX_LINE} bytes")))
                return  # the stream cannot be resynchronised
            writer.write(await self.answer(line))
            await writer.drain()

    async def answer(self, line: bytes) -> bytes:
        """One request line -> one reply line. Every failure is a reply, never a crash."""
        self.requests += 1
        try:
            request = parse_request(line)
            async with self._lock:
                result = await asyncio.to_thread(self._handle, request)
        except AgentError as exc:
            return encode_error(exc)
        except Exception:
            log.exception("attestation request failed")
            return encode_error(AgentError("internal error; see the agent log"))
        return encode_reply(result)

    def _handle(self, request: ReportRequest | KeyRequest) -> dict[str, Any]:
        if isinstance(request, ReportRequest):
            raw, table = self.backend.get_extended_report(request.report_data)
            return {
                "report": base64.b64encode(raw).decode(),
                "certificates": certificates_json(table),
                "simulated": bool(self.backend.simulated),
            }
        key = derive_workload_key(self.backend, self.entry_name, request.purpose, request.fields)
        return {"key": key.hex()}
