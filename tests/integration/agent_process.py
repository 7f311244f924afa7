"""Start the real agent daemon in a subprocess and wait until it serves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class AgentProcess:
    process: subprocess.Popen[bytes]
    uri: str
    socket_path: str
    workdir: Path

    def stderr_text(self) -> str:
        return (self.workdir / "agent.log").read_text()


def wait_for_socket(path: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"agent exited early with {process.returncode}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                time.sleep(0.05)
    raise TimeoutError(f"agent did not listen on {path} within {timeout}s")


@contextmanager
def running_agent(
    *extra_args: str,
    env: dict[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> Iterator[AgentProcess]:
    # A short directory: unix socket paths are limited to 108 bytes.
    workdir = Path(tempfile.mkdtemp(prefix="ga-"))
    socket_path = str(workdir / "agent.sock")
    log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guestagent",
            "serve",
            "--listen",
            f"unix://{socket_path}",
            "--state-dir",
            str(workdir / "state"),
            *(() if "--snp" in extra_args else ("--snp", "none")),
            # Agents of concurrent test runs must not share container cgroups.
            "--cgroup-parent",
            f"guestagent-test-{workdir.name}",
            *extra_args,
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec,
    )
    try:
        try:
            wait_for_socket(socket_path, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}:\n{(workdir / 'agent.log').read_text()[-3000:]}") from None
        yield AgentProcess(process, f"unix://{socket_path}", socket_path, workdir)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)
