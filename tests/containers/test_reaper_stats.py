"""The single reaper (orphans, asyncio subprocesses routed to it), stats and agent health."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
from manager_helpers import run, running_manager
from tests_markers import requires_runtime

from guestagent.containers import children
from guestagent.containers.reaper import Reaper, exit_code_from_status, is_child_subreaper
from guestagent.containers.stats import agent_health
from guestagent.storage.verity_hash import BlockHasher


def test_exit_codes_follow_the_shell_convention():
    assert exit_code_from_status(3 << 8) == 3
    assert exit_code_from_status(signal.SIGKILL) == 137


def test_reaper_reaps_orphans_and_children_of_worker_threads(tmp_path):
    async def scenario():
        reaper = Reaper()
        reaper.install()
        try:
            assert is_child_subreaper() and Reaper.active() is reaper
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
            # Helper programs in worker threads (mkfs, exec_external) while the reap loop runs:
            # every status reaches its own caller, none is lost or read as 0.
            codes = await asyncio.gather(
                *(
                    asyncio.to_thread(children.run, ["/bin/sh", "-c", f"echo {n}; exit {n}"])
                    for n in range(1, 25)
                )
            )
            assert [(c.returncode, c.stdout) for c in codes] == [
                (n, f"{n}\n".encode()) for n in range(1, 25)
            ]
            slow = await asyncio.to_thread(children.run, ["sleep", "30"], timeout=0.3)
            assert slow.timed_out and slow.returncode == 128 + signal.SIGKILL
            # The hash worker pool (exec'd processes with pipes) goes through the reaper too.
            data = tmp_path / "data"
            data.write_bytes(os.urandom(8 << 20))
            pooled = BlockHasher(workers=2, chunk_bytes=1 << 20, pool_threshold=0)
            args = (str(data), 0, 2048, 4096, "sha256", bytes(32), 32)
            got = await asyncio.to_thread(lambda: [d for _, d in pooled.iter_digests(*args)])
            want = [d for _, d in BlockHasher(workers=1).iter_digests(*args)]
            assert len(got) == 8 and b"".join(got) == b"".join(want)
            assert reaper.describe()["watched"] == []
            assert [p for p in psutil.Process().children() if p.status() == "zombie"] == []
        finally:
            reaper.close()
        assert Reaper.active() is None

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
