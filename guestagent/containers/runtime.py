"""Driving the OCI runtime binary (runc, or crun which takes the same commands).

Every call is a subprocess started through the `Reaper` (so exactly one component reaps), with
`--root` under a state directory of ours, a JSON log file per call, and a timeout after which
the runtime is killed. Failures raise `RuntimeFailedError` carrying the runtime's own message
(bounded), timeouts raise `RuntimeTimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guestagent.containers.process import OutputStream, close_fds
from guestagent.containers.reaper import Reaper, exit_code_from_status
from guestagent.errors import AgentError, ErrorCode
from guestagent.records import record

__all__ = [
    "DEFAULT_TIMEOUT",
    "OciRuntime",
    "RuntimeFailedError",
    "RuntimeResult",
    "RuntimeTimeoutError",
    "find_runtime",
    "preferred_runtimes",
]

log = logging.getLogger("guestagent.runtime")

DEFAULT_TIMEOUT = 30.0
RUNTIME_NAMES = ("runc", "crun")
# The runtime's own diagnostics we keep: enough to explain, never unbounded.
MAX_DIAGNOSTIC_BYTES = 4096


class RuntimeFailedError(AgentError):
    """The runtime exited non-zero (or is missing); `details` has argv, exit code, stderr."""

    code = ErrorCode.RUNTIME


class RuntimeTimeoutError(AgentError):
    code = ErrorCode.TIMEOUT


@record
class RuntimeResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def preferred_runtimes(unified_root: str = "/sys/fs/cgroup/cgroup.controllers") -> tuple[str, ...]:
    """crun first on a pure cgroup v2 machine (the guest): it starts containers in a fraction
    of runc's time. runc first elsewhere: crun refuses hybrid hierarchies that runc handles."""
    return ("crun", "runc") if os.path.exists(unified_root) else RUNTIME_NAMES


def find_runtime(binary: str | None = None) -> str:
    """The runtime to use: `binary` if given (a path or a name on PATH), else the first of
    `preferred_runtimes()` installed."""
    candidates = (binary,) if binary else preferred_runtimes()
    for name in candidates:
        path = shutil.which(name)
        if path is not None:
            return path
    raise RuntimeFailedError(
        f"no OCI runtime found (looked for {', '.join(candidates)} on PATH)",
        details={"looked_for": list(candidates)},
    )


