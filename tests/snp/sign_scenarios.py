"""Scenarios for test_snp_simsign.py, each in a fresh interpreter (one thread unless the
scenario starts one): `python sign_scenarios.py SIM_STATE NAME` prints one JSON line."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.sim import SimBackend

NONCE = bytes(range(64))


def child_pids() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


def how_started(pid: int) -> str:
    """A fork runs this interpreter's command line; an exec'd child, sign_child.py's."""
    deadline = time.monotonic() + 10
    # Empty for a moment while an exec finishes (Popen returns once the old image is gone).
    while not (cmdline := Path(f"/proc/{pid}/cmdline").read_bytes()):
        assert time.monotonic() < deadline, "no command line"
        time.sleep(0.001)
    if cmdline == Path("/proc/self/cmdline").read_bytes():
        return "fork"
    return "exec" if b"sign_child.py" in cmdline else f"unknown: {cmdline!r}"


def signed_ahead(backend: SimBackend) -> dict[str, object]:
    assert backend.child_signer is not None
    backend.child_signer.start_ahead()
    (pid,) = child_pids()
    started = how_started(pid)
    report = backend.get_report(NONCE)
    return {
        "started": started,
        "report": report.hex(),
        "children_after": child_pids(),
        "cryptography_here": "cryptography" in sys.modules,
    }


def fork(backend: SimBackend) -> dict[str, object]:
    return signed_ahead(backend)


def threads(backend: SimBackend) -> dict[str, object]:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        return signed_ahead(backend)
    finally:
        stop.set()
        worker.join()


def failures(backend: SimBackend) -> dict[str, object]:
    assert backend.child_signer is not None
    seen: dict[str, object] = {}
    backend.child_signer.start_ahead()
    (pid,) = child_pids()
    os.kill(pid, signal.SIGKILL)  # dies before it is given the report
    for name, attempt in (
        ("killed", lambda: backend.get_report(NONCE)),
        ("invalid_key", lambda: backend.child_signer.sign(0, b"report")),  # type: ignore[union-attr]
    ):
        try:
            attempt()
            seen[name] = None
        except SnpUnavailableError as exc:
            seen[name] = exc.message
    seen["children_after"] = child_pids()
    return seen


def discard(backend: SimBackend) -> dict[str, object]:
    assert backend.child_signer is not None
    backend.child_signer.start_ahead()
    (pid,) = child_pids()
    backend.child_signer.discard()
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False  # killed and reaped: not even a zombie is left
    return {"alive": alive, "children_after": child_pids()}


def loop_thread(backend: SimBackend) -> dict[str, object]:
    """With the reaper installed (the agent once ready), a child started ahead from the loop
    thread signs for a worker thread; asked on the loop thread itself, signing refuses
    at once instead of waiting for a status only that thread could reap."""
    import asyncio

    from guestagent.containers.reaper import Reaper

    async def scenario() -> dict[str, object]:
        reaper = Reaper()
        reaper.install()
        try:
            assert backend.child_signer is not None
            backend.child_signer.start_ahead()
            (pid,) = child_pids()
            started = how_started(pid)
            try:
                backend.get_report(NONCE)
                refused = None
            except SnpUnavailableError as exc:
                refused = exc.message
            report = await asyncio.to_thread(backend.get_report, NONCE)
            return {"started": started, "refused": refused, "report": report.hex(),
                    "orphans": reaper.reaped_orphans}  # fmt: skip
        finally:
            reaper.close()

    return asyncio.run(scenario())


if __name__ == "__main__":
    backend = SimBackend(sys.argv[1], sign_in_child=True)
    sys.stdout.write(json.dumps(globals()[sys.argv[2]](backend)) + "\n")
