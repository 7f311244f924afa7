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
* Code in worker threads (mkfs, hash workers, exec_external) starts children through
  `spawn_from_thread` (see children.py): spawn and registration happen under a lock the reap
  loop also takes, so their statuses too reach only their waiter. The agent never uses
  asyncio's subprocess support or child watchers (removed in Python 3.14): nothing else waits.

The reaper and everything registered with it must be used from the loop thread only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import errno
import os
import signal
import subprocess
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from guestagent.errors import AgentError, ErrorCode

__all__ = [
    "Reaper",
    "exit_code_from_status",
    "set_child_subreaper",
]

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
# Orphans nobody asked about are remembered this many at a time (oldest forgotten first).
MAX_UNCLAIMED = 1024
# Signals Python sets to SIG_IGN that a spawned program must get back at their default.
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class _HasPid(Protocol):
    @property
    def pid(self) -> int: ...


_Started = TypeVar("_Started", bound=_HasPid)


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
        # Children started from worker threads; spawn+register and reap exclude each other.
        self._thread_waiters: dict[int, concurrent.futures.Future[int]] = {}
        self._lock = threading.Lock()
        self._loop_thread: int | None = None
        self.reaped_orphans = 0

    @classmethod
    def active(cls) -> Reaper | None:
        """The reaper installed in this process, if any (children.py routes through it)."""
        return _ACTIVE[0]

    def install(self) -> None:
        """Become subreaper and handle SIGCHLD on the running loop (call from the loop)."""
        if self._loop is not None:
            raise AgentError("reaper already installed", code=ErrorCode.INTERNAL)
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        set_child_subreaper(True)
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        _ACTIVE[0] = self
        self.reap()  # children that exited before we listened

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGCHLD)
        self._loop = None
        self._loop_thread = None
        if _ACTIVE[0] is self:
            _ACTIVE[0] = None
        for future in self._waiters.values():
            if not future.done():
                future.cancel()
        self._waiters.clear()
        with self._lock:
            for waiter in self._thread_waiters.values():
                waiter.cancel()
            self._thread_waiters.clear()

    def on_loop_thread(self) -> bool:
        """True on the thread that reaps: waiting there for a status would wait forever."""
        return self._loop_thread == threading.get_ident()

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

    def popen_from_thread(
        self, argv: Sequence[str], **popen_args: Any
    ) -> tuple[subprocess.Popen[bytes], concurrent.futures.Future[int]]:
        """Start `argv` with subprocess.Popen from a worker thread; its status comes on the future.

        The caller must never call the Popen's wait/communicate/poll (they would race the reap
        loop) and sets `returncode` from the future (children.py does both).
        """
        if self.on_loop_thread():
            raise AgentError("popen_from_thread called on the loop thread", code=ErrorCode.INTERNAL)
        return self.start_watched(lambda: subprocess.Popen(list(argv), **popen_args))

    def start_watched(
        self, start: Callable[[], _Started]
    ) -> tuple[_Started, concurrent.futures.Future[int]]:
        """Run `start`, which makes one child and returns an object with its `pid`, so that the
        child's status can only reach the returned future. Any thread may start; only a worker
        thread may wait on the future (the loop thread resolves it)."""
        waiter: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self._lock:  # the reap loop waits here, so it cannot take the status unregistered
            started = start()
            self._thread_waiters[started.pid] = waiter
        return started, waiter

    def reap(self) -> None:
        """Reap every exited child now (SIGCHLD handler)."""
        while True:
            with self._lock:
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
                waiter = self._thread_waiters.pop(pid, None)
            if waiter is not None:
                waiter.set_result(status)
                continue
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


_ACTIVE: list[Reaper | None] = [None]
