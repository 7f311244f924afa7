"""CreateContainer, StartContainer, RemoveContainer, StatsContainer.

CreateContainer becomes the native sequence, each step through the dispatcher and its
enforcement point: `mount_layer` per layer storage (point mount_device: the agent computes
the dm-verity root hash from the device; a host-stated hash is refused, not trusted),
`mount_scratch` (mount_scratch), `mount_overlay` (mount_overlay) and `create_container`
(create_container: the OCI spec, turned back into JSON, read by the native spec reader and
ruled by the policy). A failure undoes the steps already taken, newest first.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

from google.protobuf import empty_pb2

from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError, NotFoundError
from guestagent.kata.oci_json import spec_to_json
from guestagent.kata.pb import agent_pb2
from guestagent.kata.registry import Rpc
from guestagent.kata.sandbox import ContainerResources
from guestagent.kata.strict import allow_only

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

log = logging.getLogger("guestagent.kata")
SERVICE = "grpc.AgentService"
LAYER_FSTYPES = frozenset(("erofs", "ext4"))
# Kata's block-device drivers; what matters is that the source is a device (or layer image)
# the native mount_layer accepts and whose verity tree the agent reads itself.
LAYER_DRIVERS = frozenset(("blk", "virtio-blk", "virtio-blk-pci", "scsi", "dm-verity"))
SCRATCH_DRIVER = "scratch"
KATA_RUN = "/run/kata-containers/"


def layer_id_for(source: str) -> str:
    """One layer id per source device, so containers of a pod share a mounted layer."""
    return "kata-" + hashlib.sha256(source.encode()).hexdigest()[:24]


def _read_storages(
    storages: Any,
) -> tuple[list[str], str | None, bool]:
    """(layer sources in order, scratch device or None, whether a scratch storage was given)."""
    layers: list[str] = []
    scratch: str | None = None
    has_scratch = False
    for index, storage in enumerate(storages):
        path = f"CreateContainerRequest.storages[{index}]"
        allow_only(storage, {"driver", "source", "fstype", "options", "mount_point"}, path)
        if storage.mount_point and not storage.mount_point.startswith(KATA_RUN):
            raise InvalidArgumentError(
                f"{path}.mount_point must lie under {KATA_RUN}; the agent chooses every guest "
                "path itself and never mounts where the host says"
            )
        if storage.driver == SCRATCH_DRIVER:
            if has_scratch:
                raise InvalidArgumentError(f"{path}: a second scratch storage")
            has_scratch = True
            scratch = storage.source or None
            continue
        if storage.driver not in LAYER_DRIVERS or storage.fstype not in LAYER_FSTYPES:
            raise InvalidArgumentError(
                f"{path}: storage driver {storage.driver!r} with fstype {storage.fstype!r} is "
                f"not supported: layers are {sorted(LAYER_DRIVERS)} devices holding "
                f"{sorted(LAYER_FSTYPES)} with an appended dm-verity tree, plus an optional "
                f"{SCRATCH_DRIVER!r} storage"
            )
        if any(option not in ("ro",) for option in storage.options):
            raise InvalidArgumentError(
                f"{path}.options {list(storage.options)}: layers are always mounted read-only, "
                "nodev, nosuid, as dm-verity, with the root hash the agent computes"
            )
        if not storage.source:
            raise InvalidArgumentError(f"{path}.source must name the layer device")
        layers.append(storage.source)
    return layers, scratch, has_scratch


async def create_container(
    context: KataContext, request: agent_pb2.CreateContainerRequest
) -> empty_pb2.Empty:
    allow_only(request, {"container_id", "exec_id", "storages", "OCI"})
    cid = request.container_id
    if not context.sandbox.created:
        raise AgentError(
            "CreateSandbox must come before CreateContainer", code=ErrorCode.INVALID_STATE
        )
    if request.exec_id and request.exec_id != cid:
        raise InvalidArgumentError("CreateContainerRequest.exec_id must equal container_id")
    if not request.HasField("OCI"):
        raise InvalidArgumentError("CreateContainerRequest.OCI (the OCI spec) is required")
    layers, scratch, _ = _read_storages(request.storages)
    if not layers:
        raise InvalidArgumentError(
            "CreateContainerRequest.storages names no layer: a container's root filesystem is "
            "always an overlay of verified layers"
        )
    spec = spec_to_json(request.OCI, str(context.agent.state_dir / "shared"))
    resources = ContainerResources()
    async with context.sandbox.lock:
        if cid in context.sandbox.containers:
            raise AgentError(f"container {cid!r} already exists", code=ErrorCode.ALREADY_EXISTS)
        try:
            await _mount(context, cid, layers, scratch, resources)
            await context.native(
                "create_container",
                {
                    "container_id": cid,
                    "spec": spec,
                    "stdin": True,
                    "joins": _joins(context, cid, spec),
                },
            )
        except BaseException:
            await _release(context, cid, resources)
            raise
        context.sandbox.containers[cid] = resources
    return empty_pb2.Empty()


def _joins(context: KataContext, cid: str, spec: dict[str, Any]) -> dict[str, str]:
    """What Kata does for every container but the sandbox's own (the pause container, whose
    id is the sandbox id): join its IPC and UTS namespaces, and its network namespace when the
    spec has one. Only a request: the policy's `joins` decides, and names the pause."""
    sandbox_id = context.sandbox.sandbox_id
    if cid == sandbox_id or sandbox_id not in context.sandbox.containers:
        return {}
    joins = dict.fromkeys(("ipc", "uts"), sandbox_id)
    namespaces = spec.get("linux", {}).get("namespaces", [])
    if any(ns.get("type") == "network" for ns in namespaces):
        joins["network"] = sandbox_id
    return joins


