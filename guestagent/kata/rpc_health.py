"""grpc.Health: Check and Version. Ungated, like the native ping and status: they reveal
nothing the policy guards and change nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from guestagent import __version__
from guestagent.kata.pb import health_pb2
from guestagent.kata.registry import Rpc

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

SERVICE = "grpc.Health"
# What Version reports as its API: the Kata agent API subset this agent speaks over ttrpc.
API_VERSION = "guestagent-kata/1"


async def check(
    context: KataContext, request: health_pb2.CheckRequest
) -> health_pb2.HealthCheckResponse:
    serving = not context.agent.shutting_down
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else (health_pb2.HealthCheckResponse.NOT_SERVING)
    )
    return health_pb2.HealthCheckResponse(status=status)


async def version(
    context: KataContext, request: health_pb2.CheckRequest
) -> health_pb2.VersionCheckResponse:
    return health_pb2.VersionCheckResponse(
        grpc_version=API_VERSION, agent_version=f"guestagent {__version__}"
    )


RPCS = [
    Rpc(SERVICE, "Check", health_pb2.CheckRequest, health_pb2.HealthCheckResponse, check),
    Rpc(SERVICE, "Version", health_pb2.CheckRequest, health_pb2.VersionCheckResponse, version),
]
