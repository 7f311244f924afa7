"""Real containers through runc and crun (each test runs with both): lifecycle, exec, stdio,
signals, crashes and cleanup."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal

import pytest
from manager_helpers import run, running_manager
from tests_markers import requires_runtime

from guestagent.containers.process import StdioOptions
from guestagent.containers.runtime import RuntimeFailedError, find_runtime, preferred_runtimes
from guestagent.errors import AlreadyExistsError, InvalidStateError, NotFoundError

pytestmark = requires_runtime

PROCESS = {"cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}


def test_create_start_wait_reports_exit_codes(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            for cid, code in (("ok", 0), ("three", 3)):
                config = bundle_config(manager, cid, ["/bin/sh", "-c", f"exit {code}"])
                assert (await manager.create(cid, config))["status"] == "created"
                # a process this short may already have been reaped when start returns
                assert (await manager.start(cid))["status"] in ("running", "stopped")
                assert await manager.wait(cid, timeout=10) == code
                state = manager.state(cid)
                assert (state["status"], state["exit_code"]) == ("stopped", code)
            assert [c["container_id"] for c in manager.list()] == ["ok", "three"]
            await manager.delete("ok")
            with pytest.raises(NotFoundError):
                manager.state("ok")

    run(scenario())


def test_exec_output_and_exit_code(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("c", bundle_config(manager, "c", ["/bin/sleep", "60"]))
            assert (await manager.start("c"))["status"] == "running"
            args = ["/bin/sh", "-c", "echo out; echo err >&2; hostname; exit 4"]
            exec_id = await manager.exec("c", {**PROCESS, "args": args})
            io = manager.io("c", exec_id)
            assert await io.stdout.read_all() == b"out\ntest\n"
            assert await io.stderr.read_all() == b"err\n"
            assert await manager.wait("c", exec_id, timeout=10) == 4
            described = manager.state("c")["execs"][0]
            assert (described["exec_id"], described["exit_code"]) == (exec_id, 4)

    run(scenario())


def test_stdin_write_and_close(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "cat", ["/bin/sh", "-c", "cat; echo done"])
            await manager.create("cat", config, StdioOptions(stdin=True))
            await manager.start("cat")
            io = manager.io("cat")
            await io.stdin.write(b"line one\nline two\n")
            io.stdin.close()  # cat sees EOF only because we closed our end
            assert await io.stdout.read_all() == b"line one\nline two\ndone\n"
            assert await manager.wait("cat", timeout=10) == 0
            with pytest.raises(InvalidStateError):
                await io.stdin.write(b"late")

    run(scenario())


def test_large_output_arrives_complete_through_a_bounded_buffer(
    tmp_path, bundle_config, oci_runtime
):
    size, limit = 8 << 20, 1 << 20
    data = "/dev/shm/data"  # container-private tmpfs
    script = f"head -c {size} /dev/urandom > {data}; cat {data}; sha256sum {data} >&2"

    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "big", ["/bin/sh", "-c", script])
            await manager.create("big", config, StdioOptions(buffer_limit=limit))
            await manager.start("big")
            io = manager.io("big")
            digest, total = hashlib.sha256(), 0
            while chunk := await io.stdout.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
                await asyncio.sleep(0.001)  # a slow consumer: the writer must wait for us
            assert await manager.wait("big", timeout=60) == 0
            assert total == size
            assert (await io.stderr.read_all()).split()[0].decode() == digest.hexdigest()
            assert io.stdout.high_water <= limit

    run(scenario())


def test_full_buffer_blocks_the_writer_until_drained(tmp_path, bundle_config, oci_runtime):
    limit = 256 << 10

    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "bp", ["/bin/sh", "-c", "head -c 4194304 /dev/zero"])
            await manager.create("bp", config, StdioOptions(buffer_limit=limit))
            await manager.start("bp")
            io = manager.io("bp")
            with pytest.raises(TimeoutError):  # it cannot finish: nobody reads
                await manager.wait("bp", timeout=1.0)
            assert io.stdout.buffered() == limit
            assert manager.state("bp")["status"] == "running"
            assert len(await io.stdout.read_all()) == 4 << 20
            assert await manager.wait("bp", timeout=10) == 0

    run(scenario())


def test_output_written_just_before_exit_is_not_lost(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "last", ["/bin/sh", "-c", "seq 1 20000; exit 7"])
            await manager.create("last", config)
            await manager.start("last")
            assert await manager.wait("last", timeout=10) == 7  # nothing read yet
            output = await manager.io("last").stdout.read_all()
            assert output.splitlines()[-1] == b"20000"
            assert len(output.splitlines()) == 20000

    run(scenario())


def test_terminal_exec_with_resize(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("tty", bundle_config(manager, "tty", ["/bin/sleep", "60"]))
            await manager.start("tty")
            process = {**PROCESS, "args": ["/bin/sh"], "terminal": True}
            exec_id = await manager.exec("tty", process, StdioOptions(stdin=True))
            io = manager.io("tty", exec_id)
            assert io.terminal and io.stderr is None
            io.resize(33, 121)
            await io.stdin.write(b"stty size; tty; exit 5\n")
            output = await io.stdout.read_all()
            assert b"33 121\r\n" in output
            assert b"/dev/pts/" in output
            assert await manager.wait("tty", exec_id, timeout=10) == 5

    run(scenario())


def test_terminal_init_process(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "t", ["/bin/sh", "-c", "tty; exit 2"], terminal=True)
            await manager.create("t", config)
            await manager.start("t")
            assert (await manager.io("t").stdout.read_all()).startswith(b"/dev/pts/")
            assert await manager.wait("t", timeout=10) == 2

    run(scenario())


def test_signals_reach_init_and_exec_processes(tmp_path, bundle_config, oci_runtime):
    trap = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done"

    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("sig", bundle_config(manager, "sig", ["/bin/sh", "-c", trap]))
            await manager.start("sig")
            exec_id = await manager.exec("sig", {**PROCESS, "args": ["/bin/sh", "-c", trap]})
            for target in (exec_id, None):
                io = manager.io("sig", target)
                assert await io.stdout.read(6) == b"ready\n"
                await manager.signal("sig", signal.SIGTERM, target)
                assert await manager.wait("sig", target, timeout=10) == 3
                assert await io.stdout.read_all() == b"got TERM\n"
            with pytest.raises(InvalidStateError):
                await manager.signal("sig", signal.SIGTERM)

    run(scenario())


def test_kill_9_of_init_from_outside_is_noticed(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("k", bundle_config(manager, "k", ["/bin/sleep", "60"]))
            await manager.start("k")
            exec_id = await manager.exec("k", {**PROCESS, "args": ["/bin/sleep", "60"]})
            os.kill(manager.state("k")["pid"], signal.SIGKILL)  # not through the agent
            assert await manager.wait("k", timeout=10) == 128 + signal.SIGKILL
            assert manager.state("k")["status"] == "stopped"
            # the whole pid namespace goes with its init
            assert await manager.wait("k", exec_id, timeout=10) == 128 + signal.SIGKILL
            with pytest.raises(InvalidStateError):
                await manager.exec("k", {**PROCESS, "args": ["/bin/true"]})

    run(scenario())


def test_crashing_process_reports_its_signal(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("crash", bundle_config(manager, "crash", ["/bin/sleep", "60"]))
            await manager.start("crash")
            exec_id = await manager.exec(
                "crash", {**PROCESS, "args": ["/bin/sh", "-c", "kill -SEGV $$"]}
            )
            assert await manager.wait("crash", exec_id, timeout=10) == 128 + signal.SIGSEGV

    run(scenario())


def test_delete_of_a_running_container_leaves_nothing(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            await manager.create("d", bundle_config(manager, "d", ["/bin/sleep", "60"]))
            await manager.start("d")
            await manager.exec("d", {**PROCESS, "args": ["/bin/sleep", "60"]})
            pids = [manager.state("d")["pid"], manager.state("d")["execs"][0]["pid"]]
            await manager.delete("d")
            manager.test_pids += pids  # checked by running_manager on exit
            assert await manager.runtime.list() == []

    run(scenario())


def test_invalid_requests_fail_with_agent_errors(
    tmp_path, bundle_config, busybox_rootfs, oci_runtime
):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "x", ["/bin/sleep", "60"])
            await manager.create("x", config)
            with pytest.raises(AlreadyExistsError):
                await manager.create("x", config)
            with pytest.raises(InvalidStateError):  # not started yet
                await manager.exec("x", {**PROCESS, "args": ["/bin/true"]})
            with pytest.raises(NotFoundError):
                await manager.start("missing")
            await manager.start("x")
            with pytest.raises(InvalidStateError):
                await manager.start("x")

    run(scenario())


def test_runtime_failure_carries_the_runtimes_message(tmp_path, bundle_config, oci_runtime):
    async def scenario():
        async with running_manager(tmp_path, oci_runtime) as manager:
            config = bundle_config(manager, "bad", ["/bin/true"])
            config["root"]["path"] = str(tmp_path / "no-such-rootfs")
            with pytest.raises(RuntimeFailedError) as caught:
                await manager.create("bad", config)
            assert caught.value.code.value == "runtime.failed"
            assert "no-such-rootfs" in caught.value.message or "no such file" in (
                caught.value.message.lower()
            )
            assert manager.list() == []  # nothing half-created is kept

    run(scenario())


def test_missing_runtime_binary_is_a_clear_error():
    with pytest.raises(RuntimeFailedError, match="no OCI runtime found"):
        find_runtime("/nonexistent/runc")


def test_crun_is_preferred_only_on_a_pure_cgroup_v2_machine(tmp_path):
    controllers = tmp_path / "cgroup.controllers"
    assert preferred_runtimes(str(controllers)) == ("runc", "crun")  # v1 or hybrid
    controllers.write_text("cpu memory pids\n")
    assert preferred_runtimes(str(controllers)) == ("crun", "runc")
