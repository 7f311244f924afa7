"""Per-resource locks: requests about the same container or layer run one after another.

An operation names the resources it touches (`Operation.keys`, e.g. `container:c1`,
`layer:base`); the dispatcher holds those keys from before `prepare` until its effect has
finished (or its reservation was reverted). Requests about other resources do not wait. The
keys are taken in sorted order, so two requests never wait for each other. A lock exists only
while someone holds or waits for it: host-chosen names cannot grow the table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

__all__ = ["ResourceLocks"]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class ResourceLocks:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        ordered = sorted(set(keys))
        entries = []
        for key in ordered:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.users += 1
            entries.append((key, entry))
        acquired: list[_Entry] = []
        try:
            for _, entry in entries:
                await entry.lock.acquire()
                acquired.append(entry)
            yield
        finally:
            for entry in reversed(acquired):
                entry.lock.release()
            for key, entry in entries:
                entry.users -= 1
                if not entry.users:
                    del self._entries[key]

    def busy(self) -> list[str]:
        """The resources a request holds now (for status and the debug console)."""
        return sorted(key for key, entry in self._entries.items() if entry.lock.locked())
