"""Scenarios for test_forked.py, each run in a fresh interpreter (one thread, its own session):
`python fork_scenarios.py NAME` prints one JSON line of what it saw."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guestagent.containers import children, forked
from guestagent.containers.reaper import Reaper


def _upper() -> None:
    os.write(1, os.read(0, 100).upper())


def _fds() -> None:
    os.write(1, json.dumps([fd for fd in range(1024) if _is_open(fd)]).encode())


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _fail() -> None:
    raise ValueError("no key for this chip")


def _block() -> None:
    os.read(0, 1)  # until killed, or the agent closes the pipe


def _done(child: children.Child, data: bytes = b"") -> dict[str, object]:
    assert child.stdin is not None
    if data:
        child.stdin.write(data)
    child.stdin.close()
    done = children.complete(child, timeout=30)
    return {"code": done.returncode, "out": done.stdout.decode(), "err": done.stderr.decode()}


def pipes() -> dict[str, object]:
    # fds of the agent's the child must not keep: a file (also at a high number), a socket
    kept = [os.open(__file__, os.O_RDONLY), socket.socket(socket.AF_UNIX).detach()]
    kept.append(os.dup2(kept[0], 700))
    try:
        return {
            "upper": _done(children.fork(_upper), b"sign me"),
            "fds": _done(children.fork(_fds)),
            "fail": _done(children.fork(_fail)),
            "kept": kept,
        }
    finally:
        for fd in kept:
            os.close(fd)


def stdio() -> dict[str, object]:
    # Buffered (stdout is a pipe) and unflushed at the fork, an atexit hook, a log handler:
    # a child that flushed or ran them would print them a second time.
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - block-buffered: a pipe
    atexit.register(lambda: sys.stdout.write("atexit\n"))
    sys.stdout.write("buffered\n")
    failed = _done(children.fork(_fail))
    sys.stdout.write("end\n")
    return failed


def signals() -> dict[str, object]:
    async def scenario() -> dict[str, object]:
        loop = asyncio.get_running_loop()
        handled: list[int] = []
        loop.add_signal_handler(signal.SIGTERM, handled.append, signal.SIGTERM)
        alone = children.fork(_block)
        os.kill(alone.pid, signal.SIGTERM)  # the child's own signal must not reach our loop
        alone_done = _done(alone)
        await asyncio.sleep(0.3)
        handled_after_child = len(handled)
        grouped = children.fork(_block)
        os.killpg(0, signal.SIGTERM)  # the whole group: us and the child, each once
        await asyncio.sleep(0.3)
        return {
            "alone": alone_done,
            "handled_after_child": handled_after_child,
            "group": _done(grouped),
            "handled_after_group": len(handled),
        }

    return asyncio.run(scenario())


def reaper() -> dict[str, object]:
    async def scenario() -> dict[str, object]:
        active = Reaper()
        active.install()
        try:
            child = children.fork(_upper)  # on the loop thread, as the agent starts ahead
            done = await asyncio.to_thread(_done, child, b"reaped")
            return {"done": done, "orphans": active.reaped_orphans}
        finally:
            active.close()

    return asyncio.run(scenario())


def threads() -> dict[str, object]:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        children.fork(_upper)
    except RuntimeError as exc:
        return {"can_fork": forked.can_fork(), "error": str(exc)}
    finally:
        stop.set()
        worker.join()
    return {"can_fork": forked.can_fork(), "error": None}


if __name__ == "__main__":
    result = globals()[sys.argv[1]]()
    sys.stdout.write(json.dumps(result) + "\n")
