"""Refusals in Kata's wire format, and GetOOMEvent from a real OOM kill: against the real
agent with the pod policy adopted and runc."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from guestagent.kata.client import AGENT, KataClient, KataRpcError
from guestagent.kata.pb import agent_pb2, oci_pb2, types_pb2
from guestagent.kata.ttrpc import Code
from tests.kata import pod
from tests.kata.conftest import World
from tests.kata.kata_agent import KataAgent

pytestmark = [pytest.mark.root, pytest.mark.runtime]
Empty = agent_pb2.DestroySandboxRequest


def drive(agent: KataAgent, world: World, body: Callable[[Any], Awaitable[None]]) -> None:
    async def go() -> None:
        async with await KataClient.connect(agent.kata_uri) as client:

            async def rpc(
                method: str, request: Any, response: type = Empty, timeout: float = 120
            ) -> Any:
                return await client.call(AGENT, method, request, response, timeout=timeout)

            await rpc("SetPolicy", agent_pb2.SetPolicyRequest(policy=world.policy.decode()))
            await rpc("CreateSandbox", agent_pb2.CreateSandboxRequest(sandbox_id=pod.SANDBOX_ID))
            for cid in (pod.SANDBOX_ID, "app", "hog"):
                await rpc("CopyFile", pod.copy_hostname(cid))
            await asyncio.wait_for(body(rpc), 240)

    try:
        asyncio.run(go())
    except BaseException:
        print(agent.process.stderr_text()[-6000:])
        raise


def test_unruled_fields_are_refused_by_name(world: World, pod_agent: KataAgent) -> None:
    source = str(world.layer)

    async def body(rpc: Any) -> None:
        # A spec field the native spec reader does not translate: refused as natively.
        request = pod.create_request("app", pod.APP, source)
        request.OCI.Linux.UIDMappings.add(HostID=0, ContainerID=0, Size=1)
        with pytest.raises(KataRpcError) as refused:
            await rpc("CreateContainer", request)
        assert refused.value.code == Code.PERMISSION_DENIED
        assert "linux.uidMappings" in refused.value.message
        # A request field no rule here handles.
        request = pod.create_request("app", pod.APP, source)
        request.devices.add(id="vdc", type="blk", vm_path="/dev/vdc")
        with pytest.raises(KataRpcError) as refused:
            await rpc("CreateContainer", request)
        assert refused.value.code == Code.INVALID_ARGUMENT
        assert "CreateContainerRequest.devices" in refused.value.message
        assert "protocol.unknown_field" in refused.value.message
        # A storage stating its own root hash: the agent computes it, never takes it.
        request = pod.create_request("app", pod.APP, source)
        request.storages[0].driver_options.append("root_hash=" + "0" * 64)
        with pytest.raises(KataRpcError) as refused:
            await rpc("CreateContainer", request)
        assert "storages[0].driver_options" in refused.value.message
        # A layer the policy does not list (the hash is the agent's own measurement).
        request = pod.create_request("app", pod.APP, str(world.other_layer))
        with pytest.raises(KataRpcError) as refused:
            await rpc("CreateContainer", request)
        assert refused.value.code == Code.PERMISSION_DENIED
        assert "mount_device" in refused.value.message
        # UpdateInterface: what the host states of a link is checked, or has no rule.
        for interface, says in (
            (types_pb2.Interface(name="lo", devicePath="02/00"),
             "devicePath 02/00 is not the PCI path of lo (none)"),
            (types_pb2.Interface(name="lo", raw_flags=0x1083), "raw_flags: IFF_NOARP has no rule"),
            (types_pb2.Interface(name="lo", type="sriov"), "type 'sriov' is none of Kata's"),
        ):  # fmt: skip
            with pytest.raises(KataRpcError) as refused:
                await rpc("UpdateInterface", agent_pb2.UpdateInterfaceRequest(interface=interface))
            assert refused.value.code == Code.INVALID_ARGUMENT and says in refused.value.message
        # CreateSandbox asking for what has no rule.
        with pytest.raises(KataRpcError) as refused:
            await rpc(
                "CreateSandbox",
                agent_pb2.CreateSandboxRequest(
                    sandbox_id="q", kernel_modules=[agent_pb2.KernelModule(name="evil")]
                ),
            )
        assert "kernel_modules" in refused.value.message
        # Nothing was left behind by the refused requests: the pod still creates.
        await rpc("CreateContainer", pod.create_request(pod.SANDBOX_ID, pod.PAUSE, source))
        await rpc("CreateContainer", pod.create_request("app", pod.APP, source))
        # A pod member whose policy entry names no join: Kata asks to join the pause
        # container's IPC and UTS namespaces, and the policy refuses it, naming the field.
        with pytest.raises(KataRpcError) as refused:
            await rpc("CreateContainer", pod.create_request("hog", pod.HOG, source))
        assert refused.value.code == Code.PERMISSION_DENIED
        assert "joins.ipc: the policy names no ipc namespace" in refused.value.message
        for cid in ("app", pod.SANDBOX_ID):
            await rpc("RemoveContainer", agent_pb2.RemoveContainerRequest(container_id=cid))

    drive(pod_agent, world, body)


def copy(path: str, kind: int, data: bytes = b"", owner: int = 0) -> agent_pb2.CopyFileRequest:
    return agent_pb2.CopyFileRequest(
        path=pod.SHARED + path, file_size=len(data), file_mode=kind, uid=owner, gid=owner,
        data=data, dir_mode=0o755,
    )  # fmt: skip


def test_copy_file_makes_a_projected_volume(world: World, pod_agent: KataAgent) -> None:
    """Kubernetes' projected volume layout, with a non-root owner; links ruled, not followed."""
    volume = world.base / "state" / "shared" / pod.SHARED.strip("/") / "p1-token"

    async def body(rpc: Any) -> None:
        await rpc("CopyFile", copy("p1-token/..2026", stat.S_IFDIR | 0o750, owner=1000))
        await rpc("CopyFile", copy("p1-token/..2026/token", stat.S_IFREG | 0o640, b"t", 1000))
        await rpc("CopyFile", copy("p1-token/..data", stat.S_IFLNK | 0o777, b"..2026"))
        await rpc("CopyFile", copy("p1-token/token", stat.S_IFLNK | 0o777, b"..data/token"))
        for path, kind, data, owner, rule in (
            ("p1-token/evil", stat.S_IFLNK, b"../../../../../../etc/shadow", 0, "target"),
            ("p1-token/abs", stat.S_IFLNK, b"/etc/shadow", 0, "target"),
            ("p1-token/x", stat.S_IFREG | 0o644, b"x", 4242, "uid"),
        ):
            with pytest.raises(KataRpcError) as refused:
                await rpc("CopyFile", copy(path, kind, data, owner))
            assert refused.value.code == Code.PERMISSION_DENIED
            assert f"(rule copy_file.{rule})" in refused.value.message

    drive(pod_agent, world, body)
    for name, mode in (("..2026", 0o750), ("..2026/token", 0o640)):
        st = (volume / name).stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, mode)
    assert os.readlink(volume / "..data") == "..2026"
    assert (volume / "token").read_bytes() == b"t"
    assert sorted(p.name for p in volume.iterdir()) == ["..2026", "..data", "token"]


