"""Operations every agent answers, with or without a policy: ping and status.

(`hello` is the handshake and lives in the connection itself.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guestagent.protocol.schema import Field
from guestagent.rpc.operation import Call, Operation

if TYPE_CHECKING:
    from guestagent.server.agent import Agent

__all__ = ["OPERATIONS"]


def ping(agent: Agent, call: Call) -> dict[str, Any]:
    return {"payload": call.args["payload"]}


def status(agent: Agent, call: Call) -> dict[str, Any]:
    return agent.status()


OPERATIONS = [
    Operation(
        "ping",
        ping,
        args={"payload": Field((bytes,), default=b"", max_len=65536)},
        summary="echo a payload; measures round trips",
    ),
    Operation("status", status, summary="version, uptime, policy state, pid"),
]
