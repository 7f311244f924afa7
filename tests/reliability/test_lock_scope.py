"""A hanging runtime holds up only the container it works on.

The runtime is a real script in front of runc (`--runtime`) that stops at one verb until the
test lets it go, so every check below happens while a real external process is still running
for another request: no timing guesses, only order. Requests about the same container wait
for it (a duplicate create is then refused by the policy, a delete then removes what the
create made); requests about anything else are answered first.
"""

from __future__ import annotations

import os
import select
import shutil
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guestagent.client import Client, RemoteError
from guestagent.demo import assets
from guestagent.protocol.messages import encode_request
from tests.integration.agent_process import AgentProcess
from tests.reliability.world import (
    SLEEP_COMMAND,
    ReliabilityWorld,
    agent_with_policy,
    prepare_overlay,
    spec,
)

pytestmark = [pytest.mark.root, pytest.mark.runtime]


class HeldRuntime:
    """runc, except that `verb` on container c1 waits (at most 25 s) until `release()`;
    `fail` makes it exit 1 once released instead of running runc."""

    def __init__(self, directory: Path, verb: str) -> None:
        self.directory = directory
        self.path = directory / "held-runc"
        real = shutil.which("runc")
        self.path.write_text(
            "#!/bin/sh\n"
            "verb= id=\n"
            'for a in "$@"; do\n'
            f'  [ "$a" = {verb} ] && verb=1\n'
            '  [ "$a" = c1 ] && id=1\n'
            "done\n"
            'if [ -n "$verb" ] && [ -n "$id" ]; then\n'
            f'  touch "{directory}/entered"\n'
            "  i=0\n"
            f'  while [ ! -e "{directory}/release" ] && [ $i -lt 250 ]; do\n'
            "    sleep 0.1; i=$((i+1))\n"
            "  done\n"
            f'  [ -e "{directory}/fail" ] && exit 1\n'
            "fi\n"
            f'exec {real} "$@"\n'
        )
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def wait_entered(self) -> None:
        deadline = time.monotonic() + 20
        while not (self.directory / "entered").exists():
            assert time.monotonic() < deadline, "the runtime was never called"
            time.sleep(0.05)

    def release(self, fail: bool = False) -> None:
        if fail:
            (self.directory / "fail").touch()
        (self.directory / "release").touch()


@pytest.fixture
def agent_for(world: ReliabilityWorld, tmp_path: Path) -> Iterator[Any]:
    agents = []

    def start(verb: str) -> tuple[AgentProcess, HeldRuntime]:
        runtime = HeldRuntime(tmp_path, verb)
        context = agent_with_policy(world, "--runtime", str(runtime.path))
        agents.append(context)
        return context.__enter__(), runtime

    yield start
    for context in agents:
        context.__exit__(None, None, None)


def send(client: Client, request_id: int, op: str, args: dict[str, Any]) -> None:
    payload = encode_request(request_id, op, args)
    client.send_raw(struct.pack(">I", len(payload)) + payload)


def pending(client: Client) -> bool:
    """True while no reply is waiting on `client` (its one request in flight is unanswered)."""
    readable, _, _ = select.select([client.sock], [], [], 0.3)
    return not readable


def engine(client: Client) -> dict[str, int]:
    return client.status()["policy"]["engine_state"]


def bundles(agent: AgentProcess) -> list[str]:
    path = agent.workdir / "state" / "containers" / "bundles"
    return sorted(os.listdir(path)) if path.exists() else []


def cgroups(agent: AgentProcess) -> list[str]:
    parent = Path("/sys/fs/cgroup") / f"guestagent-test-{agent.workdir.name}"
    return sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.exists() else []


