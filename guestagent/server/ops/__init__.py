"""The operations the agent speaks, one module per family. docs/protocol.md lists them all."""

from __future__ import annotations

from guestagent.rpc.operation import Operation
from guestagent.server.ops import containers, core, host, network, storage

__all__ = ["all_operations"]


def all_operations() -> list[Operation]:
    return [
        *core.OPERATIONS,
        *host.OPERATIONS,
        *storage.OPERATIONS,
        *containers.OPERATIONS,
        *network.OPERATIONS,
    ]
