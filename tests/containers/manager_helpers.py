"""Helpers for real-runtime container tests: a managed loop, and the no-leftovers check.

(Not in conftest.py: other test folders have a conftest module too, and `from conftest
import ...` would find whichever was imported first.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import psutil

from guestagent.containers.manager import ContainerManager
from guestagent.containers.reaper import Reaper
from guestagent.containers.stats import cgroup_dirs


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def assert_nothing_left(manager: ContainerManager, pids: list[int]) -> None:
    """No runtime state, bundles, cgroups, processes or mounts of ours remain."""
    assert list(manager.runtime.root.iterdir()) == []
    assert list(manager.bundles.iterdir()) == []
    assert cgroup_dirs(f"/{manager.cgroup_parent}") == []
    for pid in pids:
        assert not psutil.pid_exists(pid), f"process {pid} survived"
    assert psutil.Process().children(recursive=True) == []
    with open("/proc/self/mountinfo") as mountinfo:
        assert str(manager.state_dir) not in mountinfo.read()


@contextlib.asynccontextmanager
async def running_manager(
    state_dir: Path, runtime: str | None = None
) -> AsyncIterator[ContainerManager]:
    """A reaper on this loop and a manager (of `runtime`, else the one found); on exit
    everything is deleted and checked."""
    reaper = Reaper()
    reaper.install()
    manager = ContainerManager(
        reaper, state_dir, runtime_binary=runtime, cgroup_parent=f"ga-test-{os.getpid()}"
    )
    pids: list[int] = []
    manager.test_pids = pids  # type: ignore[attr-defined]
    try:
        yield manager
    finally:
        pids += [c["pid"] for c in manager.list()]
        assert await manager.shutdown() == []
        reaper.close()
    assert_nothing_left(manager, pids)