@pytest.mark.parametrize("verb", ["start", "exec"])
def test_a_hanging_start_or_exec_blocks_no_other_container(
    agent_for: Any, world: ReliabilityWorld, verb: str
) -> None:
    agent, runtime = agent_for(verb)
    with Client.connect(agent.uri) as held, Client.connect(agent.uri) as other:
        held.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(held, "c1")
        # The demo container (the one with an exec): its init waits on stdin, held open.
        init = SLEEP_COMMAND if verb == "start" else assets.DEMO_INIT
        create = {"container_id": "c1", "spec": spec(init), "stdin": verb == "exec"}
        held.call("create_container", create)
        if verb == "start":
            send(held, 1000, "start_container", {"container_id": "c1"})
        else:
            runtime.release()  # let the init start; the first exec is held
            held.call("start_container", {"container_id": "c1"})
            (runtime.directory / "release").unlink()
            process = assets.exec_process()
            send(held, 1000, "exec_process", {"container_id": "c1", "process": process})
        runtime.wait_entered()
        # While runc waits for c1: another layer, another container, reads.
        other.call("mount_layer", {"layer_id": "extra", "source": str(world.extra)})
        prepare_overlay(other, "c2")
        other.call("create_container", {"container_id": "c2", "spec": spec()})
        other.call("start_container", {"container_id": "c2"})
        assert other.call("wait_process", {"container_id": "c2", "timeout": 20}) == {"exit_code": 0}
        other.call("delete_container", {"container_id": "c2"})
        assert other.status()["containers"] == 1
        assert pending(held), f"{verb} did not wait for the runtime"
        runtime.release()
        reply = held.receive(1000)
        assert reply["ok"] is True, reply
        if verb == "exec":
            assert engine(other)["processes"] == 1
        held.call("delete_container", {"container_id": "c1"})
        assert bundles(agent) == []


def test_a_failed_start_after_a_hang_is_reverted(agent_for: Any, world: ReliabilityWorld) -> None:
    agent, runtime = agent_for("start")
    with Client.connect(agent.uri) as client, Client.connect(agent.uri) as other:
        client.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(client, "c1")
        client.call("create_container", {"container_id": "c1", "spec": spec()})
        send(client, 1000, "start_container", {"container_id": "c1"})
        runtime.wait_entered()
        assert engine(other)["started"] == 1  # reserved: every other decision sees it
        runtime.release(fail=True)
        failed = client.receive(1000)
        assert failed["ok"] is False and failed["error"]["code"] == "runtime.failed", failed
        assert engine(other)["started"] == 0  # the reservation is gone
        client.call("delete_container", {"container_id": "c1"})
        assert bundles(agent) == [] and cgroups(agent) == []


def test_a_duplicate_create_waits_and_is_refused(agent_for: Any, world: ReliabilityWorld) -> None:
    agent, runtime = agent_for("create")
    with Client.connect(agent.uri) as first, Client.connect(agent.uri) as second:
        first.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(first, "c1")
        send(first, 1000, "create_container", {"container_id": "c1", "spec": spec()})
        runtime.wait_entered()
        send(second, 2000, "create_container", {"container_id": "c1", "spec": spec()})
        assert pending(second)  # waits for the create of the same id
        status = second.status()  # reads do not wait
        assert status["containers"] == 0 and status["busy"] == ["container:c1"]
        runtime.release()
        assert first.receive(1000)["ok"] is True
        refused = second.receive(2000)
        assert refused["ok"] is False, refused
        assert refused["error"]["code"] == "policy.denied"
        assert "already exists" in refused["error"]["message"]
        assert engine(second)["created"] == 1
        assert [c["container_id"] for c in second.call("list_containers")["containers"]] == ["c1"]
        first.call("delete_container", {"container_id": "c1"})
        assert bundles(agent) == [] and cgroups(agent) == []


@pytest.mark.parametrize("fail", [False, True], ids=["create succeeds", "create fails"])
def test_a_delete_during_a_pending_create_leaves_nothing(
    agent_for: Any, world: ReliabilityWorld, fail: bool
) -> None:
    agent, runtime = agent_for("create")
    with Client.connect(agent.uri) as first, Client.connect(agent.uri) as second:
        first.call("mount_layer", {"layer_id": "base", "source": str(world.layer)})
        prepare_overlay(first, "c1")
        send(first, 1000, "create_container", {"container_id": "c1", "spec": spec()})
        runtime.wait_entered()
        send(second, 2000, "delete_container", {"container_id": "c1"})
        send(second, 2001, "unmount_overlay", {"container_id": "c1"})
        assert pending(second)
        runtime.release(fail=fail)
        created = first.receive(1000)
        deleted = second.receive(2000)
        unmounted = second.receive(2001)
        assert created["ok"] is not fail, created
        if fail:  # nothing was created: the policy refuses the delete
            assert deleted["ok"] is False and deleted["error"]["code"] == "policy.denied"
        else:
            assert deleted["ok"] is True, deleted
        assert unmounted["ok"] is True, unmounted  # after the delete, in order
        state = engine(second)
        assert (state["created"], state["overlays"]) == (0, 0)
        assert bundles(agent) == [] and cgroups(agent) == []
        with pytest.raises(RemoteError):
            second.call("container_state", {"container_id": "c1"})
