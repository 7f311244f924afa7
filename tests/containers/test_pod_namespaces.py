"""A pod on real runc and crun: the app container joins the pause container's IPC, UTS and
network namespaces because the policy names those joins, at paths the agent computed from the
pause container it started; the namespaces are the pause's (same inodes), not the agent's,
and the hostname is the pause's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from container_rootfs import build_busybox_rootfs, host_spec
from manager_helpers import run, running_manager
from tests_markers import requires_runtime

from guestagent.containers.bundle import build_bundle_config
from guestagent.containers.manager import ContainerManager
from guestagent.containers.pod_namespaces import PROC_NAMES, open_joined
from guestagent.containers.spec import read_create
from guestagent.errors import InvalidArgumentError
from guestagent.policy.document import Policy, parse_policy
from guestagent.policy.engine import decide
from guestagent.policy.state import EMPTY_STATE, PolicyState

pytestmark = requires_runtime

LAYER = hashlib.sha256(b"pod layer").hexdigest()
# The pause container makes a POSIX message queue (a file in its IPC namespace's mqueue fs).
PAUSE = ["/bin/sh", "-c", "touch /dev/mqueue/pod-queue; exec sleep 1000"]
REPORT = [
    "/bin/sh",
    "-c",
    "for ns in ipc uts net; do readlink /proc/self/ns/$ns; done; hostname; ls /dev/mqueue",
]
JOINS = {"ipc": "pause", "uts": "pause", "network": "pause"}


def pod_policy() -> Policy:
    def entry(name: str, command: list[str], **extra: Any) -> dict[str, Any]:
        caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]  # host_spec's
        return {
            "name": name,
            "layers": [LAYER],
            "command": command,
            "env_rules": [{"pattern": "PATH=/bin"}, {"pattern": "TERM=xterm"}],
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "inheritable": [], "ambient": []},
            "allow_stdio_access": True,
            "hostname": "pod-[a-z]",
            **extra,
        }  # fmt: skip

    document = {
        "version": 1,
        "containers": [entry("pause", PAUSE), entry("app", REPORT, joins=JOINS)],
    }
    return parse_policy(json.dumps(document).encode())


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root filesystem per container (each holds its own overlay)."""
    base = tmp_path_factory.mktemp("pod")
    for name in ("pause", "app"):
        build_busybox_rootfs(base / name)
    return base


def spec(args: list[str], hostname: str = "pod-a") -> dict[str, Any]:
    result = host_spec(args)
    result["hostname"] = hostname
    return result


class Pod:
    """The policy state and the manager of one pod, each container ruled then built."""

    def __init__(self, policy: Policy, manager: ContainerManager, rootfs: Path) -> None:
        self.policy, self.manager, self.rootfs = policy, manager, rootfs
        self.state: PolicyState = self._decided(
            EMPTY_STATE, "mount_device", {"target": "/run/layers/0", "device_hash": LAYER}
        )
        self.ids: dict[str, str] = {}

    def _decided(self, state: PolicyState, point: str, request: dict[str, Any]) -> PolicyState:
        decision = decide(self.policy, state, point, request)
        assert decision.allowed, decision.reason
        return decision.next_state.after

    def cid(self, name: str) -> str:
        return f"{name}{os.getpid()}"

    async def create(self, name: str, body: dict[str, Any], joins: dict[str, str]) -> int:
        cid, rootfs = self.cid(name), str(self.rootfs / name)
        self.state = self._decided(
            self.state,
            "mount_overlay",
            {"container_id": cid, "layer_paths": ["/run/layers/0"], "target": rootfs},
        )
        facts, seccomp = read_create(cid, body, rootfs, joins)
        decision = decide(self.policy, self.state, "create_container", facts)
        assert decision.allowed, decision.reason
        self.state = decision.next_state.after
        joined = open_joined(self.manager, facts["joins"])
        try:
            joined.check_hostname(facts)
            config = build_bundle_config(
                facts,
                decision.data,
                cgroups_path=self.manager.cgroups_path(cid),
                seccomp=seccomp,
                joined=joined.paths,
            )
            state = await self.manager.create(cid, config)
            joined.verify(state["pid"])
        finally:
            joined.close()
        await self.manager.start(cid)
        return state["pid"]


def test_app_joins_the_pause_containers_namespaces(tmp_path, rootfs, oci_runtime):
    async def scenario() -> tuple[list[str], list[str]]:
        async with running_manager(tmp_path, oci_runtime) as manager:
            pod = Pod(pod_policy(), manager, rootfs)
            pause_pid = await pod.create("pause", spec(PAUSE), {})
            owner = pod.cid("pause")
            for _ in range(100):  # the queue exists once the pause's shell has run
                if b"pod-queue" in _mqueues(pause_pid):
                    break
                await asyncio.sleep(0.05)
            await pod.create("app", spec(REPORT), dict.fromkeys(JOINS, owner))
            io = manager.io(pod.cid("app"))
            out, err = await io.stdout.read_all(), await io.stderr.read_all()
            assert await manager.wait(pod.cid("app"), timeout=30) == 0, err
            pause = [os.readlink(f"/proc/{pause_pid}/ns/{PROC_NAMES[t]}") for t in JOINS]
            return out.decode().split(), pause

    lines, pause = run(scenario())
    ours = [os.readlink(f"/proc/self/ns/{PROC_NAMES[t]}") for t in JOINS]
    assert lines == [*pause, "pod-a", "pod-queue"]  # the pause's queue, seen from the app
    assert all(a != b for a, b in zip(pause, ours, strict=True))  # not the agent's own


def _mqueues(pid: int) -> bytes:
    """The message queues in the IPC namespace of `pid`, listed from inside it."""
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-i", "-m", "ls", "/dev/mqueue"], capture_output=True
    ).stdout


def test_a_hostname_other_than_the_joined_one_is_refused(tmp_path, rootfs):
    async def scenario() -> None:
        async with running_manager(tmp_path) as manager:
            pod = Pod(pod_policy(), manager, rootfs)
            await pod.create("pause", spec(PAUSE), {})
            owner = pod.cid("pause")
            with pytest.raises(InvalidArgumentError, match="joins the UTS namespace"):
                await pod.create("app", spec(REPORT, "pod-b"), dict.fromkeys(JOINS, owner))
            assert [c["container_id"] for c in manager.list()] == [owner]

    run(scenario())
