"""OOM kills of the agent's containers, from their cgroups (`memory.events` on cgroup v2,
`memory.oom_control` on v1): the `oom_kill` counter only grows, so an event is a counter
that grew since it was last reported."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from guestagent.containers.stats import cgroup_dirs

__all__ = ["OomWatch", "oom_kills"]

POLL_SECONDS = 0.25


def oom_kills(cgroups_path: str) -> int:
    """The container's oom_kill counter (0 when the cgroup or the counter is missing)."""
    for directory in cgroup_dirs(cgroups_path):
        for name in ("memory.events", "memory.oom_control"):
            with contextlib.suppress(OSError):
                for line in (directory / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit():
                        return int(value)
    return 0


class OomWatch:
    """Remembers what was reported, so each OOM kill is reported once."""

    def __init__(self) -> None:
        self.reported: dict[str, int] = {}

    def poll(self, containers: Iterable[tuple[str, str]]) -> str | None:
        """(container id, cgroupsPath) pairs -> a container with a new OOM kill, or None."""
        containers = list(containers)
        present = {container_id for container_id, _ in containers}
        self.reported = {k: v for k, v in self.reported.items() if k in present}
        for container_id, cgroups_path in containers:
            count = oom_kills(cgroups_path)
            if count > self.reported.get(container_id, 0):
                self.reported[container_id] = count
                return container_id
        return None

    async def next_event(
        self, containers: Callable[[], Iterable[tuple[str, str]]], timeout: float | None
    ) -> str | None:
        """Wait for the next OOM kill; None when `timeout` seconds pass without one."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            found = await asyncio.to_thread(self.poll, list(containers()))
            if found is not None:
                return found
            if deadline is not None and loop.time() >= deadline:
                return None
            await asyncio.sleep(POLL_SECONDS)