def test_oom_kill_is_reported_by_get_oom_event(world: World, pod_agent: KataAgent) -> None:
    async def body(rpc: Any) -> None:
        # Nothing was OOM-killed yet: a deadline ends the long poll with DeadlineExceeded.
        with pytest.raises(KataRpcError) as late:
            await rpc("GetOOMEvent", agent_pb2.GetOOMEventRequest(), timeout=0.5)
        assert late.value.code == Code.DEADLINE_EXCEEDED
        request = pod.create_request("hog", pod.HOG, str(world.layer))
        request.OCI.Linux.Resources.CopyFrom(
            oci_pb2.LinuxResources(Memory=oci_pb2.LinuxMemory(Limit=16 << 20))
        )
        await rpc("CreateContainer", request)
        event = asyncio.ensure_future(
            rpc("GetOOMEvent", agent_pb2.GetOOMEventRequest(), agent_pb2.OOMEvent)
        )
        await rpc("StartContainer", agent_pb2.StartContainerRequest(container_id="hog"))
        waited = await rpc(
            "WaitProcess", agent_pb2.WaitProcessRequest(container_id="hog"),
            agent_pb2.WaitProcessResponse,
        )  # fmt: skip
        assert waited.status == 137  # SIGKILL by the OOM killer
        assert (await event).container_id == "hog"
        await rpc("RemoveContainer", agent_pb2.RemoveContainerRequest(container_id="hog"))

    drive(pod_agent, world, body)


def test_create_sandbox_is_ruled_by_the_policy(world: World, pod_agent: KataAgent) -> None:
    async def go() -> None:
        async with await KataClient.connect(pod_agent.kata_uri) as client:

            async def rpc(method: str, request: Any) -> Any:
                return await client.call(AGENT, method, request, Empty)

            await rpc("SetPolicy", agent_pb2.SetPolicyRequest(policy=world.policy.decode()))
            for request, rule in (
                (agent_pb2.CreateSandboxRequest(sandbox_id="p1", sandbox_pidns=True),
                 "shared_pid_namespace"),
                (agent_pb2.CreateSandboxRequest(sandbox_id="p1", hostname="evil"), "hostname"),
                (agent_pb2.CreateSandboxRequest(sandbox_id="P_1"), "sandbox_id"),
            ):  # fmt: skip
                with pytest.raises(KataRpcError) as refused:
                    await rpc("CreateSandbox", request)
                assert refused.value.code == Code.PERMISSION_DENIED
                assert f"(rule create_sandbox.{rule})" in refused.value.message
            # Refused ones left nothing behind: the policy's sandbox is created.
            await rpc(
                "CreateSandbox", agent_pb2.CreateSandboxRequest(sandbox_id="p1", hostname="pod")
            )

    asyncio.run(go())


def test_set_policy_is_bound_to_host_data(world: World, pod_agent: KataAgent) -> None:
    async def go() -> None:
        async with await KataClient.connect(pod_agent.kata_uri) as client:
            other = world.policy.replace(b'"version": 1', b'"version": 1 ')
            with pytest.raises(KataRpcError) as refused:
                await client.call(
                    AGENT, "SetPolicy", agent_pb2.SetPolicyRequest(policy=other.decode()), Empty
                )
            assert refused.value.code == Code.PERMISSION_DENIED
            assert "policy.mismatch" in refused.value.message
            # As with set_policy: after a mismatch, not even the right policy is adopted.
            with pytest.raises(KataRpcError) as refused:
                await client.call(
                    AGENT,
                    "SetPolicy",
                    agent_pb2.SetPolicyRequest(policy=world.policy.decode()),
                    Empty,
                )
            assert refused.value.code == Code.PERMISSION_DENIED

    asyncio.run(go())
