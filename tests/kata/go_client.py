"""The Go ttrpc client (containerd's own ttrpc library, Debian's
golang-github-containerd-ttrpc-dev, built offline) and the pod sequence it runs, shared by the
host tier (a unix socket to the agent) and the VM tier (the guest's virtio-serial channel,
through QEMU's unix socket). The script encodes the protobuf messages; the Go side is
containerd's framing, stream ids, multiplexing and status handling."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from guestagent.kata.client import AGENT, HEALTH
from guestagent.kata.pb import agent_pb2, health_pb2
from guestagent.kata.ttrpc import Code
from tests.kata import pod

SOURCE = Path(__file__).parent / "interop" / "kataclient"
GOCODE = Path("/usr/share/gocode")
# Steps the policy (or the agent) refuses, and the one that is Unimplemented.
REFUSED = ("bad", "exec-bad", "kill-bad", "iptables")


class GoToolchainMissing(Exception):
    pass


def build_kataclient(workdir: Path) -> Path:
    """Build the client in GOPATH mode from Debian's packaged sources (nothing downloaded)."""
    if shutil.which("go") is None or not (GOCODE / "src/github.com/containerd/ttrpc").is_dir():
        raise GoToolchainMissing(
            "needs golang-go and golang-github-containerd-ttrpc-dev (scripts/test.sh installs them)"
        )
    gopath = workdir / "gopath"
    shutil.copytree(SOURCE, gopath / "src" / "kataclient")
    binary = gopath / "kataclient"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:{GOCODE}",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(gopath / "cache"),
    }
    subprocess.run(
        ["go", "build", "-o", str(binary), "kataclient"], cwd=gopath, env=env, check=True
    )
    return binary


def step(id: str, method: str, request: Message, *, service: str = AGENT, **extra: Any) -> dict:
    payload = base64.b64encode(request.SerializeToString()).decode()
    return {"id": id, "service": service, "method": method, "payload": payload, **extra}


