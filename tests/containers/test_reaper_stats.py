"""The single reaper (orphans, asyncio subprocesses routed to it), stats and agent health."""

from __future__ import annotations

import asyncio
import os
import signal
import warnings

import psutil
from manager_helpers import run, running_manager
from tests_markers import requires_runtime

from guestagent.containers.reaper import (
    Reaper,
    ReaperChildWatcher,
    exit_code_from_status,
    is_child_subreaper,
)
from guestagent.containers.stats import agent_health


def test_exit_codes_follow_the_shell_convention():
    assert exit_code_from_status(3 << 8) == 3
    assert exit_code_from_status(signal.SIGKILL) == 137


def test_reaper_reaps_orphans_and_routes_asyncio_subprocesses():
    async def scenario():
        reaper = Reaper()
        reaper.install()
        policy = asyncio.get_event_loop_policy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            previous = policy.get_child_watcher()
            policy.set_child_watcher(ReaperChildWatcher(reaper))
        try:
            assert is_child_subreaper()
            null = os.open(os.devnull, os.O_RDWR)
            # the shell leaves a grandchild behind: it becomes our orphan to reap
            _pid, status = reaper.spawn(
                ["/bin/sh", "-c", "sleep 0.2 & exit 5"], stdin=null, stdout=null, stderr=null
            )
            os.close(null)
            assert exit_code_from_status(await status) == 5
            for _ in range(100):
                if reaper.reaped_orphans:
                    break
                await asyncio.sleep(0.05)
            assert reaper.reaped_orphans == 1
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 9")
            assert await proc.wait() == 9  # asyncio got the status from our reaper
            assert [p for p in psutil.Process().children() if p.status() == "zombie"] == []
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                policy.set_child_watcher(previous)
            reaper.close()

    run(scenario())


def test_agent_health_reports_its_own_process():
    health = agent_health()
    assert health["pid"] == os.getpid()
    assert health["rss_bytes"] > 1 << 20 and health["fds"] >= 3 and health["threads"] >= 1
    assert health["uptime_s"] > 0 and health["cpu_user_s"] > 0


def test_container_stats_come_from_its_cgroup(tmp_path, bundle_config):
    script = "head -c 8388608 /dev/zero > /dev/shm/fill; sleep 60 & echo ready; wait"

    async def scenario():
        async with running_manager(tmp_path) as manager:
            await manager.create("s", bundle_config(manager, "s", ["/bin/sh", "-c", script]))
            await manager.start("s")
            assert await manager.io("s").stdout.read(6) == b"ready\n"
            stats = manager.stats("s")
            assert stats["memory_current"] >= 8 << 20  # the tmpfs file is charged to it
            assert stats["pids_current"] == 2  # sh and sleep
            assert stats["cpu_usage_usec"] > 0
            assert set(stats["io"]) == {"rbytes", "wbytes", "rios", "wios"}

    run(scenario())


for mark in requires_runtime:
    test_container_stats_come_from_its_cgroup = mark(test_container_stats_come_from_its_cgroup)
