"""The agent's single reaper: it is a child subreaper and the only code that calls waitpid.

Why one reaper. Container init and exec processes are started by `runc`, which exits at once;
the kernel then re-parents them to the nearest subreaper, the agent. Their exit statuses (and
those of any orphan in the guest) only reach us through `waitpid`. A `waitpid(-1)` loop reaps
*every* child, so any second reaper (asyncio's ThreadedChildWatcher/PidfdChildWatcher, or a
`subprocess.Popen.wait`) would race with it and lose statuses. Design:

* `Reaper.install()` sets PR_SET_CHILD_SUBREAPER and a SIGCHLD handler on the running loop.
  The handler runs *in the loop thread* and loops `waitpid(-1, WNOHANG)` until nothing is left,
  handing each status to the future registered for that pid.
* Processes we start go through `Reaper.spawn` (posix_spawn, then `watch` in the same
  synchronous step). The reap callback also runs in the loop thread, so it cannot run between
  the spawn and the registration: no status is ever reaped before its waiter exists.
* Orphans re-parented to us (container inits after `runc create`, exec processes after
  `runc exec --detach`) may die before we learn their pid from the pid file; their statuses are
  kept in a bounded "unclaimed" table. `watch(pid)` takes such a status only if `pid` is not
  alive now (an unclaimed entry for a pid that is alive again belongs to an older process with
  the same number, and is dropped).
* `ReaperChildWatcher` routes asyncio's own subprocess support (`create_subprocess_exec`) to
  this reaper, so code elsewhere in the agent may still use asyncio subprocesses. Python 3.11
  child watchers are the supported hook for this (they are deprecated from 3.12).

The reaper and everything registered with it must be used from the loop thread only.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from guestagent.errors import AgentError, ErrorCode

__all__ = [
    "Reaper",
    "ReaperChildWatcher",
    "exit_code_from_status",
    "set_child_subreaper",
]

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
# Orphans nobody asked about are remembered this many at a time (oldest forgotten first).
MAX_UNCLAIMED = 1024
# Signals Python sets to SIG_IGN that a spawned program must get back at their default.
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def set_child_subreaper(enabled: bool = True) -> None:
    """Make this process the reaper of its orphaned descendants (prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(enabled), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise AgentError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def is_child_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0)
    return bool(value.value)


def exit_code_from_status(status: int) -> int:
    """Shell convention: the exit code, or 128 + signal number for a killed process."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reaper:
    """Reaps every child of the agent and resolves per-pid futures with raw wait statuses."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[int, asyncio.Future[int]] = {}
        self._unclaimed: OrderedDict[int, int] = OrderedDict()
        self.reaped_orphans = 0

    def install(self) -> None:
        """Become subreaper and handle SIGCHLD on the running loop (call from the loop)."""
        if self._loop is not None:
            raise AgentError("reaper already installed", code=ErrorCode.INTERNAL)
        self._loop = asyncio.get_running_loop()
        set_child_subreaper(True)
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # children that exited before we listened

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)
        self._loop = None
        for future in self._waiters.values():
            if not future.done():
                future.cancel()
        self._waiters.clear()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise AgentError("reaper is not installed", code=ErrorCode.INTERNAL)
        return self._loop

    def watch(self, pid: int) -> asyncio.Future[int]:
        """A future for `pid`'s raw wait status (already resolved if it was reaped unclaimed)."""
        existing = self._waiters.get(pid)
        if existing is not None:
            return existing
        future: asyncio.Future[int] = self.loop.create_future()
        status = self._unclaimed.pop(pid, None)
        if status is not None and not _alive(pid):
            future.set_result(status)
            return future
        self._waiters[pid] = future
        future.add_done_callback(lambda _f, pid=pid: self._forget(pid, _f))
        return future

    def _forget(self, pid: int, future: asyncio.Future[int]) -> None:
        if self._waiters.get(pid) is future:
            del self._waiters[pid]

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        stdout: int,
        stderr: int,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, asyncio.Future[int]]:
        """posix_spawn `argv` with the given fds as 0/1/2, and watch it in the same step."""
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            dict(os.environ if env is None else env),
            file_actions=actions,
            setsigdef=_RESTORED_SIGNALS,
            setsigmask=(),
        )
        self._unclaimed.pop(pid, None)  # a fresh process: any old status for this pid is stale
        return pid, self.watch(pid)

    def reap(self) -> None:
        """Reap every exited child now (SIGCHLD handler)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except OSError as exc:  # pragma: no cover - EINTR is retried by Python
                if exc.errno == errno.EINTR:
                    continue
                raise
            if pid == 0:
                return
            self._dispatch(pid, status)

    def _dispatch(self, pid: int, status: int) -> None:
        future = self._waiters.pop(pid, None)
        if future is not None:
            if not future.done():
                future.set_result(status)
            return
        self.reaped_orphans += 1
        self._unclaimed[pid] = status
        while len(self._unclaimed) > MAX_UNCLAIMED:
            self._unclaimed.popitem(last=False)

    def describe(self) -> dict[str, Any]:
        return {
            "installed": self._loop is not None,
            "watched": sorted(self._waiters),
            "unclaimed": len(self._unclaimed),
            "reaped_orphans": self.reaped_orphans,
        }


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    _WatcherBase: Any = asyncio.AbstractChildWatcher


class ReaperChildWatcher(_WatcherBase):
    """asyncio child watcher that defers to the `Reaper`, so nothing else calls waitpid."""

    def __init__(self, reaper: Reaper) -> None:
        self._reaper = reaper
        self._handles: dict[int, asyncio.Future[int]] = {}

    def add_child_handler(self, pid: int, callback: Callable[..., Any], *args: Any) -> None:
        future = self._reaper.watch(pid)
        self._handles[pid] = future

        def done(fut: asyncio.Future[int]) -> None:
            if self._handles.pop(pid, None) is None:
                return  # the handler was removed
            if not fut.cancelled():
                callback(pid, os.waitstatus_to_exitcode(fut.result()), *args)

        future.add_done_callback(done)

    def remove_child_handler(self, pid: int) -> bool:
        return self._handles.pop(pid, None) is not None

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        return None

    def close(self) -> None:
        self._handles.clear()

    def is_active(self) -> bool:
        return self._reaper._loop is not None

    def __enter__(self) -> ReaperChildWatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None