def _log_message(log_path: Path) -> str:
    """The error lines of the runtime's JSON log (last bytes only)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - MAX_DIAGNOSTIC_BYTES))
            raw = log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    messages = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            messages.append(str(entry.get("msg", "")))
    return "; ".join(messages)


class OciRuntime:
    """Async wrapper of one runtime binary with its own state root."""

    def __init__(
        self,
        reaper: Reaper,
        state_dir: str | os.PathLike[str],
        *,
        binary: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        try:
            self.binary = find_runtime(binary)
        except RuntimeFailedError as exc:
            # Keep the agent up: every runtime call then fails with runtime.failed, saying so.
            log.error("no usable OCI runtime: %s", exc.message)
            self.binary = binary or RUNTIME_NAMES[0]
        self.name = Path(self.binary).name
        self.reaper = reaper
        self.root = Path(state_dir) / self.name
        self.log_dir = Path(state_dir) / "logs"
        self.timeout = timeout
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def _call(
        self,
        args: Sequence[str],
        *,
        stdio: tuple[int, int, int] | None = None,
        timeout: float | None = None,
    ) -> RuntimeResult:
        """Run the runtime with `args`; raise on non-zero exit. `stdio` passes fds through."""
        log_path = self.log_dir / f"{secrets.token_hex(16)}.json"
        argv = [
            self.binary,
            "--root",
            str(self.root),
            "--log",
            str(log_path),
            "--log-format",
            "json",
            *args,
        ]
        try:
            result = await self._spawn_and_wait(argv, stdio, timeout or self.timeout)
            if result.exit_code != 0:
                raise self._failure(args, result, _log_message(log_path))
            return result
        finally:
            with contextlib.suppress(FileNotFoundError):
                log_path.unlink()

    async def _spawn_and_wait(
        self, argv: list[str], stdio: tuple[int, int, int] | None, timeout: float
    ) -> RuntimeResult:
        own: list[int] = []
        out = err = None
        if stdio is None:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            own = [null, out_w, err_w]
            out = OutputStream(out_r, limit=1 << 20, truncate=True)
            err = OutputStream(err_r, limit=MAX_DIAGNOSTIC_BYTES, truncate=True)
            stdio = (null, out_w, err_w)
        try:
            pid, status_future = self.reaper.spawn(
                argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2]
            )
        except OSError as exc:
            for stream in (out, err):
                if stream is not None:
                    stream.close()
            raise RuntimeFailedError(f"cannot start {self.binary}: {exc}") from None
        finally:
            close_fds(own)
        try:
            async with asyncio.timeout(timeout):
                status = await status_future
                stdout = await out.read_all() if out else b""
                stderr = await err.read_all() if err else b""
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise RuntimeTimeoutError(
                f"{self.name} {argv[7] if len(argv) > 7 else ''} timed out after {timeout}s",
                details={"argv": argv[7:]},
            ) from None
        finally:
            for stream in (out, err):
                if stream is not None:
                    stream.close()
        return RuntimeResult(exit_code_from_status(status), stdout, stderr)

    def _failure(self, args: Sequence[str], result: RuntimeResult, logged: str) -> AgentError:
        stderr = result.stderr[-MAX_DIAGNOSTIC_BYTES:].decode(errors="replace").strip()
        message = logged or stderr or f"exit code {result.exit_code}"
        return RuntimeFailedError(
            f"{self.name} {args[0]} failed: {message}",
            details={"argv": list(args), "exit_code": result.exit_code, "stderr": stderr},
        )

    async def create(
        self,
        container_id: str,
        bundle: str,
        pid_file: str,
        *,
        stdio: tuple[int, int, int],
        console_socket: str | None = None,
    ) -> None:
        """`create`: the init is set up and waits for `start`; its stdio are `stdio`'s fds."""
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self._call([*args, container_id], stdio=stdio)

    async def start(self, container_id: str) -> None:
        await self._call(["start", container_id])

    async def exec(
        self,
        container_id: str,
        process_json: str,
        pid_file: str,
        *,
        stdio: tuple[int, int, int],
        console_socket: str | None = None,
    ) -> None:
        """`exec --detach`: the new process is re-parented to us (the subreaper)."""
        args = ["exec", "--process", process_json, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self._call([*args, container_id], stdio=stdio)

    async def kill(self, container_id: str, sig: int, *, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), container_id, str(int(sig))]
        await self._call(args)

    async def delete(self, container_id: str, *, force: bool = True) -> None:
        await self._call(["delete", *(["--force"] if force else []), container_id])

    async def state(self, container_id: str) -> dict[str, Any]:
        result = await self._call(["state", container_id])
        return _parse_json(result.stdout, "state")

    async def list(self) -> list[dict[str, Any]]:
        result = await self._call(["list", "--format", "json"])
        parsed = _parse_json(result.stdout or b"null", "list")
        return list(parsed or [])

    async def run(self, container_id: str, bundle: str) -> int:
        """`run` in the foreground (baseline for benchmarks); returns the exit code."""
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            argv = [self.binary, "--root", str(self.root), "run", "--bundle", bundle]
            _pid, status = self.reaper.spawn(
                [*argv, container_id], stdin=null, stdout=null, stderr=null
            )
        finally:
            os.close(null)
        async with asyncio.timeout(self.timeout):
            return exit_code_from_status(await status)


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RuntimeFailedError(f"runtime {what} output is not JSON: {exc}") from None
