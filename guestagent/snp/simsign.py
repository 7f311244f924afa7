"""The simulated secure processor's ECDSA P-384 signature, here or in a short-lived child.

On hardware the PSP signs and the agent never maps a line of OpenSSL. The simulator's agent
(`serve --snp sim`) keeps that shape: it derives the key's scalar itself (hashlib only) and
hands scalar and message to a child that loads cryptography, signs once and exits, so
cryptography's libraries and objects never become part of the long-lived agent. Tools and
tests sign in their own process (`sign_child.sign_p384`).

The child is a fork of the agent while the agent has a single thread (at start-up, where the
first report is signed before anything is served): no interpreter start, which costs more
than the signature itself. With threads running it is a fresh interpreter running
`sign_child.py` instead. Both run `sign_child.sign_one`. The scalar travels over the child's
stdin, never its command line or environment.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from guestagent.snp.errors import SnpUnavailableError
from guestagent.snp.sign_child import sign_one, sign_p384

if TYPE_CHECKING:  # the agent's own: the child imports this module without them
    from guestagent.containers.children import Child

__all__ = ["ChildSigner", "sign_p384"]

CHILD_TIMEOUT = 120.0  # seconds: a cold interpreter under software emulation is slow
# The child runs isolated (-I) and without site (-S: no .pth files to process, which is most
# of an interpreter's start), as a script that imports only cryptography.
_SCRIPT = str(Path(__file__).with_name("sign_child.py"))


class ChildSigner:
    """`sign_p384` run by a child per signature. `start_ahead` starts the next child before it
    is needed, so that cryptography loads while the caller works (the agent: while it loads
    the policy engine to adopt a policy given at start-up); `discard` ends a child started
    ahead and not used (the agent's start failed, or it stops). Only before anything is served:
    a fork made later shares the open transports (one made once ready, for the host's
    policy, was followed by a late-connecting host hanging in the VM tier under load).

    Children are reaped through the agent's reaper when one is installed (call `sign` from a
    worker thread then, as the agent does); a child started ahead before the reaper existed is
    not used after it, but killed and left to the reaper.
    """

    def __init__(self) -> None:
        self._ahead: Child | None = None
        self._ahead_reaper: object | None = None
        self._lock = threading.Lock()  # signatures come from worker threads

    def start_ahead(self) -> None:
        from guestagent.containers.reaper import Reaper

        with self._lock:
            if self._ahead is None:
                self._ahead, self._ahead_reaper = self._start(), Reaper.active()

    def sign(self, scalar: int, message: bytes) -> tuple[int, int]:
        from guestagent.containers.reaper import Reaper

        reaper = Reaper.active()
        if reaper is not None and reaper.on_loop_thread():  # the status comes on this thread
            raise SnpUnavailableError("the simulator signs from a worker thread, not the loop's")
        with self._lock:
            if self._ahead_reaper is not reaper:
                self._discard()  # its status now belongs to the reaper installed since
            child, self._ahead = self._ahead, None
        return self._finish(child or self._start(), scalar, message)

    def discard(self) -> None:
        """Kill the child started ahead, if any (it was never given a message), and reap it
        unless a reaper does."""
        with self._lock:
            self._discard()

    def _discard(self) -> None:
        from guestagent.containers.reaper import Reaper

        child, self._ahead = self._ahead, None
        if child is not None:
            child.kill()
            child.close()
            if self._ahead_reaper is None and Reaper.active() is None:
                child.wait()

    @staticmethod
    def _start() -> Child:
        from guestagent.containers import children, forked

        spec = importlib.util.find_spec("cryptography")  # located, not imported
        if spec is None or spec.origin is None:
            raise SnpUnavailableError("the simulated secure processor needs cryptography")
        try:
            if forked.can_fork():
                return children.fork(sign_one)
            library = str(Path(spec.origin).parents[1])
            argv = [sys.executable, "-S", "-I", _SCRIPT, library]
            return children.start(argv, stdin=subprocess.PIPE)
        except OSError as exc:
            raise SnpUnavailableError(f"simulated secure processor did not start: {exc}") from None

    @staticmethod
    def _finish(child: Child, scalar: int, message: bytes) -> tuple[int, int]:
        from guestagent.containers import children

        assert child.stdin is not None
        with contextlib.suppress(OSError):  # it died before reading: its stderr says why
            child.stdin.write(f"{scalar:x} {message.hex()}\n".encode())
            child.stdin.close()
        done = children.complete(child, timeout=CHILD_TIMEOUT, limit=1 << 16)
        try:
            if done.returncode != 0 or done.timed_out:
                raise ValueError(done.stderr.decode(errors="replace").strip()[-500:] or "no output")
            r, s = (int(part, 16) for part in done.stdout.split())
        except ValueError as exc:
            raise SnpUnavailableError(
                f"simulated secure processor failed to sign (exit {done.returncode}): {exc}"
            ) from None
        return r, s
