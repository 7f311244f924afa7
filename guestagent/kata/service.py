"""The Kata agent's ttrpc services: every handler module's RPCs in one table, and the
listener factory the agent's composition root calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guestagent.kata import (
    rpc_containers,
    rpc_files,
    rpc_health,
    rpc_network,
    rpc_process,
    rpc_sandbox,
)
from guestagent.kata.connection import KataConnection
from guestagent.kata.context import KataContext
from guestagent.kata.registry import RpcTable
from guestagent.rpc.pool import ConnectionPool, Pooled
from guestagent.transport.listen import Listener, listen
from guestagent.transport.uri import parse_uri

__all__ = ["listen_kata", "rpc_table"]


def rpc_table() -> RpcTable:
    return RpcTable(
        [
            *rpc_health.RPCS,
            *rpc_sandbox.RPCS,
            *rpc_containers.RPCS,
            *rpc_process.RPCS,
            *rpc_network.RPCS,
            *rpc_files.RPCS,
        ]
    )


MakePool = Callable[[str, Callable[[ConnectionPool], Pooled]], ConnectionPool]


async def listen_kata(
    agent: Any, uris: list[str], make_pool: MakePool
) -> tuple[KataContext, list[Listener]]:
    """A listener per URI, its connections in a pool the agent makes (cap, deadlines,
    budget, shutdown: rpc/pool.py)."""
    context = KataContext(agent)
    table = rpc_table()

    def connection(pool: ConnectionPool) -> KataConnection:
        return KataConnection(context, table, pool)

    listeners = []
    for uri in uris:
        pool = make_pool(uri, connection)
        listeners.append(await listen(parse_uri(uri), pool.factory))
    return context, listeners
