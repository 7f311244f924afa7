"""Containers the agent runs: lifecycle, processes, stdio, and cleanup of everything they use.

The manager receives already-decided values (a config.json from `spec.build_bundle_config`, a
process spec for exec); it does not consult the policy. Each container owns a bundle directory
under the state dir, a cgroup under `/<cgroup_parent>/<id>`, an init process and exec processes,
all of which `delete` removes. Exit codes follow the shell: 128 + signal for a killed process
(kill -9 gives 137).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from guestagent.containers.process import (
    ConsoleSocket,
    ProcessIO,
    StdioOptions,
    close_fds,
    open_pipes,
    pty_io,
)
from guestagent.containers.reaper import Reaper, exit_code_from_status
from guestagent.containers.runtime import OciRuntime, RuntimeFailedError
from guestagent.containers.stats import container_stats, remove_cgroup
from guestagent.errors import (
    AgentError,
    AlreadyExistsError,
    ErrorCode,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from guestagent.records import field, record

__all__ = ["Container", "ContainerManager", "ManagedProcess", "WaitTimeoutError"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
KILL_TIMEOUT = 10.0


class WaitTimeoutError(AgentError, TimeoutError):
    """A wait ran out of time: a TimeoutError to callers, agent.timeout on the wire."""

    code = ErrorCode.TIMEOUT


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidArgumentError(f"invalid {what} {value!r}: [A-Za-z0-9_.-], at most 128")
    return value


@record(mutable=True)
class ManagedProcess:
    """A container's init or exec process: pid, stdio and its (future) wait status."""

    exec_id: str | None
    pid: int
    argv: list[str]
    io: ProcessIO
    status: asyncio.Future[int]

    @property
    def exit_code(self) -> int | None:
        if not self.status.done() or self.status.cancelled():
            return None
        return exit_code_from_status(self.status.result())

    def describe(self) -> dict[str, Any]:
        return {
            "exec_id": self.exec_id,
            "pid": self.pid,
            "argv": self.argv,
            "running": not self.status.done(),
            "exit_code": self.exit_code,
            "terminal": self.io.terminal,
        }


@record(mutable=True)
class Container:
    container_id: str
    bundle: Path
    cgroups_path: str
    init: ManagedProcess
    started: bool = False
    execs: dict[str, ManagedProcess] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def status(self) -> str:
        if self.init.status.done():
            return "stopped"
        return "running" if self.started else "created"


