"""The agent's attestation sockets, one per container whose policy entry allows one.

The agent calls `open` while creating a container (after the policy allowed it, before the
runtime starts it) and adds the returned mount to config.json; `close` when it deletes the
container. `attestation_entry` reads the create decision to decide whether to, and for which
policy entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guestagent.errors import AlreadyExistsError, ErrorCode, InvalidArgumentError, PolicyDenied

if TYPE_CHECKING:
    from guestagent.attestation.server import AttestationServer
    from guestagent.snp.backend import SnpBackend

__all__ = ["AttestationHub", "attestation_entry"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def attestation_entry(decision_data: Mapping[str, Any]) -> str | None:
    """The policy entry a created container attests as, or None if it gets no socket.

    Keys are bound to the entry's name, so a container matching several entries would have
    no single identity: refuse rather than pick one.
    """
    if not decision_data.get("attestation_socket"):
        return None
    candidates = list(decision_data.get("candidates") or ())
    if len(candidates) != 1:
        raise PolicyDenied(
            "the attestation socket needs exactly one matching policy entry; this container "
            f"matches {candidates}",
            rule="attestation_socket",
            details={"candidates": candidates},
        )
    return str(candidates[0])


class AttestationHub:
    """Creates and removes per-container attestation servers under `state_dir`."""

    def __init__(self, backend: SnpBackend, state_dir: str | os.PathLike[str]) -> None:
        self.backend = backend
        self.directory = Path(state_dir) / "attestation"
        self._lock = asyncio.Lock()  # one request to the secure processor at a time
        self._servers: dict[str, AttestationServer] = {}

    def socket_path(self, container_id: str) -> Path:
        if not isinstance(container_id, str) or not _ID.fullmatch(container_id):
            raise InvalidArgumentError(f"invalid container id {container_id!r}")
        return self.directory / container_id / "attestation.sock"

    async def open(self, container_id: str, entry_name: str) -> dict[str, Any]:
        """Start the container's server; returns the OCI mount entry for its config.json."""
        if container_id in self._servers:
            raise AlreadyExistsError(
                f"container {container_id!r} already has an attestation socket",
                code=ErrorCode.ALREADY_EXISTS,
            )
        # The server (and the key derivation's cryptography) loads with the first socket.
        from guestagent.attestation.server import AttestationServer

        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        server = AttestationServer(
            self.backend, entry_name, self.socket_path(container_id), lock=self._lock
        )
        await server.start()
        self._servers[container_id] = server
        return server.oci_mount()

    async def close(self, container_id: str) -> None:
        """Stop the container's server (nothing to do if it had none)."""
        server = self._servers.pop(container_id, None)
        if server is not None:
            await server.stop()
            with contextlib.suppress(OSError):  # never fail a container's deletion over this
                server.socket_path.parent.rmdir()

    async def close_all(self) -> None:
        for container_id in list(self._servers):
            await self.close(container_id)

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"container_id": cid, "entry": s.entry_name, "requests": s.requests}
            for cid, s in sorted(self._servers.items())
        ]
