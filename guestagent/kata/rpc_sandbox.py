"""CreateSandbox, DestroySandbox, GetGuestDetails, SetPolicy, GetOOMEvent,
RemoveStaleVirtiofsShareMounts.

CreateSandbox is the native create_sandbox (point create_sandbox: the policy's `sandbox`
rules the pod's id and hostname, and refuses a shared pid namespace), then records the pod;
it changes nothing in the guest: every container is still ruled when it is created, and the
pod's shared namespaces are its pause container's (the policy's `joins`). Anything else
CreateSandbox could ask the guest to do (kernel modules, guest hooks, storages, DNS lines)
has no rule and is refused by name. SetPolicy is the native set_policy: adopted only if
its SHA-256 equals the report's HOST_DATA.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from google.protobuf import empty_pb2

from guestagent import __version__
from guestagent.errors import AgentError, ErrorCode, InvalidArgumentError
from guestagent.kata.pb import agent_pb2
from guestagent.kata.registry import Rpc
from guestagent.kata.rpc_containers import LAYER_DRIVERS, SCRATCH_DRIVER, remove_container
from guestagent.kata.sandbox import Sandbox
from guestagent.kata.strict import allow_only

if TYPE_CHECKING:
    from guestagent.kata.context import KataContext

__all__ = ["RPCS"]

SERVICE = "grpc.AgentService"
MAX_HOSTNAME = 64
_SANDBOX_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
MEMORY_BLOCK_SIZE = Path("/sys/devices/system/memory/block_size_bytes")


async def create_sandbox(
    context: KataContext, request: agent_pb2.CreateSandboxRequest
) -> empty_pb2.Empty:
    allow_only(request, {"hostname", "sandbox_id", "sandbox_pidns"})
    if context.sandbox.created:
        raise AgentError(
            f"sandbox {context.sandbox.sandbox_id!r} exists: one sandbox per guest",
            code=ErrorCode.ALREADY_EXISTS,
        )
    if not _SANDBOX_ID.fullmatch(request.sandbox_id):
        raise InvalidArgumentError(
            "CreateSandboxRequest.sandbox_id must be 1-128 characters of [A-Za-z0-9_.-]"
        )
    if len(request.hostname) > MAX_HOSTNAME or "\x00" in request.hostname:
        raise InvalidArgumentError(f"hostname longer than {MAX_HOSTNAME} characters")
    await context.native(
        "create_sandbox",
        {
            "sandbox_id": request.sandbox_id,
            "hostname": request.hostname,
            "shared_pid_namespace": request.sandbox_pidns,
        },
    )
    context.sandbox.sandbox_id = request.sandbox_id
    context.sandbox.hostname = request.hostname
    return empty_pb2.Empty()


async def destroy_sandbox(
    context: KataContext, request: agent_pb2.DestroySandboxRequest
) -> empty_pb2.Empty:
    """Removes what is left of the pod's containers (each through RemoveContainer's path)."""
    for cid in sorted(context.sandbox.containers):
        await remove_container(context, agent_pb2.RemoveContainerRequest(container_id=cid))
    context.sandbox = Sandbox()
    return empty_pb2.Empty()


async def guest_details(
    context: KataContext, request: agent_pb2.GuestDetailsRequest
) -> agent_pb2.GuestDetailsResponse:
    response = agent_pb2.GuestDetailsResponse()
    if request.mem_block_size:
        # No memory hotplug support: 0 tells the shim so.
        with contextlib.suppress(OSError, ValueError):
            response.mem_block_size_bytes = int(MEMORY_BLOCK_SIZE.read_text().strip(), 16)
    details = response.agent_details
    details.version = f"guestagent {__version__}"
    details.init_daemon = os.getpid() == 1
    details.storage_handlers.extend([*sorted(LAYER_DRIVERS), SCRATCH_DRIVER])
    details.supports_seccomp = True  # a seccomp profile the policy rules reaches runc
    return response


async def set_policy(context: KataContext, request: agent_pb2.SetPolicyRequest) -> empty_pb2.Empty:
    await context.native("set_policy", {"policy": request.policy.encode()})
    return empty_pb2.Empty()


async def get_oom_event(
    context: KataContext, request: agent_pb2.GetOOMEventRequest
) -> agent_pb2.OOMEvent:
    """Long-polled by the shim: the native wait_oom_event (point container_state)."""
    result = await context.native("wait_oom_event")
    return agent_pb2.OOMEvent(container_id=result["container_id"] or "")


async def remove_stale_virtiofs_share_mounts(
    context: KataContext, request: agent_pb2.RemoveStaleVirtiofsShareMountsRequest
) -> empty_pb2.Empty:
    """No virtio-fs share is ever mounted (the host's files are not trusted), so none is stale."""
    return empty_pb2.Empty()


RPCS = [
    Rpc(SERVICE, "CreateSandbox", agent_pb2.CreateSandboxRequest, empty_pb2.Empty,
        create_sandbox, mutating=True),
    Rpc(SERVICE, "DestroySandbox", agent_pb2.DestroySandboxRequest, empty_pb2.Empty,
        destroy_sandbox, mutating=True),
    Rpc(SERVICE, "GetGuestDetails", agent_pb2.GuestDetailsRequest,
        agent_pb2.GuestDetailsResponse, guest_details),
    Rpc(SERVICE, "SetPolicy", agent_pb2.SetPolicyRequest, empty_pb2.Empty, set_policy,
        mutating=True),
    Rpc(SERVICE, "GetOOMEvent", agent_pb2.GetOOMEventRequest, agent_pb2.OOMEvent,
        get_oom_event),
    Rpc(SERVICE, "RemoveStaleVirtiofsShareMounts",
        agent_pb2.RemoveStaleVirtiofsShareMountsRequest, empty_pb2.Empty,
        remove_stale_virtiofs_share_mounts),
]  # fmt: skip
