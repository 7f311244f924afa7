"""SIGKILL the agent at points of mount and create, restart it on the same state directory:
it removes what the earlier run left (containers, cgroups, mounts, loop devices, bundles) before
it serves, says so in `status`, and the same ids work again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from guestagent.client import Client
from guestagent.containers.stats import cgroup_dirs
from guestagent.demo import assets
from tests.integration.agent_process import wait_for_socket
from tests.integration.test_end_to_end import World, agent_args, mounts_under, read_all, world

pytestmark = [pytest.mark.root, pytest.mark.runtime]
__all__ = ["world"]  # the module fixture, shared with the end-to-end tests


@contextmanager
def agent_on(workdir: Path, world: World) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """One agent process on `workdir`'s state directory and cgroup parent (kept across runs)."""
    socket_path = workdir / "agent.sock"
    socket_path.unlink(missing_ok=True)
    log = open(workdir / "agent.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "guestagent", "serve", "--listen", f"unix://{socket_path}",
         "--state-dir", str(workdir / "state"), "--cgroup-parent", f"ga-restart-{workdir.name}",
         *agent_args(world, "--policy", str(world.policy))],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        wait_for_socket(str(socket_path), process)
        yield process, f"unix://{socket_path}"
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        log.close()


def _up_to(client: Client, world: World, point: str) -> None:
    steps = [
        ("layer", "mount_layer", {"layer_id": "base", "source": str(world.layer)}),
        ("scratch", "mount_scratch", {"container_id": "c1"}),
        ("overlay", "mount_overlay", {"container_id": "c1", "layer_ids": ["base"]}),
        ("created", "create_container",
         {"container_id": "c1", "stdin": True, "spec": assets.host_spec()}),
        ("started", "start_container", {"container_id": "c1"}),
    ]  # fmt: skip
    for name, op, args in steps:
        if point == f"during-{name}":
            client.send(op, args)  # no reply awaited: the kill lands while it runs
            time.sleep(0.05)
            return
        client.call(op, args)
        if name == point:
            return


def _run_demo(client: Client, world: World) -> None:
    _up_to(client, world, "started")
    client.call("write_stdin", {"container_id": "c1", "data": b"now\n", "close": True})
    assert read_all(client, "c1") == b"hello from a verified layer\nbye now\n"
    assert client.call("wait_process", {"container_id": "c1"}) == {"exit_code": 0}
    for op, args in [
        ("delete_container", {"container_id": "c1"}),
        ("unmount_overlay", {"container_id": "c1"}),
        ("unmount_scratch", {"container_id": "c1"}),
        ("unmount_layer", {"layer_id": "base"}),
    ]:
        client.call(op, args)


def _container_pids(cgroup_parent: str) -> list[int]:
    pids = []
    for path in cgroup_dirs(f"/{cgroup_parent}"):
        for procs in path.rglob("cgroup.procs"):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


@pytest.mark.parametrize(
    "point", ["layer", "overlay", "created", "started", "during-layer", "during-created"]
)
def test_killed_agent_leaves_nothing_after_restart(world: World, point: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ga-rs-"))
    state = str(workdir / "state")
    cgroup_parent = f"ga-restart-{workdir.name}"
    try:
        with agent_on(workdir, world) as (first, uri), Client.connect(uri) as client:
            _up_to(client, world, point)
            old_pids = _container_pids(cgroup_parent)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        if point in ("started", "created"):
            assert old_pids and mounts_under(state), "the kill left work for the restart"
        with agent_on(workdir, world) as (second, uri), Client.connect(uri) as client:
            status = client.status()
            found = status["reconciled"]["found"]
            assert status["reconciled"]["failures"] == []
            if point in ("created", "started"):
                assert any(f.startswith("container c1") for f in found), found
            if point not in ("during-layer",):
                assert any(f.startswith("mount ") for f in found), found
            # Nothing of the earlier run is left ...
            assert mounts_under(state) == []
            assert _container_pids(cgroup_parent) == []
            for pid in old_pids:
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
            assert not (workdir / "state" / "containers" / "bundles" / "c1").exists()
            # ... and the same ids work again.
            _run_demo(client, world)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        assert mounts_under(state) == []
    finally:
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
        if os.path.isdir(f"/sys/fs/cgroup/{cgroup_parent}"):
            os.rmdir(f"/sys/fs/cgroup/{cgroup_parent}")


def test_leftovers_that_cannot_be_removed_stop_the_agent(tmp_path: Path) -> None:
    """Fail closed: a mount an earlier run left that is busy now keeps the agent from serving."""
    import asyncio

    from guestagent.errors import AgentError
    from guestagent.server.agent import Agent, AgentConfig
    from guestagent.storage.mounts import mount, umount

    state = tmp_path / "state"
    left = state / "storage" / "scratch" / "c1"
    left.mkdir(parents=True)
    mount("tmpfs", str(left), "tmpfs")
    busy = os.open(left / "held", os.O_CREAT | os.O_RDWR)  # keeps the mount busy
    config = AgentConfig(
        listen=[f"unix://{tmp_path}/a.sock"],
        state_dir=str(state),
        snp="none",
        manage_containers=False,
    )

    async def start(agent: Agent) -> None:
        try:
            await agent.start()
        finally:
            await agent.release()

    try:
        agent = Agent(config)
        with pytest.raises(AgentError, match="refusing to serve") as refused:
            asyncio.run(start(agent))
        assert f"mount {left}" in refused.value.message
        assert not (tmp_path / "a.sock").exists()
    finally:
        os.close(busy)
    agent = Agent(config)  # released: the next start removes it and serves
    asyncio.run(start(agent))
    assert agent.reconciled.found == [f"mount {left}", f"directory {state / 'storage'}"]
    assert mounts_under(str(state)) == []
    if mounts_under(str(left)):
        umount(str(left))
