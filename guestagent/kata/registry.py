"""Which ttrpc (service, method) runs which handler, and what is refused as Unimplemented."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from guestagent.records import record

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["NOT_OFFERED", "Rpc", "RpcTable"]

Handler = Callable[["KataContext", Any], Awaitable[Message]]


@record
class Rpc:
    service: str
    method: str
    request: type[Message]
    response: type[Message]
    handler: Handler
    # Runs to completion once started (a deadline answers the caller, never interrupts it).
    mutating: bool = False


# Kata RPCs this agent deliberately does not offer, and why (the Unimplemented message).
NOT_OFFERED = {
    "UpdateContainer": "container resources are fixed at creation, where the policy rules them",
    "UpdateEphemeralMounts": "storages are only accepted in CreateContainer",
    "PauseContainer": "pausing is not ruled by the policy",
    "ResumeContainer": "pausing is not ruled by the policy",
    "GetIPTables": "packet filtering is not ruled by the policy",
    "SetIPTables": "packet filtering is not ruled by the policy",
    "GetMetrics": "use StatsContainer (policy point get_properties)",
    "OnlineCPUMem": "resources are static in a confidential guest",
    "ReseedRandomDev": "the guest seeds its RNG from the CPU, never from the host",
    "MemHotplugByProbe": "resources are static in a confidential guest",
    "SetGuestDateTime": "the host does not set the guest's clock",
    "AddSwap": "swap would page guest memory to a host device",
    "GetVolumeStats": "volumes are not offered",
    "ResizeVolume": "volumes are not offered",
    "MemAgentMemcgSet": "the memory agent is not offered",
    "MemAgentCompactSet": "the memory agent is not offered",
}


class RpcTable:
    def __init__(self, rpcs: list[Rpc]) -> None:
        self.by_name: dict[tuple[str, str], Rpc] = {}
        for rpc in rpcs:
            key = (rpc.service, rpc.method)
            if key in self.by_name:
                raise ValueError(f"{rpc.service}/{rpc.method} registered twice")
            self.by_name[key] = rpc
        self.services = frozenset(service for service, _ in self.by_name)

    def lookup(self, service: str, method: str) -> Rpc | str:
        """The Rpc, or the Unimplemented message (worded as containerd's server words it)."""
        rpc = self.by_name.get((service, method))
        if rpc is not None:
            return rpc
        if service not in self.services:
            return f"service {service}"
        reason = NOT_OFFERED.get(method)
        if reason is not None:
            return f"method {method}: not offered by this agent: {reason}"
        return f"method {method}"