def script(source: str, policy: bytes | None) -> list[dict]:
    """The pod sequence; `policy` None: one is in force already (the shim sends none then)."""
    a = agent_pb2
    steps = [
        step("check", "Check", health_pb2.CheckRequest(), service=HEALTH, timeout_ms=30000),
        step("sandbox", "CreateSandbox", a.CreateSandboxRequest(hostname="pod",
             sandbox_id=pod.SANDBOX_ID)),
        step("details", "GetGuestDetails", a.GuestDetailsRequest(mem_block_size=True)),
        step("copy-bad", "CopyFile", pod.copy_hostname("bad")),
        step("copy-pause", "CopyFile", pod.copy_hostname(pod.SANDBOX_ID)),
        step("copy-app", "CopyFile", pod.copy_hostname("app")),
        step("bad", "CreateContainer", pod.create_request("bad", ["/bin/sh"], source)),
        step("pause", "CreateContainer", pod.create_request(pod.SANDBOX_ID, pod.PAUSE, source)),
        step("pause-start", "StartContainer", a.StartContainerRequest(container_id=pod.SANDBOX_ID)),
        step("app", "CreateContainer", pod.create_request("app", pod.APP, source),
             timeout_ms=60000),
        step("app-start", "StartContainer", a.StartContainerRequest(container_id="app")),
        step("wait", "WaitProcess", a.WaitProcessRequest(container_id="app", exec_id="app"),
             background=True),
        step("stdout", "ReadStdout", a.ReadStreamRequest(container_id="app", exec_id="app",
             len=4096), background=True, drain=True),
        step("stderr", "ReadStderr", a.ReadStreamRequest(container_id="app", exec_id="app",
             len=4096), background=True, drain=True),
        step("exec", "ExecProcess", a.ExecProcessRequest(
            container_id="app", exec_id="e1", process=pod.process(pod.EXEC))),
        step("exec-out", "ReadStdout", a.ReadStreamRequest(container_id="app", exec_id="e1"),
             drain=True),
        step("exec-wait", "WaitProcess", a.WaitProcessRequest(container_id="app", exec_id="e1")),
        step("exec-bad", "ExecProcess", a.ExecProcessRequest(
            container_id="app", exec_id="e2", process=pod.process(["/bin/sh"]))),
        # The pod: app joined the pause container's IPC and UTS namespaces.
        step("ns-pause", "ExecProcess", a.ExecProcessRequest(
            container_id=pod.SANDBOX_ID, exec_id="n1", process=pod.process(pod.NS_REPORT))),
        step("ns-pause-out", "ReadStdout", a.ReadStreamRequest(container_id=pod.SANDBOX_ID,
             exec_id="n1"), drain=True),
        step("ns-app", "ExecProcess", a.ExecProcessRequest(
            container_id="app", exec_id="n2", process=pod.process(pod.NS_REPORT))),
        step("ns-app-out", "ReadStdout", a.ReadStreamRequest(container_id="app", exec_id="n2"),
             drain=True),
        step("stdin", "WriteStdin", a.WriteStreamRequest(container_id="app", exec_id="app",
             data=b"go\n")),
        step("close", "CloseStdin", a.CloseStdinRequest(container_id="app", exec_id="app")),
        {"await": "wait"}, {"await": "stdout"}, {"await": "stderr"},
        step("kill-bad", "SignalProcess", a.SignalProcessRequest(
            container_id=pod.SANDBOX_ID, signal=2)),
        step("kill", "SignalProcess", a.SignalProcessRequest(container_id=pod.SANDBOX_ID,
             signal=9)),
        step("pause-wait", "WaitProcess", a.WaitProcessRequest(container_id=pod.SANDBOX_ID)),
        step("remove", "RemoveContainer", a.RemoveContainerRequest(container_id="app")),
        step("stale", "RemoveStaleVirtiofsShareMounts", a.RemoveStaleVirtiofsShareMountsRequest()),
        step("destroy", "DestroySandbox", a.DestroySandboxRequest()),
        step("iptables", "SetIPTables", a.DestroySandboxRequest()),
    ]  # fmt: skip
    if policy is not None:
        steps.insert(1, step("policy", "SetPolicy", a.SetPolicyRequest(policy=policy.decode())))
    return steps


def decode(result: dict, message: type[Message], index: int = 0) -> Any:
    parsed = message()
    parsed.ParseFromString(base64.b64decode(result["payloads"][index] or ""))
    return parsed


def output(result: dict) -> bytes:
    data = b""
    for payload in result["payloads"]:
        chunk = agent_pb2.ReadStreamResponse()
        chunk.ParseFromString(base64.b64decode(payload or ""))
        data += chunk.data
    return data


def check(results: dict, host_tier: bool) -> None:
    """What the sequence must have done: every call but the refused ones succeeded, each
    refusal explained, output and exit statuses as the pod's programs make them."""
    failed = {k: v for k, v in results.items() if v["code"] and k not in REFUSED}
    assert failed == {}
    assert decode(results["check"], health_pb2.HealthCheckResponse).status == 1
    for denied in ("bad", "exec-bad", "kill-bad"):
        assert results[denied]["code"] == Code.PERMISSION_DENIED
        assert "policy.denied" in results[denied]["message"]
    assert "(rule create_container." in results["bad"]["message"]
    assert results["iptables"]["code"] == Code.UNIMPLEMENTED
    shared = output(results["ns-pause-out"]).split()
    assert shared == output(results["ns-app-out"]).split()
    assert shared[0].startswith(b"ipc:[") and shared[2] == b"pod"
    if host_tier:  # not the agent's own namespace
        assert shared[0] != os.readlink("/proc/self/ns/ipc").encode()
    assert output(results["exec-out"]) == b"this file was read through dm-verity-checked data\n"
    assert decode(results["exec-wait"], agent_pb2.WaitProcessResponse).status == 0
    assert output(results["stdout"]) == b"hello from the pod\n"
    assert output(results["stderr"]) == b"bye go\n"
    assert decode(results["wait"], agent_pb2.WaitProcessResponse).status == 3
    assert decode(results["pause-wait"], agent_pb2.WaitProcessResponse).status == 137
