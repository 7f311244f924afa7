"""The requests one connection has in flight, as tasks of one per-connection TaskGroup.

`supervise()` is the connection's lifetime: it holds the group open until the connection is
gone and every task has ended, so nothing a connection started outlives its supervisor
unseen. When the host goes away, reads are cancelled (no one will read their replies) and
mutations run to completion (the guest and the policy state must agree about what happened).
At shutdown, `stop()` cancels tasks with a reason; each answers `agent.shutting_down`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RequestTasks"]


class RequestTasks:
    def __init__(self, on_done: Callable[[int], None]) -> None:
        self.in_flight: dict[int, asyncio.Task[None]] = {}
        self.mutating: set[int] = set()
        self.stopping = False  # set by stop(): cancelled tasks answer "shutting down"
        self._on_done = on_done
        self._group: asyncio.TaskGroup | None = None
        self._pending: list[tuple[int, Coroutine[Any, Any, None]]] = []
        self._gone = asyncio.Event()

    def __len__(self) -> int:
        return len(self.in_flight)

    def __contains__(self, request_id: int) -> bool:
        return request_id in self.in_flight

    def start(self, request_id: int, coroutine: Coroutine[Any, Any, None], mutating: bool) -> None:
        if mutating:
            self.mutating.add(request_id)
        if self._group is None:  # the supervisor has not run yet: it starts these first
            self._pending.append((request_id, coroutine))
            self.in_flight[request_id] = None  # type: ignore[assignment]
            return
        self._spawn(self._group, request_id, coroutine)

    def _spawn(
        self, group: asyncio.TaskGroup, request_id: int, coroutine: Coroutine[Any, Any, None]
    ) -> None:
        task = group.create_task(coroutine)
        self.in_flight[request_id] = task
        task.add_done_callback(lambda _: self._finished(request_id))

    def _finished(self, request_id: int) -> None:
        self.in_flight.pop(request_id, None)
        self.mutating.discard(request_id)
        self._on_done(request_id)

    async def supervise(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            pending, self._pending = self._pending, []
            for request_id, coroutine in pending:
                self._spawn(group, request_id, coroutine)
            await self._gone.wait()
            self._cancel(lambda request_id: request_id not in self.mutating)

    def connection_lost(self) -> None:
        """The host is gone: reads end now, mutations when they are done."""
        self._gone.set()
        if self._group is None:
            for _, coroutine in self._pending:
                coroutine.close()
            self._pending.clear()
            self.in_flight.clear()
        self._cancel(lambda request_id: request_id not in self.mutating)

    def stop(self, reads_only: bool) -> None:
        """Shutdown: cancel reads (or everything); each cancelled task answers."""
        self.stopping = True
        self._cancel(lambda request_id: not reads_only or request_id not in self.mutating)

    def _cancel(self, which: Callable[[int], bool]) -> None:
        for request_id, task in list(self.in_flight.items()):
            if task is not None and which(request_id):
                task.cancel()

    async def wait(self, timeout: float) -> None:
        """Until no request is in flight, or `timeout` seconds."""
        tasks = [task for task in self.in_flight.values() if task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
