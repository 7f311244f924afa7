"""Helper programs (mkfs, hash workers, exec_external) started from worker threads.

Inside the agent the `Reaper` is the only code that waits for children: a `subprocess.run` or
`Popen.wait` there would race its `waitpid(-1)` and could read a lost status as 0. `start`
goes through `Reaper.popen_from_thread` when a reaper is installed (and plain Popen in CLI
tools and tests, where nothing else reaps), `fork` through `Reaper.start_watched`;
`Child.wait` takes the status from the reaper's future. `run` collects bounded output with
a selector and a deadline, so a child that floods its pipes or never exits cannot hold the
agent.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from guestagent.containers import forked
from guestagent.containers.reaper import Reaper
from guestagent.records import record

__all__ = ["Child", "Completed", "complete", "fork", "run", "start"]

DEFAULT_LIMIT = 1 << 20


@record
class Completed:
    returncode: int  # shell convention: 128 + signal for a killed child
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class Child:
    """A started child with Popen's pipes; its exit status comes from whoever reaps."""

    def __init__(
        self,
        process: subprocess.Popen[bytes] | forked.ForkedProcess,
        waiter: concurrent.futures.Future[int] | None,
    ) -> None:
        self.process = process
        self._waiter = waiter
        self.pid = process.pid

    @property
    def stdin(self) -> IO[bytes] | None:
        return self.process.stdin

    @property
    def stdout(self) -> IO[bytes] | None:
        return self.process.stdout

    @property
    def stderr(self) -> IO[bytes] | None:
        return self.process.stderr

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code (shell convention); raises TimeoutError if it has not exited."""
        if self.process.returncode is not None:
            return self.process.returncode
        if self._waiter is None:
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"pid {self.pid} still running") from None
            return code if code >= 0 else 128 - code
        try:
            status = self._waiter.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"pid {self.pid} still running") from None
        code = os.WTERMSIG(status) + 128 if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        self.process.returncode = code  # so Popen never waits for it itself
        return code

    def close(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None:
                stream.close()


def start(
    argv: Sequence[str],
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Child:
    """Start `argv` (searched in PATH) from a worker thread; raises OSError if it cannot."""
    args = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "env": env, "cwd": cwd}
    reaper = Reaper.active()
    if reaper is None:
        return Child(subprocess.Popen(list(argv), **args), None)  # type: ignore[call-overload]
    process, waiter = reaper.popen_from_thread(argv, **args)
    return Child(process, waiter)


def fork(main: Callable[[], None]) -> Child:
    """`main` run in a fork of this process, with pipes as its stdin, stdout and stderr
    (`forked.fork`: only while the process has one thread), reaped like every child."""
    reaper = Reaper.active()
    if reaper is None:
        return Child(forked.fork(main), None)
    process, waiter = reaper.start_watched(lambda: forked.fork(main))
    return Child(process, waiter)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Completed:
    """Run to completion with stdin from /dev/null; keep at most `limit` bytes of each output.

    On timeout the child is killed and `timed_out` set (its output so far is kept).
    """
    return complete(start(argv, env=env, cwd=cwd), timeout=timeout, limit=limit)


def complete(
    child: Child, *, timeout: float | None = None, limit: int = DEFAULT_LIMIT
) -> Completed:
    """`run` for a child already started: a caller that holds `child` can kill it meanwhile
    (its pipes then close and this returns)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        out, err, timed_out = _collect(child, deadline, limit)
        if timed_out:
            child.kill()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            code = child.wait(None if timed_out else remaining)
        except TimeoutError:
            child.kill()
            code, timed_out = child.wait(), True
        return Completed(code, out, err, timed_out)
    finally:
        child.close()


def _collect(child: Child, deadline: float | None, limit: int) -> tuple[bytes, bytes, bool]:
    buffers = {child.stdout: bytearray(), child.stderr: bytearray()}
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            assert stream is not None
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return bytes(buffers[child.stdout]), bytes(buffers[child.stderr]), True
            for key, _ in selector.select(wait):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fileobj]  # type: ignore[index]
                buffer += chunk[: max(0, limit - len(buffer))]
    return bytes(buffers[child.stdout]), bytes(buffers[child.stderr]), False
