"""A function run in a fork of the agent, with pipes as its stdin, stdout and stderr.

A fork costs no interpreter start (about 55 ms here, seconds under software emulation in the
guest), which is why the simulator's signing child is one when it can be (`snp/simsign.py`).
It is safe only while the process has a single thread (`can_fork`): a fork copies no other
thread, and a lock another thread held stays locked in the child forever.

What a fork inherits from the agent, and what the child does with it before `main` runs:
- signal dispositions and asyncio's wakeup fd (`signal.set_wakeup_fd`): a signal delivered to
  the child would run the agent's C handler there and write to the shared wakeup socket,
  waking the *agent's* loop as if the agent had received it. Signals are blocked across the
  fork; the child drops the wakeup fd and puts every Python-handled signal back to its
  default (a SIGTERM to the process group ends the child) before it unblocks them.
- every fd: the child keeps only its three pipes, as 0, 1 and 2 (`close_range` beyond).
- Python's stdio objects, logging handlers and atexit hooks: the child never writes through
  them and leaves with `os._exit` on every path, so no buffer of the agent's is flushed twice
  and no hook runs; an exception becomes one line on its stderr pipe and exit status 1.
- the agent's life: PR_SET_PDEATHSIG makes the kernel kill the child if the agent dies.

The caller reaps it like every other child (`children.fork`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

__all__ = ["ForkedProcess", "can_fork", "fork"]

PR_SET_PDEATHSIG = 1
_agents_stdio: list[object] = []  # in a child only


def can_fork() -> bool:
    """True while this process has one thread: only then is a fork of it safe."""
    return threading.active_count() == 1


class ForkedProcess:
    """What `children.Child` uses of a Popen, for a forked child (the agent's end of its pipes)."""

    def __init__(self, pid: int, stdin: int, stdout: int, stderr: int) -> None:
        self.pid = pid
        self.stdin = open(stdin, "wb")  # noqa: SIM115 - closed by children.Child
        self.stdout = open(stdout, "rb")  # noqa: SIM115
        self.stderr = open(stderr, "rb")  # noqa: SIM115
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Reap it (only where no reaper runs): Popen's convention, -N for signal N."""
        if self.returncode is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            pause = 0.0001  # it has usually closed its pipes and is exiting: look again soon
            while True:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() >= deadline:  # type: ignore[operator]
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
                time.sleep(pause)
                pause = min(pause * 2, 0.005)
        return self.returncode


def fork(main: Callable[[], None]) -> ForkedProcess:
    """Run `main` in a fork of this process, its stdin/stdout/stderr pipes to us; exit status
    0 if it returns, 1 if it raises. The process must have a single thread (`can_fork`)."""
    if not can_fork():
        raise RuntimeError("fork with other threads running")
    pipes = [os.pipe() for _ in range(3)]
    ours = (pipes[0][1], pipes[1][0], pipes[2][0])
    theirs = (pipes[0][0], pipes[1][1], pipes[2][1])
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _child(main, theirs, mask)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:  # the child never gets here: _child exits
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in theirs:
            os.close(fd)
    return ForkedProcess(pid, *ours)


def _child(main: Callable[[], None], fds: tuple[int, int, int], mask: set[int]) -> NoReturn:
    code = 1
    try:
        try:
            _become_alone(fds, mask)
            main()
            code = 0
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(2, f"{type(exc).__name__}: {exc}\n".encode(errors="replace"))
    finally:
        os._exit(code)


def _become_alone(fds: tuple[int, int, int], mask: set[int]) -> None:
    parent = os.getppid()
    # Above 2 first, so that no pipe is overwritten by another's dup2 onto 0-2.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(3, 1 << 30)  # close_range(2): the agent's sockets, epoll, wakeup pair, files
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if callable(signal.getsignal(signum)):  # the agent's (asyncio's, SIGINT's) handlers
            signal.signal(signum, signal.SIG_DFL)
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the agent died before the line above
        raise RuntimeError("the agent exited")
    # The agent's stdio objects are kept referenced (freeing one would flush its buffer) and
    # unused: nothing in the child writes through them, not even a warning.
    _agents_stdio.extend((sys.stdin, sys.stdout, sys.stderr))
    sys.stdin = sys.stdout = sys.stderr = None  # type: ignore[assignment]
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
