"""The pod as the Kata shim sees it: one sandbox per guest, the containers in it, and the
guest resources each container's storages took (so RemoveContainer gives back exactly those).
"""

from __future__ import annotations

import asyncio

from guestagent.records import field, record

__all__ = ["ContainerResources", "Sandbox"]


@record(mutable=True)
class ContainerResources:
    layer_ids: list[str] = field(default_factory=list)
    scratch: bool = False
    overlay: bool = False


@record(mutable=True)
class Sandbox:
    sandbox_id: str | None = None
    hostname: str = ""
    containers: dict[str, ContainerResources] = field(default_factory=dict)
    # layer id -> how many of the pod's containers use it
    layer_users: dict[str, int] = field(default_factory=dict)
    # CopyFile transfers in progress: path -> bytes so far
    copies: dict[str, bytearray] = field(default_factory=dict)
    # Serialises container creation and removal, which share layers.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def created(self) -> bool:
        return self.sandbox_id is not None