class ContainerManager:
    """Creates, runs and removes containers through an `OciRuntime`."""

    def __init__(
        self,
        reaper: Reaper,
        state_dir: str | os.PathLike[str],
        *,
        runtime: OciRuntime | None = None,
        runtime_binary: str | None = None,
        cgroup_parent: str = "guestagent",
        timeout: float = 30.0,
    ) -> None:
        self.reaper = reaper
        self.state_dir = Path(state_dir)
        self.bundles = self.state_dir / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.runtime = runtime or OciRuntime(
            reaper, self.state_dir, binary=runtime_binary, timeout=timeout
        )
        self.cgroup_parent = check_id(cgroup_parent, "cgroup parent")
        self._containers: dict[str, Container] = {}

    def cgroups_path(self, container_id: str) -> str:
        """The cgroupsPath every container of ours gets (pass it to build_bundle_config)."""
        return f"/{self.cgroup_parent}/{check_id(container_id, 'container id')}"

    def get(self, container_id: str) -> Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFoundError(f"no container {container_id!r}") from None

    def process(self, container_id: str, exec_id: str | None = None) -> ManagedProcess:
        container = self.get(container_id)
        if exec_id is None:
            return container.init
        try:
            return container.execs[exec_id]
        except KeyError:
            raise NotFoundError(f"no process {exec_id!r} in {container_id!r}") from None

    def io(self, container_id: str, exec_id: str | None = None) -> ProcessIO:
        """The agent's side of a process's stdio, to stream to the host."""
        return self.process(container_id, exec_id).io

    async def create(
        self, container_id: str, config: dict[str, Any], stdio: StdioOptions | None = None
    ) -> dict[str, Any]:
        """Write the bundle and `runtime create`: the init waits for `start`."""
        check_id(container_id, "container id")
        if container_id in self._containers:
            raise AlreadyExistsError(f"container {container_id!r} already exists")
        bundle = self.bundles / container_id
        try:
            bundle.mkdir(mode=0o700)
        except FileExistsError:
            raise AlreadyExistsError(f"bundle of {container_id!r} already exists") from None
        cgroups_path = self.cgroups_path(container_id)
        config = {**config, "linux": {**config.get("linux", {}), "cgroupsPath": cgroups_path}}
        pid_file = bundle / "init.pid"
        try:
            _write_bundle_config(bundle, config)
            io = await self._launch(
                config["process"],
                stdio or StdioOptions(),
                lambda fds, sock: self.runtime.create(
                    container_id, str(bundle), str(pid_file), stdio=fds, console_socket=sock
                ),
            )
        except BaseException:
            with contextlib.suppress(AgentError):
                await self._discard(container_id, bundle, cgroups_path)
            shutil.rmtree(bundle, ignore_errors=True)  # even if the runtime could not delete
            raise
        pid = _read_pid(pid_file)
        init = ManagedProcess(
            None, pid, list(config["process"]["args"]), io, self.reaper.watch(pid)
        )
        container = Container(container_id, bundle, cgroups_path, init)
        self._containers[container_id] = container
        return self.state(container_id)

    async def _launch(self, process: dict[str, Any], stdio: StdioOptions, call: Any) -> ProcessIO:
        """Run a runtime call that starts a process, wiring its stdio (pipes or a pty)."""
        if not process.get("terminal"):
            io, child_fds = open_pipes(stdio)
            try:
                await call(child_fds, None)
            except BaseException:
                io.close()
                raise
            finally:
                close_fds(child_fds)  # the container holds them now; ours would block EOF
            return io
        socket_dir = tempfile.mkdtemp(prefix="ga-console-")  # short path: sun_path is 108 bytes
        console = ConsoleSocket(os.path.join(socket_dir, "sock"))
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            async with asyncio.TaskGroup() as group:
                master_task = group.create_task(console.receive_master())
                group.create_task(call((null, null, null), console.path))
            return pty_io(master_task.result(), stdio)
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        finally:
            os.close(null)
            console.close()
            shutil.rmtree(socket_dir, ignore_errors=True)

    async def start(self, container_id: str) -> dict[str, Any]:
        container = self.get(container_id)
        async with container.lock:
            if container.status != "created":
                raise InvalidStateError(f"container {container_id!r} is {container.status}")
            await self.runtime.start(container_id)
            container.started = True
        return self.state(container_id)

    async def exec(
        self,
        container_id: str,
        process: dict[str, Any],
        stdio: StdioOptions | None = None,
        *,
        exec_id: str | None = None,
    ) -> str:
        """Start `process` (an OCI process object) in a running container; returns its id."""
        container = self.get(container_id)
        exec_id = check_id(exec_id or secrets.token_hex(8), "exec id")
        args = process.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise InvalidArgumentError("process.args must be a non-empty list of strings")
        async with container.lock:
            if container.status != "running":
                raise InvalidStateError(f"container {container_id!r} is {container.status}")
            if exec_id in container.execs:
                raise AlreadyExistsError(f"exec {exec_id!r} already exists in {container_id!r}")
            process_json = container.bundle / f"exec-{exec_id}.json"
            pid_file = container.bundle / f"exec-{exec_id}.pid"
            _write_json(process_json, process)
            try:
                io = await self._launch(
                    process,
                    stdio or StdioOptions(),
                    lambda fds, sock: self.runtime.exec(
                        container_id, str(process_json), str(pid_file), stdio=fds,
                        console_socket=sock,
                    ),
                )  # fmt: skip
            finally:
                process_json.unlink(missing_ok=True)
            pid = _read_pid(pid_file)
            pid_file.unlink(missing_ok=True)
            container.execs[exec_id] = ManagedProcess(
                exec_id, pid, list(args), io, self.reaper.watch(pid)
            )
        return exec_id

    async def signal(self, container_id: str, sig: int, exec_id: str | None = None) -> None:
        """Send `sig` to the init (through the runtime) or to an exec process."""
        target = self.process(container_id, exec_id)
        sig = signal.Signals(sig)
        if target.status.done():
            raise InvalidStateError(f"process {exec_id or 'init'} of {container_id!r} exited")
        if exec_id is None:
            await self.runtime.kill(container_id, sig)
        else:
            # Not reaped yet (reaping runs on this loop), so the pid is still this process.
            os.kill(target.pid, sig)

    async def wait(
        self, container_id: str, exec_id: str | None = None, *, timeout: float | None = None
    ) -> int:
        """The exit code once the process exited and its output reached EOF (128+N: signal N).

        Output is part of completion: with a full buffer, this waits for the consumer.
        """
        target = self.process(container_id, exec_id)
        try:
            async with asyncio.timeout(timeout):
                status = await asyncio.shield(target.status)
                await target.io.wait_eof()
        except TimeoutError:
            raise WaitTimeoutError(
                f"process {exec_id or 'init'} of {container_id!r} did not finish within "
                f"{timeout} s",
                details={"container_id": container_id, "exec_id": exec_id, "timeout": timeout},
            ) from None
        return exit_code_from_status(status)

    async def delete(self, container_id: str) -> None:
        """Kill what still runs, `runtime delete`, and remove bundle, stdio and cgroup."""
        container = self.get(container_id)
        async with container.lock:
            if not container.init.status.done():
                with contextlib.suppress(AgentError):
                    await self.runtime.kill(container_id, signal.SIGKILL, all_processes=True)
                await _await_exit(container.init, container_id)
            for process in container.execs.values():
                if not process.status.done():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                    await _await_exit(process, container_id)
            for process in (container.init, *container.execs.values()):
                process.io.close()
            await self._discard(container_id, container.bundle, container.cgroups_path)
            del self._containers[container_id]

    async def _discard(self, container_id: str, bundle: Path, cgroups_path: str) -> None:
        try:
            await self.runtime.delete(container_id, force=True)
        except RuntimeFailedError as exc:
            if "not exist" not in exc.message and "not found" not in exc.message:
                raise
        shutil.rmtree(bundle, ignore_errors=True)
        left = remove_cgroup(cgroups_path)
        if left:
            raise AgentError(f"cgroup of {container_id!r} not removed: {left}",
                             code=ErrorCode.RUNTIME)  # fmt: skip

    def state(self, container_id: str) -> dict[str, Any]:
        container = self.get(container_id)
        return {
            "container_id": container_id,
            "status": container.status,
            "pid": container.init.pid,
            "exit_code": container.init.exit_code,
            "bundle": str(container.bundle),
            "cgroups_path": container.cgroups_path,
            "execs": [process.describe() for process in container.execs.values()],
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.state(container_id) for container_id in sorted(self._containers)]

    def stats(self, container_id: str) -> dict[str, Any]:
        return {
            "container_id": container_id,
            **container_stats(self.get(container_id).cgroups_path),
        }

    async def shutdown(self) -> list[str]:
        """Delete every container; returns the errors (as text) of those that failed."""
        errors = []
        for container_id in list(self._containers):
            try:
                await self.delete(container_id)
            except AgentError as exc:
                errors.append(f"{container_id}: {exc.message}")
        remove_cgroup(f"/{self.cgroup_parent}")
        return errors


async def _await_exit(process: ManagedProcess, container_id: str) -> None:
    try:
        async with asyncio.timeout(KILL_TIMEOUT):
            await asyncio.shield(process.status)
    except TimeoutError:
        raise AgentError(
            f"process {process.pid} of {container_id!r} did not die after SIGKILL",
            code=ErrorCode.RUNTIME,
        ) from None


def _write_bundle_config(bundle: Path, config: dict[str, Any]) -> None:
    try:
        _write_json(bundle / "config.json", config)
    except OSError as exc:  # ENOSPC on the state disk is an effect failure, not a bug
        raise AgentError(
            f"cannot write the bundle of {bundle.name!r}: {exc.strerror}",
            code=ErrorCode.STORAGE,
            details={"errno": exc.errno},
        ) from None


def _write_json(path: Path, value: Any) -> None:
    """Atomic write (temp file in the same directory, then rename), owner-only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(value))  # dumps uses the C encoder; dump streams in Python
    os.replace(tmp, path)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise AgentError(f"runtime left no usable pid file {path.name}: {exc}",
                         code=ErrorCode.RUNTIME) from None  # fmt: skip
