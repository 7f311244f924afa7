"""The pod sequence a Kata shim runs (health, policy, sandbox, pause + app containers, exec,
stdio, signals, waits, removal, destroy) with denials, over any KataClient connection: the
host tier drives it on a unix socket, the VM tier on the guest's virtio-serial channel."""

from __future__ import annotations

import asyncio
import os

import pytest

from guestagent.kata.client import AGENT, HEALTH, KataClient, KataRpcError
from guestagent.kata.pb import agent_pb2, health_pb2
from guestagent.kata.ttrpc import Code
from tests.kata import pod

Empty = agent_pb2.DestroySandboxRequest  # any empty message parses google.protobuf.Empty


async def read_all(client: KataClient, method: str, cid: str, exec_id: str) -> bytes:
    out = b""
    while True:
        chunk = await client.call(
            AGENT, method, agent_pb2.ReadStreamRequest(container_id=cid, exec_id=exec_id, len=4096),
            agent_pb2.ReadStreamResponse,
        )  # fmt: skip
        if not chunk.data:
            return out
        out += chunk.data


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return [line.split()[4] for line in info if line.split()[4].startswith(path)]


async def lifecycle(client: KataClient, policy: bytes, source: str, state_dir: str | None) -> None:
    """The pod sequence a Kata shim runs, with denials; `state_dir` (host tier) is checked
    for leftover mounts."""

    async def rpc(method: str, request: object, response: type = Empty, **kw: object) -> object:
        return await client.call(AGENT, method, request, response, **kw)  # type: ignore[arg-type]

    health = await client.call(
        HEALTH, "Check", health_pb2.CheckRequest(), health_pb2.HealthCheckResponse, timeout=30
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    await rpc("SetPolicy", agent_pb2.SetPolicyRequest(policy=policy.decode()))
    await rpc(
        "CreateSandbox", agent_pb2.CreateSandboxRequest(hostname="pod", sandbox_id=pod.SANDBOX_ID)
    )
    details = await rpc(
        "GetGuestDetails",
        agent_pb2.GuestDetailsRequest(mem_block_size=True),
        agent_pb2.GuestDetailsResponse,
    )
    assert details.agent_details.supports_seccomp  # type: ignore[attr-defined]

    # The shim copies each container's hostname (hosts, resolv.conf) before creating it.
    for cid in ("bad", pod.SANDBOX_ID, "app"):
        await rpc("CopyFile", pod.copy_hostname(cid))
    with pytest.raises(KataRpcError) as denied:
        await rpc("CopyFile", agent_pb2.CopyFileRequest(path="/run/evil", file_size=1, data=b"x"))
    assert denied.value.code == Code.PERMISSION_DENIED and "copy_file" in denied.value.message

    # Denied: a command the policy does not list; explained in the ttrpc status.
    with pytest.raises(KataRpcError) as denied:
        await rpc("CreateContainer", pod.create_request("bad", ["/bin/sh"], source), timeout=60)
    assert denied.value.code == Code.PERMISSION_DENIED
    assert "policy.denied" in denied.value.message and "create_container" in denied.value.message
    if state_dir is not None:
        assert not [m for m in mounts_under(state_dir) if "bad" in m]  # undone, nothing left

    await rpc("CreateContainer", pod.create_request(pod.SANDBOX_ID, pod.PAUSE, source), timeout=60)
    await rpc("StartContainer", agent_pb2.StartContainerRequest(container_id=pod.SANDBOX_ID))
    await rpc("CreateContainer", pod.create_request("app", pod.APP, source), timeout=60)
    await rpc("StartContainer", agent_pb2.StartContainerRequest(container_id="app"))

    # WaitProcess blocks while the output is read on the same connection.
    waiting = asyncio.ensure_future(
        rpc("WaitProcess", agent_pb2.WaitProcessRequest(container_id="app", exec_id="app"),
            agent_pb2.WaitProcessResponse)
    )  # fmt: skip
    stdout = asyncio.ensure_future(read_all(client, "ReadStdout", "app", "app"))
    stderr = asyncio.ensure_future(read_all(client, "ReadStderr", "app", "app"))

    await rpc("ExecProcess", agent_pb2.ExecProcessRequest(
        container_id="app", exec_id="e1", process=pod.process(pod.EXEC)))  # fmt: skip
    motd = await read_all(client, "ReadStdout", "app", "e1")
    assert motd == b"this file was read through dm-verity-checked data\n"
    exec_wait = await rpc(
        "WaitProcess", agent_pb2.WaitProcessRequest(container_id="app", exec_id="e1"),
        agent_pb2.WaitProcessResponse,
    )  # fmt: skip
    assert exec_wait.status == 0  # type: ignore[attr-defined]
    await rpc("ExecProcess", agent_pb2.ExecProcessRequest(
        container_id="app", exec_id="e3", process=pod.process(pod.READ_HOSTNAME)))  # fmt: skip
    assert await read_all(client, "ReadStdout", "app", "e3") == b"pod\n"  # CopyFile's file
    # The pod: app is in the pause container's IPC and UTS namespaces, with its hostname.
    seen = []
    for cid, exec_id in ((pod.SANDBOX_ID, "n1"), ("app", "n2")):
        await rpc("ExecProcess", agent_pb2.ExecProcessRequest(
            container_id=cid, exec_id=exec_id, process=pod.process(pod.NS_REPORT)))  # fmt: skip
        seen.append((await read_all(client, "ReadStdout", cid, exec_id)).decode().split())
    assert seen[0] == seen[1], seen
    ipc, uts, hostname = seen[0]
    assert ipc.startswith("ipc:[") and uts.startswith("uts:[") and hostname == "pod"
    if state_dir is not None:  # host tier: not the agent's own namespaces
        assert ipc != os.readlink("/proc/self/ns/ipc") and uts != os.readlink("/proc/self/ns/uts")
    # Denied: an exec the policy does not list.
    with pytest.raises(KataRpcError) as denied:
        await rpc("ExecProcess", agent_pb2.ExecProcessRequest(
            container_id="app", exec_id="e2", process=pod.process(["/bin/sh"])))  # fmt: skip
    assert denied.value.code == Code.PERMISSION_DENIED

    written = await rpc(
        "WriteStdin", agent_pb2.WriteStreamRequest(container_id="app", exec_id="app",
                                                   data=b"world\n"),
        agent_pb2.WriteStreamResponse,
    )  # fmt: skip
    assert written.len == 6  # type: ignore[attr-defined]
    await rpc("CloseStdin", agent_pb2.CloseStdinRequest(container_id="app", exec_id="app"))
    assert (await waiting).status == 3  # type: ignore[attr-defined]
    assert await stdout == b"hello from the pod\n"
    assert await stderr == b"bye world\n"

    stats = await rpc("StatsContainer", agent_pb2.StatsContainerRequest(container_id="app"),
                      agent_pb2.StatsContainerResponse)  # fmt: skip
    assert stats.cgroup_stats.memory_stats.usage.usage > 0  # type: ignore[attr-defined]

    # Denied: a signal the policy does not list. (The pause process is pid 1 of its pid
    # namespace: only SIGKILL ends it.)
    with pytest.raises(KataRpcError) as denied:
        await rpc("SignalProcess", agent_pb2.SignalProcessRequest(
            container_id=pod.SANDBOX_ID, exec_id=pod.SANDBOX_ID, signal=2))  # fmt: skip
    assert denied.value.code == Code.PERMISSION_DENIED
    await rpc("SignalProcess", agent_pb2.SignalProcessRequest(
        container_id=pod.SANDBOX_ID, exec_id=pod.SANDBOX_ID, signal=9))  # fmt: skip
    paused = await rpc(
        "WaitProcess", agent_pb2.WaitProcessRequest(container_id=pod.SANDBOX_ID),
        agent_pb2.WaitProcessResponse,
    )  # fmt: skip
    assert paused.status == 128 + 9  # type: ignore[attr-defined]

    await rpc("RemoveContainer", agent_pb2.RemoveContainerRequest(container_id="app"))
    await rpc("RemoveStaleVirtiofsShareMounts", agent_pb2.RemoveStaleVirtiofsShareMountsRequest())
    await rpc("DestroySandbox", agent_pb2.DestroySandboxRequest())
    if state_dir is not None:
        assert mounts_under(state_dir) == []
