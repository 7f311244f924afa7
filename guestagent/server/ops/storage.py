"""Layers, scratch and overlays: each step measured by the agent, ruled on by the policy.

The host names layers and containers by id; every path is the agent's own. A layer's root
hash is computed from the device itself in `prepare`, and that computed hash (never one the
host states) is what the policy checks against its `layers` lists.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from guestagent.protocol.schema import Field, identifier
from guestagent.rpc.operation import Call, Operation, Prepared

if TYPE_CHECKING:
    from guestagent.server.agent import Agent

__all__ = ["OPERATIONS"]


async def prepare_mount_layer(agent: Agent, args: dict[str, Any]) -> Prepared:
    storage = agent.storage
    layer = await asyncio.to_thread(storage.open_layer, args["layer_id"], args["source"])
    target = storage.layer_target(args["layer_id"])
    # The dispatcher closes the context (the sealed copy) whether or not the policy allows.
    return Prepared({"target": target, "device_hash": layer.info.root_hash}, layer)


async def mount_layer(agent: Agent, call: Call) -> dict[str, Any]:
    assert call.decision is not None
    # The policy's choice: error (EIO), restart_on_corruption or panic_on_corruption.
    corruption = call.decision.data.get("corruption_mode", "error").removesuffix("_on_corruption")
    record = await asyncio.to_thread(
        agent.storage.mount_layer, call.args["layer_id"], call.context, corruption
    )
    return record.describe()


def prepare_unmount_layer(agent: Agent, args: dict[str, Any]) -> Prepared:
    return Prepared({"target": agent.storage.layer_target(args["layer_id"])})


async def unmount_layer(agent: Agent, call: Call) -> dict[str, Any]:
    await asyncio.to_thread(agent.storage.unmount_layer, call.args["layer_id"])
    return {"layer_id": call.args["layer_id"]}


async def prepare_mount_scratch(agent: Agent, args: dict[str, Any]) -> Prepared:
    # What would really be built: guest memory is encrypted only under SEV-SNP; a disk only
    # as dm-crypt over dm-integrity. The policy rules on it (allow_unencrypted_scratch).
    storage = agent.storage
    encrypted, kind = await asyncio.to_thread(storage.scratch_plan, args["device"])
    target = storage.scratch_target(args["container_id"])
    return Prepared({"target": target, "encrypted": encrypted}, kind)


async def mount_scratch(agent: Agent, call: Call) -> dict[str, Any]:
    record = await asyncio.to_thread(
        agent.storage.mount_scratch, call.args["container_id"], call.args["device"]
    )
    return {"container_id": record.container_id, "encrypted": record.encrypted, "kind": record.kind}


def prepare_unmount_scratch(agent: Agent, args: dict[str, Any]) -> Prepared:
    return Prepared({"target": agent.storage.scratch_target(args["container_id"])})


async def unmount_scratch(agent: Agent, call: Call) -> dict[str, Any]:
    await asyncio.to_thread(agent.storage.unmount_scratch, call.args["container_id"])
    return {"container_id": call.args["container_id"]}


def prepare_mount_overlay(agent: Agent, args: dict[str, Any]) -> Prepared:
    storage = agent.storage
    return Prepared(
        {
            "container_id": args["container_id"],
            "layer_paths": [storage.layer_target(layer_id) for layer_id in args["layer_ids"]],
            "target": storage.rootfs_target(args["container_id"]),
        }
    )


async def mount_overlay(agent: Agent, call: Call) -> dict[str, Any]:
    record = await asyncio.to_thread(
        agent.storage.mount_overlay, call.args["container_id"], call.args["layer_ids"]
    )
    return {"container_id": record.container_id, "layer_ids": record.layer_ids}


def prepare_unmount_overlay(agent: Agent, args: dict[str, Any]) -> Prepared:
    return Prepared({"target": agent.storage.rootfs_target(args["container_id"])})


async def unmount_overlay(agent: Agent, call: Call) -> dict[str, Any]:
    await asyncio.to_thread(agent.storage.unmount_overlay, call.args["container_id"])
    return {"container_id": call.args["container_id"]}


def _layer_ids(value: list[str]) -> str | None:
    if not value:
        return "needs at least one layer"
    if len(set(value)) != len(value):
        return "lists a layer twice"
    return None


def _layer_key(args: dict[str, Any]) -> tuple[str, ...]:
    return (f"layer:{args['layer_id']}",)


def _container_key(args: dict[str, Any]) -> tuple[str, ...]:
    return (f"container:{args['container_id']}",)  # its scratch and overlay are its own


def _overlay_keys(args: dict[str, Any]) -> tuple[str, ...]:
    return (*_container_key(args), *(f"layer:{layer_id}" for layer_id in args["layer_ids"]))


# veritysetup, hash checks and mkfs run after the reservation, without the mutation lock.
# The overlays' effect is one mount(2) and their decision changes the layers' user lists
# (entries no single resource key covers), so they hold the lock from decision to commit.
LAYER = {"mutating": True, "reserves": True, "keys": _layer_key}
SCRATCH = {"mutating": True, "reserves": True, "keys": _container_key}

OPERATIONS = [
    Operation(
        "mount_layer",
        mount_layer,
        point="mount_device",
        prepare=prepare_mount_layer,
        **LAYER,
        args={"layer_id": identifier(), "source": Field((str,), max_len=4096)},
        summary="open a layer as dm-verity (root hash computed, checked by policy)",
    ),
    Operation(
        "unmount_layer",
        unmount_layer,
        point="unmount_device",
        prepare=prepare_unmount_layer,
        **LAYER,
        args={"layer_id": identifier()},
    ),
    Operation(
        "mount_scratch",
        mount_scratch,
        point="mount_scratch",
        prepare=prepare_mount_scratch,
        **SCRATCH,
        args={
            "container_id": identifier(),
            "device": Field((str, type(None)), default=None, max_len=4096),
        },
    ),
    Operation(
        "unmount_scratch",
        unmount_scratch,
        point="unmount_scratch",
        prepare=prepare_unmount_scratch,
        **SCRATCH,
        args={"container_id": identifier()},
    ),
    Operation(
        "mount_overlay",
        mount_overlay,
        point="mount_overlay",
        prepare=prepare_mount_overlay,
        mutating=True,
        keys=_overlay_keys,
        args={
            "container_id": identifier(),
            "layer_ids": Field((list,), items=str, max_len=128, check=_layer_ids),
        },
    ),
    Operation(
        "unmount_overlay",
        unmount_overlay,
        point="unmount_overlay",
        prepare=prepare_unmount_overlay,
        mutating=True,
        keys=_container_key,
        args={"container_id": identifier()},
    ),
]