async def _mount(
    context: KataContext,
    cid: str,
    sources: list[str],
    scratch: str | None,
    resources: ContainerResources,
) -> None:
    sandbox = context.sandbox
    layer_ids = []
    for source in sources:
        layer_id = layer_id_for(source)
        if layer_id not in context.agent.storage.layers:
            await context.native("mount_layer", {"layer_id": layer_id, "source": source})
        sandbox.layer_users[layer_id] = sandbox.layer_users.get(layer_id, 0) + 1
        resources.layer_ids.append(layer_id)
        layer_ids.append(layer_id)
    await context.native("mount_scratch", {"container_id": cid, "device": scratch})
    resources.scratch = True
    # Layer storages are listed base layer first, the order of the policy's `layers`.
    await context.native("mount_overlay", {"container_id": cid, "layer_ids": layer_ids})
    resources.overlay = True


async def _release(context: KataContext, cid: str, resources: ContainerResources) -> list[str]:
    """Undo a container's storage, newest first, each step through the dispatcher."""
    problems = []
    steps: list[tuple[str, dict[str, Any]]] = []
    if resources.overlay:
        steps.append(("unmount_overlay", {"container_id": cid}))
    if resources.scratch:
        steps.append(("unmount_scratch", {"container_id": cid}))
    sandbox = context.sandbox
    for layer_id in reversed(resources.layer_ids):
        sandbox.layer_users[layer_id] -= 1
        if sandbox.layer_users[layer_id] == 0:
            del sandbox.layer_users[layer_id]
            steps.append(("unmount_layer", {"layer_id": layer_id}))
    for op, args in steps:
        try:
            await context.native(op, args)
        except AgentError as exc:
            problems.append(f"{op}: {exc.message}")
            log.error("kata release step failed", extra={"op": op, "reason": exc.message})
    return problems


def _known(context: KataContext, cid: str) -> ContainerResources:
    resources = context.sandbox.containers.get(cid)
    if resources is None:
        raise NotFoundError(f"no container {cid!r} in this sandbox")
    return resources


async def start_container(
    context: KataContext, request: agent_pb2.StartContainerRequest
) -> empty_pb2.Empty:
    await context.native("start_container", {"container_id": request.container_id})
    return empty_pb2.Empty()


async def remove_container(
    context: KataContext, request: agent_pb2.RemoveContainerRequest
) -> empty_pb2.Empty:
    allow_only(request, {"container_id", "timeout"})
    cid = request.container_id
    async with context.sandbox.lock:
        resources = _known(context, cid)
        await context.native("delete_container", {"container_id": cid})
        del context.sandbox.containers[cid]
        problems = await _release(context, cid, resources)
    if problems:
        raise AgentError(
            f"container {cid!r} removed, but not all of its storage: {'; '.join(problems)}",
            code=ErrorCode.STORAGE,
        )
    return empty_pb2.Empty()


async def stats_container(
    context: KataContext, request: agent_pb2.StatsContainerRequest
) -> agent_pb2.StatsContainerResponse:
    stats = await context.native("stats", {"container_id": request.container_id})
    response = agent_pb2.StatsContainerResponse()
    cgroup = response.cgroup_stats
    if stats.get("cpu_usage_usec") is not None:
        cgroup.cpu_stats.cpu_usage.total_usage = stats["cpu_usage_usec"] * 1000
    if stats.get("memory_current") is not None:
        cgroup.memory_stats.usage.usage = stats["memory_current"]
    if stats.get("memory_max") is not None:
        cgroup.memory_stats.usage.limit = stats["memory_max"]
    if stats.get("pids_current") is not None:
        cgroup.pids_stats.current = stats["pids_current"]
    io = stats.get("io") or {}
    for op, key in (("Read", "rbytes"), ("Write", "wbytes")):
        if io.get(key):
            cgroup.blkio_stats.io_service_bytes_recursive.add(op=op, value=io[key])
    return response


RPCS = [
    Rpc(SERVICE, "CreateContainer", agent_pb2.CreateContainerRequest, empty_pb2.Empty,
        create_container, mutating=True),
    Rpc(SERVICE, "StartContainer", agent_pb2.StartContainerRequest, empty_pb2.Empty,
        start_container, mutating=True),
    Rpc(SERVICE, "RemoveContainer", agent_pb2.RemoveContainerRequest, empty_pb2.Empty,
        remove_container, mutating=True),
    Rpc(SERVICE, "StatsContainer", agent_pb2.StatsContainerRequest,
        agent_pb2.StatsContainerResponse, stats_container),
]  # fmt: skip
